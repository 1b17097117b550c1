"""ISO 8601 times and durations of the temporal API, without a database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from sencity.errors import BadRequest
from sencity.hub.durations import add_months, offset_of, parse_duration, parse_time, us_iso


@pytest.mark.parametrize(
    ("text", "months", "seconds"),
    [
        ("PT1H", 0, 3600),
        ("PT15M", 0, 900),
        ("PT0.5S", 0, 0.5),
        ("P1D", 0, 86400),
        ("P1W", 0, 604800),
        ("P1DT12H", 0, 129600),
        ("P1M", 1, 0),
        ("P3M", 3, 0),
        ("P1Y", 12, 0),
        ("P1Y6M", 18, 0),
    ],
)
def test_durations(text: str, months: int, seconds: float) -> None:
    p = parse_duration(text)
    assert p.months == months
    assert p.us == round(seconds * 1_000_000)
    assert p.calendar == bool(months)


@pytest.mark.parametrize("text", ["", "P", "PT", "1H", "PT1", "P1H", "PT-1H", "P1M2D", "P0D", "x"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(BadRequest):
        parse_duration(text)


def test_times() -> None:
    assert parse_time("1970-01-01T00:00:01Z", "t") == 1_000_000
    assert parse_time("1970-01-01T07:00:00+07:00", "t") == 0
    assert parse_time("1970-01-01T07:00:00 07:00", "t") == 0  # "+" decoded as a space
    for bad in ("2024-01-01T00:00:00", "noon", None, "2024-13-01T00:00:00Z"):
        with pytest.raises(BadRequest):
            parse_time(bad, "timeAt")
    assert us_iso(0) == "1970-01-01T00:00:00Z"
    assert us_iso(123_000) == "1970-01-01T00:00:00.123Z"
    assert us_iso(1) == "1970-01-01T00:00:00.000001Z"


def test_calendar_months() -> None:
    start = datetime(2024, 1, 31, tzinfo=UTC)
    assert add_months(start, 1) == datetime(2024, 2, 29, tzinfo=UTC)
    assert add_months(start, 13) == datetime(2025, 2, 28, tzinfo=UTC)
    assert add_months(start, -2) == datetime(2023, 11, 30, tzinfo=UTC)
    assert offset_of("2024-01-01T00:00:00+07:00") == timezone(timedelta(hours=7))
    assert offset_of("2024-01-01T00:00:00Z") == timezone(timedelta(0))
    assert offset_of(None) == UTC
