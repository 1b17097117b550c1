"""`make bench`: run every benchmark and print its figures."""

from __future__ import annotations

import platform
import subprocess
import sys

BENCHES = [
    ["bench.http_api", "sqlite"],
    ["bench.hub", "sqlite"],
    ["bench.hub", "postgresql"],
    ["bench.hub_temporal", "sqlite"],
    ["bench.hub_temporal", "postgresql"],
    ["bench.notify", "sqlite"],
    ["bench.notify", "postgresql"],
    ["bench.ingest", "sqlite"],
    ["bench.ingest", "postgresql"],
    ["bench.osm", "sqlite"],
    ["bench.osm", "postgresql"],
    ["bench.web", "sqlite"],
    ["bench.sim", "sqlite"],
    ["bench.sim", "postgresql"],
    ["bench.rules", "sqlite"],
    ["bench.rules", "postgresql"],
]


def main() -> None:
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        pass
    print(f"machine: {platform.node()}, {cpu}, Python {platform.python_version()}")
    failed = 0
    for mod, *args in BENCHES:
        failed += subprocess.run([sys.executable, "-m", mod, *args], check=False).returncode != 0
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
