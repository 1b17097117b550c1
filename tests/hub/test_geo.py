"""GeoJSON validation and NGSI-LD geo-queries (sencity.hub.geo).

Unit tests need no database; the query tests compile geo-queries with ``geo_sql`` and run
them on real SQLite and PostgreSQL/PostGIS stores filled with a few geometries around
Da Nang, expecting the same entity ids from both backends, with and without the
``location`` index.
"""

from __future__ import annotations

import json
import math
import sqlite3
from typing import Any

import pytest

from sencity.errors import BadRequest
from sencity.hub import geo
from sencity.hub.schema import MIGRATIONS
from sencity.store import Store

R = geo.EARTH_RADIUS_M
LOC = "https://uri.etsi.org/ngsi-ld/location"
ENTRANCE = "https://example.org/entrance"
DA_NANG = (108.2208, 16.0678)  # lon, lat
HANOI = (105.8342, 21.0278)


def destination(start: tuple[float, float], bearing_deg: float, metres: float) -> list[float]:
    """The point ``metres`` from ``start`` along a great circle (independent of haversine)."""
    lon1, lat1 = math.radians(start[0]), math.radians(start[1])
    th, d = math.radians(bearing_deg), metres / R
    lat2 = math.asin(math.sin(lat1) * math.cos(d) + math.cos(lat1) * math.sin(d) * math.cos(th))
    lon2 = lon1 + math.atan2(
        math.sin(th) * math.sin(d) * math.cos(lat1), math.cos(d) - math.sin(lat1) * math.sin(lat2)
    )
    return [math.degrees(lon2), math.degrees(lat2)]


def cosine_law_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    la, lb = math.radians(a[1]), math.radians(b[1])
    c = math.sin(la) * math.sin(lb) + math.cos(la) * math.cos(lb) * math.cos(
        math.radians(b[0] - a[0])
    )
    return R * math.acos(max(-1.0, min(1.0, c)))


def point(lon: float, lat: float) -> dict[str, Any]:
    return {"type": "Point", "coordinates": [lon, lat]}


def box(minx: float, maxx: float, miny: float, maxy: float) -> dict[str, Any]:
    ring = [[minx, miny], [maxx, miny], [maxx, maxy], [minx, maxy], [minx, miny]]
    return {"type": "Polygon", "coordinates": [ring]}


def bad(geom: Any, *needles: str) -> str:
    with pytest.raises(BadRequest) as ei:
        geo.validate_geometry(geom, "location")
    detail = ei.value.detail
    assert detail.startswith("location"), detail
    for n in needles:
        assert n in detail, detail
    return detail


# --------------------------------------------------------------------------- validation


def test_valid_geometries_are_normalised() -> None:
    assert geo.validate_geometry({"type": "Point", "coordinates": [108, 16]}) == {
        "type": "Point",
        "coordinates": [108.0, 16.0],
    }
    out = geo.validate_geometry(
        {"type": "Point", "coordinates": [108.2, 16.05, 12], "bbox": [1, 2, 3, 4], "crs": {}}
    )
    assert out == {"type": "Point", "coordinates": [108.2, 16.05, 12.0]}
    assert all(isinstance(v, float) for v in out["coordinates"])
    for g in (
        {"type": "MultiPoint", "coordinates": [[108.2, 16.0], [108.3, 16.1]]},
        {"type": "LineString", "coordinates": [[108.2, 16.0], [108.3, 16.1]]},
        {"type": "MultiLineString", "coordinates": [[[108.2, 16.0], [108.3, 16.1]]]},
        box(108.2, 108.3, 16.0, 16.1),
        {
            "type": "Polygon",  # with a hole
            "coordinates": [
                box(108.0, 108.4, 16.0, 16.4)["coordinates"][0],
                box(108.1, 108.2, 16.1, 16.2)["coordinates"][0],
            ],
        },
        {
            "type": "MultiPolygon",
            "coordinates": [
                box(108.0, 108.1, 16.0, 16.1)["coordinates"],
                box(108.2, 108.3, 16.0, 16.1)["coordinates"],
            ],
        },
        {
            "type": "GeometryCollection",
            "geometries": [point(108.2, 16.0), box(108.2, 108.3, 16.0, 16.1)],
        },
        point(-180, -90),
        point(180, 90),
        {"type": "LineString", "coordinates": [[0, 0], [1, 1], [1, 0], [0, 1]]},  # may cross
    ):
        assert geo.validate_geometry(g) == json.loads(json.dumps(g).replace(",", ", "))


def test_not_an_object_or_unknown_type() -> None:
    assert "not an array" in bad([108.2, 16.0], "GeoJSON object")
    assert "not a string" in bad("POINT(108 16)")
    bad(None, "not null")
    bad({"type": "Circle", "coordinates": [1, 2]}, "unknown geometry type 'Circle'", "Polygon")
    bad({"coordinates": [1, 2]}, "unknown geometry type None")
    bad({"type": "point", "coordinates": [1, 2]}, "'point'")


