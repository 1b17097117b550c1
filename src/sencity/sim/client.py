"""A small HTTP client of SenCity's public APIs (keep-alive connections, one per thread;
JSON in and out; problem bodies → :class:`ApiError`)."""

from __future__ import annotations

import http.client
import json
import threading
from typing import Any
from urllib.parse import urlencode, urlsplit


class SimError(Exception):
    """Something the simulator cannot go on with; the text says what to do."""


class ApiError(SimError):
    """The server answered with an error status."""

    def __init__(self, method: str, path: str, status: int, detail: str) -> None:
        self.status = status
        self.detail = detail
        super().__init__(f"{method} {path} → {status}: {detail}")


class Client:
    """The platform at ``base_url`` for one tenant, with a bearer token."""

    def __init__(self, base_url: str, tenant: str, token: str | None, timeout: float = 120) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SimError(f"--url {base_url!r}: expected http://host:port or https://host:port")
        self.base = base_url.rstrip("/")
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.prefix = parts.path.rstrip("/")
        self.tenant = tenant
        self.token = token
        self.timeout = timeout
        self._local = threading.local()

    def _conn(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            cls = (
                http.client.HTTPSConnection
                if self.scheme == "https"
                else http.client.HTTPConnection
            )
            conn = cls(self.host, self.port, timeout=self.timeout)
            self._local.conn = conn
        return conn

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        params: dict[str, Any] | None = None,
        raw: bytes | None = None,
        ok: tuple[int, ...] = (),
    ) -> tuple[int, dict[str, str], Any]:
        """(status, headers, decoded JSON or None); ApiError for 4xx/5xx not in ``ok``."""
        url = self.prefix + path
        if params:
            url += "?" + urlencode({k: v for k, v in params.items() if v is not None})
        headers = {"NGSILD-Tenant": self.tenant, "Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = raw
        if body is not None:
            data = json.dumps(body, separators=(",", ":")).encode()
        if data is not None:
            headers["Content-Type"] = "application/json"
        for attempt in (1, 2):
            conn = self._conn()
            try:
                conn.request(method, url, body=data, headers=headers)
                resp = conn.getresponse()
                payload = resp.read()
                break
            except (ConnectionError, http.client.HTTPException, OSError) as exc:
                conn.close()
                self._local.conn = None
                if attempt == 2 or isinstance(exc, TimeoutError):
                    raise SimError(f"cannot reach SenCity at {self.base}: {exc}") from None
        status = resp.status
        hdrs = {k.lower(): v for k, v in resp.getheaders()}
        doc: Any = None
        if payload:
            try:
                doc = json.loads(payload)
            except ValueError:
                doc = payload.decode("utf-8", "replace")
        if status >= 400 and status not in ok:
            detail = doc.get("detail") or doc.get("title") if isinstance(doc, dict) else doc
            raise ApiError(method, path, status, str(detail or resp.reason)[:500])
        return status, hdrs, doc

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params)[2]

    def pages(self, path: str, limit: int = 1000, **params: Any) -> list[Any]:
        """Every item of a paged list (``limit``/``offset``)."""
        out: list[Any] = []
        offset = 0
        while True:
            items = self.request("GET", path, params={**params, "limit": limit, "offset": offset})[
                2
            ]
            out.extend(items or [])
            if not items or len(items) < limit:
                return out
            offset += limit

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
