"""The rules engine on real data, against an independent computation over the files.

* Hanoi (US Embassy) hourly PM2.5 AQI, replayed with ``sencity replay`` through the real
  Mosquitto into a running server: the "AQI above 150 for 3 hours" alarms the engine
  raises are exactly the episodes counted in plain Python over the CSV rows — which
  only works if ``for:`` durations are judged in the readings' own time (a fast replay
  sends hours of data per second) and every reading is evaluated, also when several
  of one station arrive in one batch.
* METR-LA (207 Los Angeles detectors, 5-minute speeds): congestion alarms raised and
  cleared, per detector and time, match the same definition computed over the CSV.

Both on SQLite and PostgreSQL.
"""

from __future__ import annotations

import csv
import math
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from sencity.config import load_settings
from sencity.core.platform import prepare_store
from tests.conftest import SHARED, Server, clean_env
from tests.ingest.conftest import BROKER, broker_server, wait_for

pytestmark = pytest.mark.mqtt

AQI = SHARED / "data" / "airquality" / "hanoi_usembassy_aqi_2015-2018.csv"
METR_LA = SHARED / "data" / "traffic" / "metr_la_los_speed.csv"
BROKER_URL = f"mqtt://{BROKER[0]}:{BROKER[1]}"

# the slice replayed in CI: a Hanoi winter (2,208 hourly rows, 38 episodes)
AQI_FROM, AQI_TO = "2016-11-01", "2017-02-01"
THRESHOLD, HOLD = 150.0, 3 * 3600.0

METR_START = datetime(2012, 3, 1, tzinfo=UTC)  # the file has no times: rows 5 min apart
METR_ROWS = 144  # half a day (midnight to noon: the morning peak)
CONGESTED, CLEARED = 0.5, 0.6  # speed / free-flow speed: below 0.5 raises, above 0.6 clears


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"shared data file {path.name} is not present ({path})")
    return path


class City:
    """A running server connected to Mosquitto, one fresh tenant and an admin client."""

    def __init__(self, server: Server, store: str, token: str, backend: str) -> None:
        self.server, self.store, self.backend = server, store, backend
        self.tenant = f"t{uuid.uuid4().hex[:10]}"
        settings = load_settings(None, {"store": {"url": store}}, environ={})
        st = prepare_store(settings)
        try:
            st.create_tenant(self.tenant, "Real data")
        finally:
            st.close()
        self.http = httpx.Client(
            base_url=server.url,
            headers={"Authorization": f"Bearer {token}", "NGSILD-Tenant": self.tenant},
            timeout=60,
        )

    def rule(self, body: dict[str, Any]) -> None:
        r = self.http.post("/rules/v1/rules", json=body)
        assert r.status_code in (200, 201), r.text

    def alarms(self, rule: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while True:
            r = self.http.get(
                "/rules/v1/alarms", params={"rule": rule, "limit": "1000", "offset": str(len(out))}
            )
            assert r.status_code == 200, r.text
            page = r.json()
            out += page
            if not page or len(out) >= int(r.headers["Total-Count"]):
                return out

    def replay(self, *args: str, timeout: float = 100) -> subprocess.CompletedProcess[str]:
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
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Server, str, str, str]]:
    with broker_server(request, tmp_path_factory, "rules-real") as (srv, url, token):
        yield srv, url, token, request.param


@pytest.fixture
def city(server: tuple[Server, str, str, str]) -> Iterator[City]:
    c = City(*server)
    yield c
    c.http.close()