def test_missing_or_ill_shaped_coordinates() -> None:
    bad({"type": "Point"}, "a Point needs 'coordinates'")
    bad({"type": "Point", "coordinates": "108,16"}, "coordinates of the Point", "not a string")
    bad({"type": "Point", "coordinates": [[108, 16]]}, "must hold numbers, not an array")
    bad({"type": "LineString", "coordinates": [108, 16]}, "coordinates[0] of the LineString")
    bad({"type": "MultiPolygon", "coordinates": [1]}, "[[[[lon, lat], …], …], …]")
    bad({"type": "Polygon", "coordinates": [[108, 16]]}, "coordinates[0][0] of the Polygon")
    bad(
        {"type": "MultiPolygon", "coordinates": [[[108, 16]]]},
        "coordinates[0][0][0] of the MultiPolygon must be a position",
    )
    bad({"type": "MultiPoint", "coordinates": []}, "empty coordinates")
    bad({"type": "Polygon", "coordinates": []}, "empty coordinates")
    bad({"type": "MultiPolygon", "coordinates": [[]]}, "coordinates[0] of the MultiPolygon has no")
    bad({"type": "GeometryCollection", "geometries": []}, "non-empty 'geometries'")
    bad(
        {"type": "GeometryCollection", "geometries": [{"type": "GeometryCollection"}]},
        "location (geometries[0]): nested GeometryCollections",
    )
    bad(
        {"type": "GeometryCollection", "geometries": [point(200, 0)]},
        "(geometries[0])",
        "longitude 200",
    )


def test_positions() -> None:
    bad({"type": "Point", "coordinates": [108]}, "has 1 number(s)", "at least 2")
    bad({"type": "Point", "coordinates": []}, "has 0 number(s)", "at least 2")
    bad({"type": "MultiPoint", "coordinates": [[108, 16], [108]]}, "coordinates[1]", "at least 2")
    bad({"type": "Point", "coordinates": [1, 2, 3, 4]}, "at most 3")
    bad({"type": "Point", "coordinates": ["108", 16]}, "numbers, not a string")
    bad({"type": "Point", "coordinates": [True, 16]}, "numbers, not a boolean")
    bad({"type": "Point", "coordinates": [None, 16]}, "numbers, not null")
    for v in (math.nan, math.inf, -math.inf, 10**400):
        bad({"type": "Point", "coordinates": [108, v]}, "NaN, infinite or too large")


def test_longitude_latitude_ranges() -> None:
    bad(point(180.5, 16), "longitude 180.5", "outside [-180, 180]")
    bad(point(-181, 16), "longitude -181")
    bad(point(108, 90.01), "latitude 90.01", "outside [-90, 90]")
    detail = bad(point(16.07, 108.22), "latitude 108.22", "[longitude, latitude]", "swapped")
    assert "coordinates of the Point" in detail
    bad(
        {"type": "LineString", "coordinates": [[108, 16], [108, -95]]},
        "latitude -95 at coordinates[1] of the LineString",
    )


def test_lines_and_rings() -> None:
    bad({"type": "LineString", "coordinates": [[108, 16]]}, "has 1 position(s)", "at least 2")
    bad(
        {"type": "MultiLineString", "coordinates": [[[108, 16], [108.1, 16]], [[108, 16]]]},
        "coordinates[1] of the MultiLineString has 1",
    )
    bad(
        {"type": "LineString", "coordinates": [[108, 16], [108, 16]]},
        "invalid LineString",
        "too few distinct positions",
    )
    bad(
        {"type": "Polygon", "coordinates": [[[108, 16], [108.1, 16], [108.1, 16.1], [108, 16.1]]]},
        "linear ring coordinates[0] of the Polygon is not closed",
        "[108, 16] differs from last [108, 16.1]",
    )
    bad(
        {"type": "Polygon", "coordinates": [[[108, 16], [108.1, 16], [108, 16]]]},
        "has 3 position(s)",
        "at least 4",
    )
    hole_open = box(108.1, 108.2, 16.1, 16.2)["coordinates"][0][:-1]
    bad(
        {
            "type": "Polygon",
            "coordinates": [box(108, 108.4, 16, 16.4)["coordinates"][0], hole_open],
        },
        "linear ring coordinates[1]",
        "not closed",
    )
    bad(
        {"type": "MultiPolygon", "coordinates": [[[[108, 16], [108.1, 16], [108, 16]]]]},
        "linear ring coordinates[0][0] of the MultiPolygon has 3",
    )


