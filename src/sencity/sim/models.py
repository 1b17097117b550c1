"""The city's physical models: each one a function of (seed, device, times) → values.

Times are epoch seconds (UTC) in numpy arrays; Da Nang's local time is UTC+7 all year.
Every random part comes from :mod:`sencity.sim.noise` (a pure function of the seed and
the time), so the same seed gives the same series whatever window is asked for, and the
history written by ``--backfill`` continues into the live readings.

Shared drivers: the weather (rain events, temperature, humidity) drives the flood
gauges, the air-quality stations' temperature and humidity, traffic (slower in rain)
and flooding reports; the traffic demand profile drives NO2/CO and bus speeds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any

import numpy as np
import numpy.typing as npt

from sencity.sim import noise
from sencity.sim.noise import F
from sencity.sim.sun import sun_times

LOCAL = 7 * 3600  # Asia/Ho_Chi_Minh, no daylight saving
DAY = 86400.0
#: Da Nang's PM2.5 relative to Hanoi's (US Embassy series): both cities' annual means
#: (Da Nang about 20-25 µg/m³, Hanoi 2016 48 µg/m³)
PM25_SCALE = 0.45

# -- Hanoi PM2.5 by month (US Embassy, hourly raw concentration, valid readings: 2016 for
#    January-November, December from the 2015-2017 AQI series through the EPA breakpoints)
#: monthly median (µg/m³)
HANOI_PM25_MEDIAN = (59.2, 69.0, 54.5, 44.2, 28.4, 27.0, 22.2, 27.0, 44.3, 53.0, 42.1, 69.1)
#: monthly 90th percentile (µg/m³)
HANOI_PM25_P90 = (119.2, 124.4, 91.2, 72.9, 48.4, 57.1, 48.0, 61.6, 87.5, 104.5, 98.4, 142.7)
#: mean log deviation by local hour 0..23 (morning and late-evening peaks, afternoon low)
HANOI_PM25_HOURLY = (
    0.028, -0.028, -0.087, -0.035, -0.04, -0.035, -0.005, 0.039, 0.093, 0.143, 0.144, 0.088,
    0.037, -0.023, -0.071, -0.135, -0.178, -0.159, -0.114, -0.018, 0.049, 0.114, 0.112, 0.089,
)  # fmt: skip
#: haze months (the dry season's stagnant air): pollution episodes are more frequent
EPISODE_RATE = (0.1, 0.1, 0.1, 0.04, 0.04, 0.04, 0.04, 0.04, 0.06, 0.1, 0.1, 0.1)  # per day

# -- Da Nang climate by month (normals)
TEMP_MEAN = (21.5, 22.5, 24.2, 26.4, 28.3, 29.4, 29.3, 29.0, 27.6, 26.0, 24.4, 22.4)  # °C
TEMP_HALF_RANGE = (2.8, 3.0, 3.3, 3.6, 3.8, 3.9, 4.0, 3.8, 3.3, 2.8, 2.5, 2.5)  # °C
RH_MEAN = (0.85, 0.85, 0.84, 0.82, 0.79, 0.75, 0.74, 0.76, 0.81, 0.85, 0.87, 0.87)
RAIN_MM = (96, 33, 22, 27, 62, 87, 85, 103, 350, 613, 366, 199)  # monthly total
RAIN_EVENTS = (0.35, 0.2, 0.12, 0.15, 0.25, 0.3, 0.3, 0.35, 0.6, 0.8, 0.7, 0.5)  # per day
WIND_DIR = (40, 45, 90, 120, 130, 200, 220, 210, 60, 40, 35, 35)  # prevailing, degrees


def local_hours(t: F) -> F:
    """Local clock hours 0..24 (fractional)."""
    return ((t + LOCAL) % DAY) / 3600.0


def local_days(t: F) -> F:
    """Local day numbers (days since 1970-01-01 local)."""
    return np.floor((t + LOCAL) / DAY)


def weekday(t: F) -> F:
    """0 Monday .. 6 Sunday (1970-01-01 was a Thursday)."""
    return (local_days(t) + 3) % 7


def monthly(table: tuple[float, ...], t: F) -> F:
    """A monthly table read smoothly: values at mid-month, linear in between."""
    x = np.asarray(table, dtype=np.float64)
    months = _month_position(t)  # 0.5 = mid-January
    xp = np.arange(-0.5, 13.0, 1.0)
    fp = np.concatenate([[x[-1]], x, [x[0]]])
    return np.interp(months, xp, fp)  # type: ignore[no-any-return]


def monthly_steps(table: tuple[float, ...], t: F, blend: float = 0.1) -> F:
    """A monthly table read as steps, blended linearly over ``blend`` of a month (about
    three days) on each side of a month's boundary."""
    x = np.asarray(table, dtype=np.float64)
    pos = _month_position(t)
    m = np.minimum(np.floor(pos).astype(np.int64), 11)
    frac = pos - m
    prev, nxt = x[(m - 1) % 12], x[(m + 1) % 12]
    cur = x[m]
    w_prev = np.clip((blend - frac) / (2 * blend), 0, 0.5)
    w_next = np.clip((frac - (1 - blend)) / (2 * blend), 0, 0.5)
    return cur * (1 - w_prev - w_next) + prev * w_prev + nxt * w_next  # type: ignore[no-any-return]


