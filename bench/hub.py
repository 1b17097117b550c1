"""Context hub benchmark (``python -m bench.hub sqlite|postgresql``).

Entity template as in the public Stellio load tests: 6 properties, 1 relationship and
1 GeoProperty.  Measures, against a real server on loopback:

1. batch upsert, 100 entities per request, as attribute updates per second — next to
   the raw insert rate of the same rows into the same database (the physical limit);
2. single partial attribute updates with 50 concurrent clients (wrk);
3. query by type + q + georel=near over N entities returning 100: p50/p95;
4. the server's memory (RSS) with the N entities loaded.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from bench.http_api import _free_port, _wait
from sencity.auth.service import AuthService
from sencity.config import load_settings
from sencity.core.platform import prepare_store

N = int(os.environ.get("BENCH_ENTITIES", "100000"))
BATCH = 100
SECONDS = int(os.environ.get("BENCH_SECONDS", "10"))
ATTRS_PER_ENTITY = 8
LON0, LAT0 = 108.20, 16.05  # Da Nang


def make_entity(i: int, rnd: random.Random, now: str) -> dict[str, Any]:
    return {
        "id": f"urn:ngsi-ld:AirQualityObserved:{i:07d}",
        "type": "AirQualityObserved",
        "pm25": {
            "type": "Property",
            "value": round(rnd.uniform(5, 150), 1),
            "unitCode": "GQ",
            "observedAt": now,
        },
        "pm10": {
            "type": "Property",
            "value": round(rnd.uniform(10, 200), 1),
            "unitCode": "GQ",
            "observedAt": now,
        },
        "no2": {"type": "Property", "value": round(rnd.uniform(1, 80), 1), "unitCode": "GQ"},
        "temperature": {
            "type": "Property",
            "value": round(rnd.uniform(20, 36), 1),
            "unitCode": "CEL",
        },
        "humidity": {"type": "Property", "value": rnd.randint(40, 99), "unitCode": "P1"},
        "status": {"type": "Property", "value": rnd.choice(["ok", "maintenance", "fault"])},
        "refDevice": {"type": "Relationship", "object": f"urn:ngsi-ld:Device:{i:07d}"},
        "location": {
            "type": "GeoProperty",
            "value": {
                "type": "Point",
                "coordinates": [
                    round(LON0 + rnd.uniform(-0.25, 0.25), 6),
                    round(LAT0 + rnd.uniform(-0.2, 0.2), 6),
                ],
            },
        },
    }


def raw_insert_rate(store_url: str, bodies: list[list[dict[str, Any]]]) -> float:
    """Rows per second inserted straight into a fresh copy of the hub's tables."""
    from sencity.hub.schema import MIGRATIONS
    from sencity.store import open_store

    if store_url.startswith("sqlite"):
        url = store_url.replace(".db", "-raw.db")
    else:
        import psycopg

        with psycopg.connect(store_url, autocommit=True) as c:
            c.execute("DROP SCHEMA IF EXISTS bench_raw CASCADE")
            c.execute("CREATE SCHEMA bench_raw")
        url = (
            store_url
            + ("&" if "?" in store_url else "?")
            + "options=-csearch_path%3Dbench_raw,public"
        )
    store = open_store(url)
    store.migrate(MIGRATIONS)
    pg = store.dialect == "postgresql"
    j = "CAST(? AS jsonb)" if pg else "?"
    loc = ", location" if pg else ""
    locv = ", ST_SetSRID(ST_GeomFromGeoJSON(?), 4326)" if pg else ""
    now = "2026-11-25T00:00:00Z"
    t0 = time.perf_counter()
    rows = 0
    for batch in bodies:
        with store.transaction() as tx:
            vals = []
            for e in batch:
                attrs = {k: [v] for k, v in e.items() if k not in ("id", "type")}
                row = ["bench", e["id"], json.dumps([e["type"]]), json.dumps(attrs), None, now, now]
                if pg:
                    row.append(json.dumps(e["location"]["value"]))
                vals.append(row)
            tx.executemany(
                f"INSERT INTO hub_entities (tenant, id, types, attrs, scopes, created_at, "
                f"modified_at{loc}) VALUES (?, ?, {j}, {j}, {j}, ?, ?{locv})",
                vals,
            )
            tx.executemany(
                "INSERT INTO hub_entity_types (tenant, type, rid) SELECT ?, ?, rid "
                "FROM hub_entities WHERE tenant = ? AND id = ?",
                [("bench", e["type"], "bench", e["id"]) for e in batch],
            )
            if not pg:
                pts = [(e["location"]["value"]["coordinates"], e["id"]) for e in batch]
                tx.executemany(
                    "INSERT INTO hub_location (rid, minx, maxx, miny, maxy) "
                    "SELECT rid, ?, ?, ?, ? FROM hub_entities WHERE tenant = 'bench' AND id = ?",
                    [(c[0], c[0], c[1], c[1], eid) for c, eid in pts],
                )
        rows += len(batch)
    elapsed = time.perf_counter() - t0
    store.close()
    return rows / elapsed


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def wrk_patch(base: str, token: str, tenant: str) -> float:
    script = Path(tempfile.mkstemp(suffix=".lua")[1])
    script.write_text(f"""
wrk.method = "PATCH"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {token}"
wrk.headers["NGSILD-Tenant"] = "{tenant}"
local n = 0
request = function()
  n = n + 1
  local id = string.format("urn:ngsi-ld:AirQualityObserved:%07d", (n * 7919) % {N})
  local body = string.format('{{"value": %d}}', n % 150)
  return wrk.format(nil, "/ngsi-ld/v1/entities/" .. id .. "/attrs/pm25", nil, body)
end
""")
    out = subprocess.run(
        ["wrk", "-t1", "-c50", f"-d{SECONDS}s", "-s", str(script), base],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    script.unlink()
    if "Non-2xx" in out:
        raise SystemExit(f"errors during the PATCH run:\n{out}")
    return float(out.split("Requests/sec:")[1].split()[0])


def scratch_store(backend: str, tmp: Path) -> tuple[str, Callable[[], None]]:
    """A fresh store URL for ``backend`` and a function that drops it afterwards.

    PostgreSQL: a scratch database made (and dropped) through ``BENCH_PG_ADMIN``."""
    if backend != "postgresql":
        return f"sqlite:///{tmp / 'hub.db'}", lambda: None
    import psycopg

    admin = os.environ.get("BENCH_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")
    name = f"sencity_bench_{os.getpid()}"
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}"')
        c.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        if os.environ.get("BENCH_KEEP"):  # keep the data to look into it afterwards
            print(f"kept: {admin.rsplit('/', 1)[0]}/{name}")
            return
        with psycopg.connect(admin, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return admin.rsplit("/", 1)[0] + f"/{name}", drop


def bench_token(url: str) -> str:
    """Migrate the store and give a platform admin's token."""
    settings = load_settings(None, {"store": {"url": url}}, environ={})
    store = prepare_store(settings)
    store.create_user("bench", roles={"*": "admin"})
    token, _ = AuthService(store, settings).issue_token("bench")
    store.close()
    return token


def start(url: str, tmp: Path, **env_extra: str) -> tuple[subprocess.Popen[bytes], str]:
    """``sencity serve`` on a free port (its log in ``tmp``); returns it and its base URL."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENCITY_")}
    log = open(tmp / f"server-{port}.log", "wb")  # noqa: SIM115
    # BENCH_PROFILE=file: the server runs under cProfile and writes its profile there
    prof = os.environ.get("BENCH_PROFILE")
    profiling = ["-m", "cProfile", "-o", prof] if prof else []
    server = subprocess.Popen(
        [sys.executable, *profiling, "-m", "sencity", "serve", "--store", url, "--port", str(port)],
        env={**env, "SENCITY_LOG__LEVEL": "WARNING", **env_extra},
        stdout=log,
        stderr=log,
        cwd=tmp,
    )
    log.close()
    _wait(port, server)
    return server, f"http://127.0.0.1:{port}"


def main() -> None:
    backend = sys.argv[1] if len(sys.argv) > 1 else "sqlite"
    tmp = Path(tempfile.mkdtemp(prefix="sencity-hubbench-"))
    url, drop = scratch_store(backend, tmp)
    token = bench_token(url)
    rnd = random.Random(42)
    now = "2026-11-25T08:00:00Z"
    bodies = [
        [make_entity(i, rnd, now) for i in range(b, min(b + BATCH, N))] for b in range(0, N, BATCH)
    ]
    server, base = start(url, tmp)
    tenant = "bench"
    results: list[tuple[str, str]] = []
    try:
        h = {
            "Authorization": f"Bearer {token}",
            "NGSILD-Tenant": tenant,
            "Content-Type": "application/json",
        }
        with httpx.Client(base_url=base, headers=h, timeout=120) as c:
            payloads = [json.dumps(b).encode() for b in bodies]
            t0 = time.perf_counter()
            for p in payloads:
                r = c.post("/ngsi-ld/v1/entityOperations/upsert", content=p)
                assert r.status_code in (201, 204), r.text[:300]
            load = time.perf_counter() - t0
            # second pass: every entity exists, so this is the update path
            t0 = time.perf_counter()
            for p in payloads[: max(1, len(payloads) // 5)]:
                r = c.post("/ngsi-ld/v1/entityOperations/upsert", content=p)
                assert r.status_code in (201, 204), r.text[:300]
            upd = time.perf_counter() - t0
            n_upd = sum(len(b) for b in bodies[: max(1, len(bodies) // 5)])
            raw = raw_insert_rate(url, bodies[: max(1, len(bodies) // 5)])
            create_rate = N * ATTRS_PER_ENTITY / load
            update_rate = n_upd * ATTRS_PER_ENTITY / upd
            results.append(("batch upsert (create), attribute updates/s", f"{create_rate:,.0f}"))
            results.append(("batch upsert (update), attribute updates/s", f"{update_rate:,.0f}"))
            results.append(
                ("raw insert of the same rows, attributes/s", f"{raw * ATTRS_PER_ENTITY:,.0f}")
            )
            results.append(("ratio create / raw", f"{create_rate / (raw * ATTRS_PER_ENTITY):.0%}"))
            results.append((f"RSS with {N:,} entities", f"{rss_mb(server.pid):,.0f} MB"))
            times = []
            for k in range(300):
                lon = LON0 + rnd.uniform(-0.2, 0.2)
                lat = LAT0 + rnd.uniform(-0.15, 0.15)
                t0 = time.perf_counter()
                r = c.get(
                    "/ngsi-ld/v1/entities",
                    params={
                        "type": "AirQualityObserved",
                        "q": 'pm25>20;status=="ok"',
                        "georel": "near;maxDistance==5000",
                        "geometry": "Point",
                        "coordinates": f"[{lon:.5f},{lat:.5f}]",
                        "limit": 100,
                    },
                )
                times.append((time.perf_counter() - t0) * 1000)
                assert r.status_code == 200, r.text[:300]
                if k == 0 and N >= 50_000:
                    assert len(r.json()) == 100, len(r.json())
            times.sort()
            p95 = times[int(len(times) * 0.95)]
            results.append(
                ("query type+q+near, 100 results: p50", f"{statistics.median(times):.1f} ms")
            )
            results.append(("query type+q+near, 100 results: p95", f"{p95:.1f} ms"))
        patch = wrk_patch(base, token, tenant)
        results.append(("partial attribute update, 50 clients", f"{patch:,.0f} req/s"))
        results.append(("RSS after the runs", f"{rss_mb(server.pid):,.0f} MB"))
    finally:
        server.terminate()
        server.wait()
        drop()  # the scratch database goes with the run
    print(
        f"\nContext hub ({backend}), {N:,} entities of {ATTRS_PER_ENTITY} attributes, "
        f"batches of {BATCH}"
    )
    for name, value in results:
        print(f"  {name:48} {value:>14}")


if __name__ == "__main__":
    main()