def test_self_intersections() -> None:
    bowtie = [[108.0, 16.0], [108.1, 16.1], [108.1, 16.0], [108.0, 16.1], [108.0, 16.0]]
    detail = bad(
        {"type": "Polygon", "coordinates": [bowtie]}, "invalid Polygon", "Self-intersection"
    )
    assert "at [108.05, 16.05]" in detail
    bad(
        {
            "type": "MultiPolygon",  # two polygons overlapping
            "coordinates": [
                box(108.0, 108.2, 16.0, 16.2)["coordinates"],
                box(108.1, 108.3, 16.1, 16.3)["coordinates"],
            ],
        },
        "invalid MultiPolygon",
    )
    bad(
        {
            "type": "Polygon",  # a hole outside its shell
            "coordinates": [
                box(108.0, 108.1, 16.0, 16.1)["coordinates"][0],
                box(108.2, 108.3, 16.2, 16.3)["coordinates"][0],
            ],
        },
        "invalid Polygon",
        "Hole lies outside shell",
    )


def test_bbox() -> None:
    assert geo.bbox(point(108.2, 16.05)) == (108.2, 108.2, 16.05, 16.05)
    assert geo.bbox(box(108.1, 108.3, 16.0, 16.2)) == (108.1, 108.3, 16.0, 16.2)
    line = {"type": "LineString", "coordinates": [[108.3, 16.2], [108.1, 16.4], [108.2, 16.0]]}
    assert geo.bbox(line) == (108.1, 108.3, 16.0, 16.4)
    multi = {
        "type": "MultiPolygon",
        "coordinates": [box(-1, 0, -2, 0)["coordinates"], box(5, 6, 7, 8)["coordinates"]],
    }
    assert geo.bbox(multi) == (-1, 6, -2, 8)
    gc = {"type": "GeometryCollection", "geometries": [point(1, 2), multi]}
    assert geo.bbox(gc) == (-1, 6, -2, 8)
    assert geo.bbox({"type": "Point", "coordinates": [1, 2, 30]}) == (1, 1, 2, 2)


# --------------------------------------------------------------------------- parameters


def test_parse_geoquery() -> None:
    assert geo.parse_geoquery(None, None, None) is None
    assert geo.parse_geoquery(None, None, None, "location") is None
    gq = geo.parse_geoquery("near;maxDistance==2000", "Point", "[108.2208,16.0678]")
    assert gq is not None
    assert (gq.georel, gq.max_distance, gq.min_distance) == ("near", 2000.0, None)
    assert gq.geometry == {"type": "Point", "coordinates": [108.2208, 16.0678]}
    assert gq.geoproperty == "location"
    assert json.loads(gq.geometry_json) == gq.geometry
    gq = geo.parse_geoquery("near;minDistance==100", "Point", "[108,16]", "entrance")
    assert gq is not None
    assert (gq.min_distance, gq.max_distance, gq.geoproperty) == (100.0, None, "entrance")
    gq = geo.parse_geoquery("near; minDistance==1.5e2 ;maxDistance==300", "Point", [108, 16])
    assert gq is not None
    assert (gq.min_distance, gq.max_distance) == (150.0, 300.0)
    assert gq.georel_text == "near;maxDistance==300;minDistance==150"
    gq = geo.parse_geoquery("near;maxDistance==1234567.25", "Point", [108, 16])
    assert gq is not None and gq.georel_text == "near;maxDistance==1234567.25"
    coords = box(108.2, 108.24, 16.05, 16.09)["coordinates"]
    for rel in ("within", "contains", "intersects", "disjoint", "equals", "overlaps"):
        gq = geo.parse_geoquery(rel, "Polygon", json.dumps(coords))
        assert gq is not None and gq.georel == rel and gq.max_distance is None
        assert gq.to_geoq() == {
            "georel": rel,
            "geometry": "Polygon",
            "coordinates": coords,
            "geoproperty": "location",
        }


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("within", "Point", None), "missing: coordinates"),
        (("within", None, None), "missing: geometry, coordinates"),
        ((None, "Point", "[1,2]"), "missing: georel"),
        (("crosses", "Point", "[1,2]"), "unknown relation 'crosses'"),
        (("Near;maxDistance==1", "Point", "[1,2]"), "unknown relation 'Near'"),
        (("", "Point", "[1,2]"), "unknown relation ''"),
        (("near", "Point", "[1,2]"), "near needs a distance"),
        (("near;maxDistance==x", "Point", "[1,2]"), "maxDistance must be a non-negative number"),
        (("near;maxDistance==-5", "Point", "[1,2]"), "non-negative"),
        (("near;maxDistance==nan", "Point", "[1,2]"), "non-negative"),
        (("near;maxDistance==1e999", "Point", "[1,2]"), "non-negative"),
        (("near;maxDistance=1000", "Point", "[1,2]"), "is not maxDistance==<metres>"),
        (("near;distance==1000", "Point", "[1,2]"), "is not maxDistance==<metres>"),
        (("near;maxDistance==1;maxDistance==2", "Point", "[1,2]"), "given twice"),
        (("near;maxDistance==1;minDistance==2", "Point", "[1,2]"), "minDistance is greater"),
        (("within;maxDistance==1", "Point", "[1,2]"), "only 'near' takes a distance"),
        (("within", "Circle", "[1,2]"), "geometry 'Circle' is not supported"),
        (("within", "GeometryCollection", "[]"), "not supported in a geo-query"),
        (("within", "Point", "[108.2,16"), "coordinates must be a JSON array"),
        (("within", "Point", "108.2,16"), "coordinates must be a JSON array"),
        (("within", "Point", '{"a": 1}'), "coordinates must be a JSON array, not an object"),
        (("within", "Point", "[16.07,108.22]"), "swapped"),
        (("within", "Polygon", "[108.2,16]"), "coordinates[0] of the Polygon must be an array"),
        (("within", "Polygon", "[[[1,1],[2,1],[2,2]]]"), "at least 4"),
        (("within", "Point", "[1,2]", 'loc"ation'), "not a valid attribute name"),
    ],
)
def test_parse_geoquery_errors(args: tuple[Any, ...], needle: str) -> None:
    with pytest.raises(BadRequest) as ei:
        geo.parse_geoquery(*args)
    assert needle in ei.value.detail
    assert ei.value.status == 400


