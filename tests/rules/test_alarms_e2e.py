"""Rules end to end through the HTTP API on both backends: a rule is created, entity
changes written through NGSI-LD raise an ``Alert`` entity (hysteresis, one active alarm
per rule and entity), operators acknowledge, assign, comment and clear it, and every
step is on the alarm's timeline and on the bus for the dashboard."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.rules.harness import NGSI_LD, RULES, TENANT, poll, rules_settings, running_city

AQ = "urn:ngsi-ld:AirQualityObserved:danang:aq-001"
AQ2 = "urn:ngsi-ld:AirQualityObserved:danang:aq-002"

PM25_RULE: dict[str, Any] = {
    "id": "pm25-high",
    "name": "PM2.5 high",
    "scope": {"type": "AirQualityObserved"},
    "when": {"attr": "pm25", "above": 150, "clear_below": 140},
    "alarm": {
        "severity": "major",
        "category": "environment",
        "description": "PM2.5 {pm25} µg/m³ at {id}",
    },
    "notify": [{"type": "dashboard"}],
}


def test_rule_raises_updates_and_clears_one_alarm(store_url: str, tmp_path: Path) -> None:
    settings = rules_settings(store_url, tmp_path)

    async def main() -> None:
        async with running_city(settings) as city:
            r = await city.put_rule(PM25_RULE)
            assert r.status_code == 201, r.text
            assert r.headers["Location"] == f"{RULES}/rules/pm25-high"
            await city.write(AQ, "AirQualityObserved", pm25=120.0, wardCode="20194")
            await city.write(AQ2, "AirQualityObserved", pm25=90.0, wardCode="20194")
            await city.write(AQ, "AirQualityObserved", pm25=160.0)
            found = await poll(lambda: city.alarms(), "the alarm")
            assert len(found) == 1
            alarm = found[0]
            assert alarm["type"] == "Alert"
            assert alarm["alertSource"] == AQ
            assert alarm["refRule"] == "pm25-high"
            assert alarm["severity"] == "major"
            assert alarm["alarmStatus"] == "active-unacknowledged"
            assert alarm["description"] == f"PM2.5 160 µg/m³ at {AQ}"
            assert alarm["wardCode"] == "20194"
            # the Alert is an ordinary hub entity: NGSI-LD readers see it
            r = await city.http.get(f"{NGSI_LD}/entities/{alarm['id']}", headers=city.h("viewer"))
            assert r.status_code == 200, r.text
            # above the clear threshold: still one alarm, still active (hysteresis)
            await city.write(AQ, "AirQualityObserved", pm25=170.0)
            await city.write(AQ, "AirQualityObserved", pm25=145.0)
            await city.settle(AQ2, "AirQualityObserved")
            found = await city.alarms()
            assert [a["alarmStatus"] for a in found] == ["active-unacknowledged"]
            # below the clear threshold: cleared
            await city.write(AQ, "AirQualityObserved", pm25=130.0)
            await poll(lambda: city.alarms(status="cleared-unacknowledged"), "the alarm to clear")
            # again above: a new alarm (the cleared one stays in the list)
            await city.write(AQ, "AirQualityObserved", pm25=155.0)
            active = await poll(lambda: city.alarms(active="true"), "a second alarm")
            assert len(active) == 1 and active[0]["id"] != alarm["id"]
            assert len(await city.alarms()) == 2
            # the dashboard heard of it on the bus
            topics = [e.topic for e in city.watcher.events]
            assert topics[:2] == ["rules.alarm.raised", "rules.alarm.cleared"]
            assert city.watcher.events[0].payload["id"] == alarm["id"]
            assert city.watcher.events[0].tenant == TENANT

    asyncio.run(main())


def test_operators_acknowledge_assign_comment_and_clear(store_url: str, tmp_path: Path) -> None:
    settings = rules_settings(store_url, tmp_path)

    async def main() -> None:
        async with running_city(settings) as city:
            assert (await city.put_rule(PM25_RULE)).status_code == 201
            await city.write(AQ, "AirQualityObserved", pm25=200.0)
            alarm = (await poll(lambda: city.alarms(), "the alarm"))[0]
            base = f"{RULES}/alarms/{alarm['id']}"
            # a viewer may read but not acknowledge
            r = await city.http.post(base + "/ack", json={}, headers=city.h("viewer"))
            assert r.status_code == 403
            r = await city.http.post(
                base + "/ack", json={"comment": "on it"}, headers=city.h("operator")
            )
            assert r.status_code == 200, r.text
            assert r.json()["alarmStatus"] == "active-acknowledged"
            r = await city.http.post(base + "/ack", json={}, headers=city.h("operator"))
            assert r.status_code == 409
            assert r.headers["content-type"].startswith("application/problem+json")
            r = await city.http.post(
                base + "/assign", json={"assignee": "lan"}, headers=city.h("operator")
            )
            assert r.status_code == 200 and r.json()["assignee"] == "lan"
            r = await city.http.post(base + "/assign", json={}, headers=city.h("operator"))
            assert r.status_code == 400
            r = await city.http.post(
                base + "/comments", json={"text": "crew sent"}, headers=city.h("operator")
            )
            assert r.status_code == 201
            r = await city.http.get(base + "/comments", headers=city.h("viewer"))
            assert [c["text"] for c in r.json()] == ["crew sent"]
            r = await city.http.post(
                base + "/clear", json={"reason": "sensor cleaned"}, headers=city.h("operator")
            )
            assert r.status_code == 200 and r.json()["alarmStatus"] == "cleared-acknowledged"
            assert "validTo" in r.json()
            r = await city.http.post(base + "/clear", json={}, headers=city.h("operator"))
            assert r.status_code == 409
            r = await city.http.get(base + "/timeline", headers=city.h("viewer"))
            steps = [(e["action"], e["actor"]) for e in r.json()]
            assert steps == [
                ("raised", "rule:pm25-high"),
                ("acknowledged", "operator"),
                ("assigned", "operator"),
                ("comment", "operator"),
                ("cleared", "operator"),
            ]
            assert r.json()[0]["values"] == {"pm25": 200.0}
            r = await city.http.get(f"{RULES}/alarms/urn:x:nothing", headers=city.h("viewer"))
            assert r.status_code == 404
            # filters
            assert await city.alarms(status="cleared-acknowledged")
            assert not await city.alarms(severity="critical")
            assert await city.alarms(type="AirQualityObserved")
            r = await city.http.get(
                f"{RULES}/alarms", params={"status": "open"}, headers=city.h("viewer")
            )
            assert r.status_code == 400
            topics = [e.topic for e in city.watcher.events]
            assert topics == [
                "rules.alarm.raised",
                "rules.alarm.acknowledged",
                "rules.alarm.updated",
                "rules.alarm.cleared",
            ]

    asyncio.run(main())


@pytest.mark.parametrize("backend", ["sqlite"])
def test_rules_crud_and_validation_errors(backend: str, tmp_path: Path) -> None:
    settings = rules_settings(f"sqlite:///{tmp_path / 'store.db'}", tmp_path)

    async def main() -> None:
        async with running_city(settings) as city:
            bad = {**PM25_RULE, "when": {"attr": "pm25", "above": 150, "clear_below": 160}}
            r = await city.put_rule(bad)
            assert r.status_code == 400
            assert r.headers["content-type"].startswith("application/problem+json")
            problem = r.json()
            assert problem["rule"] == "pm25-high"
            assert problem["field"] == "when.clear_below"
            assert "hysteresis" in problem["detail"]
            r = await city.http.post(f"{RULES}/rules", json=PM25_RULE, headers=city.h("operator"))
            assert r.status_code == 403  # operators do not edit rules
            assert (await city.put_rule(PM25_RULE)).status_code == 201
            assert (await city.put_rule(PM25_RULE)).status_code == 409
            r = await city.http.get(f"{RULES}/rules", headers=city.h("viewer"))
            assert r.headers["Total-Count"] == "1" and r.json()[0]["id"] == "pm25-high"
            changed = {**PM25_RULE, "name": "PM2.5 very high"}
            r = await city.http.put(f"{RULES}/rules/pm25-high", json=changed, headers=city.h())
            assert r.status_code == 200 and r.json()["name"] == "PM2.5 very high"
            r = await city.http.put(
                f"{RULES}/rules/pm25-high", json={**changed, "id": "other"}, headers=city.h()
            )
            assert r.status_code == 400
            r = await city.http.delete(f"{RULES}/rules/pm25-high", headers=city.h())
            assert r.status_code == 204
            # a rule with a cap section makes public warnings
            cap = {
                "event": {"vi": "Lũ", "en": "Flood"},
                "headline": {"vi": "Vượt báo động 3", "en": "Above alert level 3"},
                "instruction": {"vi": "Sơ tán", "en": "Evacuate"},
                "urgency": "Immediate",
                "area": "Hòa Vang",
            }
            flood = {
                "id": "flood-3",
                "name": "Flood alert 3",
                "scope": {"type": "FloodMonitoring"},
                "when": {"attr": "currentLevel", "at_least": {"attr": "alertLevel3"}},
                "alarm": {"severity": "critical"},
                "cap": cap,
            }
            assert (await city.put_rule(flood)).status_code == 201
            gauge = "urn:ngsi-ld:FloodMonitoring:danang:fl-09"
            await city.write(gauge, "FloodMonitoring", currentLevel=4.2, alertLevel3=4.0)
            alarm = (await poll(lambda: city.alarms(rule="flood-3"), "the flood alarm"))[0]
            assert alarm["publicWarning"] is True
            assert alarm["capInfo"] == {**cap, "certainty": "Observed"}
            r = await city.http.get(f"{RULES}/rules/pm25-high", headers=city.h())
            assert r.status_code == 404

    asyncio.run(main())


def test_a_change_evaluates_only_the_rules_reading_what_changed(tmp_path: Path) -> None:
    settings = rules_settings(f"sqlite:///{tmp_path / 'store.db'}", tmp_path)
    lamp = "urn:ngsi-ld:Streetlight:danang:sl-001"
    night: dict[str, Any] = {
        "id": "lamp-fault",
        "name": "Lamp fault",
        "scope": {"type": "Streetlight"},
        "when": {
            "all": [
                {"attr": "status", "not_equals": "ok"},
                {"schedule": {"from": "00:00", "to": "00:00"}},
            ]
        },
    }

    async def main() -> None:
        async with running_city(settings) as city:
            assert (await city.put_rule(PM25_RULE)).status_code == 201
            assert (await city.put_rule(night)).status_code == 201
            engine = city.platform.state["rules"].engine
            await city.write(AQ, "AirQualityObserved", pm25=100.0, no2=5.0)
            await city.settle(AQ, "AirQualityObserved")
            before = engine.evaluations
            await city.write(AQ, "AirQualityObserved", no2=6.0)  # the rule reads pm25 only
            await city.settle(AQ, "AirQualityObserved")
            assert engine.evaluations == before
            await city.write(AQ, "AirQualityObserved", pm25=151.0)
            assert await poll(lambda: city.alarms(rule="pm25-high"), "the PM2.5 alarm")
            # a rule that depends on time is evaluated on any change (and by the timer)
            await city.write(lamp, "Streetlight", status="ok")
            await city.settle(lamp, "Streetlight")
            before = engine.evaluations
            await city.settle(lamp, "Streetlight")
            assert engine.evaluations > before
            await city.write(lamp, "Streetlight", status="defectiveLamp")
            assert await poll(lambda: city.alarms(rule="lamp-fault"), "the lamp alarm")

    asyncio.run(main())


def test_no_data_and_cross_entity_groups(tmp_path: Path) -> None:
    settings = rules_settings(f"sqlite:///{tmp_path / 'store.db'}", tmp_path)
    offline: dict[str, Any] = {
        "id": "wx-offline",
        "name": "Weather station offline",
        "scope": {"type": "WeatherObserved"},
        "when": {"no_data": "2s", "attr": "temperature"},
        "alarm": {"severity": "warning"},
    }
    flooding: dict[str, Any] = {
        "id": "ward-flooding",
        "name": "Ward flooding",
        "scope": {"type": "FloodMonitoring"},
        "when": {"attr": "floodAlertLevel", "at_least": 2},
        "group": {"by": "wardCode", "at_least": 3},
        "alarm": {"severity": "critical", "description": "{count} gauges in ward {group}"},
    }
    station = "urn:ngsi-ld:WeatherObserved:danang:wx-01"

    async def main() -> None:
        async with running_city(settings) as city:
            assert (await city.put_rule(offline)).status_code == 201
            assert (await city.put_rule(flooding)).status_code == 201
            await city.write(station, "WeatherObserved", temperature=30.0)
            # nothing more comes: the timer finds the station silent
            found = await poll(lambda: city.alarms(rule="wx-offline"), "the offline alarm")
            assert found[0]["alertSource"] == station
            await city.write(station, "WeatherObserved", temperature=31.0)
            await poll(
                lambda: city.alarms(rule="wx-offline", status="cleared-unacknowledged"),
                "the station back",
            )
            for n in range(3):
                gauge = f"urn:ngsi-ld:FloodMonitoring:danang:fl-1{n}"
                await city.write(gauge, "FloodMonitoring", floodAlertLevel=2, wardCode="20194")
                if n < 2:
                    await city.settle(gauge, "FloodMonitoring")
                    assert await city.alarms(rule="ward-flooding") == []
            found = await poll(lambda: city.alarms(rule="ward-flooding"), "the ward alarm")
            assert len(found) == 1
            assert found[0]["alertSource"] == "urn:ngsi-ld:AdministrativeArea:danang:20194"
            assert found[0]["description"] == "3 gauges in ward 20194"
            assert await city.alarms(type="AdministrativeArea")
            await city.write(
                "urn:ngsi-ld:FloodMonitoring:danang:fl-11", "FloodMonitoring", floodAlertLevel=1
            )
            await poll(
                lambda: city.alarms(rule="ward-flooding", active="false"), "the ward to clear"
            )

    asyncio.run(main())


def test_bad_requests_are_problems_never_500(tmp_path: Path) -> None:
    settings = rules_settings(f"sqlite:///{tmp_path / 'store.db'}", tmp_path)
    window = {"from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z"}
    minimal = {"name": "n", "scope": {"type": "A"}, "when": {"attr": "a", "above": 1}}
    cases: list[tuple[str, str, dict[str, Any], int]] = [
        ("POST", "/rules", {"json": [1, 2]}, 400),
        ("POST", "/rules", {"content": b"id: x", "headers": {"Content-Type": "text/plain"}}, 415),
        ("POST", "/rules", {"json": {**minimal, "id": 5}}, 400),
        ("POST", "/rules", {"json": {**minimal, "id": "x", "scope": {"type": 3}}}, 400),
        ("POST", "/rules", {"json": {**minimal, "id": "x", "notify": "webhook"}}, 400),
        ("PUT", "/rules/x", {"json": [1]}, 400),
        ("PUT", "/rules/x", {"json": minimal}, 404),
        ("POST", "/rules/x/backtest", {"json": {**window, "rule": 5}}, 400),
        ("POST", "/rules/x/backtest", {"json": {**window, "rule": minimal, "entities": "a"}}, 400),
        ("POST", "/rules/x/backtest", {"json": {**window, "from": "2026-01-01T00:00:00"}}, 400),
        ("GET", "/alarms?limit=abc", {}, 400),
        ("GET", "/alarms?active=maybe", {}, 400),
        ("POST", "/alarms/urn:x:1/ack", {"json": []}, 400),
        ("POST", "/alarms/urn:x:1/ack", {}, 404),
        ("POST", "/alarms/urn:x:1/comments", {"json": {"text": " "}}, 400),
        ("POST", "/alarms/urn:x:1/comments", {"json": {"text": "hi"}}, 404),
        ("GET", "/alarms/urn:x:1/timeline", {}, 404),
        ("DELETE", "/rules/nope", {}, 404),
    ]

    async def main() -> None:
        async with running_city(settings) as city:
            for method, path, kw, status in cases:
                headers = {**city.h(), **kw.pop("headers", {})}
                r = await city.http.request(method, RULES + path, headers=headers, **kw)
                assert r.status_code == status, (method, path, r.text)
                assert r.headers["content-type"].startswith("application/problem+json")
            r = await city.http.get(f"{RULES}/rules", headers=city.h())
            assert r.json() == []  # nothing was written

    asyncio.run(main())