def month_index(t: F) -> npt.NDArray[np.int64]:
    """0 January .. 11 December (local)."""
    return np.minimum(np.floor(_month_position(t)).astype(np.int64), 11)


def _month_position(t: F) -> F:
    """Months since the start of the local year (0..12), by calendar days."""
    secs = np.floor(np.asarray(t, dtype=np.float64) + LOCAL).astype("datetime64[s]")
    month = secs.astype("datetime64[M]")
    start = month.astype("datetime64[s]").astype(np.float64)
    nxt = (month + 1).astype("datetime64[s]").astype(np.float64)
    number = month.astype(np.int64) % 12
    frac = (secs.astype(np.float64) - start) / (nxt - start)
    return number + frac


def _bump(h: F, centre: float, width: float) -> F:
    d = (h - centre + 12.0) % 24.0 - 12.0
    return np.exp(-0.5 * (d / width) ** 2)


def traffic_demand(t: F) -> F:
    """City traffic demand relative to capacity (0.05 at night .. about 1 in the peaks):
    weekday morning peak 07:00-08:30 and evening peak 17:00-18:30; weekends lower and
    later."""
    h = local_hours(t)
    wd = weekday(t)
    work = 0.08 + 0.92 * _bump(h, 7.6, 0.8) + 0.5 * _bump(h, 12.0, 2.5) + 0.98 * _bump(h, 17.6, 1.0)
    work += 0.25 * _bump(h, 20.5, 1.5)
    weekend = 0.08 + 0.55 * _bump(h, 10.0, 2.5) + 0.65 * _bump(h, 18.5, 2.0)
    sat = 0.5 * work + 0.5 * weekend
    return np.where(wd == 6, weekend, np.where(wd == 5, sat, work))


# -- events: Poisson processes drawn per local day --
@dataclass
class Episode:
    start: float  # epoch seconds
    duration: float  # seconds
    size: float


def daily_events(
    seed: int,
    name: str,
    t0: float,
    t1: float,
    rate: tuple[float, ...],
    max_duration: float,
    draw: Any,
) -> list[Episode]:
    """Events starting on the local days overlapping [t0 - max_duration, t1]: a Poisson
    number per day (mean ``rate`` of the month), each made by ``draw(rng) -> (offset in
    the day (s), duration (s), size)``."""
    out: list[Episode] = []
    d0 = int(local_days(np.array([t0 - max_duration]))[0])
    d1 = int(local_days(np.array([t1]))[0])
    key = noise.stream_key(seed, "events", name)
    for day in range(d0, d1 + 1):
        mid = day * DAY - LOCAL + DAY / 2
        m = int(month_index(np.array([mid]))[0])
        rng = np.random.default_rng([key & 0xFFFFFFFF, key >> 32, day + 1_000_000])
        for _ in range(int(rng.poisson(rate[m]))):
            off, dur, size = draw(rng, m)
            out.append(Episode(day * DAY - LOCAL + off, dur, size))
    return out


def _envelope(t: F, ev: Episode, rise: float = 0.5) -> F:
    """0 outside the event; a smooth hump inside (peak at ``rise`` of its duration)."""
    u = (t - ev.start) / ev.duration
    inside = (u >= 0) & (u <= 1)
    up = np.sin(0.5 * math.pi * np.clip(u / rise, 0, 1))
    down = np.cos(0.5 * math.pi * np.clip((u - rise) / (1 - rise), 0, 1))
    return np.where(inside, np.where(u < rise, up, down), 0.0) ** 2


