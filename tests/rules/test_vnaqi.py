"""VN_AQI (QĐ 1459/QĐ-TCMT) against examples worked by hand from the method.

Formula 1: AQIx = (I(i+1) - I(i)) / (BP(i+1) - BP(i)) * (C - BP(i)) + I(i), rounded half up.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sencity.rules import vnaqi
from sencity.rules.vnaqi import (
    aqi_from_series,
    hourly_aqi,
    hourly_means,
    level_of,
    nowcast,
    o3_8h_mean,
    sub_index,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("parameter", "c", "expected"),
    [
        # PM2.5 35: segment 25-50 -> 50-100; 50 + 50/25 * (35 - 25) = 50 + 20 = 70
        ("pm25", 35, 70),
        # the breakpoints themselves: 25 -> 50, 50 -> 100, 500 -> 500
        ("pm25", 25, 50),
        ("pm25", 50, 100),
        ("pm25", 500, 500),
        # PM10 200: segment 150-250 -> 100-150; 100 + 50/100 * 50 = 125
        ("pm10", 200, 125),
        # NO2 250: segment 200-700 -> 100-150; 100 + 50/500 * 50 = 105
        ("no2", 250, 105),
        # SO2 237.5: segment 125-350 -> 50-100; 50 + 50/225 * 112.5 = 75
        ("so2", 237.5, 75),
        # CO 20,000 µg/m³: segment 10,000-30,000 -> 50-100; 50 + 50/20000 * 10000 = 75
        ("co", 20_000, 75),
        # O3 1 h 150: segment 0-160 -> 0-50; 50/160 * 150 = 46.875 -> 47
        ("o3_1h", 150, 47),
        # O3 8 h 110: segment 100-120 -> 50-100; 50 + 50/20 * 10 = 75
        ("o3_8h", 110, 75),
        # O3 8 h 300: segment 210-400 -> 200-300; 200 + 100/190 * 90 = 247.37 -> 247
        ("o3_8h", 300, 247),
        # half up, not to even: PM2.5 0.25 -> 2 * 0.25 = 0.5 -> 1 (Python's round gives 0)
        ("pm25", 0.25, 1),
        # PM2.5 25.25 -> 50 + 2 * 0.25 = 50.5 -> 51 (the first "moderate" value)
        ("pm25", 25.25, 51),
        # negative readings count as 0
        ("pm25", -3, 0),
        # beyond the table: PM2.5 600 extends 350-500 -> 400-500; 500 + 100/150 * 100 = 566.7
        ("pm25", 600, 567),
    ],
)
def test_sub_index_worked_examples(parameter: str, c: float, expected: int) -> None:
    assert sub_index(parameter, c) == expected


def test_o3_8h_above_400_has_no_sub_index() -> None:
    # Table 2 stops at 400 µg/m³ for the 8 h mean: the 1 h value is used instead
    assert sub_index("o3_8h", 450) is None
    r = hourly_aqi(pm25=10, o3_1h=500, o3_8h=450)
    assert r is not None
    # O3 1 h 500: segment 400-800 -> 200-300; 200 + 100/400 * 100 = 225
    assert r.sub_indices == {"pm25": 20, "o3_1h": 225}
    assert r.aqi == 225 and r.dominant == "o3_1h" and r.level.key == "veryBad"


@pytest.mark.parametrize(
    ("aqi", "key", "vi", "color"),
    [
        (0, "good", "Tốt", "#00e400"),
        (50, "good", "Tốt", "#00e400"),
        (51, "moderate", "Trung bình", "#ffff00"),
        (100, "moderate", "Trung bình", "#ffff00"),
        (101, "poor", "Kém", "#ff7e00"),
        (150, "poor", "Kém", "#ff7e00"),
        (151, "bad", "Xấu", "#ff0000"),
        (200, "bad", "Xấu", "#ff0000"),
        (201, "veryBad", "Rất xấu", "#8f3f97"),
        (300, "veryBad", "Rất xấu", "#8f3f97"),
        (301, "hazardous", "Nguy hại", "#7e0023"),
        (567, "hazardous", "Nguy hại", "#7e0023"),
    ],
)
def test_bands(aqi: int, key: str, vi: str, color: str) -> None:
    lv = level_of(aqi)
    assert (lv.key, lv.vi, lv.color) == (key, vi, color)


def test_bands_use_the_rounded_index() -> None:
    # 50.4 rounds to 50 (good); 50.5 rounds to 51 (moderate)
    assert level_of(50.4).key == "good"
    assert level_of(50.5).key == "moderate"


def test_nowcast_w_floor_of_one_half() -> None:
    # hours 30, 20, 10: w* = 10/30 = 1/3 <= 1/2, so w = 1/2
    # (30 + 0.5*20 + 0.25*10) / (1 + 0.5 + 0.25) = 42.5 / 1.75 = 24.2857
    assert nowcast([30, 20, 10]) == pytest.approx(24.285714, abs=1e-6)


def test_nowcast_w_above_one_half() -> None:
    # hours 20, 16, 18, 20: w* = 16/20 = 0.8 > 1/2, so w = 0.8
    # numerator 20 + 0.8*16 + 0.64*18 + 0.512*20 = 20 + 12.8 + 11.52 + 10.24 = 54.56
    # denominator 1 + 0.8 + 0.64 + 0.512 = 2.952; NowCast = 54.56 / 2.952 = 18.4824
    assert nowcast([20, 16, 18, 20]) == pytest.approx(18.482385, abs=1e-6)


def test_nowcast_skips_missing_hours_keeping_their_place() -> None:
    # hours 30, -, 20: w* = 20/30 = 2/3; the third hour weighs w^2 = 4/9
    # (30 + 4/9*20) / (1 + 4/9) = 38.8889 / 1.4444 = 26.923
    assert nowcast([30, None, 20]) == pytest.approx(26.923077, abs=1e-6)


def test_nowcast_needs_two_of_the_last_three_hours() -> None:
    assert nowcast([None, None, 30, 40, 50]) is None
    assert nowcast([30, None, None, 40]) is None
    assert nowcast([30]) is None
    assert nowcast([]) is None
    assert nowcast([None, 30, 40]) is not None


def test_nowcast_uses_twelve_hours_only_and_handles_zero() -> None:
    # a 13th hour is ignored: 12 hours of 10, then 1000
    assert nowcast([10.0] * 12 + [1000.0]) == pytest.approx(10.0)
    assert nowcast([0, 0, 0]) == 0.0


def test_nowcast_close_to_the_guidance_unnormalised_form_with_twelve_hours() -> None:
    # the guidance writes w = 1/2 as sum((1/2)^i * c_i), i = 1..12, without the division;
    # with all 12 hours the two differ by the factor sum((1/2)^(i-1)) / 2 = 0.99976
    hours = [80.0, 10.0, 12.0, 11.0, 9.0, 10.0, 8.0, 7.0, 9.0, 10.0, 11.0, 12.0]
    guidance = sum(0.5 ** (i + 1) * c for i, c in enumerate(hours))
    assert nowcast(hours) == pytest.approx(guidance, rel=5e-4)


def test_overall_is_the_largest_sub_index() -> None:
    # PM2.5 NowCast 35 -> 70; NO2 250 -> 105; O3 1 h 150 -> 47; CO 20,000 -> 75
    r = hourly_aqi(pm25=35, no2=250, o3_1h=150, co=20_000)
    assert r is not None
    assert r.sub_indices == {"pm25": 70, "no2": 105, "o3_1h": 47, "co": 75}
    assert (r.aqi, r.dominant, r.level.key, r.level.en) == (105, "no2", "poor", "Poor")


def test_o3_takes_the_larger_of_1h_and_8h() -> None:
    # O3 1 h 150 -> 47; O3 8 h 110 -> 75; PM10 20 -> 50/50 * 20 = 20
    r = hourly_aqi(pm10=20, o3_1h=150, o3_8h=110)
    assert r is not None and r.aqi == 75 and r.dominant == "o3_8h"


def test_no_index_without_particles() -> None:
    assert hourly_aqi(no2=250, o3_1h=150) is None
    assert hourly_aqi() is None


def test_hourly_means_count_back_from_the_latest_reading() -> None:
    # readings at 12:00 (40), 11:30 (20), 11:00 (10, on the boundary: the earlier hour
    # is (10:00, 11:00]), 09:15 (5)
    pts = [
        (T0, 40.0),
        (T0 - timedelta(minutes=30), 20.0),
        (T0 - timedelta(hours=1), 10.0),
        (T0 - timedelta(hours=2, minutes=45), 5.0),
    ]
    means = hourly_means(pts)
    # hour 0 = (11:00, 12:00]: (40 + 20) / 2 = 30; hour 1 = (10:00, 11:00]: 10;
    # hour 2 = (09:00, 10:00]: 5
    assert means[:4] == [30.0, 10.0, 5.0, None]
    assert len(means) == 12


def test_o3_8h_mean_needs_six_hours() -> None:
    assert o3_8h_mean([100, 120, None, 110, 90, 100, None, 140]) == pytest.approx(110)
    assert o3_8h_mean([100, 120, None, 110, None, 100, None, 140]) is None


def test_from_series_end_to_end() -> None:
    # PM2.5 readings once an hour: 30 (now), 20 (1 h ago), 10 (2 h ago) -> NowCast
    # 24.2857 (see above) -> 2 * 24.2857 = 48.57 -> 49; NO2 now 250 -> 105 wins
    pm = [(T0 - timedelta(hours=i), v) for i, v in enumerate([30.0, 20.0, 10.0])]
    r = aqi_from_series({"pm25": pm, "no2": [(T0, 250.0)]})
    assert r is not None
    assert r.sub_indices == {"pm25": 49, "no2": 105}
    assert r.aqi == 105
    # an old NO2 reading (13 h ago) is outside the hours: the PM index alone
    r = aqi_from_series({"pm25": pm, "no2": [(T0 - timedelta(hours=13), 250.0)]})
    assert r is not None and r.sub_indices == {"pm25": 49} and r.level.key == "good"
    # one PM reading is not enough for a NowCast
    assert aqi_from_series({"pm25": pm[:1]}) is None
    assert aqi_from_series({}) is None


def test_breakpoint_tables_are_increasing() -> None:
    for name, bps in vnaqi.BREAKPOINTS.items():
        assert list(bps) == sorted(bps), name
        assert len(bps) <= len(vnaqi.INDEX_BREAKPOINTS), name
