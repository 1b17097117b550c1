"""Times and ISO 8601 durations for the temporal API, without a database.

History stores times as integer microseconds since the Unix epoch (UTC) on both
backends, so comparisons and fixed-length periods are plain integer arithmetic.
Calendar periods (months, years) need the calendar: :class:`Period` says which kind a
duration is and computes the bounds of its buckets.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

from sencity.errors import BadRequest

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
US = 1_000_000
#: origin of period buckets when the query gives no start time: a Monday at midnight UTC,
#: so hours, days and weeks line up with the calendar
ORIGIN_US = int((datetime(1900, 1, 1, tzinfo=UTC) - EPOCH).total_seconds()) * US

_DURATION = re.compile(
    r"^P(?!$)(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?"
    r"(?:T(?=\d)(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:[.,]\d+)?)S)?)?$"
)


def parse_time(value: str | None, name: str) -> int:
    """An ISO 8601 date-time with a time zone, as epoch microseconds; 400 otherwise."""
    if not value:
        raise BadRequest(f"'{name}' is required here (an ISO 8601 date-time)")
    try:
        dt = datetime.fromisoformat(value.strip().replace(" ", "+"))
    except ValueError:
        raise BadRequest(
            f"'{name}' must be an ISO 8601 date-time such as 2024-05-01T03:00:00Z, "
            f"got '{value[:60]}'"
        ) from None
    if dt.tzinfo is None:
        raise BadRequest(f"'{name}' has no time zone: add Z or an offset like +07:00")
    return to_us(dt)


def to_us(dt: datetime) -> int:
    delta = dt - EPOCH
    return (delta.days * 86_400 + delta.seconds) * US + delta.microseconds


def iso_us(value: str) -> int:
    """Epoch microseconds of a stored ISO time (already validated)."""
    if len(value) == 27 and value[-1] == "Z":  # our own utcnow() format: the fast path
        dt = datetime(
            int(value[0:4]),
            int(value[5:7]),
            int(value[8:10]),
            int(value[11:13]),
            int(value[14:16]),
            int(value[17:19]),
            int(value[20:26]),
            tzinfo=UTC,
        )
        return to_us(dt)
    dt = datetime.fromisoformat(value)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return to_us(dt)


def us_iso(us: int) -> str:
    """ISO 8601 UTC text of epoch microseconds, with only the fraction it needs."""
    if us % 1_000_000 == 0 and us >= 0:  # whole seconds (bucket bounds): the quick way
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(us // 1_000_000))
    text = (EPOCH + timedelta(microseconds=us)).isoformat()[:-6]  # drop "+00:00"
    if len(text) > 19 and text.endswith("000"):  # whole milliseconds: three digits
        text = text[:-3]
    return text + "Z"


@dataclass(frozen=True)
class Period:
    """An aggregation period: ``months`` calendar months or ``us`` fixed microseconds."""

    text: str
    months: int = 0
    us: int = 0

    @property
    def calendar(self) -> bool:
        return self.months > 0

    def start(self, origin: datetime, n: int) -> datetime:
        """Start of bucket ``n`` counted from ``origin``."""
        if self.calendar:
            return add_months(origin, n * self.months)
        return origin + timedelta(microseconds=n * self.us)


def parse_duration(value: str | None, name: str = "aggrPeriodDuration") -> Period:
    """``PT1H``, ``P1D``, ``P1W``, ``P1M``, ``P1Y``…; 400 for anything else.

    Years and months are calendar periods; weeks, days and times are fixed lengths.
    A mix of the two (``P1M2D``) has no single bucket length and is refused."""
    if not value:
        raise BadRequest(f"'{name}' must be an ISO 8601 duration such as PT1H, P1D or P1M")
    m = _DURATION.match(value.strip())
    if not m:
        raise BadRequest(
            f"'{name}' must be an ISO 8601 duration such as PT15M, PT1H, P1D, P1W or P1M, "
            f"got '{value[:40]}'"
        )
    y, mo, w, d, h, mi, s = m.groups()
    months = int(y or 0) * 12 + int(mo or 0)
    seconds = (
        int(w or 0) * 604_800
        + int(d or 0) * 86_400
        + int(h or 0) * 3600
        + int(mi or 0) * 60
        + float((s or "0").replace(",", "."))
    )
    if months and seconds:
        raise BadRequest(
            f"'{name}' {value}: mixing years/months with weeks, days or times is not "
            "supported (a calendar period and a fixed length have no common bucket)"
        )
    us = round(seconds * US)
    if not months and us <= 0:
        raise BadRequest(f"'{name}' {value}: the duration must be longer than zero")
    return Period(value.strip(), months=months, us=us)


def add_months(dt: datetime, n: int) -> datetime:
    index = dt.year * 12 + dt.month - 1 + n
    year, month = divmod(index, 12)
    day = min(dt.day, _days_in_month(year, month + 1))
    return dt.replace(year=year, month=month + 1, day=day)


def _days_in_month(year: int, month: int) -> int:
    nxt = datetime(year + (month == 12), month % 12 + 1, 1)
    return (nxt - timedelta(days=1)).day


def offset_of(value: str | None) -> timezone:
    """The UTC offset written in an ISO time (calendar buckets follow it); UTC if none."""
    if value:
        try:
            dt = datetime.fromisoformat(value.strip().replace(" ", "+"))
        except ValueError:
            return UTC
        if dt.tzinfo is not None and dt.utcoffset() is not None:
            off = dt.utcoffset()
            assert off is not None
            return timezone(off)
    return UTC