# -- weather (one city-wide state; stations add small offsets) --
def rain_events(seed: int, t0: float, t1: float) -> list[Episode]:
    def draw(rng: np.random.Generator, m: int) -> tuple[float, float, float]:
        # afternoon convection in summer, any time in the wet season
        off = float(rng.uniform(0, DAY))
        if m in (4, 5, 6, 7) and rng.random() < 0.7:
            off = float(rng.normal(15.5, 2.0) * 3600) % DAY
        hours = float(rng.uniform(1, 5) if m < 8 else rng.uniform(2, 14))
        mean_depth = RAIN_MM[m] / (30.0 * RAIN_EVENTS[m])
        depth = float(rng.exponential(mean_depth))
        return off, hours * 3600, depth

    return daily_events(seed, "rain", t0, t1, RAIN_EVENTS, 14 * 3600, draw)


def precipitation(seed: int, t: F, events: list[Episode] | None = None) -> F:
    """Rain rate in mm/h: each event's depth spread over its duration (peak in its first
    third)."""
    if events is None:
        events = rain_events(seed, float(t.min()), float(t.max()))
    out = np.zeros(len(t))
    for ev in events:
        env = _envelope(t, ev, 0.35)
        # the envelope integrates to about 0.5 of the duration
        out += env * ev.size / (0.5 * ev.duration / 3600.0)
    return out


def weather(seed: int, t: F, station: int = 0) -> dict[str, F]:
    """City weather at ``t``: temperature (°C), relativeHumidity (0-1), precipitation
    (mm/h), windSpeed (m/s), windDirection (°), atmosphericPressure (hPa)."""
    h = local_hours(t)
    rain = precipitation(seed, t)
    wet = np.clip(rain / 2.0, 0, 1)
    k = noise.stream_key(seed, "weather")
    daily = np.cos(2 * math.pi * (h - 14.5) / 24.0) * 0.8 + 0.2 * np.cos(
        4 * math.pi * (h - 14.5) / 24.0
    )
    temp = (
        monthly(TEMP_MEAN, t)
        + monthly(TEMP_HALF_RANGE, t) * daily * (1 - 0.6 * wet)
        + 1.2 * noise.ar1_hourly(k + 1, t, 48)
        - 2.0 * wet
        + 0.3 * noise.ar1_hourly(noise.stream_key(seed, "wx-station", station), t, 6)
    )
    rh = monthly(RH_MEAN, t) - 0.11 * daily + 0.04 * noise.ar1_hourly(k + 2, t, 24) + 0.15 * wet
    wind = np.clip(
        2.6 + 1.3 * _bump(h, 15.0, 3.0) + 1.0 * noise.ar1_hourly(k + 3, t, 12) + 2.5 * wet,
        0.2,
        None,
    )
    breeze = 40.0 * _bump(h, 15.0, 3.0)  # the afternoon sea breeze turns the wind onshore
    wdir = (monthly(WIND_DIR, t) + breeze + 25 * noise.ar1_hourly(k + 4, t, 6)) % 360
    pressure = (
        1011.0
        + 4.5 * np.cos(2 * math.pi * (_month_position(t) - 0.5) / 12.0)
        + 1.0 * np.cos(4 * math.pi * (h - 10.0) / 24.0)
        + 1.8 * noise.ar1_hourly(k + 5, t, 36)
        - 3.0 * wet
    )
    return {
        "temperature": temp,
        "relativeHumidity": np.clip(rh, 0.35, 1.0),
        "precipitation": rain,
        "windSpeed": wind,
        "windDirection": wdir,
        "atmosphericPressure": pressure,
    }


# -- air quality --
def _ep_stats(rate: float) -> tuple[float, float]:
    """Mean and variance of the episode term at a rate (per day): sizes U(0.5, 1.1), 1-3
    days long, envelope sin² (mean 1/2, mean square 3/8)."""
    dur, a1, a2 = 2.0, 0.8, (0.5**2 + 0.5 * 1.1 + 1.1**2) / 3
    mean = rate * dur * a1 * 0.5
    var = rate * dur * a2 * 0.375
    return mean, var


