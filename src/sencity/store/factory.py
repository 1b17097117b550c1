"""Open a store from its URL."""

from __future__ import annotations

import re
from pathlib import Path

from sencity.store.base import Store


def redact_url(url: str) -> str:
    """The URL with any password replaced, safe for logs and error messages."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def open_store(url: str, *, pool_size: int = 10, connect_timeout: float = 5.0) -> Store:
    """``sqlite:///path`` (or a plain path) or ``postgresql://…``; raises StoreUnavailable."""
    if url.startswith(("postgresql://", "postgres://")):
        from sencity.store.postgres import PostgresStore

        return PostgresStore(url, pool_size=pool_size, connect_timeout=connect_timeout)
    from sencity.store.sqlite import SQLiteStore

    path = url[len("sqlite:///") :] if url.startswith("sqlite:///") else url
    return SQLiteStore(Path(path))
