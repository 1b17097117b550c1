"""``sencity sim`` against a running server connected to Mosquitto (both backends): the
city appears with history through the public interfaces only, a second run adds no
duplicate history, the load mode's count report balances, and server refusals are
clear errors."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import numpy as np
import pytest

from sencity.sim.city import build_fleet, load_city
from sencity.sim.kinds import KINDS, series
from sencity.sim.runner import fleet_counts
from tests.conftest import clean_env
from tests.ingest.conftest import broker_server
from tests.subs.conftest import wait_for

MQTT = "mqtt://127.0.0.1:1883"
FIRST = {"air": "aq-001", "traffic": "tf-001", "flood": "fl-01", "light": "sl-001"}
FIRST |= {"parking": "pk-01", "noise": "nz-01", "weather": "wx-01", "bus": "bus-01"}
TYPES = [k.etype for k in KINDS.values()] + ["IssueReporting", "EmergencyCall"]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def sim_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    """A server connected to Mosquitto: (URL, admin token)."""
    with broker_server(request, tmp_path_factory, "sim") as (server, _, token):
        yield server.url, token


def sim(
    args: list[str], token: str, cwd: Path, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sencity", "sim", *args],
        cwd=cwd,
        env={**clean_env(), "SENCITY_TOKEN": token},
        text=True,
        capture_output=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def clients() -> Iterator[list[httpx.Client]]:
    made: list[httpx.Client] = []
    yield made
    for c in made:
        c.close()


def client(made: list[httpx.Client], url: str, token: str, tenant: str) -> httpx.Client:
    c = httpx.Client(
        base_url=url,
        headers={"Authorization": f"Bearer {token}", "NGSILD-Tenant": tenant},
        timeout=30,
    )
    made.append(c)
    return c


def count(http: httpx.Client, etype: str) -> int:
    r = http.get("/ngsi-ld/v1/entities", params={"type": etype, "count": "true", "limit": 1})
    assert r.status_code == 200, r.text
    return int(r.headers["NGSILD-Results-Count"])


def some(http: httpx.Client, etype: str) -> bool:
    """Whether an entity of the type exists (the tenant may not exist yet)."""
    r = http.get("/ngsi-ld/v1/entities", params={"type": etype, "limit": 1})
    return r.status_code == 200 and bool(r.json())


@pytest.mark.timeout(240)
def test_the_simulated_city_populates_a_server(
    sim_server: tuple[str, str], tmp_path: Path, clients: list[httpx.Client]
) -> None:
    url, token = sim_server
    tenant = f"sim{uuid.uuid4().hex[:8]}"
    args = ["--url", url, "--tenant", tenant, "--mqtt-url", MQTT, "--seed", "5"]
    args += ["--scale", "0.1", "--backfill", "1d", "--speed", "60", "--duration", "3s"]
    res = sim(args, token, tmp_path)
    assert res.returncode == 0, res.stderr + res.stdout
    first = int(re.search(r"backfill: ([\d,]+) instances", res.stdout)[1].replace(",", ""))  # type: ignore[index]
    assert first > 5000
    assert re.search(r"live: [\d,]+ readings published", res.stdout), res.stdout
    http = client(clients, url, token, tenant)
    # every kind is there (live readings arrive through MQTT, so wait for them)
    wait_for(lambda: all(count(http, t) > 0 for t in TYPES), 30, "an entity of every type")
    counts = fleet_counts(0.1)
    for kind in KINDS.values():
        assert count(http, kind.etype) == counts[kind.name], kind.etype
    # static attributes from the provisioning, measures from MQTT
    fl = http.get(
        f"/ngsi-ld/v1/entities/urn:ngsi-ld:FloodMonitoring:{tenant}:fl-01",
        params={"options": "keyValues"},
    ).json()
    assert fl["alertLevel1"] < fl["alertLevel2"] < fl["alertLevel3"] and fl["river"]
    assert isinstance(fl["currentLevel"], float) and fl["wardCode"]
    tf = http.get(f"/ngsi-ld/v1/entities/urn:ngsi-ld:TrafficFlowObserved:{tenant}:tf-001").json()
    assert tf["location"]["value"]["type"] == "LineString" and "freeFlowSpeed" in tf
    report = http.get(
        "/ngsi-ld/v1/entities",
        params={"type": "IssueReporting", "limit": 1, "options": "keyValues"},
    ).json()[0]
    assert report["category"] and report["wardCode"] and report["location"]["type"] == "Point"
    # history: a day of 15-minute readings (hourly for streetlights) for each kind
    for kind in KINDS.values():
        local = FIRST[kind.name]
        r = http.get(
            f"/ngsi-ld/v1/temporal/entities/urn:ngsi-ld:{kind.etype}:{tenant}:{local}",
            params={"attrs": kind.main, "options": "temporalValues", "lastN": 200},
        )
        assert r.status_code == 200, r.text
        values = r.json()[kind.main]["values"]
        least = 20 if kind.name == "light" else 40 if kind.name == "bus" else 90
        assert len(values) >= least, (kind.name, len(values))
    # the history is the generator's series: same seed, same values
    city = load_city(lambda _t: [], tenant)
    aq = next(d for d in build_fleet(city, 5, counts) if d.local == "aq-001")
    r = http.get(
        f"/ngsi-ld/v1/temporal/entities/urn:ngsi-ld:AirQualityObserved:{tenant}:aq-001",
        params={"attrs": "pm25", "options": "temporalValues", "lastN": 50},
    )
    pairs = r.json()["pm25"]["values"]
    times = np.array([_epoch(p[1]) for p in pairs])
    want = series(5, aq, times)[1]["pm25"]
    np.testing.assert_allclose([p[0] for p in pairs], want, rtol=0.03, atol=0.2)
    # a second run continues the history: no day written twice
    res2 = sim([*args[:-2], "--duration", "0"], token, tmp_path)
    assert res2.returncode == 0, res2.stderr + res2.stdout
    second = int(re.search(r"backfill: ([\d,]+) instances", res2.stdout)[1].replace(",", ""))  # type: ignore[index]
    assert second < first * 0.05, (first, second)


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@pytest.mark.timeout(180)
def test_load_mode_report_balances(
    sim_server: tuple[str, str], tmp_path: Path, clients: list[httpx.Client]
) -> None:
    url, token = sim_server
    tenant = f"load{uuid.uuid4().hex[:8]}"
    args = ["--url", url, "--tenant", tenant, "--mqtt-url", MQTT, "--devices", "200"]
    args += ["--rate", "500/s", "--duration", "5s", "--invalid", "0.02"]
    res = sim(args, token, tmp_path)
    assert res.returncode == 0, res.stderr + res.stdout

    def number(label: str) -> int:
        m = re.search(rf"^{label}[^:]*:\s+([\d,]+)", res.stdout, re.M)
        assert m, (label, res.stdout)
        return int(m[1].replace(",", ""))

    published, accepted, dead = number("published"), number("accepted"), number("dead-lettered")
    assert published >= 2000, res.stdout
    assert dead > 0 and accepted > 0.9 * published
    assert published == accepted + dead, res.stdout
    assert "balanced" in res.stdout
    # counted through the public interfaces, the same as asking them directly
    http = client(clients, url, token, tenant)
    letters = http.get("/ingest/v1/deadletters", params={"limit": 1})
    assert int(letters.headers["Total-Count"]) == dead
    assert count(http, "DeviceMeasurement") == 200


@pytest.mark.timeout(60)
def test_refusals_are_clear_errors(sim_server: tuple[str, str], tmp_path: Path) -> None:
    url, token = sim_server
    res = sim(["--url", url, "--mqtt-url", MQTT, "--duration", "1s"], "sct_bad.token", tmp_path)
    assert res.returncode == 2
    assert "401" in res.stderr and "token" in res.stderr
    res = sim(["--url", url, "--backfill", "soon"], token, tmp_path)
    assert res.returncode == 2 and "--backfill" in res.stderr
    res = sim(["--url", "http://127.0.0.1:9", "--duration", "1s"], token, tmp_path)
    assert res.returncode == 2 and "cannot reach SenCity" in res.stderr
    tenant = f"sim{uuid.uuid4().hex[:8]}"
    res = sim(
        ["--url", url, "--tenant", tenant, "--mqtt-url", "mqtt://127.0.0.1:9", "--scale", "0.05"],
        token,
        tmp_path,
    )
    assert res.returncode == 2 and "MQTT broker" in res.stderr


@pytest.mark.timeout(90)
def test_ctrl_c_stops_cleanly_with_a_summary(
    sim_server: tuple[str, str], tmp_path: Path, clients: list[httpx.Client]
) -> None:
    url, token = sim_server
    tenant = f"sim{uuid.uuid4().hex[:8]}"
    args = ["--url", url, "--tenant", tenant, "--mqtt-url", MQTT, "--scale", "0.05"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "sencity", "sim", *args],
        cwd=tmp_path,
        env={**clean_env(), "SENCITY_TOKEN": token},
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        http = client(clients, url, token, tenant)
        # running live (no --duration): readings reach the server
        wait_for(lambda: some(http, "AirQualityObserved"), 30, "live readings")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    m = re.search(r"live: ([\d,]+) readings published and acknowledged", out)
    assert m and int(m[1].replace(",", "")) > 0, out
    assert "fleet:" in out