def pm25_haze(seed: int, t: F, station: int = 0, factor: float = 1.0) -> F:
    """Hourly-scale PM2.5 (µg/m³) at an air-quality station: Hanoi's monthly distribution
    (log-normal: monthly median and 90th percentile) scaled by :data:`PM25_SCALE` and
    the station's ``factor``, with Hanoi's diurnal profile, a weekend dip, a regional
    component shared by every station (correlation time 30 h), a local one (6 h),
    short-term noise and pollution episodes (1-3 days, more frequent in the dry season)."""
    m = month_index(t)
    sigma = np.log(np.asarray(HANOI_PM25_P90) / np.asarray(HANOI_PM25_MEDIAN)) / 1.2816
    s_m = monthly_steps(tuple(sigma), t)
    med = monthly_steps(HANOI_PM25_MEDIAN, t) * PM25_SCALE * factor
    h = local_hours(t)
    hp = np.asarray(HANOI_PM25_HOURLY)
    hh = np.floor(h).astype(np.int64) % 24
    frac = h - np.floor(h)
    diurnal = hp[hh] * (1 - frac) + hp[(hh + 1) % 24] * frac
    wd = weekday(t)
    week = np.where(wd == 6, -0.05, np.where(wd == 5, -0.02, 0.01))
    episodes = daily_events(
        seed,
        "pm-episodes",
        float(t.min()),
        float(t.max()),
        EPISODE_RATE,
        3 * DAY,
        lambda rng, _m: (
            float(rng.uniform(0, DAY)),
            float(rng.uniform(1, 3)) * DAY,
            float(rng.uniform(0.5, 1.1)),
        ),
    )
    ep = np.zeros(len(t))
    for e in episodes:
        ep += e.size * _envelope(t, e, 0.4)
    rates = np.asarray(EPISODE_RATE)[m]
    ep_mean, ep_var = _ep_stats(1.0)
    ep_mean_t, ep_var_t = rates * ep_mean, rates * ep_var
    s_loc, s_w, var_d = 0.15, 0.10, 0.008
    s_reg = np.sqrt(np.clip(s_m**2 - var_d - ep_var_t - s_loc**2 - s_w**2, 0.01, None))
    reg = noise.ar1_hourly(noise.stream_key(seed, "pm-regional"), t, 30)
    loc = noise.ar1_hourly(noise.stream_key(seed, "pm-local", station), t, 6)
    w = noise.white(noise.stream_key(seed, "pm-white", station), t)
    logv = np.log(med) + diurnal + week + (ep - ep_mean_t) + s_reg * reg + s_loc * loc + s_w * w
    return np.exp(logv)


def air_quality(seed: int, t: F, station: int, factor: float, traffic: float) -> dict[str, F]:
    """All of a station's measures: pm25, pm10, no2, o3, co, so2 (µg/m³), temperature,
    relativeHumidity.  ``traffic`` (0.5-1.5) is how close the station is to busy roads."""
    pm25 = pm25_haze(seed, t, station, factor)
    k = noise.stream_key(seed, "aq", station)
    wx = weather(seed, t, station)
    demand = traffic_demand(t)
    h = local_hours(t)
    ratio = np.clip(1.55 + 0.15 * noise.ar1_hourly(k + 1, t, 12), 1.2, 2.2)
    pm10 = pm25 * ratio
    rain_wash = 1.0 / (1.0 + 0.15 * wx["precipitation"])
    no2 = (8 + 32 * traffic * demand) * np.exp(0.25 * noise.ar1_hourly(k + 2, t, 8)) * rain_wash
    sun = np.clip(np.sin(math.pi * (h - 6.0) / 12.5), 0, None)
    o3 = np.clip(
        (22 + 70 * sun**1.5) * (monthly(TEMP_MEAN, t) / 26.0)
        - 0.4 * no2
        + 8 * noise.ar1_hourly(k + 3, t, 10),
        2,
        None,
    )
    co = (350 + 900 * traffic * demand) * np.exp(0.2 * noise.ar1_hourly(k + 4, t, 8))
    so2 = np.clip(6 + 3 * noise.ar1_hourly(k + 5, t, 24) + 0.05 * pm25, 1, None)
    return {
        "pm25": pm25,
        "pm10": pm10,
        "no2": no2,
        "o3": o3,
        "co": co,
        "so2": so2,
        "temperature": wx["temperature"] + 0.3 * traffic,
        "relativeHumidity": wx["relativeHumidity"],
    }


