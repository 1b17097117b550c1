"""IOC dashboard benchmark (``python -m bench.web sqlite|postgresql``).

A real ``sencity serve`` holds ``BENCH_WEB_MARKERS`` (default 10,000) air-quality
stations; headless Debian chromium (SwiftShader WebGL, as in the tests) shows them on the
dashboard's map; an updater process writes ``BENCH_WEB_UPDATES`` of them (default: all)
every second through the NGSI-LD batch API (``entityOperations/upsert?options=update``:
a new PM2.5 value and ``dateObserved`` = the send time) for ``BENCH_WEB_SECONDS``
(default 600). Measured in the page:

1. latency from a value's send time to its marker's new colour being in the map (the
   client notes when the GeoJSON source holding it has been re-tiled: ``sourcedata``
   with ``isSourceLoaded``): p50/p95/max over the steady run (the first 10 s excluded);
2. main-thread long tasks (PerformanceObserver ``longtask``): count over 100 ms, max;
3. the page's JS heap (CDP ``Performance.getMetrics``) after the first minute and at the
   end, and the values applied versus sent.

``BENCH_WEB_INDICATORS=0`` turns the rules engine's derived indicators off (to see the
server's share). Targets: p95 ≤ 1 s, no long task over 100 ms during steady updates.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

from bench.hub import bench_token, scratch_store, start
from sencity.config import load_settings
from sencity.core.platform import prepare_store

MARKERS = int(os.environ.get("BENCH_WEB_MARKERS", "10000"))
UPDATES = int(os.environ.get("BENCH_WEB_UPDATES", str(MARKERS)))
SECONDS = int(os.environ.get("BENCH_WEB_SECONDS", "600"))
WARMUP = 10
TENANT = "bench"
LON0, LAT0 = 108.12, 15.98  # south-west corner of the grid (Đà Nẵng)
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-unsafe-swiftshader",
    "--use-angle=swiftshader",
    "--enable-precise-memory-info",
]
LONGTASKS = """
window.__longtasks = [];
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) window.__longtasks.push([e.startTime, e.duration]);
}).observe({ type: "longtask", buffered: true });
"""


def eid(i: int) -> str:
    return f"urn:ngsi-ld:AirQualityObserved:{TENANT}:aq-{i:05d}"


def seed(base: str, token: str) -> None:
    side = math.ceil(math.sqrt(MARKERS))
    h = {"Authorization": f"Bearer {token}", "NGSILD-Tenant": TENANT}
    with httpx.Client(base_url=base, headers=h, timeout=120) as c:
        for b in range(0, MARKERS, 1000):
            body = [
                {
                    "id": eid(i),
                    "type": "AirQualityObserved",
                    "pm25": {"type": "Property", "value": 10.0, "unitCode": "GQ"},
                    "location": {
                        "type": "GeoProperty",
                        "value": {
                            "type": "Point",
                            "coordinates": [
                                LON0 + (i % side) * 0.2 / side,
                                LAT0 + (i // side) * 0.15 / side,
                            ],
                        },
                    },
                }
                for i in range(b, min(b + 1000, MARKERS))
            ]
            r = c.post("/ngsi-ld/v1/entityOperations/upsert", json=body)
            assert r.status_code in (201, 204), r.text


def child_update(base: str, token: str, seconds: float) -> None:
    """Every second, write UPDATES stations (a rotating window) with the send time."""
    rnd = random.Random(7)
    h = {
        "Authorization": f"Bearer {token}",
        "NGSILD-Tenant": TENANT,
        "Content-Type": "application/json",
    }
    sent = late = 0
    worst = 0.0
    start_at = time.monotonic()
    offset = 0
    with httpx.Client(base_url=base, headers=h, timeout=60) as c:
        tick = 0
        while time.monotonic() - start_at < seconds:
            t0 = time.monotonic()
            now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
            body = []
            for k in range(UPDATES):
                i = (offset + k) % MARKERS
                body.append(
                    {
                        "id": eid(i),
                        "type": "AirQualityObserved",
                        "pm25": {"type": "Property", "value": rnd.choice((10, 40, 70, 120, 200))},
                        "dateObserved": {"type": "Property", "value": now},
                    }
                )
            offset = (offset + UPDATES) % MARKERS
            for b in range(0, len(body), 2000):
                r = c.post(
                    "/ngsi-ld/v1/entityOperations/upsert?options=update",
                    content=json.dumps(body[b : b + 2000]),
                )
                assert r.status_code in (201, 204), r.text
            sent += len(body)
            took = time.monotonic() - t0
            worst = max(worst, took)
            late += took > 1.0
            tick += 1
            time.sleep(max(0.0, start_at + tick - time.monotonic()))
    print(json.dumps({"sent": sent, "late_seconds": late, "worst_write_s": round(worst, 2)}))


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))]


def main() -> None:
    backend = sys.argv[1] if len(sys.argv) > 1 else "sqlite"
    from sencity.web.plugin import BUILD_DIR

    if not (BUILD_DIR / "app.js").exists():
        sys.exit("the front end is not built: run 'make web' first")
    tmp = Path(tempfile.mkdtemp(prefix="sencity-webbench-"))
    url, drop = scratch_store(backend, tmp)
    token = bench_token(url)
    settings = load_settings(None, {"store": {"url": url}}, environ={})
    store = prepare_store(settings)
    store.create_tenant(TENANT, "Bench City", "Asia/Ho_Chi_Minh", "vi")
    store.close()
    extra = {"SENCITY_INGEST__EMBEDDED_BROKER": "false"}
    if os.environ.get("BENCH_WEB_INDICATORS") == "0":  # the rules engine's derived values off
        extra["SENCITY_RULES__INDICATORS"] = "false"
    server, base = start(url, tmp, **extra)
    updater = None
    try:
        t0 = time.monotonic()
        seed(base, token)
        print(f"web[{backend}]: {MARKERS} stations written in {time.monotonic() - t0:.1f} s")
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            ctx = browser.new_context(
                viewport={"width": 1600, "height": 1000},
                extra_http_headers={"Authorization": f"Bearer {token}"},
            )
            ctx.add_init_script(LONGTASKS)
            page = ctx.new_page()
            t0 = time.monotonic()
            page.goto(f"{base}/?tenant={TENANT}")
            page.wait_for_function("window.sencity && sencity.ready", timeout=120_000)
            page.wait_for_function(
                "!document.getElementById('live-status').classList.contains('off')",
                timeout=30_000,
            )
            page.wait_for_function(
                "sencity.map.loaded() && sencity.map.areTilesLoaded()", timeout=60_000
            )
            shown = page.evaluate("sencity.store.get('AirQualityObserved').size")
            print(f"  page ready with {shown} markers in {time.monotonic() - t0:.1f} s")
            cdp = ctx.new_cdp_session(page)
            cdp.send("Performance.enable")

            def heap_mb() -> float:
                m = {x["name"]: x["value"] for x in cdp.send("Performance.getMetrics")["metrics"]}
                return float(m["JSHeapUsedSize"]) / 2**20

            updater = subprocess.Popen(
                [sys.executable, "-m", "bench.web", "_update", base, token, str(SECONDS)],
                stdout=subprocess.PIPE,
                text=True,
            )
            time.sleep(WARMUP)
            page.evaluate(
                "sencity.latencies.length = 0; window.__longtasks.length = 0;"
                "window.__applied0 = sencity.applied"
            )
            heap_1min = None
            steady_from = time.monotonic()
            while updater.poll() is None:
                time.sleep(5)
                if heap_1min is None and time.monotonic() - steady_from > 50:
                    heap_1min = heap_mb()
            out = updater.communicate()[0]
            time.sleep(2)  # the last second's values reach the page
            heap_end = heap_mb()
            lat = page.evaluate("sencity.latencies.slice()")
            longtasks = page.evaluate("window.__longtasks")
            applied = page.evaluate("sencity.applied")
            browser.close()
        stats = json.loads(out.strip().splitlines()[-1])
        over = [d for _, d in longtasks if d > 100]
        print(
            f"  updates: {UPDATES} stations/s for {SECONDS} s through the batch API; "
            f"sent {stats['sent']}, applied in the page {applied} "
            f"(writes over 1 s: {stats['late_seconds']}, worst {stats['worst_write_s']} s)"
        )
        print(
            f"  send → colour on the map (steady, n={len(lat)}): "
            f"p50 {pct(lat, 50):.0f} ms, p95 {pct(lat, 95):.0f} ms, max {max(lat or [0]):.0f} ms "
            f"(target p95 ≤ 1000 ms: {'met' if pct(lat, 95) <= 1000 else 'NOT met'})"
        )
        durations = [d for _, d in longtasks]
        print(
            f"  main-thread long tasks (> 50 ms): {len(longtasks)}, over 100 ms: {len(over)}, "
            f"max {max(durations or [0]):.0f} ms, "
            f"median {statistics.median(durations) if durations else 0:.0f} ms "
            f"(target none over 100 ms: {'met' if not over else 'NOT met'})"
        )
        one = f"{heap_1min:.0f}" if heap_1min is not None else "n/a"
        print(f"  JS heap: {one} MB after 1 min, {heap_end:.0f} MB after {SECONDS} s")
    finally:
        if updater is not None and updater.poll() is None:
            updater.kill()
        server.terminate()
        server.wait(30)
        drop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_update":
        child_update(sys.argv[2], sys.argv[3], float(sys.argv[4]))
    else:
        main()
