"""A platform with the rules module, served in-process over HTTP (ASGI), for the rules
tests: users per role, an NGSI-LD writer and polling with a deadline."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from sencity.auth.service import AuthService
from sencity.config import Settings, load_settings
from sencity.core.bus import Event
from sencity.core.hooks import hookimpl
from sencity.core.platform import Platform
from sencity.web.asgi import create_app

NGSI_LD = "/ngsi-ld/v1"
RULES = "/rules/v1"
TENANT = "danang"


def rules_settings(store_url: str, tmp: Path, **rules: Any) -> Settings:
    return load_settings(
        None,
        {
            "store": {"url": store_url},
            "data_dir": str(tmp),
            "hub": {"context_fetch": False},
            "ingest": {"embedded_broker": False},
            "rules": {"batch_wait": 0.01, "tick_seconds": 0.1, **rules},
        },
        environ={},
    )


class BusWatcher:
    """A plugin that keeps every ``rules.alarm.*`` event."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def on_event(self, event: Event) -> None:
        self.events.append(event)

    @hookimpl
    def sencity_subscriptions(self, platform: Platform) -> list[tuple[str, Any]]:
        return [("rules.alarm.*", self.on_event)]


@dataclass
class City:
    platform: Platform
    http: httpx.AsyncClient
    tokens: dict[str, str]
    watcher: BusWatcher
    marker: int = 0

    def h(self, who: str = "admin") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}", "NGSILD-Tenant": TENANT}

    async def put_rule(self, rule: dict[str, Any]) -> httpx.Response:
        return await self.http.post(f"{RULES}/rules", json=rule, headers=self.h())

    async def write(self, eid: str, etype: str, **attrs: Any) -> None:
        body: dict[str, Any] = {"id": eid, "type": etype}
        for k, v in attrs.items():
            if k == "location":
                body[k] = {"type": "GeoProperty", "value": v}
            else:
                body[k] = {"type": "Property", "value": v}
        r = await self.http.post(
            f"{NGSI_LD}/entityOperations/upsert?options=update", json=[body], headers=self.h()
        )
        assert r.status_code in (201, 204), r.text

    async def settle(self, eid: str, etype: str) -> None:
        """Write a marker value on ``eid`` and wait until the engine has evaluated it:
        every change written before has been evaluated too (changes are in order)."""
        self.marker += 1
        mark = 1000.0 + self.marker
        seen: list[float] = []

        def observe(tenant: str, view: Any) -> None:
            if view.id == eid and view.values.get("marker") == mark:
                seen.append(mark)

        engine = self.platform.state["rules"].engine
        engine.observers.append(observe)
        try:
            await self.write(eid, etype, marker=mark)
            await poll(lambda: _true(bool(seen)), f"the engine to evaluate {eid}")
        finally:
            engine.observers.remove(observe)

    async def alarms(self, **params: str) -> list[dict[str, Any]]:
        r = await self.http.get(f"{RULES}/alarms", params=params, headers=self.h("viewer"))
        assert r.status_code == 200, r.text
        out: list[dict[str, Any]] = r.json()
        return out


async def poll(check: Callable[[], Awaitable[Any]], what: str, timeout: float = 10.0) -> Any:
    """Await ``check()`` until it returns something true; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        got = await check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def make_users(platform: Platform, settings: Settings) -> dict[str, str]:
    store = platform.store
    try:
        store.get_tenant(TENANT)
    except Exception:
        store.create_tenant(TENANT, "Đà Nẵng")
    auth = AuthService(store, settings)
    tokens = {}
    for name, role in (("admin", "admin"), ("operator", "operator"), ("viewer", "viewer")):
        try:
            store.get_user(name)
        except Exception:
            store.create_user(name, roles={TENANT: role})
        tokens[name] = auth.issue_token(name)[0]
    return tokens


@asynccontextmanager
async def running_city(settings: Settings) -> AsyncIterator[City]:
    """The platform started (engine, timers) with an HTTP client on it."""
    watcher = BusWatcher()
    platform = Platform(settings, plugins=[watcher])
    tokens = make_users(platform, settings)
    await platform.start()
    transport = httpx.ASGITransport(app=create_app(platform))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            city = City(platform, http, tokens, watcher)
            svc = platform.state["rules"]
            await poll(lambda: _true(svc.engine.leading), "the rules engine to lead")
            yield city
    finally:
        await platform.stop()
        platform.close()


async def _true(v: bool) -> bool:
    return v
