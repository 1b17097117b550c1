"""Sensor ingestion benchmark (``python -m bench.ingest sqlite|postgresql``).

Against a Mosquitto of its own (a free port, no queue limits, so nothing is dropped) and
a real ``sencity serve`` with history on (the default), with UltraLight messages of 4
measures (``t|25.3|pm25|41|no2|12|o3|30``: 4 observations each):

1. the broker's raw relay rate: the same publishers (``BENCH_INGEST_PUBLISHERS`` paho
   processes, QoS 1) → Mosquitto → one plain paho subscriber (QoS 1);
2. the server's capacity (publishers flat out for a short while), then its sustained
   rate: 1,000 provisioned devices (one group, one POST), messages spread over them at
   ``BENCH_INGEST_RATE`` msg/s (default 1,500 = 6,000 observations/s; at most 90 % of
   the capacity) for ``BENCH_INGEST_SECONDS`` (default 300); zero loss is
   checked by counting the history rows in the store against every observation the
   broker acknowledged, and the dead letters (must be 0);
3. the latency from publish to the value being visible through the NGSI-LD API, measured
   by a prober process (its own devices, one unique value at a time, polling
   ``GET /ngsi-ld/v1/entities/{id}`` every 5 ms): p50/p95/max;
4. the same with the embedded broker (amqtt, MQTT 3.1.1), for
   ``BENCH_INGEST_EMBEDDED_SECONDS`` (default 60).

Child roles (``_pub``, ``_sub``, ``_probe``) run in their own processes, so the load and
the measuring never share a GIL with each other or with the server.
"""

from __future__ import annotations

import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from bench.http_api import _free_port
from bench.hub import bench_token, scratch_store, start

SECONDS = int(os.environ.get("BENCH_INGEST_SECONDS", "300"))
EMBEDDED_SECONDS = int(os.environ.get("BENCH_INGEST_EMBEDDED_SECONDS", str(min(SECONDS, 60))))
RAW_SECONDS = int(os.environ.get("BENCH_INGEST_RAW_SECONDS", "15"))
CAPACITY_SECONDS = int(os.environ.get("BENCH_INGEST_CAPACITY_SECONDS", "20"))
PUBLISHERS = int(os.environ.get("BENCH_INGEST_PUBLISHERS", "3"))
DEVICES = 1000
PROBE_DEVICES = 10  # the last ones: the prober's own
OBS_PER_MESSAGE = 4
WINDOW = 2000  # unacknowledged messages per publisher
TARGETS = {"obs": 5000.0, "ratio": 0.5, "p95": 500.0}


def topic(apikey: str, n: int) -> str:
    return f"/{apikey}/dev-{n:04d}/attrs"


def _client(client_id: str, clean: bool = True) -> Any:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    return mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv311,
        clean_session=clean,
    )


# -- children ---------------------------------------------------------------------------------
def child_pub(port: int, apikey: str, rate: float, seconds: float, lo: int, hi: int) -> None:
    """Publish 4-measure UltraLight messages over devices [lo, hi) at ``rate`` msg/s
    (0: flat out), QoS 1, at most WINDOW unacknowledged; print what was acknowledged."""
    cond = threading.Condition()
    acked = [0]

    def on_publish(*_a: Any) -> None:
        with cond:
            acked[0] += 1
            cond.notify()

    c = _client(f"bench-pub-{os.getpid()}")
    c.max_inflight_messages_set(WINDOW)
    c.on_publish = on_publish
    c.connect("127.0.0.1", port)
    c.loop_start()
    rnd = random.Random(os.getpid())
    payloads = [
        f"t|{rnd.uniform(20, 36):.1f}|pm25|{rnd.randint(5, 150)}|no2|{rnd.randint(1, 80)}"
        f"|o3|{rnd.randint(1, 120)}".encode()
        for _ in range(257)
    ]
    topics = [topic(apikey, n) for n in range(lo, hi)]
    sent = 0
    t0 = time.perf_counter()
    end = t0 + seconds
    while (now := time.perf_counter()) < end:
        if rate > 0 and sent >= (now - t0) * rate:
            time.sleep(0.002)
            continue
        with cond:
            while sent - acked[0] >= WINDOW:
                cond.wait(0.1)
        c.publish(topics[sent % len(topics)], payloads[sent % len(payloads)], qos=1)
        sent += 1
    publishing = time.perf_counter() - t0
    with cond:
        while acked[0] < sent:
            cond.wait(0.1)
    c.disconnect()
    c.loop_stop()
    print(json.dumps({"messages": sent, "acked": acked[0], "seconds": publishing}), flush=True)


