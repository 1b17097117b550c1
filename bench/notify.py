"""Notification benchmark (``python -m bench.notify sqlite|postgresql``).

Against a real server on loopback, with a receiver in its own process:

* 1,000 subscriptions, each on one Sensor entity and each to its own endpoint URI on the
  receiver, plus one subscription on every Sensor whose endpoint is unreachable (a
  closed port: every notification to it fails and is retried with back-off; it gets one
  notification per batch write, carrying the batch's 100 entities);
* batch updates of the 1,000 entities at ``BENCH_NOTIFY_RATE`` updates/s (default
  2,000) for ``BENCH_NOTIFY_SECONDS`` seconds (default 20), each carrying its send time;
* latency from the update's send to the notification's arrival (p50, p95, p99, max),
  and a count check: every update must arrive once at its endpoint (lost = 0).
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.http_api import _free_port, _wait
from bench.hub import bench_token, scratch_store, start

SUBS = int(os.environ.get("BENCH_NOTIFY_SUBS", "1000"))
RATE = int(os.environ.get("BENCH_NOTIFY_RATE", "2000"))
SECONDS = int(os.environ.get("BENCH_NOTIFY_SECONDS", "20"))
BATCH = 100


# -- the receiver (its own process, so it never competes with the load for the GIL) -------
def receiver_app() -> Any:
    got: list[tuple[str, int, float, float]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        now = time.time()
        out = b""
        if scope["method"] == "POST":
            for d in json.loads(body)["data"]:
                got.append((d["id"], d["seq"], d["sentAt"], now))
        elif scope["path"] == "/stats":
            out = json.dumps(got).encode()
        await send({"type": "http.response.start", "status": 200 if out else 204, "headers": []})
        await send({"type": "http.response.body", "body": out})

    return app


def receive(port: int) -> None:
    import uvicorn

    uvicorn.run(receiver_app(), host="127.0.0.1", port=port, log_level="warning")


# -- the load ----------------------------------------------------------------------------
def sensor(i: int) -> str:
    return f"urn:ngsi-ld:Sensor:{i:04d}"


def subscribe_all(c: httpx.Client, rx: str, dead: str) -> str:
    for i in range(SUBS):
        r = c.post(
            "/ngsi-ld/v1/subscriptions",
            json={
                "type": "Subscription",
                "entities": [{"id": sensor(i), "type": "Sensor"}],
                "notification": {
                    "attributes": ["seq", "sentAt"],
                    "format": "keyValues",
                    "endpoint": {"uri": f"{rx}/s/{i}"},
                },
            },
        )
        assert r.status_code == 201, r.text
    r = c.post(
        "/ngsi-ld/v1/subscriptions",
        json={
            "type": "Subscription",
            "entities": [{"type": "Sensor"}],
            "notification": {"format": "keyValues", "endpoint": {"uri": dead}},
        },
    )
    assert r.status_code == 201, r.text
    return str(r.headers["Location"])


def batch(start: int, seq: int, now: float) -> bytes:
    return json.dumps(
        [
            {
                "id": sensor((start + k) % SUBS),
                "type": "Sensor",
                "seq": {"type": "Property", "value": seq + k},
                "sentAt": {"type": "Property", "value": now},
            }
            for k in range(BATCH)
        ]
    ).encode()


def load(c: httpx.Client) -> tuple[int, float]:
    """Send ``RATE`` updates/s for ``SECONDS`` s; returns (updates, seconds taken)."""
    interval = BATCH / RATE
    total = RATE * SECONDS // BATCH * BATCH
    t0 = time.perf_counter()
    for n, seq in enumerate(range(0, total, BATCH)):
        due = t0 + n * interval
        wait = due - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        r = c.post(
            "/ngsi-ld/v1/entityOperations/upsert",
            params={"options": "update"},
            content=batch(seq, seq, time.time()),
        )
        assert r.status_code == 204, r.text
    return total, time.perf_counter() - t0


def main() -> None:
    backend = sys.argv[1] if len(sys.argv) > 1 else "sqlite"
    if backend == "receive":
        receive(int(sys.argv[2]))
        return
    tmp = Path(tempfile.mkdtemp(prefix="sencity-notifybench-"))
    url, drop = scratch_store(backend, tmp)
    token = bench_token(url)
    rx_port = _free_port()
    rx_proc = subprocess.Popen([sys.executable, "-m", "bench.notify", "receive", str(rx_port)])
    procs = [rx_proc]
    results: list[tuple[str, str]] = []
    try:
        _wait(rx_port, rx_proc)
        server, base = start(url, tmp)
        procs.append(server)
        rx = f"http://127.0.0.1:{rx_port}"
        dead = f"http://127.0.0.1:{_free_port()}/unreachable"
        h = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        with httpx.Client(base_url=base, headers=h, timeout=120) as c, httpx.Client() as r:
            # the entities exist before the subscriptions: creating them notifies nothing
            for s in range(0, SUBS, BATCH):
                body = batch(s, -SUBS, 0.0)
                assert c.post("/ngsi-ld/v1/entityOperations/upsert", content=body).is_success
            dead_sub = subscribe_all(c, rx, dead)
            sent, took = load(c)
            # every update notifies its own endpoint once: wait for all (or 120 s)
            deadline = time.monotonic() + 120
            while True:
                got = r.get(f"{rx}/stats", timeout=60).json()
                if len(got) >= sent or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            failed = c.get(dead_sub).json()["notification"].get("timesFailed", 0)
    finally:
        for p in procs:
            p.send_signal(signal.SIGINT)  # as Ctrl-C: a profiled server writes its profile
            p.wait()
        drop()
    seen = {(i, s) for i, s, _, _ in got if s >= 0}
    expected = {(sensor(s % SUBS), s) for s in range(sent)}
    lat = sorted((now - sent_at) * 1000 for _, s, sent_at, now in got if s >= 0)
    q = statistics.quantiles(lat, n=100)
    results += [
        ("updates sent", f"{sent:,}"),
        ("update rate achieved", f"{sent / took:,.0f} /s"),
        ("notifications received", f"{len(lat):,}"),
        ("lost (updates never notified)", f"{len(expected - seen):,}"),
        ("duplicates", f"{len(lat) - len(seen):,}"),
        ("latency p50", f"{q[49]:,.1f} ms"),
        ("latency p95", f"{q[94]:,.1f} ms"),
        ("latency p99", f"{q[98]:,.1f} ms"),
        ("latency max", f"{lat[-1]:,.1f} ms"),
        ("unreachable endpoint: failed attempts counted", f"{failed:,}"),
    ]
    print(
        f"\nNotifications ({backend}), {SUBS:,} subscriptions + 1 to an unreachable endpoint, "
        f"{RATE:,} updates/s for {SECONDS} s"
    )
    for name, value in results:
        print(f"  {name:52} {value:>14}")


if __name__ == "__main__":
    main()