# -- traffic --
def incidents(seed: int, segment: int, t0: float, t1: float, rate: float = 0.08) -> list[Episode]:
    """Incidents on a road segment: about ``rate`` a day, more in busy hours, each 10-40
    minutes long; ``size`` is the speed that remains (15-35 %)."""

    def draw(rng: np.random.Generator, _m: int) -> tuple[float, float, float]:
        hour = float(rng.choice([7.5, 8.5, 11.5, 13.0, 17.5, 18.5, 21.0, 2.0])) + float(
            rng.uniform(-0.7, 0.7)
        )
        return hour * 3600, float(rng.uniform(10, 40)) * 60, float(rng.uniform(0.15, 0.35))

    return daily_events(seed, f"incident-{segment}", t0, t1, (rate,) * 12, 3600, draw)


def traffic(
    seed: int, t: F, segment: int, free_flow: float, lanes: int, busy: float
) -> dict[str, F]:
    """averageVehicleSpeed (km/h), intensity (vehicles in 5 min), occupancy (0-1) on a
    segment: demand over capacity from the city profile × the segment's ``busy`` factor,
    slower in rain; speed = free flow / (1 + 0.6 x⁵); incidents cut the speed sharply."""
    k = noise.stream_key(seed, "tf", segment)
    rain = precipitation(seed, t)
    x = traffic_demand(t) * busy * np.exp(0.08 * noise.ar1_hourly(k, t, 3))
    x *= 1 + 0.12 * np.clip(rain / 5, 0, 1)
    speed = free_flow / (1 + 0.6 * x**5) * (1 - 0.1 * np.clip(rain / 5, 0, 1))
    speed *= 1 + 0.04 * noise.white(k + 1, t)
    cap = lanes * 150.0  # vehicles per lane per 5 min at capacity (1,800/h)
    flow = cap * np.minimum(x, 1.0) * np.where(x > 1, 1.0 - 0.3 * (x - 1), 1.0)
    remain = np.ones(len(t))
    for ev in incidents(seed, segment, float(t.min()), float(t.max())):
        u = (t - ev.start) / ev.duration
        on = np.clip(np.minimum(u * 20, (1 - u) * 8), 0, 1)  # sharp drop, quick recovery
        remain = np.minimum(remain, 1 - (1 - ev.size) * on)
    speed *= remain
    flow *= 0.4 + 0.6 * remain
    intensity = np.maximum(0, np.round(flow * (1 + 0.06 * noise.white(k + 2, t))))
    density = intensity * 12 / lanes / np.maximum(speed, 3.0)  # vehicles per km per lane
    occupancy = np.clip(density / 140.0, 0, 0.98)
    return {"averageVehicleSpeed": speed, "intensity": intensity, "occupancy": occupancy}


# -- flood gauges --
@dataclass
class Gauge:
    base: float  # m above the gauge zero, dry season
    wet_rise: float  # seasonal rise in the wet season (m)
    tide: float  # tidal amplitude (m); 0 away from the sea
    gain: float  # m per mm/h of smoothed rain
    lag_hours: float  # how slowly the level answers rain
    alerts: tuple[float, float, float] = (1.0, 1.8, 2.5)


def flood_level(seed: int, t: F, gauge: Gauge, number: int) -> F:
    """currentLevel (m): base + wet-season rise + tide + rain convolved with a unit
    hydrograph (gamma, shape 3, scale ``lag_hours``): levels rise over hours after rain
    and recede over a day or two."""
    step = 900.0
    span = 12 * gauge.lag_hours * 3600
    grid = np.arange(
        math.floor((float(t.min()) - span) / step) * step, float(t.max()) + 2 * step, step
    )
    rain = precipitation(seed, grid)
    lag = np.arange(0, span, step) / 3600.0
    kern = lag**2 * np.exp(-lag / gauge.lag_hours)
    kern /= kern.sum()
    smooth = np.convolve(rain, kern)[: len(grid)]
    response = gauge.gain * smooth * (1 + 0.004 * smooth)  # heavier rain, fuller soils
    k = noise.stream_key(seed, "flood", number)
    wet = monthly((0, 0, 0, 0, 0, 0.05, 0.05, 0.1, 0.4, 0.8, 0.7, 0.35), t)
    tide_h = 2 * math.pi * t / (24.84 * 3600)
    level = (
        gauge.base
        + gauge.wet_rise * wet
        + gauge.tide * np.sin(tide_h + number * 0.2)
        + np.interp(t, grid, response)
        + 0.03 * noise.ar1_hourly(k, t, 12)
        + 0.005 * noise.white(k + 1, t)
    )
    return np.clip(level, 0, None)


