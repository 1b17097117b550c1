"""Rules engine benchmark (``python -m bench.rules sqlite|postgresql``).

A real ``sencity serve`` with 10,000 ``AirQualityObserved`` stations in 100 wards and
1,000 rules (10 per ward: PM2.5 and NO2 thresholds, some with hysteresis or a ``for:``
duration), fed through the NGSI-LD batch upsert API (batches of 500 updates of ``pm25``
and ``no2`` with their ``observedAt``, from ``BENCH_RULES_SENDERS`` client threads) at
``BENCH_RULES_RATE`` updates/s (default 5,000) for ``BENCH_RULES_SECONDS`` (default 60).
Values stay mostly below the thresholds; 0.1 % of the updates are spikes that raise (and
later clear) alarms, as a city's sensors do.

Measured:

1. the update rate actually achieved (the hub's batch path is the limit below the
   target) and the engine's evaluations/s over the same window;
2. latency from ingestion to alarm: 5 probe stations (their own ward and rule) go above
   and below the threshold in every batch; each raise's latency is the alarm's
   ``createdAt`` (when the engine wrote it) minus the reading's ``observedAt`` (set by
   the sender just before its request): p50/p95/max;
3. the engine's share of the server's CPU: the server process's CPU time (user+system,
   /proc) per update over the load window with the 1,000 rules, against a second run
   with the same load and no rules — (on − off) / on.  Derived indicators are off in both runs
   (``rules.indicators``) so the difference is the engine's.

With ``BENCH_RULES_HANOI`` set to the Hanoi US Embassy AQI file (2015–2018, 21,706
hourly rows), the whole series is also replayed with ``sencity replay --speed 0``
through a Mosquitto of its own into a server with the rule "AQI above 150 for 3 hours"
(``tests/rules/test_realdata.py`` replays one winter of it), and the alarms are
compared with the episodes counted over the file: rows/s and whether they match.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench.hub import bench_token, scratch_store, start
from bench.ingest import mosquitto, stop

RATE = float(os.environ.get("BENCH_RULES_RATE", "5000"))
SECONDS = float(os.environ.get("BENCH_RULES_SECONDS", "60"))
SENDERS = int(os.environ.get("BENCH_RULES_SENDERS", "2"))
ENTITIES = 10_000
WARDS = 100
RULES_PER_WARD = 10
BATCH = 500
PROBES = 5
SPIKE = 0.001
TENANT = "bench"
TARGET_P95 = 1.0  # seconds


def aq(i: int) -> str:
    return f"urn:ngsi-ld:AirQualityObserved:{TENANT}:aq-{i:05d}"


def probe(j: int) -> str:
    return f"urn:ngsi-ld:AirQualityObserved:{TENANT}:probe-{j}"


def rules() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for w in range(WARDS):
        for k in range(RULES_PER_WARD):
            attr = "pm25" if k % 2 == 0 else "no2"
            when: dict[str, Any] = {"attr": attr, "above": 100 + 10 * k}
            if k % 3 == 0:
                when["clear_below"] = 90 + 10 * k
            rule: dict[str, Any] = {
                "id": f"w{w:03d}-{attr}-{k}",
                "name": f"{attr} high in ward {w}",
                "scope": {"type": "AirQualityObserved", "ward": f"w{w:03d}"},
                "when": when,
                "alarm": {"severity": "minor"},
            }
            if k % 4 == 3:
                rule["for"] = "PT5M"
            out.append(rule)
    return out


PROBE_RULE = {
    "id": "probe",
    "name": "probe",
    "scope": {"type": "AirQualityObserved", "ward": "probe"},
    "when": {"attr": "pm25", "above": 500},
    "alarm": {"severity": "minor"},
}


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def prop(v: float, at: str) -> dict[str, Any]:
    return {"type": "Property", "value": v, "observedAt": at}


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def setup(base: str, headers: dict[str, str], with_rules: bool) -> None:
    with httpx.Client(base_url=base, headers=headers, timeout=120) as c:
        at = now_iso()
        bodies = [
            {
                "id": aq(i),
                "type": "AirQualityObserved",
                "wardCode": {"type": "Property", "value": f"w{i % WARDS:03d}"},
                "pm25": prop(30.0, at),
                "no2": prop(20.0, at),
            }
            for i in range(ENTITIES)
        ] + [
            {
                "id": probe(j),
                "type": "AirQualityObserved",
                "wardCode": {"type": "Property", "value": "probe"},
                "pm25": prop(10.0, at),
            }
            for j in range(PROBES)
        ]
        for b in range(0, len(bodies), BATCH):
            r = c.post("/ngsi-ld/v1/entityOperations/upsert", json=bodies[b : b + BATCH])
            assert r.status_code in (201, 204), r.text[:300]
        if with_rules:
            for rule in [*rules(), PROBE_RULE]:
                r = c.post("/rules/v1/rules", json=rule)
                assert r.status_code in (200, 201), r.text[:300]
            deadline = time.monotonic() + 120
            while c.get("/rules/v1/status").json()["rules"] < len(rules()) + 1:
                assert time.monotonic() < deadline, "the engine did not load the rules"
                time.sleep(0.5)


def load(base: str, headers: dict[str, str], seconds: float) -> dict[str, Any]:
    """Send updates at RATE for ``seconds``; returns what was sent and when."""
    sent = [0]
    batches = [0]
    lock = threading.Lock()
    start_t = time.monotonic()
    per_batch = BATCH + PROBES
    interval = per_batch / RATE  # seconds between two batches over all senders

    def sender(n: int) -> None:
        rnd = random.Random(n)
        k = n
        with httpx.Client(base_url=base, headers=headers, timeout=60) as c:
            while True:
                due = start_t + k * interval
                now = time.monotonic()
                if now - start_t >= seconds:
                    return
                if due > now:
                    time.sleep(due - now)
                at = now_iso()
                ids = rnd.sample(range(ENTITIES), BATCH)
                body: list[dict[str, Any]] = []
                for i in ids:
                    spike = rnd.random() < SPIKE
                    pm = rnd.uniform(150, 200) if spike else rnd.uniform(10, 95)
                    body.append(
                        {
                            "id": aq(i),
                            "type": "AirQualityObserved",
                            "pm25": prop(round(pm, 1), at),
                            "no2": prop(round(rnd.uniform(5, 95), 1), at),
                        }
                    )
                high = (k // SENDERS) % 2 == 0
                for j in range(PROBES):
                    body.append(
                        {
                            "id": probe(j),
                            "type": "AirQualityObserved",
                            "pm25": prop(600.0 if high else 10.0, at),
                        }
                    )
                r = c.post(
                    "/ngsi-ld/v1/entityOperations/upsert?options=update",
                    content=json.dumps(body).encode(),
                    headers={"Content-Type": "application/json"},
                )
                assert r.status_code in (201, 204), r.text[:300]
                with lock:
                    sent[0] += len(body)
                    batches[0] += 1
                k += SENDERS

    threads = [threading.Thread(target=sender, args=(n,)) for n in range(SENDERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start_t
    return {"sent": sent[0], "batches": batches[0], "elapsed": elapsed}


def latencies(base: str, headers: dict[str, str]) -> list[float]:
    """Seconds from each probe reading to its alarm (Alert createdAt − dateIssued)."""
    out: list[float] = []
    with httpx.Client(base_url=base, headers=headers, timeout=120) as c:
        for j in range(PROBES):
            ids: list[str] = []
            while True:
                r = c.get(
                    "/rules/v1/alarms",
                    params={"source": probe(j), "limit": "1000", "offset": str(len(ids))},
                )
                page = r.json()
                ids += [a["id"] for a in page]
                if not page or len(ids) >= int(r.headers["Total-Count"]):
                    break
            for b in range(0, len(ids), 100):
                r = c.get(
                    "/ngsi-ld/v1/entities",
                    params={
                        "id": ",".join(ids[b : b + 100]),
                        "options": "sysAttrs",
                        "attrs": "dateIssued",
                        "limit": "100",
                    },
                )
                assert r.status_code == 200, r.text[:300]
                for e in r.json():
                    made = datetime.fromisoformat(e["createdAt"].replace("Z", "+00:00"))
                    issued = e["dateIssued"]["value"]
                    if isinstance(issued, dict):
                        issued = issued.get("@value")
                    at = datetime.fromisoformat(str(issued).replace("Z", "+00:00"))
                    out.append((made - at).total_seconds())
    return sorted(out)


def run(backend: str, with_rules: bool) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="sencity-rulesbench-"))
    url, drop = scratch_store(backend, tmp)
    token = bench_token(url)
    from sencity.config import load_settings
    from sencity.core.platform import prepare_store

    st = prepare_store(load_settings(None, {"store": {"url": url}}, environ={}))
    st.create_tenant(TENANT, "Bench")
    st.close()
    server, base = start(url, tmp, SENCITY_RULES__INDICATORS="false")
    headers = {"Authorization": f"Bearer {token}", "NGSILD-Tenant": TENANT}
    try:
        setup(base, headers, with_rules)
        with httpx.Client(base_url=base, headers=headers, timeout=60) as c:
            s0 = c.get("/rules/v1/status").json()
            cpu0 = cpu_seconds(server.pid)
            sent = load(base, headers, SECONDS)
            cpu1 = cpu_seconds(server.pid)
            s1 = c.get("/rules/v1/status").json()
            # the engine's backlog: how long until it has evaluated everything sent
            t0 = time.monotonic()
            last = s1["evaluations"]
            while with_rules:
                time.sleep(0.5)
                now = c.get("/rules/v1/status").json()["evaluations"]
                if now == last:
                    break
                last = now
            drain = time.monotonic() - t0 - 0.5 if with_rules else 0.0
            s2 = c.get("/rules/v1/status").json()
        lat = latencies(base, headers) if with_rules else []
        return {
            "sent": sent,
            "cpu": cpu1 - cpu0,
            "evals": s1["evaluations"] - s0["evaluations"],
            "evals_total": s2["evaluations"] - s0["evaluations"],
            "transitions": s2["transitions"] - s0["transitions"],
            "drain": max(0.0, drain),
            "lat": lat,
        }
    finally:
        stop(server)
        drop()


def episodes(path: str) -> list[float]:
    """Raise times of "AQI above 150 for 3 hours" over the file: runs of consecutive
    readings (rows with a number) above 150, raised at the first reading 3 hours or
    more after the run began; a gap neither ends nor extends a run (as in
    ``tests/rules/test_realdata.py``)."""
    import csv

    out: list[float] = []
    start_t: float | None = None
    active = False
    with open(path, newline="", encoding="utf-8") as f:
        for r in csv.DictReader(f):
            try:
                x = float(r["aqi"])
            except ValueError:
                continue
            t = datetime.fromisoformat(r["datetime"].replace("Z", "+00:00")).timestamp()
            if x > 150:
                start_t = t if start_t is None else start_t
                if not active and t - start_t >= 3 * 3600:
                    active = True
                    out.append(t)
            else:
                start_t, active = None, False
    return out


def max_reading(path: str) -> str:
    """The time of the file's last reading (``YYYY-MM-DDTHH:MM:SS``)."""
    import csv

    with open(path, newline="", encoding="utf-8") as f:
        times = [r["datetime"] for r in csv.DictReader(f) if r["aqi"] != "NA"]
    return max(times).rstrip("Z")


