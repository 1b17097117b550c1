"""City simulator benchmark (``python -m bench.sim sqlite|postgresql``).

A real ``sencity serve`` (history on) with a Mosquitto of its own (no queue limits), and
``sencity sim`` as the demo runs it:

1. ``--backfill 30d``: 30 days of the whole demo city's history (374 devices: 30 air,
   60 traffic, 20 flood, 200 streetlights, 10 parking, 12 noise, 2 weather, 40 buses,
   and about 2,000 events) through the temporal API, then its first live readings;
   target: under 2 minutes, start to exit;
2. load mode: ``--devices 10000 --rate 5000/s --duration BENCH_SIM_LOAD_SECONDS``
   (default 60; 0 skips it) with 1 % invalid messages; its count report (published,
   accepted, dead-lettered).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.hub import bench_token, scratch_store, start
from bench.ingest import mosquitto

BACKFILL = os.environ.get("BENCH_SIM_BACKFILL", "30d")  # shorter for a quick look
LOAD_SECONDS = int(os.environ.get("BENCH_SIM_LOAD_SECONDS", "60"))
LOAD_DEVICES = int(os.environ.get("BENCH_SIM_LOAD_DEVICES", "10000"))
LOAD_RATE = int(os.environ.get("BENCH_SIM_LOAD_RATE", "5000"))
TARGET_BACKFILL = 120.0  # seconds


def sim(args: list[str], token: str, cwd: Path) -> tuple[float, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENCITY_")}
    t0 = time.monotonic()
    res = subprocess.run(
        [sys.executable, "-m", "sencity", "sim", *args],
        env={**env, "SENCITY_TOKEN": token},
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    took = time.monotonic() - t0
    if res.returncode not in (0, 1):
        raise SystemExit(f"sencity sim failed ({res.returncode}): {res.stderr[-2000:]}")
    return took, res.stdout


def main() -> None:
    backend = sys.argv[1] if len(sys.argv) > 1 else "sqlite"
    tmp = Path(tempfile.mkdtemp(prefix="sencity-simbench-"))
    url, drop = scratch_store(backend, tmp)
    token = bench_token(url)
    broker, port = mosquitto(tmp)
    mqtt = f"mqtt://127.0.0.1:{port}"
    server, base = start(
        url, tmp, SENCITY_INGEST__MQTT_URL=mqtt, SENCITY_HUB__CONTEXT_FETCH="false"
    )
    try:
        common = ["--url", base, "--mqtt-url", mqtt]
        took, out = sim(
            [
                *common,
                "--tenant",
                "danang",
                "--backfill",
                BACKFILL,
                "--duration",
                "0",
            ],
            token,
            tmp,
        )
        m = re.search(
            r"backfill: ([\d,]+) instances of (\d+) entities and (\d+) events in ([\d.]+) s", out
        )
        assert m, out
        inst = int(m[1].replace(",", ""))
        secs = float(m[4])
        verdict = "met" if took < TARGET_BACKFILL else "MISSED"
        print(f"sim backfill {BACKFILL} ({backend}): {inst:,} instances of {m[2]} entities")
        print(f"  and {m[3]} events; backfill {secs:.1f} s ({inst / secs:,.0f} instances/s)")
        print(f"  whole command {took:.1f} s, target < {TARGET_BACKFILL:.0f} s: {verdict}")
        print(f"  ratio to the target {took / TARGET_BACKFILL:.2f}")
        if LOAD_SECONDS <= 0:
            return
        load = [*common, "--tenant", "load", "--devices", str(LOAD_DEVICES)]
        load += ["--rate", f"{LOAD_RATE}/s", "--duration", f"{LOAD_SECONDS}s", "--invalid", "0.01"]
        took, out = sim(load, token, tmp)
        print(f"sim load mode ({backend}): {LOAD_DEVICES:,} devices, {LOAD_RATE:,} msg/s asked,")
        print(f"  {LOAD_SECONDS} s; command {took:.1f} s")
        for line in out.strip().splitlines():
            print("  " + line)
    finally:
        server.terminate()
        server.wait(30)
        broker.terminate()
        broker.wait(10)
        drop()
        if not os.environ.get("BENCH_KEEP"):
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
