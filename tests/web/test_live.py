"""The dashboard's server side: the live stream (tenant-scoped, coalesced, authorised),
the change rate, the pages (language, tenant, sectors), the built files and the page
shown when the front end has not been built."""

from __future__ import annotations

import asyncio
import contextlib
import json
import queue
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from sencity.config import Settings
from sencity.core.platform import Platform
from sencity.store import Store
from sencity.web import plugin as web
from sencity.web.asgi import create_app
from tests.conftest import People, Server
from tests.subs.conftest import wait_for

Serve = Callable[..., Server]
AQ = "urn:ngsi-ld:AirQualityObserved:danang:aq-1"


class Stream:
    """Reads the server-sent events of /web/v1/live over a plain socket, in a thread
    (closing the socket ends the stream at once); events land in a queue."""

    def __init__(self, url: str, token: str, tenant: str) -> None:
        self.events: queue.Queue[tuple[str, Any]] = queue.Queue()
        parts = urlsplit(url)
        self.sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
        self.sock.sendall(
            (
                f"GET /web/v1/live HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                f"Authorization: Bearer {token}\r\nNGSILD-Tenant: {tenant}\r\n"
                "Accept: text/event-stream\r\n\r\n"
            ).encode()
        )
        self.sock.settimeout(None)
        self.file = self.sock.makefile("rb")
        self.status = int(self.file.readline().split()[1])
        while self.file.readline() not in (b"\r\n", b""):
            pass  # headers
        self._stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        buf = b""
        try:
            while self.status == 200:
                size = int(self.file.readline().strip() or b"0", 16)  # chunked encoding
                if size == 0:
                    return
                buf += self.file.read(size)
                self.file.readline()
                while b"\n\n" in buf:
                    frame, buf = buf.split(b"\n\n", 1)
                    event, data = "", ""
                    for line in frame.decode().split("\n"):
                        if line.startswith("event: "):
                            event = line[7:]
                        elif line.startswith("data: "):
                            data += line[6:]
                    if data:
                        self.events.put((event, json.loads(data)))
        except (OSError, ValueError):
            if not self._stop:
                self.events.put(("error", None))

    def next(self, kind: str, timeout: float = 10) -> Any:
        while True:
            event, data = self.events.get(timeout=timeout)
            if event == kind:
                return data

    def close(self) -> None:
        self._stop = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join(5)


@pytest.fixture
def streams() -> Iterator[Callable[[str, str, str], Stream]]:
    opened: list[Stream] = []

    def _open(url: str, token: str, tenant: str) -> Stream:
        s = Stream(url, token, tenant)
        opened.append(s)
        return s

    yield _open
    for s in opened:
        s.close()


def _entity(eid: str, pm25: float) -> dict[str, Any]:
    return {
        "id": eid,
        "type": "AirQualityObserved",
        "pm25": {"type": "Property", "value": pm25},
        "location": {
            "type": "GeoProperty",
            "value": {"type": "Point", "coordinates": [108.2, 16.05]},
        },
    }


def test_live_stream_is_tenant_scoped_and_coalesced(
    serve: Serve, city: People, store_url: str, streams: Callable[[str, str, str], Stream]
) -> None:
    server = serve(store_url, "[hub]\ncontext_fetch = false\n[web]\nlive_interval = 0.3\n")
    dn = streams(server.url, city.tokens["dn_operator"], "danang")
    assert dn.status == 200
    assert dn.next("hello")["tenant"] == "danang"
    hn_root = streams(server.url, city.tokens["root"], "hanoi")
    assert hn_root.next("hello")["tenant"] == "hanoi"
    with server.client(city.tokens["root"]) as c:
        hanoi = {"NGSILD-Tenant": "hanoi"}
        r = c.post("/ngsi-ld/v1/entities", json=_entity(AQ, 1), headers=hanoi)
        assert r.status_code == 201, r.text
        danang = {"NGSILD-Tenant": "danang"}
        r = c.post("/ngsi-ld/v1/entities", json=_entity(AQ, 2), headers=danang)
        assert r.status_code == 201, r.text
        for v in range(3, 23):  # 20 quick changes: coalesced into a few pushes
            r = c.patch(
                f"/ngsi-ld/v1/entities/{AQ}/attrs", json={"pm25": {"value": v}}, headers=danang
            )
            assert r.status_code == 204, r.text
        r = c.delete(f"/ngsi-ld/v1/entities/{AQ}", headers=hanoi)
        assert r.status_code == 204, r.text
    seen: list[float] = []
    while not seen or seen[-1] != 22:
        msg = dn.next("changes")
        assert msg["deleted"] == []
        for e in msg["entities"]:
            assert e["id"] == AQ and e["type"] == "AirQualityObserved"
            assert e["location"]["type"] == "Point"  # keyValues, with the geometry
            seen.append(e["pm25"])
    assert seen[0] >= 2 and len(seen) < 21  # never Hanoi's 1; coalesced
    hanoi_seen: list[float] = []
    while True:  # Hanoi's stream sees only Hanoi's entity, then its deletion
        msg = hn_root.next("changes")
        hanoi_seen += [e["pm25"] for e in msg["entities"]]
        if msg["deleted"]:
            assert msg["deleted"] == [AQ]
            break
    assert set(hanoi_seen) <= {1}
    with server.client(city.tokens["dn_viewer"], headers={"NGSILD-Tenant": "danang"}) as c:
        stats = wait_for(
            lambda: (
                c.get("/web/v1/stats").json()
                if c.get("/web/v1/stats").json()["changesPerSecond"]
                else None
            ),
            what="a change rate",
        )
        assert stats["tenant"] == "danang" and stats["liveClients"] == 1