def settle(check: Callable[[], Any], expect: Any, timeout: float, what: str) -> Any:
    """``check()`` once it equals ``expect``, or its last value after ``timeout`` s (for
    the caller to compare, with pytest's difference)."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got == expect or time.monotonic() > deadline:
            return got
        time.sleep(0.2)


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


# -- Hanoi AQI: episodes above 150 for 3 hours -------------------------------------------
def aqi_episodes(rows: list[dict[str, str]]) -> list[float]:
    """When each episode is raised (epoch s), computed over the rows as the file has them.

    A *reading* is a row whose ``aqi`` cell is a number (``NA`` rows are no reading, as
    the replay skips them).  An *episode* is a run of consecutive readings above 150
    whose last reading is at least 3 hours after its first: it is raised at the first
    reading 3 hours or more after the run began.  Readings are taken in file order;
    a gap (missing hours, ``NA`` rows) neither ends nor extends a run — the last
    reading stands until the next one, so a run goes on across a gap when the readings
    on both sides are above 150, and ends at the first reading of 150 or less."""
    raised: list[float] = []
    start: float | None = None
    active = False
    for r in rows:
        try:
            x = float(r["aqi"])
        except ValueError:
            continue
        t = _epoch(r["datetime"])
        if x > THRESHOLD:
            if start is None:
                start = t
            if not active and t - start >= HOLD:
                active = True
                raised.append(t)
        else:
            start, active = None, False
    return raised


@pytest.mark.timeout(150)
def test_hanoi_aqi_episodes_through_mqtt(city: City, tmp_path: Path) -> None:
    with open(need(AQI), newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        fields = list(reader.fieldnames or [])
        rows = [r for r in reader if AQI_FROM <= r["datetime"] < AQI_TO]
    expect = aqi_episodes(rows)
    assert len(expect) == 38  # a season with many episodes (and NA gaps: 2016-12)
    sliced = tmp_path / "hanoi_winter.csv"
    with open(sliced, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fields)
        w.writeheader()
        w.writerows(rows)
    city.rule(
        {
            "id": "aqi-unhealthy-3h",
            "name": "AQI above 150 for 3 hours",
            "scope": {"type": "AirQualityObserved"},
            "when": {"attr": "aqi", "above": THRESHOLD},
            "for": "PT3H",
            "alarm": {"severity": "major"},
        }
    )
    eid = "urn:ngsi-ld:AirQualityObserved:hanoi-usembassy"
    done = city.replay(
        str(sliced),
        "--type=AirQualityObserved",
        f"--entity={eid}",
        "--time-column=datetime",
        "--columns=aqi=aqi",
        "--missing=NA",
        "--speed=0",
        f"--apikey=k{uuid.uuid4().hex[:10]}",
        f"--tenant={city.tenant}",
    )
    readings = sum(1 for r in rows if r["aqi"] != "NA")
    assert f"{len(rows)} rows read, {readings} sent" in done.stdout, done.stdout + done.stderr
    last = max(_epoch(r["datetime"]) for r in rows if r["aqi"] != "NA")

    def evaluated() -> bool:  # the last reading is in the entity: the engine has had it
        r = city.http.get(f"/ngsi-ld/v1/entities/{eid}")
        return r.status_code == 200 and _epoch(r.json()["aqi"]["observedAt"]) == last

    wait_for(evaluated, timeout=60, what="the last reading in the hub")

    def raised() -> list[float]:
        return sorted(_epoch(a["dateIssued"]) for a in city.alarms("aqi-unhealthy-3h"))

    assert settle(raised, expect, 30, "the episodes' alarms") == expect
    got = city.alarms("aqi-unhealthy-3h")
    assert {a["alertSource"] for a in got} == {eid}
    # every episode but the last ended (cleared at the reading of 150 or less)
    assert sum(a["alarmStatus"].startswith("active") for a in got) <= 1


# -- METR-LA: congestion raised and cleared ------------------------------------------------
def metr_la() -> tuple[list[str], list[list[float | None]], dict[str, float]]:
    """Detector ids, the first day's speeds (None: no reading — 0 in the file), and each
    detector's free-flow speed: the 85th percentile of its readings over the whole file."""
    with open(need(METR_LA), newline="") as f:
        reader = csv.reader(f)
        ids = next(reader)
        table = [[float(v) if v else 0.0 for v in row] for row in reader]
    free: dict[str, float] = {}
    for j, sid in enumerate(ids):
        xs = sorted(row[j] for row in table if row[j] > 0)
        free[sid] = xs[math.ceil(0.85 * len(xs)) - 1] if xs else 0.0
    day = [[v if v > 0 else None for v in row] for row in table[:METR_ROWS]]
    return ids, day, free


def congestion(
    ids: list[str], day: list[list[float | None]], free: dict[str, float]
) -> set[tuple[str, float, float | None]]:
    """(detector, raised, cleared or None) of every congestion episode: a reading below
    half the free-flow speed starts one, which ends at the first reading above 0.6 of
    it (hysteresis); times are the readings'."""
    out = set()
    for j, sid in enumerate(ids):
        if free[sid] <= 0:
            continue
        low, high = CONGESTED * free[sid], CLEARED * free[sid]
        since: float | None = None
        for i, row in enumerate(day):
            v = row[j]
            if v is None:
                continue
            t = (METR_START + timedelta(minutes=5 * i)).timestamp()
            if since is None and v < low:
                since = t
            elif since is not None and v > high:
                out.add((sid, since, t))
                since = None
        if since is not None:
            out.add((sid, since, None))
    return out


@pytest.mark.timeout(150)
def test_metr_la_congestion_raised_and_cleared(city: City) -> None:
    ids, day, free = metr_la()
    expect = congestion(ids, day, free)
    assert len(expect) > 50
    city.rule(
        {
            "id": "congestion",
            "name": "Congestion",
            "scope": {"type": "TrafficFlowObserved"},
            "when": {
                "attr": "averageVehicleSpeed",
                "below": {"attr": "congestionSpeed"},
                "clear_above": {"attr": "clearSpeed"},
            },
            "alarm": {"severity": "minor", "category": "traffic"},
        }
    )

    def eid(sid: str) -> str:
        return f"urn:ngsi-ld:TrafficFlowObserved:metr-la-{sid}"

    def upsert(bodies: list[dict[str, Any]]) -> None:
        r = city.http.post("/ngsi-ld/v1/entityOperations/upsert?options=update", json=bodies)
        assert r.status_code in (201, 204), r.text

    # each detector's thresholds, then every 5-minute row as one batch with its time
    upsert(
        [
            {
                "id": eid(sid),
                "type": "TrafficFlowObserved",
                "congestionSpeed": {"type": "Property", "value": CONGESTED * free[sid]},
                "clearSpeed": {"type": "Property", "value": CLEARED * free[sid]},
            }
            for sid in ids
            if free[sid] > 0
        ]
    )
    for i, row in enumerate(day):
        at = (METR_START + timedelta(minutes=5 * i)).strftime("%Y-%m-%dT%H:%M:%SZ")
        bodies = [
            {
                "id": eid(sid),
                "type": "TrafficFlowObserved",
                "averageVehicleSpeed": {"type": "Property", "value": v, "observedAt": at},
            }
            for sid, v in zip(ids, row, strict=True)
            if v is not None and free[sid] > 0
        ]
        if bodies:
            upsert(bodies)
    prefix = len(eid(""))

    def got() -> set[tuple[str, float, float | None]]:
        return {
            (
                a["alertSource"][prefix:],
                _epoch(a["dateIssued"]),
                _epoch(a["validTo"]) if a.get("validTo") else None,
            )
            for a in city.alarms("congestion")
        }

    # the last rows' raises and clears are evaluated shortly after the last write
    assert settle(got, expect, 60, "the congestion alarms") == expect