def child_sub(port: int, idle: float) -> None:
    """Count messages on every device topic (QoS 1) until ``idle`` seconds pass without
    one (after the first); print the count and the first/last arrival times."""
    got = {"n": 0, "first": 0.0, "last": 0.0}
    lock = threading.Lock()
    ready = threading.Event()

    def on_message(*_a: Any) -> None:
        now = time.perf_counter()
        with lock:
            if got["n"] == 0:
                got["first"] = now
            got["n"] += 1
            got["last"] = now

    c = _client(f"bench-sub-{os.getpid()}")
    c.on_message = on_message
    c.on_subscribe = lambda *_a: ready.set()
    c.on_connect = lambda cl, *_a: cl.subscribe("/+/+/attrs", qos=1)
    c.connect("127.0.0.1", port)
    c.loop_start()
    ready.wait(10)
    print("ready", flush=True)
    while True:
        time.sleep(0.2)
        with lock:
            if got["n"] and time.perf_counter() - got["last"] > idle:
                break
    c.disconnect()
    c.loop_stop()
    print(json.dumps(got), flush=True)


def child_probe(port: int, base: str, token: str, tenant: str, apikey: str, seconds: float) -> None:
    """One unique value at a time to the probe devices; time until the API shows it."""
    c = _client(f"bench-probe-{os.getpid()}")
    c.connect("127.0.0.1", port)
    c.loop_start()
    h = {"Authorization": f"Bearer {token}", "NGSILD-Tenant": tenant}
    lat: list[float] = []
    lost = 0
    sent = 0
    end = time.perf_counter() + seconds
    with httpx.Client(base_url=base, headers=h, timeout=10) as http:
        while time.perf_counter() < end:
            n = DEVICES - PROBE_DEVICES + sent % PROBE_DEVICES
            value = 1_000_000 + sent
            eid = f"urn:ngsi-ld:AirQualityObserved:dev-{n:04d}"
            t0 = time.perf_counter()
            info = c.publish(topic(apikey, n), f"probe|{value}".encode(), qos=1)
            sent += 1
            seen = False
            while time.perf_counter() - t0 < 10:
                r = http.get(f"/ngsi-ld/v1/entities/{eid}", params={"options": "keyValues"})
                if r.status_code == 200 and r.json().get("probe") == value:
                    seen = True
                    break
                time.sleep(0.005)
            if seen:
                lat.append((time.perf_counter() - t0) * 1000)
            else:
                lost += 1
            info.wait_for_publish(10)
            time.sleep(0.2)
    c.disconnect()
    c.loop_stop()
    print(json.dumps({"latencies": lat, "sent": sent, "timeouts": lost}), flush=True)


# -- the parent -------------------------------------------------------------------------------
def _child(*args: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "bench.ingest", *map(str, args)],
        stdout=subprocess.PIPE,
        text=True,
    )


def _result(p: subprocess.Popen[str], timeout: float = 120) -> dict[str, Any]:
    out, _ = p.communicate(timeout=timeout)
    last = [line for line in out.splitlines() if line.startswith("{")]
    if p.returncode != 0 or not last:
        raise SystemExit(f"a benchmark child failed ({p.returncode}): {out[-500:]}")
    result: dict[str, Any] = json.loads(last[-1])
    return result


