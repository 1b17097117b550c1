"""The synthetic PM2.5 against the real Hanoi series (US Embassy, hourly), scaled for
Da Nang's cleaner air (:data:`sencity.sim.models.PM25_SCALE`): per month, the mean,
median and 90th percentile of a year of hourly values (pooled over 12 simulated
stations) within :data:`TOLERANCE` of the real month's × the scale factor."""

from __future__ import annotations

import csv
from collections import defaultdict
from datetime import UTC, datetime

import numpy as np
import pytest

from sencity.sim import models
from tests.conftest import SHARED

AQ = SHARED / "data" / "airquality"
RAW = AQ / "hanoi_usembassy_pm25_2016.csv"
AQI = AQ / "hanoi_usembassy_aqi_2015-2018.csv"
TOLERANCE = 0.15  # relative, per month and statistic
#: US EPA PM2.5 breakpoints: (AQI low, AQI high, µg/m³ low, µg/m³ high)
EPA = (
    (0, 50, 0.0, 12.0),
    (51, 100, 12.1, 35.4),
    (101, 150, 35.5, 55.4),
    (151, 200, 55.5, 150.4),
    (201, 300, 150.5, 250.4),
    (301, 400, 250.5, 350.4),
    (401, 500, 350.5, 500.4),
)


def aqi_to_pm25(aqi: int) -> float:
    for lo, hi, c_lo, c_hi in EPA:
        if lo <= aqi <= hi:
            return c_lo + (aqi - lo) * (c_hi - c_lo) / (hi - lo)
    raise ValueError(aqi)


def real_months() -> dict[int, np.ndarray]:
    """Hourly µg/m³ by month: the raw 2016 file (January-November), December from the
    AQI series (2015-2017) through the EPA breakpoints."""
    out: dict[int, list[float]] = defaultdict(list)
    with open(RAW, newline="") as f:
        for r in csv.DictReader(f):
            v = float(r["Raw Conc."])
            if r["QC Name"] == "Valid" and v > 0 and r["Month"] != "12":
                out[int(r["Month"])].append(v)
    with open(AQI, newline="") as f:
        for r in csv.DictReader(f):
            if r["month"] == "12" and r["aqi"].isdigit() and int(r["aqi"]) > 0:
                out[12].append(aqi_to_pm25(int(r["aqi"])))
    return {m: np.asarray(v) for m, v in out.items()}


@pytest.mark.skipif(not RAW.exists() or not AQI.exists(), reason=f"real data not in {AQ}")
def test_pm25_calibrated_against_hanoi() -> None:
    real = real_months()
    assert sorted(real) == list(range(1, 13)) and min(len(v) for v in real.values()) > 500
    t0 = datetime(2026, 1, 1, tzinfo=UTC).timestamp() - 7 * 3600
    t = np.arange(t0, t0 + 365 * 86400, 3600.0)
    month = models.month_index(t) + 1
    sim = [models.pm25_haze(seed, t, station=seed) for seed in range(1, 13)]
    problems = []
    for m in range(1, 13):
        synth = np.concatenate([s[month == m] for s in sim])
        want = real[m] * models.PM25_SCALE
        for name, fn in (
            ("mean", np.mean),
            ("median", np.median),
            ("p90", lambda x: np.percentile(x, 90)),
        ):
            got, target = float(fn(synth)), float(fn(want))
            if abs(got / target - 1) > TOLERANCE:
                problems.append(f"month {m} {name}: {got:.1f} vs {target:.1f}")
    assert not problems, problems
    # and the seasons: the dry-season haze months are the worst, the summer the cleanest
    means = {m: np.concatenate([s[month == m] for s in sim]).mean() for m in range(1, 13)}
    assert min(means[1], means[2], means[12]) > 2 * max(means[6], means[7])
    # the diurnal cycle: the morning peak above the afternoon low, as in Hanoi
    h = models.local_hours(t)
    allv = np.concatenate(sim)
    hours = np.tile(h, len(sim))
    assert (
        allv[(hours >= 9) & (hours < 11)].mean() > 1.2 * allv[(hours >= 15) & (hours < 18)].mean()
    )