def test_from_geoq() -> None:
    gq = geo.GeoQuery.from_geoq(
        {
            "georel": "near;maxDistance==10000",
            "geometry": "Point",
            "coordinates": [108.2208, 16.0678],
            "geoproperty": "entrance",
        }
    )
    assert (gq.georel, gq.max_distance, gq.geoproperty) == ("near", 10000.0, "entrance")
    gq = geo.GeoQuery.from_geoq(  # coordinates may also be given as JSON text
        {"georel": "within", "geometry": "Polygon", "coordinates": "[[[0,0],[1,0],[1,1],[0,0]]]"}
    )
    assert gq.geometry["type"] == "Polygon" and gq.geoproperty == "location"
    assert geo.GeoQuery.from_geoq(gq.to_geoq()) == gq
    assert hash(geo.GeoQuery.from_geoq(gq.to_geoq())) == hash(gq)
    for body, needle in (
        ([1], "geoQ must be an object"),
        ({"georel": "within", "geometry": "Point"}, "geoQ needs coordinates"),
        ({"geometry": "Point", "coordinates": [1, 2]}, "geoQ needs georel"),
        ({"georel": "within", "geometry": 1, "coordinates": [1, 2]}, "geometry must be a string"),
        ({"georel": "within", "geometry": "Point", "coordinates": [1, 2], "x": 1}, "unknown"),
        ({"georel": "near", "geometry": "Point", "coordinates": [1, 2]}, "near needs a distance"),
    ):
        with pytest.raises(BadRequest) as ei:
            geo.GeoQuery.from_geoq(body)
        assert needle in ei.value.detail


# --------------------------------------------------------------------------- distances


@pytest.mark.parametrize("city", [DA_NANG, HANOI], ids=["danang", "hanoi"])
@pytest.mark.parametrize("bearing", [0, 45, 90, 135, 200, 270])
def test_near_between_points_is_great_circle(city: tuple[float, float], bearing: float) -> None:
    for metres in (10.0, 1000.0, 5000.0, 50000.0):
        p = destination(city, bearing, metres)
        assert geo.haversine_m(city[0], city[1], p[0], p[1]) == pytest.approx(metres, rel=1e-6)
        d = geo.distance_m(point(*p), point(*city))
        assert d == pytest.approx(metres, rel=1e-6)
        query = json.dumps(point(*city))
        ent = json.dumps(point(*p))
        assert geo.sc_geo("near", ent, query, None, metres * 1.001) == 1
        assert geo.sc_geo("near", ent, query, None, metres * 0.999) == 0
        assert geo.sc_geo("near", ent, query, metres * 0.999, None) == 1
        assert geo.sc_geo("near", ent, query, metres * 1.001, None) == 0


def test_known_city_distance() -> None:
    # Da Nang - Hanoi: about 606 km on the sphere (cross-checked with the law of cosines)
    d = geo.haversine_m(*DA_NANG, *HANOI)
    assert d == pytest.approx(cosine_law_m(DA_NANG, HANOI), rel=1e-9)
    assert 600_000 < d < 612_000
    assert geo.distance_m(point(*HANOI), point(*DA_NANG)) == pytest.approx(d, rel=1e-9)