def mosquitto(tmp: Path) -> tuple[subprocess.Popen[bytes], int]:
    """A Mosquitto of our own: no queue or in-flight limits, no persistence."""
    port = _free_port()
    conf = tmp / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\n"
        "max_inflight_messages 0\npersistence false\n"
    )
    proc = subprocess.Popen(
        ["/usr/sbin/mosquitto", "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _wait_port(port)
    return proc, port


def _wait_port(port: int) -> None:
    import socket

    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listens on port {port}")


def publish(port: int, apikey: str, rate: float, seconds: float) -> dict[str, Any]:
    """PUBLISHERS processes over the load devices; their totals (msgs, seconds)."""
    load = DEVICES - PROBE_DEVICES
    step = load // PUBLISHERS
    procs = [
        _child("_pub", port, apikey, rate / PUBLISHERS, seconds, i * step, (i + 1) * step)
        for i in range(PUBLISHERS)
    ]
    results = [_result(p, seconds + 300) for p in procs]
    return {
        "messages": sum(r["acked"] for r in results),
        "seconds": max(r["seconds"] for r in results),
    }


def raw_relay(port: int) -> float:
    """Messages/s through the broker alone (publishers → Mosquitto → a subscriber)."""
    sub = _child("_sub", port, 3.0)
    assert sub.stdout is not None
    sub.stdout.readline()  # ready
    pub = publish(port, "raw", 0, RAW_SECONDS)
    got = _result(sub)
    if got["n"] != pub["messages"]:
        print(f"  raw relay: {pub['messages']} published, {got['n']} received")
    return float(got["n"] / (got["last"] - got["first"]))


class Hub:
    """A running server and the client to provision and watch it."""

    def __init__(self, base: str, token: str, tenant: str, apikey: str) -> None:
        self.base, self.token, self.tenant, self.apikey = base, token, tenant, apikey
        h = {"Authorization": f"Bearer {token}", "NGSILD-Tenant": tenant}
        self.http = httpx.Client(base_url=base, headers=h, timeout=60)

    def provision(self) -> None:
        r = self.http.post(
            "/ingest/v1/groups", json={"apikey": self.apikey, "entity_type": "AirQualityObserved"}
        )
        assert r.status_code == 201, r.text
        devices = [{"device_id": f"dev-{n:04d}", "apikey": self.apikey} for n in range(DEVICES)]
        r = self.http.post("/ingest/v1/devices", json={"devices": devices})
        assert r.status_code == 201, r.text

    def status(self) -> dict[str, Any]:
        r = self.http.get("/ingest/v1/status")
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    def wait_connected(self) -> None:
        deadline = time.monotonic() + 30
        while not self.status().get("connected"):
            if time.monotonic() > deadline:
                raise SystemExit("the server did not connect to the broker")
            time.sleep(0.1)

    def drain(self, messages: int, timeout: float = 600) -> float:
        """Wait until the server has handled ``messages`` in all; seconds waited."""
        t0 = time.monotonic()
        while self.status()["messages"] < messages:
            if time.monotonic() - t0 > timeout:
                raise SystemExit(f"the server handled {self.status()['messages']} of {messages}")
            time.sleep(0.1)
        waited = time.monotonic() - t0
        # then until nothing moves for a second (redelivered messages after a reconnect
        # also count as handled: they must not spill into the next measure)
        last = -1
        while True:
            st = self.status()
            if st["messages"] == last and st["queued"] == 0:
                return waited
            last = st["messages"]
            time.sleep(1.0)


def history_rows(store_url: str, tenant: str) -> int:
    """History instances of ``tenant`` in the store (counted in SQL)."""
    from sencity.config import load_settings
    from sencity.store import open_store

    load_settings(None, {"store": {"url": store_url}}, environ={})
    store = open_store(store_url)
    try:
        with store.transaction(write=False) as tx:
            row = tx.one(
                "SELECT count(*) AS n FROM hub_history h JOIN hub_tseries s ON s.sid = h.sid "
                "JOIN hub_tentities t ON t.tid = s.tid WHERE t.tenant = ?",
                (tenant,),
            )
    finally:
        store.close()
    return int(row["n"]) if row else 0


def stop(server: subprocess.Popen[bytes]) -> None:
    """SIGINT (so a profile under BENCH_PROFILE is written), then kill if it hangs."""
    server.send_signal(signal.SIGINT)
    try:
        server.wait(60)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def run_hub(
    store_url: str, hub: Hub, port: int, seconds: float, rate: float | None
) -> dict[str, Any]:
    """Capacity (when ``rate`` is None), then ``seconds`` at the rate, with the prober."""
    out: dict[str, Any] = {}
    handled = hub.status()["messages"]
    if rate is None:
        cap = publish(port, hub.apikey, 0, CAPACITY_SECONDS)
        t0 = time.monotonic()
        hub.drain(handled + cap["messages"])
        took = cap["seconds"] + (time.monotonic() - t0)
        out["capacity"] = cap["messages"] / took
        # the sustained run: BENCH_INGEST_RATE msg/s (default 1,500 = 6,000 observations/s,
        # above the 5,000 target), at most 90 % of the capacity just measured
        rate = min(float(os.environ.get("BENCH_INGEST_RATE", "1500")), 0.9 * out["capacity"])
        handled += cap["messages"]
    out["rate_target"] = rate
    before = history_rows(store_url, hub.tenant)
    probe = _child("_probe", port, hub.base, hub.token, hub.tenant, hub.apikey, seconds)
    t0 = time.monotonic()
    pub = publish(port, hub.apikey, rate, seconds)
    probed = _result(probe, 120)
    behind = hub.drain(handled + pub["messages"] + probed["sent"])
    elapsed = time.monotonic() - t0
    obs = pub["messages"] * OBS_PER_MESSAGE + probed["sent"]
    stored = history_rows(store_url, hub.tenant) - before
    # a probe not seen within 10 s counts as slower than every one seen
    lat = sorted(probed["latencies"] + [float("inf")] * probed["timeouts"])
    out.update(
        messages=pub["messages"] + probed["sent"],
        observations=obs,
        stored=stored,
        seconds=elapsed,
        behind=behind,
        msg_rate=(pub["messages"] + probed["sent"]) / elapsed,
        obs_rate=obs / elapsed,
        dead=sum(hub.status()["dead_letters"].values()),
        probes=len(lat) - probed["timeouts"],
        probe_timeouts=probed["timeouts"],
        p50=statistics.median(lat) if lat else float("nan"),
        p95=lat[int(0.95 * (len(lat) - 1))] if lat else float("nan"),
        max=lat[-1] if lat else float("nan"),
    )
    return out


def _ms(v: float) -> str:
    return "> 10 s" if v == float("inf") else f"{v:.0f} ms"


def _report(name: str, r: dict[str, Any], raw: float | None) -> None:
    print(f"{name}:")
    if "capacity" in r:
        print(
            f"  capacity (publishers flat out): {r['capacity']:,.0f} msg/s"
            + (f" = {r['capacity'] / raw:.2f} of the raw relay rate" if raw else "")
        )
    print(
        f"  sustained {r['seconds']:.0f} s (target {r['rate_target']:,.0f} msg/s): "
        f"{r['msg_rate']:,.0f} msg/s, {r['obs_rate']:,.0f} observations/s"
        + f"; backlog drained {r['behind']:.1f} s after the publishers stopped"
    )
    lost = r["observations"] - r["stored"]
    verdict = (
        "ZERO LOSS"
        if lost == 0
        else f"{lost:,} MISSING"
        if lost > 0
        else f"nothing missing, {-lost:,} twice (redelivered after a reconnect: at least once)"
    )
    print(
        f"  loss: {r['observations']:,} observations published, {r['stored']:,} in history "
        f"-> {verdict}; dead letters {r['dead']}"
    )
    print(
        f"  latency publish -> API ({r['probes']} probes, {r['probe_timeouts']} > 10 s): "
        f"p50 {_ms(r['p50'])}, p95 {_ms(r['p95'])}, max {_ms(r['max'])}"
    )


def main() -> None:
    backend = sys.argv[1] if len(sys.argv) > 1 else "sqlite"
    tmp = Path(tempfile.mkdtemp(prefix="sencity-ingestbench-"))
    url, drop = scratch_store(backend, tmp)
    token = bench_token(url)
    load = os.getloadavg()[0]
    print(
        f"ingest ({backend}): {os.cpu_count()} CPUs, load {load:.2f}; {PUBLISHERS} paho "
        f"publisher processes, {DEVICES} devices, {OBS_PER_MESSAGE} observations/message"
    )
    broker, port = mosquitto(tmp)
    server = None
    try:
        raw = raw_relay(port)
        print(f"raw relay (Mosquitto, QoS 1): {raw:,.0f} msg/s, {raw * OBS_PER_MESSAGE:,.0f} obs/s")
        server, base = start(
            url,
            tmp,
            SENCITY_INGEST__MQTT_URL=f"mqtt://127.0.0.1:{port}",
            SENCITY_INGEST__CLIENT_ID=f"sencity-bench-{os.getpid()}",
            SENCITY_HUB__CONTEXT_FETCH="false",
        )
        hub = Hub(base, token, "bench", "bench")
        hub.wait_connected()
        hub.provision()
        r = run_hub(url, hub, port, SECONDS, None)
        _report("SenCity on Mosquitto", r, raw)
        ok = (
            r["obs_rate"] >= TARGETS["obs"]
            and r["capacity"] >= TARGETS["ratio"] * raw
            and r["observations"] == r["stored"]
            and r["dead"] == 0
            and r["p95"] <= TARGETS["p95"]
        )
        print(
            f"  targets (>= {TARGETS['obs']:,.0f} obs/s, >= {TARGETS['ratio']} of raw, zero loss, "
            f"p95 <= {TARGETS['p95']:.0f} ms): {'met' if ok else 'NOT met'}"
        )
        stop(server)
        server = None
        if EMBEDDED_SECONDS > 0:
            eport = _free_port()
            server, base = start(
                url,
                tmp,
                SENCITY_INGEST__MQTT_URL="",
                SENCITY_INGEST__EMBEDDED_BROKER="true",
                SENCITY_INGEST__EMBEDDED_PORT=str(eport),
                SENCITY_HUB__CONTEXT_FETCH="false",
            )
            hub = Hub(base, token, "benchemb", "benchemb")
            hub.wait_connected()
            hub.provision()
            e = run_hub(url, hub, eport, EMBEDDED_SECONDS, None)
            _report("SenCity with the embedded broker (amqtt)", e, None)
    finally:
        if server is not None:
            stop(server)
        broker.terminate()
        broker.wait()
        drop()


if __name__ == "__main__":
    role = sys.argv[1] if len(sys.argv) > 1 else ""
    a = sys.argv[2:]
    if role == "_pub":
        child_pub(int(a[0]), a[1], float(a[2]), float(a[3]), int(a[4]), int(a[5]))
    elif role == "_sub":
        child_sub(int(a[0]), float(a[1]))
    elif role == "_probe":
        child_probe(int(a[0]), a[1], a[2], a[3], a[4], float(a[5]))
    else:
        main()
