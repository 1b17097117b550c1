"""The simulator's models without a server: determinism, and the shapes the city's data
must have (peaks, incidents, rain and floods, lights at night, buses on their routes)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from itertools import pairwise

import numpy as np
import pytest

from sencity.sim import models
from sencity.sim.city import City, Placer, build_fleet, load_city
from sencity.sim.events import events_between
from sencity.sim.kinds import KINDS, instances, series
from sencity.sim.sun import sun_times

# 2026-11-02 00:00 Da Nang (a Monday), in UTC epoch seconds
MONDAY = datetime(2026, 11, 2, tzinfo=UTC).timestamp() - 7 * 3600
DANANG = (16.054, 108.202)


@pytest.fixture(scope="module")
def city() -> City:
    return load_city(lambda _type: [], "danang")  # no tenant: the package's wards


def local(day: float, hour: float) -> float:
    return MONDAY + day * 86400 + hour * 3600


def test_same_seed_same_series_other_seed_other_series(city: City) -> None:
    t = np.arange(local(0, 0), local(3, 0), 900.0)
    for seed in (1, 7):
        a, b = build_fleet(city, seed), build_fleet(city, seed)
        assert [(d.local, d.lon, d.lat, d.ward.code) for d in a] == [
            (d.local, d.lon, d.lat, d.ward.code) for d in b
        ]
        for kind in KINDS:
            dev_a = next(d for d in a if d.kind == kind)
            dev_b = next(d for d in b if d.kind == kind)
            assert series(seed, dev_a, t)[1] == series(seed, dev_b, t)[1], kind
    one = next(d for d in build_fleet(city, 1) if d.kind == "air")
    other = next(d for d in build_fleet(city, 2) if d.kind == "air")
    assert series(1, one, t)[1]["pm25"] != series(2, other, t)[1]["pm25"]
    assert (one.lon, one.lat) != (other.lon, other.lat)


def test_a_value_does_not_depend_on_the_window_asked() -> None:
    """History written by --backfill (a month at once) continues into live readings
    (computed an hour at a time): the same time gives the same value."""
    month = np.arange(local(0, 0), local(30, 0), 900.0)
    hour = month[-4:]
    whole = models.pm25_haze(3, month, station=2)
    alone = models.pm25_haze(3, hour, station=2)
    np.testing.assert_allclose(whole[-4:], alone, rtol=0.02)
    whole_t = models.traffic(3, month, 5, 50.0, 2, 1.0)["averageVehicleSpeed"]
    alone_t = models.traffic(3, hour, 5, 50.0, 2, 1.0)["averageVehicleSpeed"]
    np.testing.assert_allclose(whole_t[-4:], alone_t, rtol=0.02)


def test_traffic_peaks_weekends_and_incidents() -> None:
    t = np.arange(local(0, 0), local(28, 0), 300.0)
    seg = models.traffic(1, t, 3, 50.0, 2, 1.0)
    h = models.local_hours(t)
    wd = models.weekday(t)
    speed, flow = seg["averageVehicleSpeed"], seg["intensity"]
    work = wd < 5
    morning = work & (h >= 7.25) & (h < 8.0)
    evening = work & (h >= 17.25) & (h < 18.0)
    night = (h >= 2) & (h < 4)
    assert np.median(speed[morning]) < 0.75 * np.median(speed[night])
    assert np.median(speed[evening]) < 0.75 * np.median(speed[night])
    assert np.median(flow[morning]) > 4 * np.median(flow[night])
    sunday_morning = (wd == 6) & (h >= 7.25) & (h < 8.0)
    assert np.median(flow[sunday_morning]) < 0.7 * np.median(flow[morning])
    # incidents: sharp drops (under 40 % of the speed a minute earlier) lasting 10-40 min
    events = models.incidents(1, 3, float(t[0]), float(t[-1]))
    assert events, "no incident in four weeks"
    for ev in events:
        assert 600 <= ev.duration <= 2400
        before = models.traffic(1, np.array([ev.start - 60]), 3, 50.0, 2, 1.0)
        during = models.traffic(1, np.array([ev.start + ev.duration / 2]), 3, 50.0, 2, 1.0)
        ratio = during["averageVehicleSpeed"][0] / before["averageVehicleSpeed"][0]
        assert ratio < 0.45, ratio


def test_rain_raises_the_rivers_over_hours() -> None:
    # the wet season: October
    t0 = datetime(2026, 10, 1, tzinfo=UTC).timestamp()
    t = np.arange(t0, t0 + 31 * 86400, 900.0)
    rain = models.precipitation(1, t)
    assert rain.max() > 10 and (rain > 0).mean() < 0.5  # events, not drizzle
    gauge = models.Gauge(0.4, 0.5, 0.3, 0.16, 3.0)
    level = models.flood_level(1, t, gauge, 0)
    big = max(models.rain_events(1, float(t[0]), float(t[-1])), key=lambda e: e.size)
    start = np.searchsorted(t, big.start)
    peak = start + int(np.argmax(level[start : start + 4 * 24]))
    assert t[peak] - big.start > 2 * 3600, "the level peaks hours after the rain starts"
    assert level[peak] - level[max(0, start - 1)] > 0.5
    dry_t0 = datetime(2026, 3, 1, tzinfo=UTC).timestamp()
    dry = models.flood_level(1, np.arange(dry_t0, dry_t0 + 28 * 86400, 900.0), gauge, 0)
    assert np.median(dry) < np.median(level)


def test_sun_times_match_the_almanac() -> None:
    """Da Nang sunrise/sunset (local time) within 5 minutes of published tables."""
    for day, rise, sett in (
        (date(2026, 6, 21), (5, 13), (18, 18)),
        (date(2026, 12, 21), (6, 9), (17, 19)),
    ):
        r, s = sun_times(day, *DANANG)
        for got, (hh, mm) in ((r, rise), (s, sett)):
            want = datetime(day.year, day.month, day.day, hh, mm, tzinfo=UTC) - timedelta(hours=7)
            assert abs((got - want).total_seconds()) < 300, (day, got)


def test_streetlights_follow_the_sun_and_dim_at_night() -> None:
    t = np.arange(local(0, 0), local(2, 0), 300.0)
    lamp = models.streetlight(1, t, 0, *DANANG)
    h = models.local_hours(t)
    level = lamp["illuminanceLevel"]
    power = np.array(lamp["powerState"])
    assert (power[(h > 9) & (h < 15)] == "off").all()
    evening = (h > 19) & (h < 21.5)
    late = (h > 23) | (h < 4)
    assert (level[evening] == 1.0).all() and (level[late] == models.DIM_LEVEL).all()
    _rise, sett = sun_times(date(2026, 11, 2), *DANANG)
    on = t[(power == "on") & (t > local(0, 12))][0]
    assert abs(on - (sett.timestamp() - 600)) <= 300
    # failures over a year: a lamp-year has a few, each 1-5 days
    year = models.lamp_failures(1, 0, local(0, 0), local(365, 0))
    assert 0 < len(year) < 10 and all(86400 <= f.duration <= 5 * 86400 for f in year)


def test_buses_move_at_city_speeds_along_their_routes(city: City) -> None:
    bus = next(d for d in build_fleet(city, 1) if d.kind == "bus")
    route = bus.params["route"]
    assert route.length > 3000
    t = np.arange(local(0, 9), local(0, 10), 10.0)
    b = models.bus(1, t, bus.number, route)
    steps = [
        models.metres(b["lon"][n], b["lat"][n], b["lon"][n + 1], b["lat"][n + 1])
        for n in range(len(t) - 1)
    ]
    kmh = np.array(steps) / 10 * 3.6
    assert kmh.max() < 40 and 8 < kmh.mean() < 28
    assert (b["speed"] == 0).mean() > 0.1  # stops
    night = models.bus(1, np.array([local(0, 23)]), bus.number, route)
    assert not night["in_service"][0] and night["speed"][0] == 0


def test_parking_noise_and_events(city: City) -> None:
    t = np.arange(local(0, 0), local(7, 0), 900.0)
    office = models.parking(1, t, 0, "office", 200)
    h, wd = models.local_hours(t), models.weekday(t)
    assert office["occupancy"][(wd < 5) & (h > 10) & (h < 15)].mean() > 0.6
    assert office["occupancy"][(h > 1) & (h < 4)].mean() < 0.3
    assert ((office["availableSpotNumber"] >= 0) & (office["availableSpotNumber"] <= 200)).all()
    nz = models.noise_level(1, t, 0, 68)
    assert nz["LAeq"][(h > 1) & (h < 4)].mean() < nz["LAeq"][(h > 8) & (h < 18)].mean() - 5
    assert (nz["LAmax"] > nz["LAeq"]).all()
    fleet = build_fleet(city, 1)
    placer = Placer(city, 1)
    lights = [d for d in fleet if d.kind == "light"]
    week = events_between(1, local(0, 0), local(7, 0), placer, lights)
    reports = [e for e in week if e.etype == "IssueReporting"]
    calls = [e for e in week if e.etype == "EmergencyCall"]
    assert 50 < len(reports) < 600 and 100 < len(calls) < 800
    assert {e.category for e in calls} >= {"medical", "trafficAccident", "crime"}
    codes = {w.code for w in city.wards}
    assert all(e.ward.code in codes for e in week)
    # an hour asked alone gives the same events as within the week
    hour = events_between(1, local(3, 9), local(3, 10), placer, lights)
    assert [e.local for e in hour] == [
        e.local for e in week if local(3, 9) <= e.time < local(3, 10)
    ]


def test_the_fleet_is_where_the_issue_says(city: City) -> None:
    fleet = build_fleet(city, 1)
    kinds = {k: [d for d in fleet if d.kind == k] for k in KINDS}
    assert {k: len(v) for k, v in kinds.items()} == {
        "air": 30,
        "traffic": 60,
        "flood": 20,
        "light": 200,
        "parking": 10,
        "noise": 12,
        "weather": 2,
        "bus": 40,
    }
    rivers = [d.static["river"] for d in kinds["flood"]]
    assert rivers.count("Sông Hàn") == 8 and rivers.count("Sông Cu Đê") == 6
    for d in kinds["flood"]:
        a1, a2, a3 = (d.static[f"alertLevel{n}"] for n in (1, 2, 3))
        assert a1 < a2 < a3
        if d.static["river"] == "Sông Hàn":
            assert 108.20 < d.lon < 108.24  # the Hàn runs through the centre
        elif d.static["river"] == "Sông Cu Đê":
            assert d.lat > 16.1 and d.lon < 108.14  # the north-west
    for d in fleet:
        if d.kind not in ("weather", "bus"):
            assert d.static["wardCode"] == d.ward.code and d.static["areaServed"] == d.ward.name
    traffic = kinds["traffic"][0]
    assert traffic.geometry and traffic.geometry["type"] == "LineString"
    body, count = instances(1, kinds["air"][0], np.arange(local(0, 0), local(1, 0), 900.0))
    assert count == 96 * 8 and body["pm25"][0]["unitCode"] == "GQ"


def test_a_tenants_wards_and_roads_are_used(city: City) -> None:
    """Wards and roads read from the tenant (as the demo seeds them): the fleet is on
    them, traffic detectors name their RoadSegment, and a province-wide road network is
    cut to the city."""
    from sencity.sim.city import ROUTE_M, core_wards, package_wards

    wards = package_wards()
    items = {
        "AdministrativeArea": [
            {
                "id": f"urn:ngsi-ld:AdministrativeArea:danang:{w.code}",
                "type": "AdministrativeArea",
                "name": w.name,
                "wardCode": w.code,
                "wardType": "phường" if w.urban else "xã",
                "area": w.area,
                "centroid": {"type": "Point", "coordinates": [w.lon, w.lat]},
            }
            for w in wards
        ],
        "RoadSegment": [],
        "WaterBody": [],
    }
    core = core_wards(wards)
    n = 0
    for a in core:  # a grid of roads between neighbouring core wards, and far ones
        for b in core:
            if a.code < b.code and models.metres(a.lon, a.lat, b.lon, b.lat) < 6000:
                n += 1
                items["RoadSegment"].append(
                    {
                        "id": f"urn:ngsi-ld:RoadSegment:danang:rd-{n}",
                        "type": "RoadSegment",
                        "name": f"Đường {n}",
                        "roadClass": "primary",
                        "maximumAllowedSpeed": 50,
                        "location": {
                            "type": "LineString",
                            "coordinates": [[a.lon, a.lat], [b.lon, b.lat]],
                        },
                    }
                )
    far = [w for w in wards if w not in core][:6]
    for a, b in pairwise(far):
        items["RoadSegment"].append(
            {
                "id": f"urn:ngsi-ld:RoadSegment:danang:far-{a.code}",
                "type": "RoadSegment",
                "roadClass": "trunk",
                "location": {"type": "LineString", "coordinates": [[a.lon, a.lat], [b.lon, b.lat]]},
            }
        )
    tenant_city = load_city(lambda t: items[t], "danang")
    assert tenant_city.source == "tenant" and tenant_city.roads_source == "tenant"
    assert {w.code for w in tenant_city.wards} == {w.code for w in core}
    assert tenant_city.roads and not any("far-" in (r.entity or "") for r in tenant_city.roads)
    fleet = build_fleet(tenant_city, 1)
    refs = {d.static["refRoadSegment"]["rel"] for d in fleet if d.kind == "traffic"}
    assert refs <= {r.entity for r in tenant_city.roads} and len(refs) > 5
    spots = {(round(d.lon, 6), round(d.lat, 6)) for d in fleet if d.kind == "traffic"}
    assert len(spots) == 60  # no two detectors in one place
    for d in fleet:
        if d.kind == "bus":
            assert (
                ROUTE_M[0] <= d.params["route"].length <= ROUTE_M[1]
                or len(d.params["route"].points) <= 6
            )
