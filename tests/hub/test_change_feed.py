"""The change feed: every committed hub write reaches a plugin subscribed on the event bus
(the interface the rules engine and the live dashboard consume), on both backends."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx

from sencity.auth.service import AuthService
from sencity.config import load_settings
from sencity.core.bus import Event, EventHandler
from sencity.core.hooks import hookimpl
from sencity.core.platform import Platform
from sencity.web.asgi import create_app

NGSI_LD = "/ngsi-ld/v1"
TEMP = "https://uri.etsi.org/ngsi-ld/default-context/temperature"
SENSOR = "https://uri.etsi.org/ngsi-ld/default-context/Sensor"


class Watcher:
    """A plugin that keeps every ``hub.entity.*`` event."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.arrived = asyncio.Condition()

    async def on_event(self, event: Event) -> None:
        async with self.arrived:
            self.events.append(event)
            self.arrived.notify_all()

    @hookimpl
    def sencity_subscriptions(self, platform: Platform) -> list[tuple[str, EventHandler]]:
        return [("hub.entity.*", self.on_event)]

    async def wait(self, n: int) -> list[Event]:
        async with self.arrived:
            await asyncio.wait_for(self.arrived.wait_for(lambda: len(self.events) >= n), 10)
        return self.events


def test_writes_reach_bus_subscribers_after_commit(store_url: str, tmp_path: Path) -> None:
    settings = load_settings(
        None,
        {
            "store": {"url": store_url},
            "data_dir": str(tmp_path),
            "hub": {"context_fetch": False},
            "ingest": {"embedded_broker": False},
        },
        environ={},
    )
    watcher = Watcher()
    platform = Platform(settings, plugins=[watcher])
    platform.store.create_user("eng", roles={"*": "admin"})
    token = AuthService(platform.store, settings).issue_token("eng")[0]
    h = {"Authorization": f"Bearer {token}", "NGSILD-Tenant": "hue"}

    def sensor(i: int, t: float) -> dict[str, Any]:
        return {
            "id": f"urn:ngsi-ld:Sensor:{i}",
            "type": "Sensor",
            "temperature": {"type": "Property", "value": t},
        }

    async def main() -> list[Event]:
        await platform.start()
        transport = httpx.ASGITransport(app=create_app(platform))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            r = await c.post(f"{NGSI_LD}/entities", json=sensor(1, 20.0), headers=h)
            assert r.status_code == 201, r.text
            batch = [sensor(1, 21.0), sensor(2, 30.0)]
            r = await c.post(f"{NGSI_LD}/entityOperations/upsert", json=batch, headers=h)
            assert r.status_code in (201, 204), r.text
            # a refused write publishes nothing
            r = await c.post(f"{NGSI_LD}/entities", json=sensor(2, 1.0), headers=h)
            assert r.status_code == 409
            r = await c.delete(f"{NGSI_LD}/entities/urn:ngsi-ld:Sensor:2", headers=h)
            assert r.status_code == 204
        events = await watcher.wait(4)
        await platform.stop()
        return events

    events = asyncio.run(main())
    platform.close()
    assert [(e.topic, e.payload["id"]) for e in events] == [
        ("hub.entity.created", "urn:ngsi-ld:Sensor:1"),
        ("hub.entity.updated", "urn:ngsi-ld:Sensor:1"),
        ("hub.entity.created", "urn:ngsi-ld:Sensor:2"),
        ("hub.entity.deleted", "urn:ngsi-ld:Sensor:2"),
    ]
    assert all(e.tenant == "hue" for e in events)
    assert events[0].payload["types"] == [SENSOR]
    assert events[1].payload["attrs"] == [TEMP]
    assert events[3].payload["attrs"] == []