@pytest.mark.parametrize("city", [DA_NANG, HANOI], ids=["danang", "hanoi"])
def test_near_with_lines_and_polygons(city: tuple[float, float]) -> None:
    lon, lat = city
    # distance from a point to a meridian segment: R asin(cos(lat) sin(dlon)) on the sphere
    for dlon in (0.005, 0.03, 0.2):
        meridian = {"type": "LineString", "coordinates": [[lon, lat - 0.1], [lon, lat + 0.1]]}
        p = (lon + dlon, lat + 0.01)
        exact = R * math.asin(math.cos(math.radians(p[1])) * math.sin(math.radians(dlon)))
        got = geo.distance_m(point(*p), meridian)
        assert abs(got - exact) / exact < 0.005, (dlon, got, exact)
        assert abs(got - exact) / exact < 0.001  # in fact much better than 0.5 %
        # and the other way round: the line is the entity, the point the reference
        assert geo.distance_m(meridian, point(*p)) == pytest.approx(exact, rel=0.001)
    # a polygon north-east of the point: its nearest point is its south-west corner
    for off in (0.01, 0.05, 0.3):
        poly = box(lon + off, lon + off + 0.02, lat + off, lat + off + 0.02)
        exact = geo.haversine_m(lon, lat, lon + off, lat + off)
        assert geo.distance_m(poly, point(lon, lat)) == pytest.approx(exact, rel=0.001)
        assert geo.distance_m(point(lon, lat), poly) == pytest.approx(exact, rel=0.005)
    # inside a polygon the distance is 0
    assert geo.distance_m(point(lon, lat), box(lon - 0.1, lon + 0.1, lat - 0.1, lat + 0.1)) == 0


def test_projection_of_one_point_matches_the_vectorised_one() -> None:
    import numpy as np

    pts = [destination(HANOI, b, m) for b in (10, 100, 250) for m in (0.0, 30.0, 8000.0)]
    arr = geo._aeqd(*HANOI)(np.array(pts))
    for (lon, lat), (x, y) in zip(pts, arr, strict=True):
        assert geo._aeqd_xy(lon, lat, *HANOI) == pytest.approx((x, y), abs=1e-6)
        assert math.hypot(x, y) == pytest.approx(geo.haversine_m(lon, lat, *HANOI), abs=1e-6)


@pytest.mark.parametrize(
    ("center", "metres"),
    [
        (DA_NANG, 1000.0),
        (HANOI, 25000.0),
        ((10.0, 60.0), 5000.0),
        ((-70.0, -80.0), 20000.0),
        ((179.99, 0.0), 5000.0),
    ],
)
def test_search_box_holds_every_point_within_the_distance(
    center: tuple[float, float], metres: float
) -> None:
    gq = geo.parse_geoquery(f"near;maxDistance=={metres}", "Point", list(center))
    assert gq is not None
    b = geo.search_box(gq)
    assert b is not None
    minx, maxx, miny, maxy = b
    for bearing in range(0, 360, 5):
        x, y = destination(center, bearing, metres)
        x = (x + 180) % 360 - 180
        assert minx <= x <= maxx and miny <= y <= maxy, (bearing, x, y, b)
    if center[0] < 179:  # not across the antimeridian: the box stays small
        dlat = math.degrees(metres / R)
        assert maxy - miny < 2.1 * dlat
        assert maxx - minx < 2.1 * dlat / math.cos(math.radians(abs(center[1]) + dlat))


def test_search_box_near_pole_and_antimeridian() -> None:
    gq = geo.parse_geoquery("near;maxDistance==50000", "Point", [179.9, 10.0])
    assert gq is not None and geo.search_box(gq) is not None
    assert geo.search_box(gq)[:2] == (-180.0, 180.0)  # type: ignore[index]
    gq = geo.parse_geoquery("near;maxDistance==50000", "Point", [10.0, 89.9])
    assert gq is not None
    assert geo.search_box(gq) == (-180.0, 180.0, pytest.approx(89.45, abs=0.01), 90.0)
    for georel in ("near;minDistance==10", "disjoint"):
        gq = geo.parse_geoquery(georel, "Point", [108.2, 16.0])
        assert gq is not None and geo.search_box(gq) is None


def test_sc_geo_is_robust() -> None:
    q = json.dumps(box(108.2, 108.24, 16.05, 16.09))
    inside = point(108.22, 16.07)
    assert geo.sc_geo("within", json.dumps(inside), q, None, None) == 1
    # an attribute instance or a list of instances also works; the default one counts
    inst = {"type": "GeoProperty", "value": inside}
    assert geo.sc_geo("within", json.dumps(inst), q, None, None) == 1
    far = {"type": "GeoProperty", "value": point(0, 0), "datasetId": "urn:ds:1"}
    assert geo.sc_geo("within", json.dumps([far, inst]), q, None, None) == 1
    assert geo.sc_geo("within", json.dumps([far]), q, None, None) == 0
    for entity in (
        None,
        12,
        b"\xff",
        "",
        "not json",
        "[]",
        "{}",
        '"urn:ngsi-ld:null"',
        json.dumps({"type": "Property", "value": inside}),
        json.dumps({"type": "GeoProperty", "value": "urn:ngsi-ld:null"}),
        json.dumps({"type": "Point", "coordinates": "x"}),
        json.dumps({"type": "Polygon", "coordinates": [[[0, 0], [1, 1]]]}),
    ):
        assert geo.sc_geo("within", entity, q, None, None) == 0, entity
        assert geo.sc_geo("disjoint", entity, q, None, None) == 0, entity
        assert geo.sc_geo("near", entity, q, None, 1e9) == 0, entity
    for query in (None, "", "[1, 2]", "{}", '{"type": "Point"}'):
        assert geo.sc_geo("within", json.dumps(inside), query, None, None) == 0
    assert geo.sc_geo("crosses", json.dumps(inside), q, None, None) == 0
    assert geo.sc_geo("near", json.dumps(inside), q, None, None) == 0
    conn = sqlite3.connect(":memory:")
    try:
        geo.register_sqlite_functions(conn)
        row = conn.execute(
            "SELECT sc_geo('within', ?, ?, NULL, NULL), sc_geo('near', NULL, ?, NULL, 5)",
            (json.dumps(inside), q, q),
        ).fetchone()
        assert row == (1, 0)
    finally:
        conn.close()