def test_live_stream_needs_a_role_on_the_tenant(serve: Serve, city: People, store_url: str) -> None:
    server = serve(store_url)
    with server.client() as c:
        r = c.get("/web/v1/live", headers={"NGSILD-Tenant": "danang"})
        assert r.status_code == 401
        assert r.headers["content-type"] == "application/problem+json"
    with server.client(city.tokens["hn_viewer"]) as c:
        r = c.get("/web/v1/live", headers={"NGSILD-Tenant": "danang"})
        assert r.status_code == 403
        assert c.get("/web/v1/stats", headers={"NGSILD-Tenant": "danang"}).status_code == 403


class AppClient:
    """Requests to the app in this process (no server, no background tasks)."""

    def __init__(self, platform: Platform) -> None:
        self.app = create_app(platform)

    def get(self, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
        async def call() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                r = await c.get(path, headers=headers)
                await r.aread()
                return r

        return asyncio.run(call())


@pytest.fixture
def app(settings: Settings, store: Store) -> AppClient:
    """The app in this process: pages and static files."""
    store.create_tenant("danang", "Thành phố Đà Nẵng", "Asia/Ho_Chi_Minh", "vi")
    store.create_tenant("hue", "Thành phố Huế", "Asia/Ho_Chi_Minh", "en")
    return AppClient(Platform(settings, store))


def _headers(city_token: str, **kw: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {city_token}", **kw}


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_pages_language_tenant_and_sectors(
    app: AppClient, store: Store, settings: Settings
) -> None:
    from tests.conftest import add_user

    if not (web.BUILD_DIR / "app.js").exists():
        pytest.skip("the front end is not built (run 'make web')")
    token = add_user(store, settings, "lan", {"danang": "viewer", "hue": "viewer"})
    assert app.get("/").headers["location"] == "/login"
    assert app.get("/sector/transport").headers["location"] == "/login?next=/sector/transport"
    english = _headers(token, **{"Accept-Language": "en-US,en"})
    r = app.get("/", headers=english)
    assert r.status_code == 200
    assert '<html lang="vi">' in r.text  # the tenant's language beats the browser's
    assert "Tổng quan thành phố" in r.text and "sencity_lang" not in r.headers.get("set-cookie", "")
    config = json.loads(r.text.split('type="application/json">')[1].split("</script>")[0])
    assert config["tenant"] == "danang" and config["timezone"] == "Asia/Ho_Chi_Minh"
    assert config["strings"]["layer.air"] == "Chất lượng không khí"
    assert [s["id"] for s in config["sectors"]] == ["environment", "transport", "flood", "lighting"]
    r = app.get("/?tenant=hue", headers=english)
    assert '<html lang="en">' in r.text and "Thành phố Huế" in r.text
    r = app.get("/sector/flood?lang=en", headers=_headers(token))
    assert r.status_code == 200 and "Flood and weather" in r.text
    assert "sencity_lang=en" in r.headers["set-cookie"]
    assert app.get("/sector/health", headers=_headers(token)).status_code == 404
    r = app.get("/static/build/app.js")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/javascript")
    again = app.get("/static/build/app.js", headers={"If-None-Match": r.headers["etag"]})
    assert again.status_code == 304
    assert app.get("/static/build/%2e%2e/plugin.py").status_code == 404
    assert app.get("/static/build/nothing.js").status_code == 404


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_missing_build_is_a_clear_page(
    app: AppClient,
    store: Store,
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.conftest import add_user

    monkeypatch.setattr(web, "BUILD_DIR", tmp_path / "no-build")
    token = add_user(store, settings, "lan", {"danang": "viewer"})
    r = app.get("/", headers=_headers(token))
    assert r.status_code == 503
    assert "make web" in r.text and 'role="alert"' in r.text
    r = app.get("/static/build/app.js")
    assert r.status_code == 404 and "make web" in r.json()["detail"]


def test_sectors_are_configuration(tmp_path: Path) -> None:
    from sencity.config import ConfigError, load_settings

    cfg = tmp_path / "s.toml"
    cfg.write_text(
        '[[web.sectors]]\nid = "health"\nname = {vi = "Y tế", en = "Health"}\n'
        'layers = ["incidents"]\ncharts = []\n'
    )
    s = load_settings(cfg, environ={})
    assert [x.id for x in s.web.sectors] == ["health"]
    cfg.write_text('[[web.sectors]]\nid = "Bad Id"\nname = {vi = "x"}\nlayers = ["air"]\n')
    with pytest.raises(ConfigError, match=r"web\.sectors\.0\.id"):
        load_settings(cfg, environ={})
