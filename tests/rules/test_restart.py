"""A restart keeps the engine's state, on both backends: a pending ``for:`` duration ends
in the next process without a new change, an active condition is still active (no
duplicate alarm; it clears on the next change below the threshold), and a due
escalation happens once."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.rules.harness import RULES, poll, rules_settings, running_city

AQ = "urn:ngsi-ld:AirQualityObserved:danang:aq-007"


def rule(**extra: Any) -> dict[str, Any]:
    return {
        "id": "pm25-sustained",
        "name": "PM2.5 sustained",
        "scope": {"type": "AirQualityObserved"},
        "when": {"attr": "pm25", "above": 150, "clear_below": 140},
        "alarm": {"severity": "minor"},
        **extra,
    }


@pytest.mark.timeout(90)
def test_pending_duration_and_active_state_survive_a_restart(
    store_url: str, tmp_path: Path
) -> None:
    settings = rules_settings(store_url, tmp_path)

    async def first() -> None:
        async with running_city(settings) as city:
            assert (await city.put_rule(rule(**{"for": "2s"}))).status_code == 201
            await city.write(AQ, "AirQualityObserved", pm25=180.0)
            await city.settle(AQ, "AirQualityObserved")
            assert await city.alarms() == []  # not yet 2 s

    async def second() -> None:
        async with running_city(settings) as city:
            # no change written: the stored timer raises the alarm
            found = await poll(lambda: city.alarms(), "the alarm after the restart")
            assert len(found) == 1 and found[0]["alertSource"] == AQ

    async def third() -> None:
        async with running_city(settings) as city:
            await city.write(AQ, "AirQualityObserved", pm25=190.0)
            await city.settle(AQ, "AirQualityObserved")
            assert len(await city.alarms()) == 1  # still the one alarm
            await city.write(AQ, "AirQualityObserved", pm25=120.0)
            cleared = await poll(
                lambda: city.alarms(status="cleared-unacknowledged"), "the alarm to clear"
            )
            assert len(cleared) == 1

    asyncio.run(first())
    asyncio.run(second())
    asyncio.run(third())


@pytest.mark.timeout(90)
def test_escalation_due_during_a_restart_happens_once(store_url: str, tmp_path: Path) -> None:
    settings = rules_settings(store_url, tmp_path)
    escalating = rule(escalation=[{"after": "3s", "severity": "critical"}])
    seen: dict[str, Any] = {}

    async def first() -> None:
        async with running_city(settings) as city:
            assert (await city.put_rule(escalating)).status_code == 201
            await city.write(AQ, "AirQualityObserved", pm25=200.0)
            alarm = (await poll(lambda: city.alarms(), "the alarm"))[0]
            assert alarm["severity"] == "minor"
            seen["id"] = alarm["id"]

    async def second() -> None:
        async with running_city(settings) as city:

            async def escalated() -> Any:
                found = await city.alarms()
                if found and found[0]["severity"] == "critical" and found[0]["level"] == 1:
                    return found
                return None

            found = await poll(escalated, "the escalation", timeout=15)
            assert len(found) == 1 and found[0]["id"] == seen["id"]
            assert found[0]["level"] == 1
            r = await city.http.get(
                f"{RULES}/alarms/{seen['id']}/timeline", headers=city.h("viewer")
            )
            assert [e["action"] for e in r.json()] == ["raised", "escalated"]

    asyncio.run(first())
    asyncio.run(second())


def test_an_alarm_write_that_fails_is_tried_again(tmp_path: Path) -> None:
    settings = rules_settings(f"sqlite:///{tmp_path / 'store.db'}", tmp_path)
    failures: list[str] = []

    def failing_hook(tx: Any, tenant: str, changes: dict[str, Any], now: str) -> None:
        alerts = [i for i in changes if ":Alert:" in i]
        if alerts and len(failures) < 2:  # the store refuses the first two attempts
            failures.append(alerts[0])
            raise RuntimeError("disk I/O error")

    async def main() -> None:
        async with running_city(settings) as city:
            city.platform.state["hub"].hub.write_hooks.append(failing_hook)
            assert (await city.put_rule(rule())).status_code == 201
            await city.write(AQ, "AirQualityObserved", pm25=220.0)
            found = await poll(lambda: city.alarms(), "the alarm once the store works")
            assert len(failures) == 2
            assert len(found) == 1 and found[0]["alertSource"] == AQ
            await city.settle(AQ, "AirQualityObserved")
            assert len(await city.alarms()) == 1

    asyncio.run(main())