def replay_hanoi(backend: str, path: str) -> None:
    """The whole Hanoi series through ``sencity replay`` and MQTT; alarms vs episodes."""
    import subprocess

    tmp = Path(tempfile.mkdtemp(prefix="sencity-rulesreplay-"))
    url, drop = scratch_store(backend, tmp)
    token = bench_token(url)
    broker, port = mosquitto(tmp)
    server, base = start(
        url,
        tmp,
        SENCITY_RULES__INDICATORS="false",
        SENCITY_INGEST__MQTT_URL=f"mqtt://127.0.0.1:{port}",
        SENCITY_INGEST__CLIENT_ID=f"sencity-rulesbench-{os.getpid()}",
    )
    from sencity.config import load_settings
    from sencity.core.platform import prepare_store

    st = prepare_store(load_settings(None, {"store": {"url": url}}, environ={}))
    st.create_tenant("hanoi", "Hà Nội")
    st.close()
    headers = {"Authorization": f"Bearer {token}", "NGSILD-Tenant": "hanoi"}
    expect = episodes(path)
    try:
        with httpx.Client(base_url=base, headers=headers, timeout=60) as c:
            r = c.post(
                "/rules/v1/rules",
                json={
                    "id": "aqi-3h",
                    "name": "AQI above 150 for 3 hours",
                    "scope": {"type": "AirQualityObserved"},
                    "when": {"attr": "aqi", "above": 150},
                    "for": "PT3H",
                },
            )
            assert r.status_code in (200, 201), r.text[:300]
            env = {k: v for k, v in os.environ.items() if not k.startswith("SENCITY_")}
            t0 = time.monotonic()
            done = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "sencity",
                    "replay",
                    path,
                    "--type=AirQualityObserved",
                    "--entity=urn:ngsi-ld:AirQualityObserved:hanoi-usembassy",
                    "--time-column=datetime",
                    "--columns=aqi=aqi",
                    "--missing=NA",
                    "--speed=0",
                    "--apikey=hanoi-bench",
                    "--tenant=hanoi",
                    "--broker",
                    f"mqtt://127.0.0.1:{port}",
                ],
                env={**env, "SENCITY_STORE__URL": url},
                capture_output=True,
                text=True,
                check=False,
            )
            sent = time.monotonic() - t0
            final = max_reading(path)
            eid = "urn:ngsi-ld:AirQualityObserved:hanoi-usembassy"
            while True:  # the server has written the last reading
                r = c.get(f"/ngsi-ld/v1/entities/{eid}")
                if r.status_code == 200 and r.json()["aqi"]["observedAt"].startswith(final):
                    break
                time.sleep(0.5)
            last: list[str] = []
            still = 0
            while still < 6:  # then until the alarms stop changing for 3 s
                time.sleep(0.5)
                got: list[str] = []
                while True:
                    r = c.get(
                        "/rules/v1/alarms",
                        params={"rule": "aqi-3h", "limit": "1000", "offset": str(len(got))},
                    )
                    page = r.json()
                    got += [a["dateIssued"] for a in page]
                    if not page or len(got) >= int(r.headers["Total-Count"]):
                        break
                still = still + 1 if got == last else 0
                last = got
            took = time.monotonic() - t0 - 3.0
            raised = sorted(
                datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp() for t in last
            )
        rows = [ln for ln in done.stdout.splitlines() if "rows read" in ln]
        print(f"\nHanoi AQI 2015–2018 replayed through MQTT ({backend})")
        print(f"  {'replay':44} {rows[0].strip() if rows else done.stdout[-200:]:>34}")
        print(f"  {'sent in / alarms settled after':44} {sent:>27.0f} / {took:.0f} s")
        print(f"  {'episodes in the file / alarms raised':44} {len(expect):>28} / {len(raised)}")
        print(f"  {'alarms = episodes (times included)':44} {raised == expect!s:>34}")
    finally:
        stop(server)
        broker.terminate()
        broker.wait()
        drop()