def test_geo_sql_shape() -> None:
    gq = geo.parse_geoquery("near;minDistance==5;maxDistance==10", "Point", [108.2, 16.0])
    assert gq is not None
    for dialect in ("sqlite", "postgresql"):
        for indexed in (True, False):
            sql, params = geo.geo_sql(gq, dialect, "https://example.org/x%y", indexed)
            assert sql.count("?") == len(params)
            assert "%" not in sql and "https://" not in sql
    with pytest.raises(ValueError, match="dialect"):
        geo.geo_sql(gq, "oracle", LOC, True)
    with pytest.raises(BadRequest):
        geo.geo_sql(gq, "sqlite", 'https://example.org/"x', False)


# --------------------------------------------------------------------------- databases

# The query polygon Q and entities around it (lon 108.20-108.24, lat 16.05-16.09)
Q = box(108.20, 108.24, 16.05, 16.09)
Q_ROTATED = {"type": "Polygon", "coordinates": [Q["coordinates"][0][2:] + Q["coordinates"][0][1:3]]}
CENTER = list(DA_NANG)  # inside Q


def gp(value: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "GeoProperty", "value": value, **extra}


ENTITIES: dict[str, dict[str, list[dict[str, Any]]]] = {
    "pt:center": {LOC: [gp(point(*CENTER))], ENTRANCE: [gp(point(*destination(DA_NANG, 90, 300)))]},
    "pt:n900": {LOC: [gp(point(*destination(DA_NANG, 0, 900)))]},
    "pt:e1000": {LOC: [gp(point(*destination(DA_NANG, 90, 1000)))]},
    "pt:e1100": {LOC: [gp(point(*destination(DA_NANG, 90, 1100)))]},
    "pt:far": {LOC: [gp(point(108.30, 16.00))]},
    "pt:multi": {  # the default instance (no datasetId) counts, not the first
        LOC: [gp(point(108.30, 16.00), datasetId="urn:ds:old"), gp(point(108.221, 16.068))],
        ENTRANCE: [
            gp(point(108.5, 16.5), datasetId="urn:ds:old"),
            gp(point(*destination(DA_NANG, 180, 400))),
        ],
    },
    "area:district": {
        LOC: [gp(box(108.21, 108.23, 16.06, 16.075))],
        ENTRANCE: [gp(point(*destination(DA_NANG, 0, 2000)))],
    },
    "area:big": {
        LOC: [gp(box(108.19, 108.25, 16.04, 16.10))],
        # a Property that looks like a geometry is not a GeoProperty: never matched
        ENTRANCE: [{"type": "Property", "value": point(*CENTER)}],
    },
    "area:overlap": {LOC: [gp(box(108.23, 108.26, 16.08, 16.10))]},
    "area:equal": {LOC: [gp(Q_ROTATED)]},
    "road:cross": {
        LOC: [gp({"type": "LineString", "coordinates": [[108.19, 16.07], [108.26, 16.07]]})]
    },
    "road:away": {
        LOC: [gp({"type": "LineString", "coordinates": [[108.30, 16.10], [108.32, 16.12]]})]
    },
    "thing:noloc": {"https://example.org/name": [{"type": "Property", "value": "no geometry"}]},
    "thing:nullish": {ENTRANCE: [{"type": "Property", "value": "urn:ngsi-ld:null"}]},
}
ALL_LOCATED = {e for e, a in ENTITIES.items() if LOC in a}
INSIDE_Q = {"pt:center", "pt:n900", "pt:e1000", "pt:e1100", "pt:multi"}
Q_JSON = json.dumps(Q["coordinates"])
LINE_Q = json.dumps([[108.215, 16.05], [108.215, 16.09]])

