"""Sunrise and sunset from the NOAA solar calculator's formulas (the general solar
position equations of NOAA's Global Monitoring Division), accurate to about a minute
at Da Nang's latitude — what street lighting needs, with no dependency."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta

ZENITH = 90.833  # degrees: the sun's upper limb on the horizon, with refraction


def sun_times(day: date, lat: float, lon: float) -> tuple[datetime, datetime]:
    """(sunrise, sunset) in UTC on ``day`` (the day of the given local noon) at a place."""
    # fractional year (radians) at local noon
    doy = day.timetuple().tm_yday
    gamma = 2.0 * math.pi / 365.0 * (doy - 1 + (12 - 12) / 24.0)
    eqtime = 229.18 * (
        0.000075
        + 0.001868 * math.cos(gamma)
        - 0.032077 * math.sin(gamma)
        - 0.014615 * math.cos(2 * gamma)
        - 0.040849 * math.sin(2 * gamma)
    )
    decl = (
        0.006918
        - 0.399912 * math.cos(gamma)
        + 0.070257 * math.sin(gamma)
        - 0.006758 * math.cos(2 * gamma)
        + 0.000907 * math.sin(2 * gamma)
        - 0.002697 * math.cos(3 * gamma)
        + 0.00148 * math.sin(3 * gamma)
    )
    phi = math.radians(lat)
    cos_ha = math.cos(math.radians(ZENITH)) / (math.cos(phi) * math.cos(decl)) - math.tan(
        phi
    ) * math.tan(decl)
    ha = math.degrees(math.acos(max(-1.0, min(1.0, cos_ha))))
    midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
    rise = 720.0 - 4.0 * (lon + ha) - eqtime  # minutes after 00:00 UTC
    sett = 720.0 - 4.0 * (lon - ha) - eqtime
    return midnight + timedelta(minutes=rise), midnight + timedelta(minutes=sett)