def main() -> None:
    backend = sys.argv[1] if len(sys.argv) > 1 else "sqlite"
    if os.environ.get("BENCH_RULES_HANOI"):
        replay_hanoi(backend, os.environ["BENCH_RULES_HANOI"])
    on = run(backend, True)
    off = run(backend, False)
    s = on["sent"]
    rate = s["sent"] / s["elapsed"]
    rate_off = off["sent"]["sent"] / off["sent"]["elapsed"]
    lat = on["lat"]
    p = (lambda q: lat[min(len(lat) - 1, int(len(lat) * q))]) if lat else (lambda q: float("nan"))
    per_on = on["cpu"] / max(1, s["sent"])  # CPU s per update, same load both runs
    per_off = off["cpu"] / max(1, off["sent"]["sent"])
    share = (per_on - per_off) / per_on if per_on else float("nan")
    print(
        f"\nRules engine ({backend}): {ENTITIES:,} entities, {WARDS * RULES_PER_WARD:,} rules "
        f"(+1 probe), target {RATE:,.0f} updates/s for {SECONDS:.0f} s, {SENDERS} senders"
    )
    rows = [
        ("updates/s achieved, rules on", f"{rate:,.0f} ({rate / RATE:.0%} of target)"),
        ("updates/s achieved, rules off", f"{rate_off:,.0f}"),
        ("engine evaluations/s (during the load)", f"{on['evals'] / s['elapsed']:,.0f}"),
        ("transitions (raise + clear)", f"{on['transitions']:,}"),
        ("engine backlog after the load", f"{on['drain']:.1f} s"),
        ("ingestion → alarm p50", f"{statistics.median(lat) * 1000:,.0f} ms" if lat else "-"),
        ("ingestion → alarm p95", f"{p(0.95) * 1000:,.0f} ms (target ≤ {TARGET_P95:.0f} s)"),
        ("ingestion → alarm max", f"{lat[-1] * 1000:,.0f} ms" if lat else "-"),
        ("probe alarms measured", f"{len(lat):,}"),
        ("server CPU s, rules on / off", f"{on['cpu']:.1f} / {off['cpu']:.1f}"),
        ("engine share of the server's CPU", f"{share:.0%}"),
        (
            "server CPU ms per 1,000 updates, on / off",
            f"{on['cpu'] / s['sent'] * 1e6:.0f} / {off['cpu'] / off['sent']['sent'] * 1e6:.0f}",
        ),
    ]
    for name, value in rows:
        print(f"  {name:44} {value:>34}")


if __name__ == "__main__":
    main()
