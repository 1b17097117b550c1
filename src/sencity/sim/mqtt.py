"""Publishing readings: the ingestion module's QoS 1 publisher (its errors are the
simulator's)."""

from __future__ import annotations

from sencity.ingest.publisher import WINDOW
from sencity.ingest.publisher import Publisher as _Publisher
from sencity.sim.client import SimError


class Publisher(_Publisher):
    def __init__(self, url: str, client_id: str, window: int = WINDOW) -> None:
        super().__init__(url, client_id, window, error=SimError)
