"""Built-in indicators end to end: entities written through the NGSI-LD API get their
derived attributes from the change feed, in history too, on both backends; the service's
own writes do not loop; unchanged values are not written again."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from sencity.auth.service import AuthService
from sencity.config import load_settings
from sencity.core.platform import Platform
from sencity.rules.indicators import IndicatorService
from sencity.web.asgi import create_app

NGSI_LD = "/ngsi-ld/v1"
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def prop(value: Any, at: datetime | None = None) -> dict[str, Any]:
    p: dict[str, Any] = {"type": "Property", "value": value}
    if at is not None:
        p["observedAt"] = iso(at)
    return p


Client = httpx.AsyncClient
Scenario = Callable[[Client, dict[str, str], Platform], Awaitable[None]]


def run(store_url: str, tmp_path: Path, scenario: Scenario, **rules: Any) -> Platform:
    settings = load_settings(
        None,
        {
            "store": {"url": store_url},
            "data_dir": str(tmp_path),
            "hub": {"context_fetch": False},
            "ingest": {"embedded_broker": False},
            "rules": {"batch_wait": 0.02, **rules},
        },
        environ={},
    )
    platform = Platform(settings)
    platform.store.create_user("eng", roles={"*": "admin"})
    token = AuthService(platform.store, settings).issue_token("eng")[0]
    h = {"Authorization": f"Bearer {token}", "NGSILD-Tenant": "hue"}

    async def main() -> None:
        await platform.start()
        try:
            transport = httpx.ASGITransport(app=create_app(platform))
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                await scenario(c, h, platform)
        finally:
            await platform.stop()

    try:
        asyncio.run(main())
    finally:
        platform.close()
    return platform


async def upsert(c: Client, h: dict[str, str], *bodies: dict[str, Any]) -> None:
    r = await c.post(
        f"{NGSI_LD}/entityOperations/upsert",
        params={"options": "update"},
        json=list(bodies),
        headers=h,
    )
    assert r.status_code in (201, 204), r.text


async def until(
    c: Client,
    h: dict[str, str],
    eid: str,
    check: Callable[[dict[str, Any]], bool],
    timeout: float = 10.0,
) -> dict[str, Any]:
    """The entity (keyValues) once ``check`` holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        r = await c.get(f"{NGSI_LD}/entities/{eid}", params={"options": "keyValues"}, headers=h)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        if check(body):
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out; entity is {body}")
        await asyncio.sleep(0.02)


async def settle(platform: Platform) -> None:
    """Wait until the indicator worker has nothing pending and is idle."""
    svc: IndicatorService = platform.state["indicators"]
    deadline = time.monotonic() + 10
    runs = -1
    while svc._pending or svc._wake.is_set() or runs != svc.runs:
        runs = svc.runs
        if time.monotonic() > deadline:
            raise AssertionError("indicator worker never settled")
        await asyncio.sleep(0.2)


AQ = "urn:ngsi-ld:AirQualityObserved:hue:aq-001"


def aq(pm25: float, at: datetime, **more: float) -> dict[str, Any]:
    body = {"id": AQ, "type": "AirQualityObserved", "pm25": prop(pm25, at)}
    body.update({k: prop(v, at) for k, v in more.items()})
    return body


def test_air_quality_index_from_history(store_url: str, tmp_path: Path) -> None:
    async def scenario(c: Client, h: dict[str, str], platform: Platform) -> None:
        # one hour of data is not enough for a NowCast (2 of the last 3 hours needed)
        await upsert(c, h, aq(10.0, T0 - timedelta(hours=2)))
        await settle(platform)
        r = await c.get(f"{NGSI_LD}/entities/{AQ}", params={"options": "keyValues"}, headers=h)
        assert "airQualityIndex" not in r.json()
        # PM2.5 hourly 10, 20, 30 (now first: 30, 20, 10): w = 1/2, NowCast 24.2857 -> 49
        await upsert(c, h, aq(20.0, T0 - timedelta(hours=1)))
        await upsert(c, h, aq(30.0, T0))
        e = await until(c, h, AQ, lambda b: b.get("airQualityIndex") == 49)
        assert e["airQualityLevel"] == "good" and e["airQualityColor"] == "#00e400"
        r = await c.get(f"{NGSI_LD}/entities/{AQ}", headers=h)
        assert r.json()["airQualityIndex"]["observedAt"] == iso(T0)
        # 5 min later, NO2 250 µg/m³ -> sub-index 105 -> poor (orange); PM2.5 30 again
        # (its hour now holds 30 and 30: the NowCast stays 24.2857 -> 49)
        await upsert(c, h, aq(30.0, T0 + timedelta(minutes=5), no2=250.0))
        e = await until(c, h, AQ, lambda b: b.get("airQualityIndex") == 105)
        assert (e["airQualityLevel"], e["airQualityColor"]) == ("poor", "#ff7e00")
        await settle(platform)
        # history and the temporal API see the derived values
        r = await c.get(
            f"{NGSI_LD}/temporal/entities/{AQ}",
            params={"attrs": "airQualityIndex", "options": "temporalValues"},
            headers=h,
        )
        assert r.status_code == 200, r.text
        values = [v[0] for v in r.json()["airQualityIndex"]["values"]]
        assert values == [49, 105]

    run(store_url, tmp_path, scenario)


