"""History benchmark (``python -m bench.hub_temporal sqlite|postgresql``).

Against a real server on loopback:

1. write path with history on: batch upserts that change every attribute (each change
   is one kept instance), as attribute updates per second — and the same with
   ``hub.history = false`` in the same run, so the cost of history shows as a ratio;
2. one year of 15-minute readings (35,040 instances) of one attribute, hourly average;
3. 1,000 sensors x 30 days of 15-minute readings (2.88 M instances), daily average per
   sensor, in one query of the 1,000 entities.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from bench.hub import BATCH, bench_token, make_entity, scratch_store, start

ENTITIES = int(os.environ.get("BENCH_TEMPORAL_ENTITIES", "20000"))
ROUNDS = 3
SENSORS = int(os.environ.get("BENCH_TEMPORAL_SENSORS", "1000"))
DAYS = 30
STEP = timedelta(minutes=15)


def _times(start: datetime, n: int) -> list[str]:
    return [(start + STEP * i).strftime("%Y-%m-%dT%H:%M:%SZ") for i in range(n)]


def write_rate(c: httpx.Client, tenant: str) -> float:
    """Attribute updates/s of batch upserts where every attribute changes."""
    rnd = random.Random(7)
    base = datetime(2026, 11, 25, tzinfo=UTC)
    rounds = []
    for r in range(ROUNDS + 1):
        now = (base + timedelta(minutes=r)).strftime("%Y-%m-%dT%H:%M:%SZ")
        rounds.append(
            [
                json.dumps(
                    [make_entity(i, rnd, now) for i in range(b, min(b + BATCH, ENTITIES))]
                ).encode()
                for b in range(0, ENTITIES, BATCH)
            ]
        )
    h = {"NGSILD-Tenant": tenant}
    for p in rounds[0]:  # create
        assert c.post("/ngsi-ld/v1/entityOperations/upsert", content=p, headers=h).is_success
    t0 = time.perf_counter()
    for payloads in rounds[1:]:
        for p in payloads:
            r = c.post("/ngsi-ld/v1/entityOperations/upsert", content=p, headers=h)
            assert r.status_code == 204, r.text[:300]
    return ENTITIES * ROUNDS * 8 / (time.perf_counter() - t0)


def load_series(c: httpx.Client, eid: str, times: list[str], rnd: random.Random) -> None:
    for i in range(0, len(times), 5000):
        body: dict[str, Any] = {
            "id": eid,
            "type": "WaterQualityObserved" if "Year" in eid else "NoiseLevelObserved",
            "level": [
                {"type": "Property", "value": round(rnd.uniform(0, 100), 2), "observedAt": t}
                for t in times[i : i + 5000]
            ],
        }
        r = c.post("/ngsi-ld/v1/temporal/entities", content=json.dumps(body).encode())
        assert r.status_code in (201, 204), r.text[:300]


def timed(c: httpx.Client, path: str, params: dict[str, Any], runs: int) -> tuple[float, Any]:
    times, body = [], None
    for _ in range(runs):
        t0 = time.perf_counter()
        r = c.get(path, params=params)
        times.append((time.perf_counter() - t0) * 1000)
        assert r.status_code == 200, r.text[:300]
        body = r.json()
    return statistics.median(times), body


def analyze(url: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ANALYZE hub_history")


def main() -> None:
    backend = sys.argv[1] if len(sys.argv) > 1 else "sqlite"
    tmp = Path(tempfile.mkdtemp(prefix="sencity-temporalbench-"))
    url, drop = scratch_store(backend, tmp)
    token = bench_token(url)
    results: list[tuple[str, str]] = []
    servers = []
    try:
        server, base = start(url, tmp)
        servers.append(server)
        plain, plain_base = start(url, tmp, SENCITY_HUB__HISTORY="false")
        servers.append(plain)
        h = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        with httpx.Client(base_url=plain_base, headers=h, timeout=600) as c:
            off = write_rate(c, "nohistory")
        with httpx.Client(base_url=base, headers=h, timeout=600) as c:
            on = write_rate(c, "history")
            results.append(("batch upsert, history on, attribute updates/s", f"{on:,.0f}"))
            results.append(("batch upsert, history off, attribute updates/s", f"{off:,.0f}"))
            results.append(("ratio on / off", f"{on / off:.0%}"))

            rnd = random.Random(3)
            c.headers["NGSILD-Tenant"] = "year"
            year = _times(datetime(2025, 1, 1, tzinfo=UTC), 35_040)
            load_series(c, "urn:ngsi-ld:Sensor:Year", year, rnd)
            ms, body = timed(
                c,
                "/ngsi-ld/v1/temporal/entities/urn:ngsi-ld:Sensor:Year",
                {
                    "options": "aggregatedValues",
                    "aggrMethods": "avg",
                    "aggrPeriodDuration": "PT1H",
                    "timerel": "between",
                    "timeAt": "2025-01-01T00:00:00Z",
                    "endTimeAt": "2026-01-01T00:00:00Z",
                },
                20,
            )
            assert len(body["level"]["avg"]) == 8760, len(body["level"]["avg"])
            results.append(("1 year of 15-min readings (35,040), hourly avg", f"{ms:,.1f} ms"))

            c.headers["NGSILD-Tenant"] = "fleet"
            month = _times(datetime(2025, 6, 1, tzinfo=UTC), DAYS * 96)
            t0 = time.perf_counter()
            for s in range(SENSORS):
                load_series(c, f"urn:ngsi-ld:Sensor:{s:04d}", month, rnd)
            load = time.perf_counter() - t0
            n = SENSORS * len(month)
            results.append((f"load {n:,} instances by POST /temporal", f"{n / load:,.0f} /s"))
            fleet_query = {
                "type": "NoiseLevelObserved",
                "options": "aggregatedValues",
                "aggrMethods": "avg",
                "aggrPeriodDuration": "P1D",
                "timerel": "between",
                "timeAt": "2025-06-01T00:00:00Z",
                "endTimeAt": "2025-07-01T00:00:00Z",
                "limit": SENSORS,
            }
            label = f"{SENSORS:,} sensors x {DAYS} days ({n:,}), daily avg each"
            if backend == "postgresql":
                # right after a bulk load the planner has no statistics of the new rows
                # (it expects a few dozen and sorts 2.9 M on disk); autovacuum analyzes
                # the partition within about a minute, as ANALYZE does here
                ms, _ = timed(c, "/ngsi-ld/v1/temporal/entities", fleet_query, 3)
                results.append((label + ", before ANALYZE", f"{ms:,.0f} ms"))
                analyze(url)
            ms, body = timed(c, "/ngsi-ld/v1/temporal/entities", fleet_query, 5)
            assert len(body) == SENSORS and len(body[0]["level"]["avg"]) == DAYS
            results.append((label, f"{ms:,.0f} ms"))
    finally:
        for s in servers:
            s.terminate()
            s.wait()
        drop()
    print(f"\nHistory ({backend}), {ENTITIES:,} entities of 8 attributes, {ROUNDS} update rounds")
    for name, value in results:
        print(f"  {name:52} {value:>14}")


if __name__ == "__main__":
    main()
