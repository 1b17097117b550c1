"""HTTP throughput of the core: public health check, authenticated tenant read, and a
bare Starlette app (the ceiling) under the same uvicorn, loaded by wrk on loopback."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sencity.auth.service import AuthService, hash_password
from sencity.config import load_settings
from sencity.core.platform import prepare_store

DURATION = int(os.environ.get("BENCH_SECONDS", "10"))
CONNECTIONS = 50


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(port: int, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(300):
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("server did not start")


def wrk(url: str, headers: dict[str, str] | None = None) -> tuple[float, float]:
    """Requests per second and mean latency (ms)."""
    args = ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{DURATION}s", "--latency"]
    for k, v in (headers or {}).items():
        args += ["-H", f"{k}: {v}"]
    out = subprocess.run([*args, url], capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in out:
        raise SystemExit(f"errors during the run:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    lat = re.search(r"Latency\s+([\d.]+)(us|ms|s)", out)
    assert lat is not None
    factor = {"us": 0.001, "ms": 1.0, "s": 1000.0}[lat.group(2)]
    return rps, float(lat.group(1)) * factor


def run(store_url: str | None = None) -> list[tuple[str, float, float]]:
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed: apt-get install wrk")
    tmp = Path(tempfile.mkdtemp(prefix="sencity-bench-"))
    url = store_url or f"sqlite:///{tmp / 'bench.db'}"
    settings = load_settings(None, {"store": {"url": url}}, environ={})
    store = prepare_store(settings)
    store.create_tenant("danang", "Thành phố Đà Nẵng")
    store.create_user("bench", password_hash=hash_password("x" * 12), roles={"danang": "viewer"})
    token, _ = AuthService(store, settings).issue_token("bench")
    store.close()
    results = []
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENCITY_")}
    hello_port = _free_port()
    hello = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "bench.hello:app",
            "--port",
            str(hello_port),
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        env=env,
    )
    try:
        _wait(hello_port, hello)
        results.append(("bare Starlette (ceiling)", *wrk(f"http://127.0.0.1:{hello_port}/hello")))
    finally:
        hello.terminate()
        hello.wait()
    port = _free_port()
    log = open(tmp / "server.log", "wb")  # noqa: SIM115
    server = subprocess.Popen(
        [sys.executable, "-m", "sencity", "serve", "--store", url, "--port", str(port)],
        env=env,
        stdout=log,
        stderr=log,
        cwd=tmp,
    )
    try:
        _wait(port, server)
        base = f"http://127.0.0.1:{port}"
        results.append(("GET /health (public, pings store)", *wrk(f"{base}/health")))
        results.append(
            (
                "GET /api/v1/tenant (bearer token)",
                *wrk(f"{base}/api/v1/tenant", {"Authorization": f"Bearer {token}"}),
            )
        )
    finally:
        server.terminate()
        server.wait()
        log.close()
    return results


def main() -> None:
    backend = sys.argv[1] if len(sys.argv) > 1 else "sqlite"
    url = os.environ.get("BENCH_PG_URL") if backend == "postgresql" else None
    results = run(url)
    ceiling = results[0][1]
    print(f"\nHTTP API ({backend}), wrk 1 thread, {CONNECTIONS} connections, {DURATION} s each")
    print(f"{'endpoint':42} {'req/s':>9} {'mean ms':>8} {'of ceiling':>10}")
    for name, rps, lat in results:
        print(f"{name:42} {rps:9.0f} {lat:8.2f} {rps / ceiling:9.0%}")


if __name__ == "__main__":
    main()