# -- streetlights --
DIM_FROM, DIM_TO, DIM_LEVEL = 22.0, 4.5, 0.6  # local hours; dimmed level


@dataclass
class LampState:
    power: list[str] = field(default_factory=list)
    level: F = field(default_factory=lambda: np.zeros(0))
    status: list[str] = field(default_factory=list)


def is_night(t: F, lat: float, lon: float, margin: float = 600.0) -> F:
    """1.0 between sunset - ``margin`` and sunrise + ``margin`` (lights on)."""
    days = local_days(t).astype(np.int64)
    uniq, inv = np.unique(days, return_inverse=True)
    rises = np.empty(len(uniq))
    sets = np.empty(len(uniq))
    for n, d in enumerate(uniq):
        rise, sett = sun_times(datetime.fromtimestamp(int(d) * DAY, UTC).date(), lat, lon)
        rises[n], sets[n] = rise.timestamp(), sett.timestamp()
    night = (t < rises[inv] + margin) | (t > sets[inv] - margin)
    return night.astype(np.float64)


def lamp_failures(seed: int, lamp: int, t0: float, t1: float) -> list[Episode]:
    """Failures of one lamp: about one in 150 lamp-days, fixed after 1-5 days; ``size``
    < 0.8 a defective lamp, else a broken connection."""

    def draw(rng: np.random.Generator, _m: int) -> tuple[float, float, float]:
        return float(rng.uniform(0, DAY)), float(rng.uniform(1, 5)) * DAY, float(rng.random())

    return daily_events(seed, f"lamp-{lamp}", t0, t1, (1 / 150,) * 12, 5 * DAY, draw)


def streetlight(seed: int, t: F, lamp: int, lat: float, lon: float) -> dict[str, Any]:
    """powerState (on/off), illuminanceLevel (0-1), status (ok, defectiveLamp,
    brokenConnection): on from 10 min before sunset to 10 min after sunrise, dimmed to
    60 % from 22:00 to 04:30, with occasional failures."""
    night = is_night(t, lat, lon)
    h = local_hours(t)
    dim = (h >= DIM_FROM) | (h < DIM_TO)
    level = night * np.where(dim, DIM_LEVEL, 1.0)
    status = np.array(["ok"] * len(t), dtype=object)
    for ev in lamp_failures(seed, lamp, float(t.min()), float(t.max())):
        inside = (t >= ev.start) & (t < ev.start + ev.duration)
        status[inside] = "defectiveLamp" if ev.size < 0.8 else "brokenConnection"
    broken = status == "defectiveLamp"
    level = np.where(broken, 0.0, level)
    power = np.where((level > 0), "on", "off").astype(object)
    return {"powerState": list(power), "illuminanceLevel": level, "status": list(status)}


# -- parking --
PARKING_PROFILES = ("mall", "office", "beach", "hospital", "market")


def parking(seed: int, t: F, facility: int, profile: str, total: int) -> dict[str, F]:
    """occupancy (0-1) and availableSpotNumber of a car park by its kind's daily curve."""
    h = local_hours(t)
    weekend = weekday(t) >= 5
    if profile == "office":
        base = np.where(weekend, 0.12, 0.1 + 0.8 * _bump(h, 12.5, 3.2) ** 0.5 * (h > 6.5))
    elif profile == "beach":
        base = 0.1 + np.where(weekend, 0.85, 0.55) * _bump(h, 17.0, 2.5)
    elif profile == "hospital":
        base = 0.2 + 0.7 * _bump(h, 10.0, 3.0) + 0.2 * _bump(h, 15.0, 2.0)
    elif profile == "market":
        base = 0.1 + 0.8 * _bump(h, 7.0, 2.0) + 0.3 * _bump(h, 17.0, 1.5)
    else:  # mall
        base = 0.05 + np.where(weekend, 0.9, 0.6) * (
            _bump(h, 12.0, 1.8) * 0.7 + _bump(h, 19.5, 1.8)
        )
    k = noise.stream_key(seed, "parking", facility)
    occ = np.clip(base + 0.06 * noise.ar1_hourly(k, t, 2) + 0.015 * noise.white(k + 1, t), 0, 1)
    free = np.round(total * (1 - occ))
    return {"availableSpotNumber": free, "occupancy": 1 - free / total}


