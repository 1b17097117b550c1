"""With PostgreSQL and several processes, one evaluates the rules (no duplicate alarms);
when it goes away, another takes over with the stored state."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from sencity.core.platform import Platform
from sencity.web.asgi import create_app
from tests.conftest import _pg_schema_url
from tests.rules.harness import NGSI_LD, RULES, TENANT, make_users, poll, rules_settings

RULE: dict[str, Any] = {
    "id": "hot",
    "name": "Hot",
    "scope": {"type": "WeatherObserved"},
    "when": {"attr": "temperature", "above": 38},
}


@pytest.mark.timeout(90)
def test_one_process_evaluates_and_another_takes_over(pg_url: str, tmp_path: Path) -> None:
    settings = rules_settings(_pg_schema_url(pg_url), tmp_path)

    async def main() -> None:
        a, b = Platform(settings), Platform(settings)
        a_open = True
        tokens = make_users(a, settings)
        h = {"Authorization": f"Bearer {tokens['admin']}", "NGSILD-Tenant": TENANT}
        await a.start()
        await poll(lambda: _true(a.state["rules"].engine.leading), "the first to lead")
        await b.start()
        try:
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=create_app(b)), base_url="http://b"
            ) as http:
                r = await http.post(f"{RULES}/rules", json=RULE, headers=h)
                assert r.status_code == 201, r.text
                await poll(lambda: _true(a.state["rules"].engine.rule_count() == 1), "the rule")
                assert not b.state["rules"].engine.leading

                async def write(eid: str, t: float) -> None:
                    body = [{"id": eid, "type": "WeatherObserved", "temperature": t}]
                    r = await http.post(
                        f"{NGSI_LD}/entityOperations/upsert?options=update", json=body, headers=h
                    )
                    assert r.status_code in (201, 204), r.text

                async def alarms() -> list[dict[str, Any]]:
                    r = await http.get(f"{RULES}/alarms", headers=h)
                    out: list[dict[str, Any]] = r.json()
                    return out

                await write("urn:ngsi-ld:WeatherObserved:danang:wx-01", 40.0)
                assert len(await poll(alarms, "the alarm")) == 1
                assert b.state["rules"].engine.evaluations == 0  # b only stood by
                # the evaluating process goes away: b takes over
                await a.stop()
                a.close()
                a_open = False
                await poll(
                    lambda: _true(b.state["rules"].engine.leading), "the takeover", timeout=30
                )
                await write("urn:ngsi-ld:WeatherObserved:danang:wx-01", 41.0)  # still active
                await write("urn:ngsi-ld:WeatherObserved:danang:wx-02", 39.0)
                found = await poll(lambda: _len_at_least(alarms, 2), "the second station's alarm")
                assert sorted(x["alertSource"][-5:] for x in found) == ["wx-01", "wx-02"]
        finally:
            await b.stop()
            b.close()
            if a_open:
                await a.stop()
                a.close()

    asyncio.run(main())


async def _true(v: bool) -> bool:
    return v


async def _len_at_least(fetch: Any, n: int) -> Any:
    got = await fetch()
    return got if len(got) >= n else None
