"""Vietnam's air quality index, VN_AQI (hourly), as a pure function of concentrations.

The method is the Vietnam Environment Administration's technical guidance
*Hướng dẫn kỹ thuật tính toán và công bố chỉ số chất lượng không khí Việt Nam (VN_AQI)*,
issued with Decision **1459/QĐ-TCMT** of 12 November 2019 (replacing 878/QĐ-TCMT, 2011).
What is used here, and where it was checked:

* Table 2 (breakpoints BPᵢ for the index values Iᵢ = 0, 50, 100, 150, 200, 300, 400,
  500; every concentration in µg/m³): O₃ 1 h, O₃ 8 h (up to 400 µg/m³; above it the 1 h
  value is used), CO, SO₂, NO₂, PM10, PM2.5 — the same figures appear in several public
  VN_AQI implementations (e.g. the hourly calculator in the Hanoi monitoring data
  notebooks and the Java/C#/Python calculators that cite QĐ 1459), cross-checked against
  each other;
* Table 1 (bands and colours: 0–50 Tốt, xanh 0;228;0 — 51–100 Trung bình, vàng
  255;255;0 — 101–150 Kém, da cam 255;126;0 — 151–200 Xấu, đỏ 255;0;0 — 201–300 Rất
  xấu, tím 143;63;151 — 301–500 Nguy hại, nâu 126;0;35), as published by the Centre for
  Environmental Monitoring (cem.gov.vn) when the decision was issued;
* formula 1, the sub-index by linear interpolation between the breakpoints around the
  concentration: ``AQIx = (I(i+1) − I(i)) / (BP(i+1) − BP(i)) · (Cx − BP(i)) + I(i)``;
* the hourly PM value is the **NowCast** of the last 12 hourly means c₁ (this hour) …
  c₁₂: ``w* = c_min / c_max``; ``w = w*`` when ``w* > 1/2``, else ``w = 1/2``;
  ``NowCast = Σ wⁱ⁻¹·cᵢ / Σ wⁱ⁻¹`` over the hours that have data; it needs data for at
  least 2 of the last 3 hours.  The guidance writes the ``w = 1/2`` case as
  ``Σ (1/2)ⁱ·cᵢ`` without the division; with all 12 hours present the two agree within
  0.03 % (Σ (1/2)ⁱ⁻¹ ≈ 2), and the normalised form stays right when hours are missing,
  so it is used for both cases (as the US EPA NowCast it derives from does);
* the hourly AQI is the largest sub-index; it needs PM2.5 or PM10 (the guidance makes
  one of them compulsory); index values are rounded to integers (half up).

Choices of ours, where the guidance says nothing an hourly calculator can use:

* O₃: both the 1 h and the 8 h sub-indices are computed when the data are there and
  the larger one counts (an 8 h mean above 400 µg/m³ has no breakpoint: 1 h only);
  the 8 h mean needs at least 6 of its 8 hourly means;
* concentrations above the last breakpoint extrapolate the last segment (an index above
  500, still "hazardous"); negative readings count as 0;
* the hours of a series are counted back from its latest reading: hour 1 is the hour
  up to and including that reading, hour 2 the hour before, and so on.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

#: the index values of the breakpoints
INDEX_BREAKPOINTS: tuple[int, ...] = (0, 50, 100, 150, 200, 300, 400, 500)

#: concentration breakpoints (µg/m³) per parameter, Table 2 of QĐ 1459/QĐ-TCMT
BREAKPOINTS: dict[str, tuple[float, ...]] = {
    "o3_1h": (0, 160, 200, 300, 400, 800, 1000, 1200),
    "o3_8h": (0, 100, 120, 170, 210, 400),
    "co": (0, 10_000, 30_000, 45_000, 60_000, 90_000, 120_000, 150_000),
    "so2": (0, 125, 350, 550, 800, 1600, 2100, 2630),
    "no2": (0, 100, 200, 700, 1200, 2350, 3100, 3850),
    "pm10": (0, 50, 150, 250, 350, 420, 500, 600),
    "pm25": (0, 25, 50, 80, 150, 250, 350, 500),
}

#: the pollutants of the hourly index, as named in the data model (µg/m³)
POLLUTANTS: tuple[str, ...] = ("pm25", "pm10", "o3", "no2", "so2", "co")
PARTICLES: tuple[str, ...] = ("pm25", "pm10")

NOWCAST_HOURS = 12
O3_8H_MIN_HOURS = 6


@dataclass(frozen=True)
class Level:
    """A band of the index: its key (data model), names and colour."""

    key: str
    vi: str
    en: str
    color: str
    low: int
    high: int | None  # None: no upper bound


LEVELS: tuple[Level, ...] = (
    Level("good", "Tốt", "Good", "#00e400", 0, 50),
    Level("moderate", "Trung bình", "Moderate", "#ffff00", 51, 100),
    Level("poor", "Kém", "Poor", "#ff7e00", 101, 150),
    Level("bad", "Xấu", "Bad", "#ff0000", 151, 200),
    Level("veryBad", "Rất xấu", "Very bad", "#8f3f97", 201, 300),
    Level("hazardous", "Nguy hại", "Hazardous", "#7e0023", 301, None),
)


@dataclass(frozen=True)
class AqiResult:
    """An hourly VN_AQI: the index, its band, the parameter that set it and every
    sub-index (``pm25``, ``pm10``, ``o3_1h``, ``o3_8h``, ``no2``, ``so2``, ``co``)."""

    aqi: int
    level: Level
    dominant: str
    sub_indices: dict[str, int]


def round_half_up(x: float) -> int:
    """Round to the nearest integer, halves away from zero (not to even); binary
    noise below 1e-9 is ignored first (50.4999999999 of an exact 50.5 rounds up)."""
    x = round(x, 9)
    return math.floor(x + 0.5) if x >= 0 else -math.floor(-x + 0.5)


def sub_index_value(parameter: str, concentration: float) -> float | None:
    """The unrounded sub-index of ``concentration`` (µg/m³) for ``parameter``, a key of
    :data:`BREAKPOINTS`; None where the parameter has no breakpoint (O₃ 8 h > 400)."""
    bps = BREAKPOINTS[parameter]
    c = max(0.0, float(concentration))
    if parameter == "o3_8h" and c > bps[-1]:
        return None
    for i in range(len(bps) - 1):
        lo, hi = bps[i], bps[i + 1]
        if c <= hi:
            i_lo, i_hi = INDEX_BREAKPOINTS[i], INDEX_BREAKPOINTS[i + 1]
            return (i_hi - i_lo) / (hi - lo) * (c - lo) + i_lo
    # beyond the last breakpoint: the last segment, extended
    n = len(bps) - 1
    lo, hi = bps[n - 1], bps[n]
    i_lo, i_hi = INDEX_BREAKPOINTS[n - 1], INDEX_BREAKPOINTS[n]
    return (i_hi - i_lo) / (hi - lo) * (c - lo) + i_lo


def sub_index(parameter: str, concentration: float) -> int | None:
    """The sub-index rounded as the guidance says (an integer, half up)."""
    v = sub_index_value(parameter, concentration)
    return None if v is None else round_half_up(v)


def level_of(aqi: float) -> Level:
    """The band of an index value (rounded first)."""
    n = round_half_up(aqi)
    for lv in LEVELS:
        if lv.high is None or n <= lv.high:
            return lv
    return LEVELS[-1]  # pragma: no cover - the last band has no upper bound


def nowcast(hourly: Sequence[float | None]) -> float | None:
    """NowCast of up to 12 hourly means, ``hourly[0]`` the latest hour, ``hourly[i]``
    i hours before it (None: no data for that hour).  None when fewer than 2 of the
    3 latest hours have data."""
    hours = list(hourly[:NOWCAST_HOURS])
    if sum(1 for c in hours[:3] if c is not None) < 2:
        return None
    present = [(i, max(0.0, float(c))) for i, c in enumerate(hours) if c is not None]
    c_max = max(c for _, c in present)
    if c_max == 0:
        return 0.0
    c_min = min(c for _, c in present)
    w_star = c_min / c_max
    w = w_star if w_star > 0.5 else 0.5
    num = sum(w**i * c for i, c in present)
    den = sum(w**i for i, _ in present)
    return num / den


def hourly_means(
    samples: Iterable[tuple[datetime, float]],
    end: datetime | None = None,
    hours: int = NOWCAST_HOURS,
) -> list[float | None]:
    """Hourly means counted back from ``end`` (default: the latest sample): item 0 is the
    mean of the samples in (end − 1 h, end], item i of (end − (i+1) h, end − i h]."""
    pts = list(samples)
    if not pts:
        return [None] * hours
    if end is None:
        end = max(t for t, _ in pts)
    sums = [0.0] * hours
    counts = [0] * hours
    for t, v in pts:
        k = _hour_index(end, t)
        if 0 <= k < hours:
            sums[k] += float(v)
            counts[k] += 1
    return [sums[i] / counts[i] if counts[i] else None for i in range(hours)]


def _hour_index(end: datetime, t: datetime) -> int:
    """Which hour back from ``end`` holds ``t`` (-1: after ``end``)."""
    if t > end:
        return -1
    # t is in hour k when end - (k+1) h < t <= end - k h
    k = math.floor((end - t) / timedelta(hours=1))
    return k


def o3_8h_mean(hourly: Sequence[float | None]) -> float | None:
    """Mean of the 8 latest hourly O₃ means; None with fewer than 6 of them."""
    vals = [c for c in hourly[:8] if c is not None]
    if len(vals) < O3_8H_MIN_HOURS:
        return None
    return sum(vals) / len(vals)


def hourly_aqi(
    *,
    pm25: float | None = None,
    pm10: float | None = None,
    o3_1h: float | None = None,
    o3_8h: float | None = None,
    no2: float | None = None,
    so2: float | None = None,
    co: float | None = None,
) -> AqiResult | None:
    """The hourly VN_AQI of concentrations already averaged as the guidance says
    (``pm25``/``pm10``: NowCast; ``o3_8h``: 8 h mean; the rest: 1 h means), µg/m³.
    None without PM2.5 and PM10."""
    if pm25 is None and pm10 is None:
        return None
    given = {
        "pm25": pm25,
        "pm10": pm10,
        "o3_1h": o3_1h,
        "o3_8h": o3_8h,
        "no2": no2,
        "so2": so2,
        "co": co,
    }
    subs: dict[str, int] = {}
    for name, c in given.items():
        if c is None:
            continue
        si = sub_index(name, c)
        if si is not None:
            subs[name] = si
    dominant = max(subs, key=lambda k: subs[k])
    aqi = subs[dominant]
    return AqiResult(aqi, level_of(aqi), dominant, subs)


def aqi_from_series(series: Mapping[str, Sequence[tuple[datetime, float]]]) -> AqiResult | None:
    """The hourly VN_AQI from each pollutant's recent readings (time, µg/m³), keyed by
    the data model's names (``pm25``, ``pm10``, ``o3``, ``no2``, ``so2``, ``co``).

    Every series is bucketed into hours counted back from the latest reading of all
    series together; PM → NowCast, O₃ → 1 h and 8 h means, the others → 1 h mean."""
    latest = [t for pts in series.values() for t, _ in pts]
    if not latest:
        return None
    end = max(latest)
    hourly = {name: hourly_means(pts, end) for name, pts in series.items()}
    args: dict[str, float | None] = {}
    for name in PARTICLES:
        if name in hourly:
            args[name] = nowcast(hourly[name])
    if "o3" in hourly:
        args["o3_1h"] = hourly["o3"][0]
        args["o3_8h"] = o3_8h_mean(hourly["o3"])
    for name in ("no2", "so2", "co"):
        if name in hourly:
            args[name] = hourly[name][0]
    return hourly_aqi(**args)
