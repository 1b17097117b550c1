"""Clause 5.7.2 (query entities) and 6.4.3.2 / 5.7.4 (POST entityOperations/query)."""

from __future__ import annotations

import json
import math
import random

import pytest

from tests.hub.conformance.conftest import NGSI, entity, point, problem, prop, rel

# air-quality stations around Da Nang (lon, lat) with PM2.5 readings
STATIONS = [
    ("HaiChau", 108.2208, 16.0678, 41.5, "2026-11-25T08:00:00Z"),
    ("SonTra", 108.2460, 16.0820, 22.0, "2026-11-25T09:00:00Z"),
    ("LienChieu", 108.1500, 16.0720, 75.0, "2026-11-24T08:00:00Z"),
    ("HoaVang", 108.0300, 16.0000, 12.0, "2026-11-20T08:00:00Z"),
]


@pytest.fixture
def city(ngsi: NGSI) -> NGSI:
    batch = []
    for name, lon, lat, pm25, when in STATIONS:
        batch.append(
            entity(
                f"urn:ngsi-ld:AirQualityObserved:{name}",
                type="AirQualityObserved",
                pm25=prop(pm25, observedAt=when, unitCode="GQ"),
                location=point(lon, lat),
                stationName=prop(name),
                refWard=rel(f"urn:ngsi-ld:Ward:{name}"),
                address=prop({"district": name, "city": "Da Nang"}),
            )
        )
    batch.append(
        entity(
            "urn:ngsi-ld:Streetlight:1",
            type="Streetlight",
            powerState=prop("on"),
            location=point(108.221, 16.068),
        )
    )
    r = ngsi.request("POST", "/entityOperations/create", batch)
    assert r.status_code == 201, r.text
    return ngsi


def ids(resp) -> list[str]:  # type: ignore[no-untyped-def]
    assert resp.status_code == 200, resp.text
    return sorted(e["id"].rsplit(":", 1)[-1] for e in resp.json())


def test_by_type_and_id(city: NGSI) -> None:
    assert ids(city.query(type="AirQualityObserved")) == [
        "HaiChau",
        "HoaVang",
        "LienChieu",
        "SonTra",
    ]
    assert ids(city.query(type="Streetlight,AirQualityObserved")) == [
        "1",
        "HaiChau",
        "HoaVang",
        "LienChieu",
        "SonTra",
    ]
    assert ids(city.query(id="urn:ngsi-ld:AirQualityObserved:SonTra")) == ["SonTra"]
    assert ids(city.query(type="AirQualityObserved", idPattern=".*:(Hai|Son).*")) == [
        "HaiChau",
        "SonTra",
    ]
    assert ids(city.query(type="Nothing")) == []


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("pm25>40", ["HaiChau", "LienChieu"]),
        ("pm25<=22", ["HoaVang", "SonTra"]),
        ("pm25==20..50", ["HaiChau", "SonTra"]),
        ("pm25==12,75", ["HoaVang", "LienChieu"]),
        ("pm25!=12", ["HaiChau", "LienChieu", "SonTra"]),
        ('stationName=="SonTra"', ["SonTra"]),
        ('stationName~="^Hoa"', ["HoaVang"]),
        ('pm25>40;stationName=="LienChieu"', ["LienChieu"]),
        ("pm25>70|pm25<15", ["HoaVang", "LienChieu"]),
        ('(pm25>70|pm25<15);stationName=="HoaVang"', ["HoaVang"]),
        ("refWard==urn:ngsi-ld:Ward:SonTra", ["SonTra"]),
        ('address[district]=="HaiChau"', ["HaiChau"]),
        ("pm25.observedAt>=2026-11-25T00:00:00Z", ["HaiChau", "SonTra"]),
        ("pm25", ["HaiChau", "HoaVang", "LienChieu", "SonTra"]),
    ],
)
def test_q(city: NGSI, q: str, expected: list[str]) -> None:
    assert ids(city.query(type="AirQualityObserved", q=q)) == expected


def test_geo_near_and_within(city: NGSI) -> None:
    near = city.query(
        type="AirQualityObserved",
        georel="near;maxDistance==3500",
        geometry="Point",
        coordinates="[108.2208,16.0678]",
    )
    assert ids(near) == ["HaiChau", "SonTra"]
    far = city.query(
        type="AirQualityObserved",
        georel="near;minDistance==10000",
        geometry="Point",
        coordinates="[108.2208,16.0678]",
    )
    assert ids(far) == ["HoaVang"]
    poly = [[[108.2, 16.05], [108.26, 16.05], [108.26, 16.09], [108.2, 16.09], [108.2, 16.05]]]
    within = city.query(georel="within", geometry="Polygon", coordinates=json.dumps(poly))
    assert ids(within) == ["1", "HaiChau", "SonTra"]