def test_flood_levels_and_no_loop(store_url: str, tmp_path: Path) -> None:
    fid = "urn:ngsi-ld:FloodMonitoring:hue:fl-01"

    def gauge(level: float, at: datetime) -> dict[str, Any]:
        return {
            "id": fid,
            "type": "FloodMonitoring",
            "currentLevel": prop(level, at),
            "alertLevel1": prop(1.5),
            "alertLevel2": prop(2.5),
            "alertLevel3": prop(3.5),
        }

    async def scenario(c: Client, h: dict[str, str], platform: Platform) -> None:
        svc: IndicatorService = platform.state["indicators"]
        await upsert(c, h, gauge(0.8, T0))
        e = await until(c, h, fid, lambda b: "floodAlertLevel" in b)
        assert (e["floodAlertLevel"], e["floodLevelStatus"]) == (0, "normal")
        await upsert(c, h, gauge(2.6, T0 + timedelta(minutes=10)))
        e = await until(c, h, fid, lambda b: b.get("floodAlertLevel") == 2)
        assert e["floodLevelStatus"] == "alert2"
        await upsert(c, h, gauge(3.6, T0 + timedelta(minutes=20)))
        await until(c, h, fid, lambda b: b.get("floodLevelStatus") == "alert3")
        await settle(platform)
        writes = svc.writes
        assert writes == 3  # one per change of level, none for its own writes' events
        # a new reading on the same level writes nothing
        await upsert(c, h, gauge(3.7, T0 + timedelta(minutes=30)))
        await settle(platform)
        assert svc.writes == writes
        r = await c.get(
            f"{NGSI_LD}/temporal/entities/{fid}",
            params={"attrs": "floodAlertLevel", "options": "temporalValues"},
            headers=h,
        )
        assert [v[0] for v in r.json()["floodAlertLevel"]["values"]] == [0, 2, 3]

    run(store_url, tmp_path, scenario)


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_traffic_ratio_free_flow_and_road_segment(store_url: str, tmp_path: Path) -> None:
    seg = "urn:ngsi-ld:RoadSegment:hue:rd-1"
    t1, t2 = (
        "urn:ngsi-ld:TrafficFlowObserved:hue:tf-001",
        "urn:ngsi-ld:TrafficFlowObserved:hue:tf-002",
    )

    async def scenario(c: Client, h: dict[str, str], platform: Platform) -> None:
        await upsert(c, h, {"id": seg, "type": "RoadSegment", "maximumAllowedSpeed": prop(60)})
        await upsert(
            c,
            h,
            {  # own free-flow speed: 20 / 50 = 0.4 < 0.6 -> congested
                "id": t1,
                "type": "TrafficFlowObserved",
                "averageVehicleSpeed": prop(20, T0),
                "freeFlowSpeed": prop(50),
            },
            {  # the segment's speed limit: 42 / 60 = 0.7 -> not congested
                "id": t2,
                "type": "TrafficFlowObserved",
                "averageVehicleSpeed": prop(42, T0),
                "refRoadSegment": {"type": "Relationship", "object": seg},
            },
        )
        e1 = await until(c, h, t1, lambda b: "speedRatio" in b)
        assert (e1["speedRatio"], e1["congested"]) == (0.4, True)
        e2 = await until(c, h, t2, lambda b: "speedRatio" in b)
        assert (e2["speedRatio"], e2["congested"]) == (0.7, False)
        # slower traffic on the segment: 30 / 60 = 0.5 < 0.6 -> congested
        await upsert(
            c, h, {"id": t2, "type": "TrafficFlowObserved", "averageVehicleSpeed": prop(30, T0)}
        )
        e2 = await until(c, h, t2, lambda b: b.get("speedRatio") == 0.5)
        assert e2["congested"] is True

    run(store_url, tmp_path, scenario, congestion_ratio=0.6)


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_indicators_off(store_url: str, tmp_path: Path) -> None:
    async def scenario(c: Client, h: dict[str, str], platform: Platform) -> None:
        assert "indicators" not in platform.state
        fid = "urn:ngsi-ld:FloodMonitoring:hue:fl-02"
        await upsert(
            c,
            h,
            {
                "id": fid,
                "type": "FloodMonitoring",
                "currentLevel": prop(9.0, T0),
                "alertLevel1": prop(1.0),
            },
        )
        r = await c.get(f"{NGSI_LD}/entities/{fid}", params={"options": "keyValues"}, headers=h)
        assert "floodAlertLevel" not in r.json()

    run(store_url, tmp_path, scenario, indicators=False)