# -- noise --
def noise_level(seed: int, t: F, sensor: int, base: float) -> dict[str, F]:
    """LAeq and LAmax (dB(A)) near a road: ``base`` in the day, about 10 dB quieter at
    night, louder in the traffic peaks."""
    demand = traffic_demand(t)
    k = noise.stream_key(seed, "noise", sensor)
    laeq = (
        base
        - 11
        + 10 * np.log10(1 + 9 * demand)
        + 1.5 * noise.ar1_hourly(k, t, 2)
        + 0.8 * noise.white(k + 1, t)
    )
    lamax = laeq + 11 + 4 * np.abs(noise.white(k + 2, t))
    return {"LAeq": laeq, "LAmax": lamax}


# -- buses --
SERVICE = (5.5, 21.0)  # local hours a bus runs
PARKED_CADENCE = 300  # seconds between two reports of a parked bus


@dataclass
class Route:
    """A polyline (lon, lat) with its cumulative length in metres."""

    code: str
    points: list[tuple[float, float]]
    cum: F = field(default_factory=lambda: np.zeros(0))

    def __post_init__(self) -> None:
        if not len(self.cum):
            d = [0.0]
            for (x0, y0), (x1, y1) in pairwise(self.points):
                d.append(d[-1] + metres(x0, y0, x1, y1))
            self.cum = np.asarray(d)

    @property
    def length(self) -> float:
        return float(self.cum[-1])


def metres(lon0: float, lat0: float, lon1: float, lat1: float) -> float:
    """Distance in metres (equirectangular: right within a city)."""
    kx = 111_320.0 * math.cos(math.radians((lat0 + lat1) / 2))
    return math.hypot((lon1 - lon0) * kx, (lat1 - lat0) * 110_574.0)


def bus(seed: int, t: F, number: int, route: Route) -> dict[str, Any]:
    """Position, speed (km/h) and heading (°) of a bus going back and forth along its
    route in service hours (05:30-21:00; ``in_service`` says when): cruising 15-28 km/h,
    slower in the peaks, stopped at stops about 25 % of the time."""
    k = noise.stream_key(seed, "bus", number)
    step = 10.0
    h = local_hours(t)
    in_service = (h >= SERVICE[0]) & (h < SERVICE[1])
    # distance since the day's service start: integrate the effective speed on a 10 s grid
    days = local_days(t)
    out_pos = np.zeros(len(t))
    speed_now = np.zeros(len(t))
    for day in np.unique(days):
        start = day * DAY - LOCAL + SERVICE[0] * 3600
        grid = np.arange(start, start + (SERVICE[1] - SERVICE[0]) * 3600 + step, step)
        cruise = (26 - 11 * np.clip(traffic_demand(grid), 0, 1.2)) * (
            1 + 0.1 * noise.ar1_hourly(k, grid, 1)
        )
        stopped = noise.uniform(k + 1, (grid // step).astype(np.int64)) < 0.25
        v = np.where(stopped, 0.0, cruise)
        dist = np.concatenate([[0.0], np.cumsum(v[:-1] / 3.6 * step)])
        dist += noise.uniform(k + 2, np.array([int(day)]))[0] * 2 * route.length
        sel = days == day
        out_pos[sel] = np.interp(t[sel], grid, dist)
        idx = np.clip(((t[sel] - start) // step).astype(np.int64), 0, len(v) - 1)
        speed_now[sel] = v[idx] * (1 + 0.05 * noise.white(k + 3, t[sel]))
    span = 2 * route.length
    p = out_pos % span
    back = p > route.length
    along = np.where(back, span - p, p)
    lon = np.interp(along, route.cum, [x for x, _ in route.points])
    lat = np.interp(along, route.cum, [y for _, y in route.points])
    seg = np.clip(np.searchsorted(route.cum, along, side="right") - 1, 0, len(route.points) - 2)
    heading = np.zeros(len(t))
    for n, s in enumerate(seg):
        (x0, y0), (x1, y1) = route.points[s], route.points[s + 1]
        if back[n]:
            x0, y0, x1, y1 = x1, y1, x0, y0
        kx = math.cos(math.radians(y0))
        heading[n] = math.degrees(math.atan2((x1 - x0) * kx, y1 - y0)) % 360
    return {
        "lon": lon,
        "lat": lat,
        "speed": np.where(in_service, np.maximum(speed_now, 0), 0.0),
        "heading": heading,
        "in_service": in_service,
    }
