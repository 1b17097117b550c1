"""Storage: one contract (:class:`Store`), several backends (SQLite, PostgreSQL)."""

from sencity.store.base import Migration, Row, Store, Tx
from sencity.store.factory import open_store, redact_url

__all__ = ["Migration", "Row", "Store", "Tx", "open_store", "redact_url"]
