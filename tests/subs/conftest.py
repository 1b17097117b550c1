"""Fixtures of the subscription tests: a server per backend (quick retries), a real HTTP
receiver that records what it is sent, and an MQTT subscriber on the real broker."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from sencity.auth.service import AuthService
from sencity.config import load_settings
from sencity.core.platform import prepare_store
from tests.conftest import _pg_schema_url, start_server, stop_server
from tests.hub.conformance.conftest import NGSI

#: quick retries, so failures and recoveries show within a test's time; one notification
#: at a time per endpoint, so one endpoint gets its notifications in the order of the writes
#: (a test can write something that must not notify, then something that must, and know
#: the first did not once the second has come)
SUBS_CONFIG = """[hub]
context_fetch = false
[subscriptions]
backoff_base = 0.2
backoff_max = 1.0
retries = 4
poll_interval = 0.2
http_timeout = 2.0
endpoint_concurrency = 1
"""


def wait_for(check: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll ``check`` until it returns something true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class Receiver:
    """An HTTP server in a thread that records every POST; ``status`` is its answer."""

    port: int
    status: int = 204
    delay: float = 0.0
    requests: list[Received] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)
    server: ThreadingHTTPServer | None = None

    def url(self, path: str = "/notify") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> None:
        rec = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if rec.delay:
                    time.sleep(rec.delay)
                status = rec.status
                if status < 300:
                    with rec.cond:
                        rec.requests.append(
                            Received(
                                self.path,
                                {k.lower(): v for k, v in self.headers.items()},
                                json.loads(raw),
                            )
                        )
                        rec.cond.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def wait(self, n: int = 1, timeout: float = 10.0, path: str | None = None) -> list[Received]:
        """The first ``n`` notifications (to ``path``, if given), once they have come."""

        def mine() -> list[Received]:
            return [r for r in self.requests if path is None or r.path == path]

        with self.cond:
            if not self.cond.wait_for(lambda: len(mine()) >= n, timeout):
                raise AssertionError(f"{len(mine())} notification(s) came, {n} expected")
            return mine()[:n]

    def data(self, path: str | None = None) -> list[dict[str, Any]]:
        """Every entity notified so far (to ``path``, if given)."""
        with self.cond:
            return [
                d for r in self.requests if path is None or r.path == path for d in r.body["data"]
            ]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver(free_port())
    rec.start()
    yield rec
    rec.stop()


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def subs_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    """A server per backend for the whole session: (URL, admin token)."""
    tmp = tmp_path_factory.mktemp(f"subs-{request.param}")
    url = store_url_for(request.param, tmp, request)
    token = make_admin(url)
    cfg = tmp / "sencity.toml"
    cfg.write_text(SUBS_CONFIG)
    server = start_server(["--config", str(cfg), "serve", "--port", "0", "--store", url], tmp)
    yield server.url, token
    stop_server(server)


def make_admin(url: str) -> str:
    settings = load_settings(None, {"store": {"url": url}}, environ={})
    store = prepare_store(settings)
    store.create_user("subs-admin", roles={"*": "admin"})
    token, _ = AuthService(store, settings).issue_token("subs-admin")
    store.close()
    return token


@pytest.fixture
def ngsi(subs_server: tuple[str, str]) -> Iterator[NGSI]:
    url, token = subs_server
    client = NGSI(url, token, f"t{uuid.uuid4().hex[:12]}")
    yield client
    client.http.close()


def subscription(uri: str, **members: Any) -> dict[str, Any]:
    """A subscription to Sensor entities notifying ``uri``; members override."""
    body: dict[str, Any] = {
        "type": "Subscription",
        "entities": [{"type": "Sensor"}],
        "notification": {"endpoint": {"uri": uri}},
    }
    note = members.pop("notification", None)
    body.update(members)
    if note:
        body["notification"] = {**body["notification"], **note}
    return body


def subscribe(ngsi: NGSI, body: dict[str, Any]) -> str:
    r = ngsi.request("POST", "/subscriptions", body)
    assert r.status_code == 201, r.text
    location: str = r.headers["Location"]
    return location.rsplit("/", 1)[1]


def status(ngsi: NGSI, sid: str) -> dict[str, Any]:
    r = ngsi.request("GET", f"/subscriptions/{sid}")
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def store_url_for(backend: str, tmp: Path, request: pytest.FixtureRequest) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp / 'store.db'}"
    return _pg_schema_url(request.getfixturevalue("pg_url"))