def _spiral(ngsi: NGSI) -> list[tuple[float, int, str]]:
    """60 stations spiralling out from (108.2, 16.05), created in shuffled order, plus three
    at one spot created one after the other; (distance, creation rank, id) of each."""
    lon0, lat0 = 108.2, 16.05
    rows = []
    for i in range(60):
        metres, angle = 50 + 40 * i, math.radians(137.5 * i)
        lon = lon0 + metres * math.sin(angle) / (111_320 * math.cos(math.radians(lat0)))
        lat = lat0 + metres * math.cos(angle) / 110_574
        rows.append((f"urn:ngsi-ld:Station:{i:02d}", lon, lat, "x" if i % 5 == 0 else "y"))
    random.Random(7).shuffle(rows)
    rows += [(f"urn:ngsi-ld:Station:twin{k}", 108.2, 16.059, "x") for k in range(3)]
    out = []
    for rank, (eid, lon, lat, kind) in enumerate(rows):
        r = ngsi.create(entity(eid, type="Station", kind=prop(kind), location=point(lon, lat)))
        assert r.status_code == 201, r.text
        out.append((haversine(lon0, lat0, lon, lat), rank, eid))
    return out


def haversine(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = (
        math.sin((p2 - p1) / 2) ** 2
        + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    )
    return 2 * 6371008.7714 * math.asin(math.sqrt(a))


@pytest.mark.parametrize(("q", "limit"), [(None, 7), (None, 1), ('kind=="x"', 7)])
def test_near_results_nearest_first_across_pages(ngsi: NGSI, q: str | None, limit: int) -> None:
    """near;maxDistance orders by distance (ties: creation order); pages never overlap,
    also when a page ends among entities at the same distance."""
    stations = _spiral(ngsi)
    want = [
        eid
        for d, _, eid in sorted(stations)
        if d <= 2000 and (q is None or eid.endswith(tuple("05")) or "twin" in eid)
    ]
    got: list[str] = []
    for offset in range(0, len(want) + limit, limit):
        r = ngsi.query(
            type="Station",
            q=q,
            georel="near;maxDistance==2000",
            geometry="Point",
            coordinates="[108.2,16.05]",
            limit=limit,
            offset=offset,
        )
        assert r.status_code == 200, r.text
        got += [e["id"] for e in r.json()]
    assert got == want
    first = ngsi.query(
        type="Station",
        georel="near;maxDistance==2000",
        geometry="Point",
        coordinates="[108.2,16.05]",
        limit=1,
        count="true",
    )
    assert [e["id"] for e in first.json()] == [min(stations)[2]]
    assert first.headers["ngsild-results-count"] == str(sum(d <= 2000 for d, _, _ in stations))


def test_attrs_filter_and_pagination(city: NGSI) -> None:
    r = city.query(type="AirQualityObserved,Streetlight", attrs="powerState")
    assert ids(r) == ["1"]
    page = city.query(type="AirQualityObserved", limit=3, count="true")
    assert page.headers["ngsild-results-count"] == "4"
    assert len(page.json()) == 3
    assert 'rel="next"' in page.headers["link"] and "offset=3" in page.headers["link"]
    rest = city.query(type="AirQualityObserved", limit=3, offset=3)
    assert len(rest.json()) == 1 and 'rel="prev"' in rest.headers["link"]
    seen = {e["id"] for e in page.json()} | {e["id"] for e in rest.json()}
    assert len(seen) == 4
    only_count = city.query(type="AirQualityObserved", limit=0, count="true")
    assert only_count.json() == [] and only_count.headers["ngsild-results-count"] == "4"


def test_limits(city: NGSI) -> None:
    problem(city.query(type="AirQualityObserved", limit=100000), 403, "TooManyResults")
    problem(city.query(type="AirQualityObserved", limit="ten"), 400, "BadRequestData")
    problem(city.query(), 400, "BadRequestData")


def test_geojson_collection(city: NGSI) -> None:
    r = city.query(
        type="AirQualityObserved", headers={"Accept": "application/geo+json"}, options="keyValues"
    )
    fc = r.json()
    assert r.headers["content-type"].startswith("application/geo+json")
    assert fc["type"] == "FeatureCollection" and len(fc["features"]) == 4
    f = next(f for f in fc["features"] if f["id"].endswith("SonTra"))
    assert f["geometry"]["coordinates"] == [108.246, 16.082]
    assert f["properties"]["pm25"] == 22.0


def test_post_query(city: NGSI) -> None:
    body = {
        "type": "Query",
        "entities": [{"type": "AirQualityObserved"}],
        "q": "pm25>30",
        "geoQ": {
            "georel": "near;maxDistance==10000",
            "geometry": "Point",
            "coordinates": [108.2208, 16.0678],
        },
    }
    r = city.request("POST", "/entityOperations/query", body)
    assert ids(r) == ["HaiChau", "LienChieu"]
    two = {
        "type": "Query",
        "entities": [
            {"type": "Streetlight"},
            {"id": "urn:ngsi-ld:AirQualityObserved:SonTra", "type": "AirQualityObserved"},
        ],
    }
    assert ids(city.request("POST", "/entityOperations/query", two)) == ["1", "SonTra"]
    problem(city.request("POST", "/entityOperations/query", {"type": "Nope"}), 400)
