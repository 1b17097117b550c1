"""``sencity replay``: real time series (Hanoi PM2.5, METR-LA speeds) through the real
Mosquitto into a real server, checked value by value and time by time through the
temporal API against an independent read of the file; provisioning, skipped rows and
pacing."""

from __future__ import annotations

import csv
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.conftest import SHARED, clean_env
from tests.ingest.conftest import BROKER, Agent, broker_server, wait_for

pytestmark = pytest.mark.mqtt

HANOI = SHARED / "data" / "airquality" / "hanoi_usembassy_pm25_2016.csv"
METR_LA = SHARED / "data" / "traffic" / "metr_la_los_speed.csv"
METR_LA_SENSORS = SHARED / "data" / "traffic" / "metr_la_sensor_locations.csv"
HCM = ZoneInfo("Asia/Ho_Chi_Minh")
BROKER_URL = f"mqtt://{BROKER[0]}:{BROKER[1]}"


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"shared data file {path.name} is not present ({path})")
    return path


class Hub:
    """A running server, its store URL and an admin token."""

    def __init__(self, url: str, token: str, store: str, backend: str) -> None:
        self.url, self.token, self.store, self.backend = url, token, store, backend

    def agent(self, tenant: str | None = None) -> Agent:
        return Agent(self.url, self.token, tenant or f"t{uuid.uuid4().hex[:10]}")

    def replay(self, *args: str, timeout: float = 50) -> subprocess.CompletedProcess[str]:
        """``sencity replay ARGS`` with this hub's store, to the real Mosquitto."""
        env = {**clean_env(), "SENCITY_STORE__URL": self.store}
        return subprocess.run(
            [sys.executable, "-m", "sencity", "replay", *args, "--broker", BROKER_URL],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def hub(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    """As ``ingest_server`` in conftest, keeping the store URL for the command."""
    with broker_server(request, tmp_path_factory, "replay") as (server, url, token):
        yield Hub(server.url, token, url, request.param)


def history(agent: Agent, eid: str, attr: str, n: int) -> list[tuple[Any, str]]:
    """(value, observedAt) of an attribute's last ``n`` instances, oldest first."""
    r = agent.http.get(
        f"/ngsi-ld/v1/temporal/entities/{eid}",
        params={"attrs": attr, "options": "temporalValues", "lastN": str(n)},
    )
    if r.status_code == 404:
        return []
    assert r.status_code == 200, r.text
    values = r.json().get(attr, {}).get("values", [])
    return sorted(((v, t) for v, t in values), key=lambda x: x[1])


def utc(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def hanoi_rows(n: int) -> list[dict[str, str]]:
    with open(need(HANOI), newline="", encoding="utf-8") as f:
        return [r for _, r in zip(range(n), csv.DictReader(f), strict=False)]


def test_hanoi_pm25_every_value_and_time_arrives(hub: Hub) -> None:
    rows = hanoi_rows(200)
    # the file read independently: local (Hanoi) 12-hour times, -999 meaning missing
    expect_pm, expect_aqi = [], []
    for r in rows:
        t = utc(datetime.strptime(r["Date (LT)"], "%Y-%m-%d %I:%M %p").replace(tzinfo=HCM))
        if r["Raw Conc."] != "-999":
            expect_pm.append((float(r["Raw Conc."]), t))
        if r["AQI"] != "-999":
            expect_aqi.append((int(r["AQI"]), t))
    agent = hub.agent()
    # an operator's group (made through the API); the replay provisions the device
    assert agent.group(entity_type="AirQualityObserved").status_code == 201
    eid = f"urn:ngsi-ld:AirQualityObserved:hanoi-usembassy-{uuid.uuid4().hex[:6]}"
    done = hub.replay(
        str(HANOI),
        "--type=AirQualityObserved",
        f"--entity={eid}",
        "--time-column=Date (LT)",
        "--columns=Raw Conc.=pm25,AQI=aqi",
        "--missing=-999",
        "--speed=0",
        "--limit=200",
        f"--apikey={agent.apikey}",
        f"--tenant={agent.tenant}",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "provisioned device" in done.stderr and "service group" not in done.stderr
    assert re.search(r"200 rows read, 200 sent \(400 observations\)", done.stdout), done.stdout
    got = wait_for(
        lambda: len(h := history(agent, eid, "pm25", 500)) >= len(expect_pm) and h,
        timeout=30,
        what="the 200 PM2.5 readings in history",
    )
    assert got == sorted(expect_pm, key=lambda x: x[1])
    assert history(agent, eid, "aqi", 500) == sorted(expect_aqi, key=lambda x: x[1])
    assert agent.dead() == []
    agent.http.close()


def test_metr_la_one_sensor_as_json(hub: Hub) -> None:
    """METR-LA has no time column: one column per sensor, rows 5 minutes apart."""
    need(METR_LA)
    with open(need(METR_LA_SENSORS), newline="") as f:
        sensor = next(csv.DictReader(f))  # the first sensor: its id is a column of speeds
    sid = sensor["sensor_id"]
    start = datetime(2012, 3, 1, tzinfo=UTC)
    with open(METR_LA, newline="") as f:
        speeds = [r[sid] for _, r in zip(range(300), csv.DictReader(f), strict=False)]
    expect = [(float(v), utc(start + timedelta(minutes=5 * i))) for i, v in enumerate(speeds) if v]
    agent = hub.agent()
    assert agent.group(entity_type="TrafficFlowObserved", timestamp="ts").status_code == 201
    eid = f"urn:ngsi-ld:TrafficFlowObserved:metr-la-{sid}-{uuid.uuid4().hex[:6]}"
    done = hub.replay(
        str(METR_LA),
        "--type=TrafficFlowObserved",
        f"--entity={eid}",
        f"--columns={sid}=averageVehicleSpeed",
        "--start=2012-03-01T00:00:00Z",
        "--interval=300",
        "--format=json",
        "--speed=0",
        "--limit=300",
        f"--apikey={agent.apikey}",
        f"--tenant={agent.tenant}",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    got = wait_for(
        lambda: len(h := history(agent, eid, "averageVehicleSpeed", 500)) >= len(expect) and h,
        timeout=30,
        what="the 300 speeds in history",
    )
    assert [(float(v), t) for v, t in got] == expect
    agent.http.close()


def test_provisions_and_reports_skipped_rows(hub: Hub, tmp_path: Path) -> None:
    if hub.backend != "sqlite":
        pytest.skip("provisioning and skipping do not depend on the backend")
    f = tmp_path / "station.csv"
    f.write_text(
        "time,pm25,no2\n"
        "2025-03-01 08:00,12.5,30\n"
        "2025-03-01 09:00,,\n"  # nothing to send
        "2025-03-01 10:00,-999,31\n"  # pm25 missing, no2 sent
        "not a time,13,32\n"
        "2025-03-01 12:00,n/a,n/a\n"
        "01/03/2025 13:00,14,33\n",  # day-first
        encoding="utf-8",
    )
    tenant = f"t{uuid.uuid4().hex[:10]}"
    key, eid = f"k{uuid.uuid4().hex[:10]}", f"urn:ngsi-ld:AirQualityObserved:st-{tenant}"
    args = [
        str(f),
        "--type=AirQualityObserved",
        f"--entity={eid}",
        "--time-column=time",
        "--missing=-999",
        "--speed=0",
        f"--apikey={key}",
        f"--tenant={tenant}",
    ]
    done = hub.replay(*args)
    out = done.stdout + done.stderr
    assert f"provisioned service group {key}" in out and "provisioned device" in out
    agent = hub.agent(tenant)
    # the running server sees the group and device made in the store by the replay
    assert done.returncode == 1, out  # some rows skipped
    assert "6 rows read, 3 sent (5 observations)" in done.stdout, out
    assert "3 rows skipped: " in done.stdout
    for reason in ("1 empty cell", "1 unreadable time", "1 non-numeric cell"):
        assert reason in done.stdout, out
    assert "cells left out of sent rows: 1 missing-value marker" in done.stdout
    got = wait_for(lambda: len(h := history(agent, eid, "no2", 10)) >= 3 and h, what="no2")
    assert got == [
        (30, "2025-03-01T01:00:00Z"),
        (31, "2025-03-01T03:00:00Z"),
        (33, "2025-03-01T06:00:00Z"),
    ]
    assert history(agent, eid, "pm25", 10) == [
        (12.5, "2025-03-01T01:00:00Z"),
        (14, "2025-03-01T06:00:00Z"),
    ]
    # the group made by the replay reads JSON times too
    g = agent.http.get(f"/ingest/v1/groups/{key}").json()
    assert g["entity_type"] == "AirQualityObserved" and g["timestamp"] == "TimeInstant"
    agent.http.close()


def test_pacing_follows_the_speed(hub: Hub) -> None:
    """Rows an hour apart at 3600x: one second between messages."""
    if hub.backend != "sqlite":
        pytest.skip("pacing does not depend on the backend")
    agent = hub.agent()
    assert agent.group(entity_type="AirQualityObserved").status_code == 201
    eid = f"urn:ngsi-ld:AirQualityObserved:pace-{uuid.uuid4().hex[:6]}"
    rows = hanoi_rows(4)
    hours = [datetime.strptime(r["Date (LT)"], "%Y-%m-%d %I:%M %p") for r in rows]
    span = (hours[-1] - hours[0]).total_seconds() / 3600  # seconds at 3600x
    assert span == 3
    t0 = time.monotonic()
    done = hub.replay(
        str(HANOI),
        "--type=AirQualityObserved",
        f"--entity={eid}",
        "--time-column=Date (LT)",
        "--columns=Raw Conc.=pm25",
        "--speed=3600",
        "--limit=4",
        f"--apikey={agent.apikey}",
        f"--tenant={agent.tenant}",
    )
    wall = time.monotonic() - t0
    assert done.returncode == 0, done.stdout + done.stderr
    m = re.search(r"4 sent \(4 observations\) in ([\d.]+) s", done.stdout)
    assert m, done.stdout
    assert float(m.group(1)) >= span - 0.05 and wall >= span  # never faster than asked
    assert float(m.group(1)) < span + 5  # and not much slower
    agent.http.close()
