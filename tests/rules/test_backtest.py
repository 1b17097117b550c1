"""Backtest on both backends: a rule evaluated over stored history says when it would
have raised and cleared (``for:`` durations ending between two readings, static
attributes from the entity as it is), through the API and the command line; nothing is
written."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.rules.harness import NGSI_LD, RULES, rules_settings, running_city
from tests.test_cli import ok, run

T0 = datetime(2026, 3, 1, 0, 0, tzinfo=UTC)
GAUGE = "urn:ngsi-ld:FloodMonitoring:danang:fl-03"
OTHER = "urn:ngsi-ld:FloodMonitoring:danang:fl-04"
LEVELS = [2.0, 2.6, 2.7, 2.8, 2.9, 2.7, 2.0, 2.6]  # every 5 minutes

RULE: dict[str, Any] = {
    "id": "flood-sustained",
    "name": "Above alert level 2 for 10 minutes",
    "scope": {"type": "FloodMonitoring"},
    "when": {"attr": "currentLevel", "at_least": {"attr": "alertLevel2"}},
    "for": "PT10M",
}


def iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def test_backtest_lists_firings_from_history(store_url: str, tmp_path: Path) -> None:
    settings = rules_settings(store_url, tmp_path)

    async def main() -> None:
        async with running_city(settings) as city:
            assert (await city.put_rule(RULE)).status_code == 201
            for n, level in enumerate(LEVELS):
                at = iso(T0 + timedelta(minutes=5 * n))
                body = [
                    {
                        "id": eid,
                        "type": "FloodMonitoring",
                        "currentLevel": {"type": "Property", "value": v, "observedAt": at},
                        "alertLevel2": {"type": "Property", "value": 2.5},
                    }
                    for eid, v in ((GAUGE, level), (OTHER, 1.0))
                ]
                r = await city.http.post(
                    f"{NGSI_LD}/entityOperations/upsert?options=update",
                    json=body,
                    headers=city.h(),
                )
                assert r.status_code in (201, 204), r.text
            # the live engine judges durations in the readings' time too: the first
            # firing below; the second needs a reading at 00:45 or later (the backtest
            # runs its clock to the end of the window)
            await city.settle(GAUGE, "FloodMonitoring")
            live = sorted(a["dateIssued"] for a in await city.alarms())
            assert live == ["2026-03-01T00:15:00.000000Z"]
            window = {"from": iso(T0), "to": iso(T0 + timedelta(hours=1))}
            r = await city.http.post(
                f"{RULES}/rules/flood-sustained/backtest", json=window, headers=city.h("viewer")
            )
            assert r.status_code == 200, r.text
            result = r.json()
            assert result["entities"] == 2
            assert result["instances"] >= 16
            # above from 00:05; for 10 min → raised at 00:15 (the duration ends before the
            # reading of 00:15 is applied); below at 00:30 → cleared; above again from
            # 00:35 → raised at 00:45, still active at the end
            assert result["stillActive"] == [GAUGE]
            assert result["firings"][1]["raisedAt"] == "2026-03-01T00:45:00.000000Z"
            assert result["firings"][1]["clearedAt"] is None
            assert result["firings"][:1] == [
                {
                    "originator": GAUGE,
                    "raisedAt": "2026-03-01T00:15:00.000000Z",
                    "clearedAt": "2026-03-01T00:30:00.000000Z",
                    "durationSeconds": 900.0,
                    "values": {"alertLevel2": 2.5, "currentLevel": 2.7},
                }
            ]
            # a draft of the rule (no duration), not saved
            draft = {**RULE, "for": None}
            del draft["for"]
            r = await city.http.post(
                f"{RULES}/rules/flood-sustained/backtest",
                json={**window, "rule": draft, "entities": [GAUGE]},
                headers=city.h("viewer"),
            )
            starts = [f["raisedAt"][11:16] for f in r.json()["firings"]]
            assert starts == ["00:05", "00:35"]
            assert r.json()["stillActive"] == [GAUGE]
            # nothing was written: no alarm from the backtests
            assert sorted(a["dateIssued"] for a in await city.alarms()) == live
            # problems
            r = await city.http.post(
                f"{RULES}/rules/flood-sustained/backtest",
                json={"from": "yesterday", "to": iso(T0)},
                headers=city.h("viewer"),
            )
            assert r.status_code == 400 and "'from'" in r.json()["detail"]
            r = await city.http.post(
                f"{RULES}/rules/nope/backtest", json=window, headers=city.h("viewer")
            )
            assert r.status_code == 404

    asyncio.run(main())
    out = ok(
        run(
            [
                "rules",
                "backtest",
                "flood-sustained",
                "--tenant",
                "danang",
                "--from",
                iso(T0),
                "--to",
                iso(T0 + timedelta(hours=1)),
                "--json",
            ],
            tmp_path,
            store_url=store_url,
        )
    )
    result = json.loads(out)
    assert [(f["raisedAt"], f["clearedAt"]) for f in result["firings"]] == [
        ("2026-03-01T00:15:00.000000Z", "2026-03-01T00:30:00.000000Z"),
        ("2026-03-01T00:45:00.000000Z", None),
    ]
