"""A restart keeps the engine's state, on both backends: a pending ``for:`` duration ends
in the next process without a new change, an active condition is still active (no
duplicate alarm; it clears on the next change below the threshold), and a due
escalation happens once — also after a SIGKILL of a real server mid-stream."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from sencity.config import load_settings
from sencity.core.platform import prepare_store
from tests.conftest import start_server, stop_server
from tests.rules.harness import RULES, poll, rules_settings, running_city
from tests.subs.conftest import Receiver, free_port, make_admin, wait_for

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


@pytest.mark.timeout(120)
def test_kill_9_mid_stream_keeps_alarm_timer_and_escalation(store_url: str, tmp_path: Path) -> None:
    """A real server killed (SIGKILL) while a station streams readings, with an active
    alarm whose escalation is pending and another station's ``for:`` running: the next
    process has the one alarm (no duplicate), raises the pending one without a new
    reading, and the webhook receives the escalation exactly once."""
    receiver = Receiver(free_port())
    receiver.start()
    token = make_admin(store_url)
    st = prepare_store(load_settings(None, {"store": {"url": store_url}}, environ={}))
    st.create_tenant("danang", "Đà Nẵng")
    st.close()
    env = {
        "SENCITY_RULES__TICK_SECONDS": "0.2",
        "SENCITY_RULES__BATCH_WAIT": "0.01",
        "SENCITY_HUB__CONTEXT_FETCH": "false",
    }
    args = ["serve", "--port", "0", "--store", store_url]
    head = {"Authorization": f"Bearer {token}", "NGSILD-Tenant": "danang"}
    streaming = "urn:ngsi-ld:AirQualityObserved:danang:aq-stream"
    waiting = "urn:ngsi-ld:AirQualityObserved:danang:aq-wait"
    hook = {"type": "webhook", "url": receiver.url()}
    rules = [
        rule(
            id="pm25-stream",
            scope={"type": "AirQualityObserved", "id_pattern": "aq-stream"},
            notify=[hook],
            escalation=[{"after": "4s", "severity": "critical"}],
        ),
        rule(
            id="pm25-wait",
            scope={"type": "AirQualityObserved", "id_pattern": "aq-wait"},
            # long enough to still be running at the kill on a loaded machine
            **{"for": "8s"},
        ),
    ]
    server = start_server(args, tmp_path, env)
    current = {"url": server.url}
    stop = threading.Event()
    sent = [0]

    def stream() -> None:  # a reading every 50 ms, through the kill and the restart
        with httpx.Client(headers=head, timeout=5) as http:
            while not stop.is_set():
                body = [{"id": streaming, "type": "AirQualityObserved", "pm25": 170 + sent[0] % 10}]
                try:
                    http.post(f"{current['url']}/ngsi-ld/v1/entityOperations/upsert", json=body)
                    sent[0] += 1
                except httpx.HTTPError:
                    pass  # the server is down
                stop.wait(0.05)

    def events(kind: str) -> list[Any]:
        with receiver.cond:
            return [r.body for r in receiver.requests if r.body.get("event") == kind]

    thread = threading.Thread(target=stream, daemon=True)
    try:
        with httpx.Client(base_url=server.url, headers=head, timeout=10) as http:
            for body in rules:
                assert http.post(f"{RULES}/rules", json=body).status_code == 201
        thread.start()
        wait_for(lambda: events("raised"), timeout=20, what="the raised notice")
        with httpx.Client(base_url=server.url, headers=head, timeout=10) as http:
            body = [{"id": waiting, "type": "AirQualityObserved", "pm25": 180}]
            r = http.post("/ngsi-ld/v1/entityOperations/upsert", json=body)
            assert r.status_code in (201, 204), r.text

            st2 = prepare_store(load_settings(None, {"store": {"url": store_url}}, environ={}))

            def pending() -> bool:  # the running for: of aq-wait is stored
                with st2.transaction(write=False) as tx:
                    rows = tx.execute(
                        "SELECT state FROM rules_state WHERE rule_id = ? AND key = ?",
                        ["pm25-wait", waiting],
                    )
                    return any('"since"' in r["state"] for r in rows)

            try:
                wait_for(pending, timeout=20, what="the pending duration in the store")
            except AssertionError as exc:
                raise AssertionError(f"{exc}; server output:\n{''.join(server.output)}") from None
            finally:
                st2.close()
            alarms = http.get(f"{RULES}/alarms").json()
            assert [a["alertSource"] for a in alarms] == [streaming], "".join(server.output)
            assert alarms[0]["level"] == 0  # not escalated yet
        server.proc.kill()  # SIGKILL: no clean shutdown
        stop_server(server)  # (only collects the dead process and its output)
        before = sent[0]
        server = start_server(args, tmp_path, env)
        current["url"] = server.url
        wait_for(lambda: sent[0] > before + 5, timeout=20, what="the stream to go on")
        with httpx.Client(base_url=server.url, headers=head, timeout=10) as http:

            def listed() -> list[Any]:
                got: list[Any] = http.get(f"{RULES}/alarms").json()
                return got

            wait_for(lambda: events("escalated"), timeout=20, what="the escalation notice")
            found = wait_for(
                lambda: len(a := listed()) == 2 and a, timeout=20, what="the pending alarm"
            )
            by_source = {a["alertSource"]: a for a in found}
            assert set(by_source) == {streaming, waiting}
            assert by_source[streaming]["severity"] == "critical"
            assert by_source[streaming]["level"] == 1
            # a few more timer runs and readings: still one escalation, one alarm each
            ticks = http.get(f"{RULES}/status").json()["ticks"]
            wait_for(
                lambda: http.get(f"{RULES}/status").json()["ticks"] >= ticks + 10,
                timeout=20,
                what="ten more timer runs",
            )
            assert len(events("escalated")) == 1
            assert len(events("raised")) == 1
            assert sorted(a["alertSource"] for a in listed()) == sorted([streaming, waiting])
    finally:
        stop.set()
        thread.join(timeout=10)
        stop_server(server)
        receiver.stop()
