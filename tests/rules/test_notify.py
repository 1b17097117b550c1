"""Notifications of alarm changes through a real webhook receiver: raise, escalation to the
next level's channel, reminders until acknowledged, the acknowledgement; a flapping
sensor held to the channel's rate limit; quiet hours holding back minor alarms."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.rules.harness import RULES, City, poll, rules_settings, running_city
from tests.subs.conftest import Receiver, free_port

FLOOD = "urn:ngsi-ld:FloodMonitoring:danang:fl-01"
NOISE = "urn:ngsi-ld:NoiseLevelObserved:danang:nz-01"
PARK = "urn:ngsi-ld:OffStreetParking:danang:pk-01"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver(free_port())
    rec.start()
    yield rec
    rec.stop()


def events(rec: Receiver, path: str) -> list[str]:
    with rec.cond:
        return [r.body["event"] for r in rec.requests if r.path == path]


async def ticks(city: City, n: int) -> None:
    """Wait until the engine's timer has run ``n`` more times."""
    engine = city.platform.state["rules"].engine
    start = engine.ticks

    async def done() -> bool:
        return bool(engine.ticks >= start + n)

    await poll(done, f"{n} timer runs")


@pytest.mark.timeout(60)
def test_escalation_reminders_and_acknowledgement(receiver: Receiver, tmp_path: Path) -> None:
    settings = rules_settings(f"sqlite:///{tmp_path / 'store.db'}", tmp_path)
    rule: dict[str, Any] = {
        "id": "flood-alert2",
        "name": "Flood above alert level 2",
        "scope": {"type": "FloodMonitoring"},
        "when": {"attr": "currentLevel", "at_least": {"attr": "alertLevel2"}},
        "alarm": {"severity": "major", "description": "{currentLevel} m at {id}"},
        "notify": [{"type": "webhook", "url": receiver.url("/duty")}],
        "escalation": [
            {
                "after": "1s",
                "severity": "critical",
                "notify": [{"type": "webhook", "url": receiver.url("/chief")}],
            }
        ],
        "reminder": "1s",
    }

    async def main() -> None:
        async with running_city(settings) as city:
            assert (await city.put_rule(rule)).status_code == 201
            await city.write(FLOOD, "FloodMonitoring", currentLevel=2.1, alertLevel2=2.5)
            await city.write(FLOOD, "FloodMonitoring", currentLevel=2.6)
            await poll(lambda: _has(receiver, "/chief", "escalated"), "the escalation")
            assert events(receiver, "/duty")[:2] == ["raised", "escalated"]
            await poll(lambda: _has(receiver, "/chief", "reminder"), "a reminder")
            alarm = (await city.alarms())[0]
            assert alarm["severity"] == "critical" and alarm["level"] == 1
            r = await city.http.post(
                f"{RULES}/alarms/{alarm['id']}/ack", json={}, headers=city.h("operator")
            )
            assert r.status_code == 200
            await poll(lambda: _has(receiver, "/chief", "acknowledged"), "the acknowledgement")
            before = len(events(receiver, "/chief"))
            await ticks(city, 15)  # 1.5 s of timer runs: a reminder would have come
            assert len(events(receiver, "/chief")) == before
            with receiver.cond:
                body = next(r.body for r in receiver.requests if r.path == "/duty")
            assert body["rule"] == {"id": "flood-alert2", "name": "Flood above alert level 2"}
            assert body["alarm"]["alertSource"] == FLOOD
            assert body["alarm"]["description"] == f"2.6 m at {FLOOD}"

    asyncio.run(main())


async def _has(rec: Receiver, path: str, event: str) -> bool:
    return event in events(rec, path)


@pytest.mark.timeout(60)
def test_rate_limit_and_quiet_hours(receiver: Receiver, tmp_path: Path) -> None:
    settings = rules_settings(f"sqlite:///{tmp_path / 'store.db'}", tmp_path)
    flapping: dict[str, Any] = {
        "id": "noise-loud",
        "name": "Loud",
        "scope": {"type": "NoiseLevelObserved"},
        "when": {"attr": "LAeq", "above": 70},
        "notify": [{"type": "webhook", "url": receiver.url("/flap"), "rate_limit": 3}],
    }
    quiet: dict[str, Any] = {
        "id": "parking-full",
        "name": "Parking full",
        "scope": {"type": "OffStreetParking"},
        "when": {"attr": "availableSpotNumber", "at_most": 0},
        "alarm": {"severity": "minor"},
        "quiet_hours": {"from": "00:00", "to": "00:00", "allow": ["critical"]},
        "notify": [{"type": "webhook", "url": receiver.url("/quiet")}],
    }

    async def main() -> None:
        async with running_city(settings) as city:
            assert (await city.put_rule(flapping)).status_code == 201
            assert (await city.put_rule(quiet)).status_code == 201
            for n in range(6):
                await city.write(NOISE, "NoiseLevelObserved", LAeq=80.0 if n % 2 == 0 else 50.0)
                await city.settle(NOISE, "NoiseLevelObserved")
            svc = city.platform.state["rules"]
            await poll(lambda: _limited(svc), "the rate limit")
            await poll(lambda: _count(receiver, "/flap", 3), "three notices")
            assert events(receiver, "/flap") == ["raised", "cleared", "raised"]
            # six transitions made six alarm changes: all on the bus for the dashboard
            assert (
                len([e for e in city.watcher.events if e.payload.get("refRule") == "noise-loud"])
                == 6
            )
            await city.write(PARK, "OffStreetParking", availableSpotNumber=0)
            await poll(lambda: _quiet(svc), "the quiet hours")
            assert events(receiver, "/quiet") == []
            assert await city.alarms(rule="parking-full")

    asyncio.run(main())


async def _limited(svc: Any) -> bool:
    return bool(svc.dispatcher.limited >= 3)


async def _quiet(svc: Any) -> bool:
    return bool(svc.dispatcher.quiet >= 1)


async def _count(rec: Receiver, path: str, n: int) -> bool:
    return len(events(rec, path)) >= n