#: (georel, geometry, coordinates) -> ids, for geoproperty=location
LOCATION_CASES: list[tuple[str, str, str, set[str]]] = [
    (
        "near;maxDistance==1050",
        "Point",
        json.dumps(CENTER),
        {"pt:center", "pt:n900", "pt:e1000", "pt:multi", "area:district", "area:big"}
        | {"area:equal", "road:cross"},
    ),
    (
        "near;maxDistance==950",
        "Point",
        json.dumps(CENTER),
        {"pt:center", "pt:n900", "pt:multi"}
        | {"area:district", "area:big", "area:equal", "road:cross"},
    ),
    (
        "near;minDistance==1050",
        "Point",
        json.dumps(CENTER),
        {"pt:e1100", "pt:far", "road:away", "area:overlap"},
    ),
    ("near;minDistance==950;maxDistance==1050", "Point", json.dumps(CENTER), {"pt:e1000"}),
    (
        "near;maxDistance==0",
        "Point",
        json.dumps(CENTER),
        {"pt:center"} | {"area:district", "area:big", "area:equal"},
    ),
    (
        "near;maxDistance==2500",  # near a polygon: distance to its edge (0 inside)
        "Polygon",
        json.dumps(box(108.25, 108.27, 16.00, 16.02)["coordinates"]),
        {"area:big"},
    ),
    (
        "near;maxDistance==6000",
        "Polygon",
        json.dumps(box(108.25, 108.27, 16.00, 16.02)["coordinates"]),
        {"pt:far", "pt:e1000", "pt:e1100", "area:district", "area:big", "area:equal"}
        | {"road:cross"},
    ),
    ("within", "Polygon", Q_JSON, INSIDE_Q | {"area:district", "area:equal"}),
    (
        "contains",
        "Point",
        json.dumps(CENTER),
        {"pt:center", "area:district", "area:big"} | {"area:equal"},
    ),
    ("contains", "Polygon", Q_JSON, {"area:big", "area:equal"}),
    ("intersects", "Polygon", Q_JSON, ALL_LOCATED - {"pt:far", "road:away"}),
    ("intersects", "LineString", LINE_Q, {"area:district", "area:big", "area:equal", "road:cross"}),
    ("disjoint", "Polygon", Q_JSON, {"pt:far", "road:away"}),
    (
        "disjoint",
        "LineString",
        LINE_Q,
        ALL_LOCATED - {"area:district", "area:big", "area:equal"} - {"road:cross"},
    ),
    ("equals", "Polygon", Q_JSON, {"area:equal"}),
    ("equals", "Point", json.dumps([108.30, 16.00]), {"pt:far"}),
    ("overlaps", "Polygon", Q_JSON, {"area:overlap"}),
    (
        "within",
        "MultiPolygon",
        json.dumps([box(108.29, 108.31, 15.99, 16.01)["coordinates"]]),
        {"pt:far"},
    ),
]

#: the same on the non-indexed GeoProperty ``entrance``
ENTRANCE_CASES: list[tuple[str, str, str, set[str]]] = [
    ("near;maxDistance==500", "Point", json.dumps(CENTER), {"pt:center", "pt:multi"}),
    ("near;maxDistance==350", "Point", json.dumps(CENTER), {"pt:center"}),
    ("near;minDistance==350", "Point", json.dumps(CENTER), {"pt:multi", "area:district"}),
    ("within", "Polygon", Q_JSON, {"pt:center", "pt:multi", "area:district"}),
    ("intersects", "Polygon", Q_JSON, {"pt:center", "pt:multi", "area:district"}),
    (
        "disjoint",
        "Polygon",
        json.dumps(box(0, 1, 0, 1)["coordinates"]),
        {"pt:center", "pt:multi", "area:district"},
    ),
    ("disjoint", "Polygon", Q_JSON, set()),
    ("contains", "Point", json.dumps(CENTER), set()),
    ("equals", "Point", json.dumps(destination(DA_NANG, 90, 300)), {"pt:center"}),
    ("overlaps", "Polygon", Q_JSON, set()),
]


def _fill(store: Store) -> None:
    store.migrate(MIGRATIONS)
    pg = store.dialect == "postgresql"
    if not pg:
        conn = store._conn()  # type: ignore[attr-defined]
        geo.register_sqlite_functions(conn)
    now = "2026-01-01T00:00:00.000000Z"
    with store.transaction() as tx:
        for tenant in ("danang", "elsewhere"):
            for eid, attrs in ENTITIES.items():
                insts = attrs.get(LOC, [])
                default = next((i for i in insts if "datasetId" not in i), None)
                loc = default["value"] if default else None
                full_id = f"urn:ngsi-ld:Thing:{eid}"
                values = [tenant, full_id, json.dumps(["https://example.org/Thing"])]
                values += [json.dumps(attrs), now, now]
                if pg:
                    tx.execute(
                        "INSERT INTO hub_entities (tenant, id, types, attrs, created_at, "
                        "modified_at, location) VALUES (?, ?, ?::jsonb, ?::jsonb, ?, ?, "
                        "ST_SetSRID(ST_GeomFromGeoJSON(?), 4326))",
                        [*values, json.dumps(loc) if loc else None],
                    )
                    continue
                tx.execute(
                    "INSERT INTO hub_entities (tenant, id, types, attrs, created_at, modified_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    values,
                )
                if loc:
                    rid = tx.execute(
                        "SELECT rid FROM hub_entities WHERE tenant = ? AND id = ?",
                        [tenant, full_id],
                    )[0]["rid"]
                    tx.execute(
                        "INSERT INTO hub_location (rid, minx, maxx, miny, maxy) "
                        "VALUES (?, ?, ?, ?, ?)",
                        [rid, *geo.bbox(loc)],
                    )


