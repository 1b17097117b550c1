"""OpenStreetMap import benchmark (``python -m bench.osm sqlite|postgresql``).

Imports the whole Ho Chi Minh City extract (``../shared/data/osm/hcmc_2018-01-01.osm.pbf``,
or ``BENCH_OSM_FILE``) with the real command, ``sencity import osm``, each run in a
process of its own so its peak memory (max RSS) is its own:

1. ``--dry-run``: the read pass and the hub's checks, no store;
2. the first import into an empty store (every entity created);
3. the same file again (every entity replaced, none created);

then checks the store holds exactly what the summary reported.  Prints wall times,
entities/s, peak RSS and the ratios write/read and re-import/first import.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.hub import scratch_store

ROOT = Path(__file__).resolve().parent.parent
FILE = Path(
    os.environ.get("BENCH_OSM_FILE", ROOT.parent / "shared/data/osm/hcmc_2018-01-01.osm.pbf")
)
TENANT = "hcmc"


def run_import(url: str, *extra: str) -> tuple[float, float, str]:
    """``sencity import osm FILE`` in a child process: (wall s, peak RSS MB, stdout)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENCITY_")}
    env["SENCITY_STORE__URL"] = url
    cmd = [sys.executable, "-m", "sencity", "import", "osm", str(FILE), "--tenant", TENANT]
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [*cmd, *extra], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"import failed ({proc.returncode}):\n{out}")
    return wall, usage.ru_maxrss / 1024, out


def figures(out: str) -> tuple[int, int, float, float]:
    """(entities, new ones, seconds, read seconds) from the summary."""
    m = re.search(
        r"total +([\d,]+) (?:written|would be written) in ([\d.]+) s \(read ([\d.]+) s", out
    )
    assert m, out
    new = sum(int(n.replace(",", "")) for n in re.findall(r"written, ([\d,]+) new", out))
    return int(m.group(1).replace(",", "")), new, float(m.group(2)), float(m.group(3))


def stored(url: str) -> int:
    from sencity.config import load_settings
    from sencity.hub.ldcontext import ContextResolver
    from sencity.hub.store import Query
    from sencity.ingest.hubwrite import open_platform

    ctx = ContextResolver(fetch=False).resolve(None)
    settings = load_settings(None, {"store": {"url": url}}, environ={})
    total = 0
    with open_platform(settings) as p:
        hub = p.state["hub"].hub
        for t in ("RoadSegment", "PointOfInterest", "WaterBody"):
            _, n = hub.query(TENANT, Query(types=[[ctx.expand(t)]], limit=0, count=True))
            total += n or 0
    return total


def main() -> None:
    backend = sys.argv[1] if len(sys.argv) > 1 else "sqlite"
    if not FILE.exists():
        print(f"skipped: {FILE} is absent")
        return
    tmp = Path(tempfile.mkdtemp(prefix="sencity-osmbench-"))
    url, drop = scratch_store(backend, tmp)
    rows: list[tuple[str, str]] = []
    try:
        wall, rss, out = run_import(url, "--dry-run")
        n, _, secs, read = figures(out)
        rows.append(("dry run (read + check): wall s", f"{wall:.1f}"))
        rows.append(("  read pass s / entities", f"{read:.1f} / {n:,}"))
        rows.append(("  entities/s (read + check)", f"{n / secs:,.0f}"))
        rows.append(("  peak RSS", f"{rss:,.0f} MB"))
        wall1, rss1, out1 = run_import(url)
        n1, new1, secs1, read1 = figures(out1)
        assert n1 == n and new1 == n, out1
        rows.append(("first import: wall s", f"{wall1:.1f}"))
        rows.append(("  entities/s (in the command)", f"{n1 / secs1:,.0f}"))
        rows.append(("  entities/s (wall, start-up included)", f"{n1 / wall1:,.0f}"))
        rows.append(("  write pass entities/s", f"{n1 / (secs1 - read1):,.0f}"))
        rows.append(("  peak RSS", f"{rss1:,.0f} MB"))
        wall2, rss2, out2 = run_import(url)
        n2, new2, secs2, _ = figures(out2)
        assert n2 == n and new2 == 0, out2
        rows.append(("re-import (all replaced, 0 new): wall s", f"{wall2:.1f}"))
        rows.append(("  entities/s (in the command)", f"{n2 / secs2:,.0f}"))
        rows.append(("  peak RSS", f"{rss2:,.0f} MB"))
        count = stored(url)
        assert count == n, (count, n)
        rows.append(("entities in the store after both", f"{count:,}"))
        rows.append(("ratio read pass / first import", f"{read1 / secs1:.0%}"))
        rows.append(("ratio re-import / first import time", f"{secs2 / secs1:.2f}"))
        size = FILE.stat().st_size / 1e6
        rows.append(("peak RSS / file size", f"{rss1 / size:.0f}x ({size:.1f} MB file)"))
    finally:
        drop()
    print(f"\nOpenStreetMap import ({backend}): {FILE.name}")
    for name, value in rows:
        print(f"  {name:44} {value:>18}")


if __name__ == "__main__":
    main()