def _query(store: Store, gq: geo.GeoQuery, attr: str, indexed: bool) -> set[str]:
    sql, params = geo.geo_sql(gq, store.dialect, attr, indexed)
    with store.transaction(write=False) as tx:
        rows = tx.execute(
            f"SELECT e.id FROM hub_entities e WHERE e.tenant = ? AND {sql}", ["danang", *params]
        )
    ids = [r["id"].removeprefix("urn:ngsi-ld:Thing:") for r in rows]
    assert len(ids) == len(set(ids))
    return set(ids)


@pytest.fixture
def geo_store(store: Store) -> Store:
    _fill(store)
    return store


@pytest.mark.parametrize("indexed", [True, False], ids=["indexed", "json"])
def test_location_queries(geo_store: Store, indexed: bool) -> None:
    got, want = {}, {}
    for georel, geometry, coords, expected in LOCATION_CASES:
        gq = geo.parse_geoquery(georel, geometry, coords)
        assert gq is not None
        key = f"{georel} {geometry} {coords[:40]}"
        got[key] = sorted(_query(geo_store, gq, LOC, indexed))
        want[key] = sorted(expected)
    assert got == want


def test_other_geoproperty_queries(geo_store: Store) -> None:
    got, want = {}, {}
    for georel, geometry, coords, expected in ENTRANCE_CASES:
        gq = geo.parse_geoquery(georel, geometry, coords, "entrance")
        assert gq is not None
        key = f"{georel} {geometry} {coords[:40]}"
        got[key] = sorted(_query(geo_store, gq, ENTRANCE, False))
        want[key] = sorted(expected)
    assert got == want
    # an attribute no entity has: nothing matches, nothing fails
    gq = geo.parse_geoquery("disjoint", "Point", "[0,0]", "nowhere")
    assert gq is not None
    assert _query(geo_store, gq, "https://example.org/nowhere", False) == set()
    # an attribute that is a plain Property everywhere
    assert _query(geo_store, gq, "https://example.org/name", False) == set()


def test_geo_queries_use_the_location_index(geo_store: Store) -> None:
    gq = geo.parse_geoquery("near;maxDistance==1000", "Point", json.dumps(CENTER))
    assert gq is not None
    within = geo.parse_geoquery("within", "Polygon", Q_JSON)
    assert within is not None
    for q in (gq, within):
        sql, params = geo.geo_sql(q, geo_store.dialect, LOC, True)
        with geo_store.transaction(write=False) as tx:
            if geo_store.dialect == "sqlite":
                plan = tx.execute(
                    f"EXPLAIN QUERY PLAN SELECT e.id FROM hub_entities e WHERE {sql}", params
                )
                text = " ".join(str(r["detail"]) for r in plan)
                assert "hub_location VIRTUAL TABLE INDEX" in text, text
            else:
                tx.execute("SET LOCAL enable_seqscan = off")
                plan = tx.execute(f"EXPLAIN SELECT e.id FROM hub_entities e WHERE {sql}", params)
                text = " ".join(str(r["QUERY PLAN"]) for r in plan)
                assert "hub_entities_location" in text, text


def test_sc_distance() -> None:
    """``sc_distance`` orders near results: great circle between points, NULL when none."""
    q = json.dumps(point(108.2, 16.05))
    d = geo.sc_distance(json.dumps(point(108.2, 16.059)), q)
    assert d == pytest.approx(geo.haversine_m(108.2, 16.05, 108.2, 16.059))
    assert 990 < (d or 0) < 1010
    inst = {"type": "GeoProperty", "value": point(108.2, 16.05)}
    assert geo.sc_distance(json.dumps([inst]), q) == 0
    polygon = json.dumps(box(108.21, 108.22, 16.04, 16.06))  # 0.01° east of the point
    assert geo.sc_distance(polygon, q) == pytest.approx(1069, rel=0.01)
    for entity in (None, "", "not json", "[]", json.dumps({"type": "Property", "value": 1})):
        assert geo.sc_distance(entity, q) is None, entity
    assert geo.sc_distance(json.dumps(point(0, 0)), "not json") is None
