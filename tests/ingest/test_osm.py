"""``sencity import osm``: real extracts (Ho Chi Minh City .osm.pbf, Hanoi .osm XML) into
real stores (SQLite and PostgreSQL), counted against the files read independently (the
XML with xml.etree, the PBF with the osmium command-line tool and the counts stated in
the shared data's README); a small hand-made extract for every tagging rule; the
NGSI-LD API's geo-queries on what was imported; bad files and options."""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result
from shapely.geometry import LineString, box

from sencity.cli import _Ctx
from sencity.config import Settings
from sencity.hub.ldcontext import ContextResolver
from sencity.hub.model import Entity
from sencity.hub.store import HubStore, Query
from sencity.ingest.hubwrite import open_platform
from sencity.ingest.osm import (
    ROAD_SPEEDS,
    OsmError,
    import_osm,
    osm_command,
    parse_bbox,
    parse_lanes,
    parse_maxspeed,
    read_osm,
)
from tests.conftest import SHARED
from tests.subs.conftest import make_admin
from tests.test_cli import run

HCMC = SHARED / "data" / "osm" / "hcmc_2018-01-01.osm.pbf"
HANOI = SHARED / "data" / "osm" / "hanoi_dongda_vanmieu.osm"
OSMIUM = shutil.which("osmium")
CTX = ContextResolver(fetch=False).resolve(None)
TYPES = ("RoadSegment", "PointOfInterest", "WaterBody")
#: central Ho Chi Minh City (Districts 1 and 3, Bến Thành)
HCMC_BOX = (106.680, 10.760, 106.710, 10.790)

needs_hanoi = pytest.mark.skipif(not HANOI.exists(), reason="shared OSM data is absent")
needs_hcmc = pytest.mark.skipif(not HCMC.exists(), reason="shared OSM data is absent")
needs_osmium = pytest.mark.skipif(OSMIUM is None, reason="osmium-tool (osmium) is not installed")


# -- helpers ----------------------------------------------------------------------------------
def expand(term: str) -> str:
    return CTX.expand(term)


def hub_of(p: Any) -> HubStore:
    hub: HubStore = p.state["hub"].hub
    return hub


def count(hub: HubStore, tenant: str, etype: str) -> int:
    _, n = hub.query(tenant, Query(types=[[expand(etype)]], limit=0, count=True))
    return n or 0


def ids(hub: HubStore, tenant: str, etype: str) -> set[str]:
    found, _ = hub.query(tenant, Query(types=[[expand(etype)]], limit=1_000_000))
    return {e.id for e in found}


def get(hub: HubStore, tenant: str, eid: str) -> Entity:
    found, _ = hub.query(tenant, Query(ids=[eid], limit=1))
    assert found, eid
    return found[0]


def value(entity: Entity, term: str) -> Any:
    return entity.attrs[expand(term)][0].get("value")


def haversine(coords: list[list[float]]) -> float:
    """Length in metres on a sphere of the mean Earth radius (±0.5 % of the geodesic)."""
    total = 0.0
    for (lon1, lat1), (lon2, lat2) in itertools.pairwise(coords):
        p1, p2 = math.radians(lat1), math.radians(lat2)
        dp, dl = p2 - p1, math.radians(lon2 - lon1)
        a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
        total += 2 * 6_371_008.8 * math.asin(math.sqrt(a))
    return total


def roads_expected(tags_of_ways: Iterator[tuple[int, dict[str, str]]]) -> set[int]:
    return {wid for wid, tags in tags_of_ways if tags.get("highway") in ROAD_SPEEDS}


# -- a hand-made extract for the tagging rules ------------------------------------------------
NODES: dict[int, tuple[float, float]] = {
    1: (108.200, 16.050),
    2: (108.201, 16.050),
    3: (108.202, 16.051),
    4: (108.203, 16.052),
    10: (108.210, 16.060),
    11: (108.220, 16.060),
    12: (108.204, 16.050),
    13: (108.205, 16.050),
    20: (108.230, 16.070),
    21: (108.231, 16.070),
    22: (108.231, 16.071),
    5: (108.240, 16.050),
    6: (108.241, 16.050),
    7: (108.243, 16.050),
    30: (108.100, 16.000),
    31: (108.300, 16.000),
    40: (108.250, 16.050),
    41: (108.252, 16.050),
    42: (108.252, 16.052),
    43: (108.250, 16.052),
    50: (108.260, 16.050),
    51: (108.261, 16.050),
    52: (108.262, 16.050),
    53: (108.263, 16.050),
    60: (108.270, 16.050),
    61: (108.272, 16.050),
    62: (108.272, 16.052),
    63: (108.270, 16.052),
    64: (108.280, 16.050),
    65: (108.285, 16.055),
    66: (108.290, 16.050),
    67: (108.295, 16.060),
    70: (108.300, 16.100),
    71: (108.310, 16.100),
    72: (108.310, 16.110),
    73: (108.300, 16.110),
    74: (108.304, 16.104),
    75: (108.306, 16.104),
    76: (108.306, 16.106),
    77: (108.304, 16.106),
    78: (108.320, 16.050),
    79: (108.321, 16.050),
    80: (108.330, 16.050),
    81: (108.332, 16.052),
    82: (108.332, 16.050),
    83: (108.330, 16.052),
}
NODE_TAGS = {
    50: {"amenity": "police", "name": "Công an phường Hải Châu 1", "name:en": "Ward police"},
    51: {"amenity": "fire_station"},
    52: {"amenity": "cafe", "name": "Cà phê"},
    53: {"amenity": "hospital", "healthcare": "hospital", "name": "Bệnh viện Đà Nẵng"},
}
WAYS: dict[int, tuple[list[int], dict[str, str]]] = {
    100: (
        [1, 2, 3],
        {
            "highway": "primary",
            "name": "Trần Phú",
            "maxspeed": "50 mph",
            "lanes": "2;3",
            "oneway": "-1",
        },
    ),
    101: ([3, 4], {"highway": "residential", "maxspeed": "VN:urban"}),
    102: ([10, 11], {"highway": "motorway", "maxspeed": "none", "name:en": "Expressway"}),
    103: ([12, 13], {"highway": "footway"}),
    104: ([12, 13], {"highway": "proposed"}),
    105: ([20, 21, 22, 20], {"highway": "tertiary", "junction": "roundabout"}),
    106: ([5, 6, 999, 7], {"highway": "service", "oneway": "no"}),
    107: ([30, 31], {"highway": "secondary", "lanes": "4", "maxspeed": "60"}),
    108: ([40, 41, 42, 43, 40], {"amenity": "hospital", "name:vi": "Bệnh viện C"}),
    109: ([60, 61, 62, 63, 60], {"natural": "water", "name": "Hồ Xuân Hương"}),
    110: ([64, 65], {"waterway": "river", "name": "Sông Hàn"}),
    111: ([66, 67], {"natural": "coastline"}),
    112: ([70, 71, 72, 73, 70], {}),
    113: ([74, 75, 76, 77, 74], {}),
    114: ([78, 79], {"waterway": "drain"}),
    115: ([80, 81, 82, 83, 80], {"natural": "water", "water": "pond"}),  # a bow tie
}
RELATIONS: dict[int, tuple[list[tuple[str, int, str]], dict[str, str]]] = {
    200: (
        [("way", 112, "outer"), ("way", 113, "inner")],
        {"type": "multipolygon", "natural": "water", "water": "reservoir", "name": "Hồ chứa"},
    ),
    201: ([("way", 9999, "outer")], {"type": "multipolygon", "natural": "water"}),
    202: ([("node", 52, "")], {"type": "site", "amenity": "school"}),
}


def small_extract(path: Path) -> Path:
    osm = ET.Element("osm", version="0.6", generator="test")
    for nid, (lon, lat) in sorted(NODES.items()):
        node = ET.SubElement(osm, "node", id=str(nid), version="1", lat=str(lat), lon=str(lon))
        for k, v in NODE_TAGS.get(nid, {}).items():
            ET.SubElement(node, "tag", k=k, v=v)
    for wid, (refs, tags) in sorted(WAYS.items()):
        way = ET.SubElement(osm, "way", id=str(wid), version="1")
        for ref in refs:
            ET.SubElement(way, "nd", ref=str(ref))
        for k, v in tags.items():
            ET.SubElement(way, "tag", k=k, v=v)
    for rid, (members, tags) in sorted(RELATIONS.items()):
        rel = ET.SubElement(osm, "relation", id=str(rid), version="1")
        for mtype, ref, role in members:
            ET.SubElement(rel, "member", type=mtype, ref=str(ref), role=role)
        for k, v in tags.items():
            ET.SubElement(rel, "tag", k=k, v=v)
    ET.ElementTree(osm).write(path, encoding="utf-8", xml_declaration=True)
    return path


def coords(*nids: int) -> list[list[float]]:
    return [list(NODES[n]) for n in nids]


def test_parsers() -> None:
    assert parse_maxspeed("50") == (50, "tagged")
    assert parse_maxspeed("50 mph") == (80.5, "tagged")
    assert parse_maxspeed("80 km/h") == (80, "tagged")
    assert parse_maxspeed("20 knots") == (37, "tagged")
    assert parse_maxspeed("VN:urban") == (50, "zone")
    assert parse_maxspeed("VN:rural") == (80, "zone")
    assert parse_maxspeed("VN:motorway") == (120, "zone")
    assert parse_maxspeed("40;60") == (40, "tagged")
    assert parse_maxspeed("none") == (None, "unreadable")
    assert parse_maxspeed("signals") == (None, "unreadable")
    assert parse_maxspeed(None) == (None, "absent")
    assert parse_lanes("2") == 2 and parse_lanes("2;3") == 3
    assert parse_lanes("two") is None and parse_lanes("0") is None
    assert parse_bbox("106.6, 10.7,106.8,10.9") == (106.6, 10.7, 106.8, 10.9)
    for bad, why in [
        ("106.6,10.7,106.8", "expected 4 numbers W,S,E,N"),
        ("106.6,10.7,east,10.9", "E = 'east' is not a number"),
        ("106.8,10.7,106.6,10.9", "west 106.8 must be less than east 106.6"),
        ("106.6,10.9,106.8,10.7", "south 10.9 must be less than north 10.7"),
        ("106.6,-95,106.8,10.7", "latitude S = -95.0 is outside [-90, 90]"),
        ("190,10,191,11", "longitude W = 190.0 is outside [-180, 180]"),
        ("nan,10,106,11", "W = 'nan' is not a finite number"),
    ]:
        with pytest.raises(OsmError, match=re.escape(why)):
            parse_bbox(bad)


def test_small_extract_every_rule(settings: Settings, tmp_path: Path) -> None:
    path = small_extract(tmp_path / "danang_small.osm")
    report = import_osm(settings, path, "danang")
    assert report.errors == []
    assert report.written == {"RoadSegment": 6, "PointOfInterest": 4, "WaterBody": 5}
    assert report.created == report.written
    assert report.categories == {"hospital": 2, "police": 1, "fire_station": 1}
    assert report.skipped == {
        "highway=footway: not a road for vehicles (imported with --all-ways)": 1,
        "highway=proposed: not built": 1,
        "waterway=drain: not imported (rivers, canals and streams are)": 1,
        "water multipolygon relation not assembled "
        "(members missing from the extract or broken rings)": 1,
        "school relation of type=site (only multipolygons)": 1,
    }
    assert report.speeds == {"tagged": 2, "zone": 1, "default": 3}
    assert any(
        "way 102: maxspeed='none' not understood; 100 km/h used" in w for w in report.warnings
    )
    assert any(
        w.startswith("way 106: 1 of its nodes are not in the extract") for w in report.warnings
    )

    rid = "urn:ngsi-ld:RoadSegment:danang:osm-{}".format
    poi = "urn:ngsi-ld:PointOfInterest:danang:osm-{}".format
    wb = "urn:ngsi-ld:WaterBody:danang:osm-{}".format
    with open_platform(settings) as p:
        hub = hub_of(p)
        assert ids(hub, "danang", "RoadSegment") == {rid(w) for w in (100, 101, 102, 105, 106, 107)}
        assert ids(hub, "danang", "PointOfInterest") == {
            poi(x) for x in ("w108", "n50", "n51", "n53")
        }
        assert ids(hub, "danang", "WaterBody") == {
            wb(x) for x in ("w109", "w110", "w111", "r200", "w115")
        }
        # oneway=-1: one way, the geometry reversed; 50 mph; lanes 2;3 → 3
        e = get(hub, "danang", rid(100))
        assert value(e, "location") == {"type": "LineString", "coordinates": coords(3, 2, 1)}
        assert value(e, "oneWay") is True
        assert value(e, "maximumAllowedSpeed") == 80.5
        assert e.attrs[expand("maximumAllowedSpeed")][0]["unitCode"] == "KMH"
        assert value(e, "totalLaneNumber") == 3
        assert value(e, "roadClass") == "primary" and value(e, "name") == "Trần Phú"
        assert value(e, "source") == "osm"
        length = value(e, "length")
        assert e.attrs[expand("length")][0]["unitCode"] == "MTR"
        assert abs(length - haversine(coords(1, 2, 3))) < 0.005 * length
        # a zone limit; no oneway tag → two ways; no lanes → no totalLaneNumber
        e = get(hub, "danang", rid(101))
        assert value(e, "maximumAllowedSpeed") == 50 and value(e, "oneWay") is False
        assert expand("totalLaneNumber") not in e.attrs and expand("name") not in e.attrs
        # a motorway is one way unless tagged; maxspeed=none → the class default
        e = get(hub, "danang", rid(102))
        assert value(e, "oneWay") is True and value(e, "maximumAllowedSpeed") == 100
        assert value(e, "name") == "Expressway"
        # a roundabout is one way, kept closed
        e = get(hub, "danang", rid(105))
        assert value(e, "oneWay") is True
        assert value(e, "location")["coordinates"] == coords(20, 21, 22, 20)
        assert value(e, "maximumAllowedSpeed") == ROAD_SPEEDS["tertiary"]
        # a node missing from the extract: the longest located part
        e = get(hub, "danang", rid(106))
        assert value(e, "location")["coordinates"] == coords(5, 6)
        assert value(e, "oneWay") is False
        # a closed way's POI at the centroid; name:vi when there is no name
        e = get(hub, "danang", poi("w108"))
        assert value(e, "location") == {"type": "Point", "coordinates": [108.251, 16.051]}
        assert value(e, "name") == "Bệnh viện C" and value(e, "category") == ["hospital"]
        e = get(hub, "danang", poi("n50"))
        assert value(e, "category") == ["police"] and value(e, "alternateName") == "Ward police"
        assert value(e, "location") == {"type": "Point", "coordinates": list(NODES[50])}
        e = get(hub, "danang", poi("n53"))  # amenity and healthcare: one category
        assert value(e, "category") == ["hospital"]
        # water: a lake polygon, a river line, a coastline, a multipolygon with its hole
        e = get(hub, "danang", wb("w109"))
        assert value(e, "waterType") == "lake"
        assert value(e, "location")["type"] == "Polygon"
        assert sorted(map(tuple, value(e, "location")["coordinates"][0])) == sorted(
            map(tuple, coords(60, 61, 62, 63, 60))
        )
        e = get(hub, "danang", wb("w110"))
        assert value(e, "location") == {"type": "LineString", "coordinates": coords(64, 65)}
        assert value(e, "waterType") == "river" and value(e, "name") == "Sông Hàn"
        assert value(get(hub, "danang", wb("w111")), "waterType") == "coastline"
        e = get(hub, "danang", wb("r200"))
        geom = value(e, "location")
        assert geom["type"] == "Polygon" and len(geom["coordinates"]) == 2  # outer + hole
        assert value(e, "waterType") == "reservoir" and value(e, "name") == "Hồ chứa"
        # a self-intersecting pond is repaired into two valid triangles
        e = get(hub, "danang", wb("w115"))
        assert value(e, "location")["type"] == "MultiPolygon"
        assert len(value(e, "location")["coordinates"]) == 2
        assert value(e, "waterType") == "pond"

    # --all-ways adds the footway (5 km/h); the same ids again: nothing duplicated
    again = import_osm(settings, path, "danang", all_ways=True)
    assert again.written == {"RoadSegment": 7, "PointOfInterest": 4, "WaterBody": 5}
    assert again.created == {"RoadSegment": 1}
    with open_platform(settings) as p:
        hub = hub_of(p)
        assert count(hub, "danang", "RoadSegment") == 7
        assert count(hub, "danang", "PointOfInterest") == 4
        assert value(get(hub, "danang", rid(103)), "maximumAllowedSpeed") == 5


def test_bbox_keeps_crossing_ways_whole(settings: Settings, tmp_path: Path) -> None:
    path = small_extract(tmp_path / "danang_small.osm")
    # no node inside: way 107 crosses the box from west to east, everything else is north
    report = import_osm(settings, path, "danang", bbox=(108.205, 15.995, 108.215, 16.005))
    assert report.written == {"RoadSegment": 1}
    # 7 highway ways (a footway and a proposed road too), 4 POIs, 4 water ways, 1 relation
    assert report.skipped["outside --bbox"] == 7 + 4 + 4 + 1
    with open_platform(settings) as p:
        e = get(hub_of(p), "danang", "urn:ngsi-ld:RoadSegment:danang:osm-107")
        assert value(e, "location")["coordinates"] == coords(30, 31)  # not cut
    empty = import_osm(settings, path, "danang", bbox=(0.0, 0.0, 1.0, 1.0), dry_run=True)
    assert empty.total == 0
    assert empty.warnings[-1] == "nothing of interest inside --bbox 0.0,0.0,1.0,1.0"


# -- Hanoi: an OSM XML file, counted with xml.etree ------------------------------------------
def hanoi_expected() -> dict[str, set[str]]:
    """Entity ids the Hanoi file should give, found with xml.etree."""
    root = ET.parse(HANOI).getroot()
    nodes = {n.get("id") for n in root.iter("node")}
    ways: dict[str, tuple[list[str], dict[str, str]]] = {}
    out: dict[str, set[str]] = {t: set() for t in TYPES}
    cats = {("amenity", v) for v in ("hospital", "clinic", "police", "fire_station", "school")}
    cats |= {("healthcare", "hospital"), ("healthcare", "clinic")}

    def tags(e: ET.Element) -> dict[str, str]:
        return {t.get("k", ""): t.get("v", "") for t in e.iter("tag")}

    def is_poi(t: dict[str, str]) -> bool:
        return any(t.get(k) == v for k, v in cats)

    for n in root.iter("node"):
        if is_poi(tags(n)):
            out["PointOfInterest"].add(f"osm-n{n.get('id')}")
    for w in root.iter("way"):
        refs, t = [nd.get("ref", "") for nd in w.iter("nd")], tags(w)
        ways[w.get("id", "")] = (refs, t)
        assert all(r in nodes for r in refs)  # the file has complete ways
        closed = len(refs) >= 4 and refs[0] == refs[-1]
        if t.get("highway") in ROAD_SPEEDS:
            out["RoadSegment"].add(f"osm-{w.get('id')}")
        if is_poi(t):
            out["PointOfInterest"].add(f"osm-w{w.get('id')}")
        if (t.get("natural") == "water" or t.get("waterway") == "riverbank") and closed:
            out["WaterBody"].add(f"osm-w{w.get('id')}")
        if t.get("waterway") in ("river", "canal", "stream") or t.get("natural") == "coastline":
            out["WaterBody"].add(f"osm-w{w.get('id')}")
    for r in root.iter("relation"):
        t = tags(r)
        if t.get("type") != "multipolygon":
            continue
        members = [m.get("ref", "") for m in r.iter("member") if m.get("type") == "way"]
        complete = all(m in ways for m in members)
        if complete and (t.get("natural") == "water" or t.get("waterway") == "riverbank"):
            out["WaterBody"].add(f"osm-r{r.get('id')}")
        if complete and is_poi(t):
            out["PointOfInterest"].add(f"osm-r{r.get('id')}")
    return out


def hanoi_lines() -> dict[str, LineString]:
    root = ET.parse(HANOI).getroot()
    loc = {n.get("id"): (float(n.get("lon", 0)), float(n.get("lat", 0))) for n in root.iter("node")}
    lines = {}
    for w in root.iter("way"):
        t = {x.get("k"): x.get("v") for x in w.iter("tag")}
        if t.get("highway") in ROAD_SPEEDS:
            lines[f"osm-{w.get('id')}"] = LineString([loc[nd.get("ref")] for nd in w.iter("nd")])
    return lines


@needs_hanoi
@pytest.mark.timeout(120)
def test_hanoi_xml_through_the_ngsi_ld_api(settings: Settings, store_url: str, serve: Any) -> None:
    expected = hanoi_expected()
    assert len(expected["RoadSegment"]) > 300
    report = import_osm(settings, HANOI, "hanoi")
    assert report.errors == []
    assert report.written == {t: len(v) for t, v in expected.items() if v}
    # 527 ways carry a highway tag (the README's 738 counts nodes and relations too)
    highway_skips = sum(n for r, n in report.skipped.items() if r.startswith("highway="))
    assert report.written["RoadSegment"] + highway_skips == 527
    again = import_osm(settings, HANOI, "hanoi")
    assert again.written == report.written and again.created == {}

    server = serve(store_url)
    token = make_admin(store_url)
    headers = {"Authorization": f"Bearer {token}", "NGSILD-Tenant": "hanoi"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=30) as http:

        def query(**params: Any) -> list[dict[str, Any]]:
            r = http.get(
                "/ngsi-ld/v1/entities", params={"limit": 1000, "options": "keyValues", **params}
            )
            assert r.status_code == 200, r.text
            items: list[dict[str, Any]] = r.json()
            return items

        for etype, want in expected.items():
            got = {e["id"].rsplit(":", 1)[1] for e in query(type=etype)}
            assert got == want, etype
        # geo-query: the roads crossing a box around Văn Miếu (Temple of Literature)
        w, s, e, n = 105.8340, 21.0265, 105.8370, 21.0295
        area = box(w, s, e, n)
        want = {k for k, line in hanoi_lines().items() if line.intersects(area)}
        assert 5 < len(want) < len(expected["RoadSegment"])
        ring = [[w, s], [e, s], [e, n], [w, n], [w, s]]
        got_roads = query(
            type="RoadSegment",
            georel="intersects",
            geometry="Polygon",
            coordinates=json.dumps([ring]),
        )
        assert {r["id"].rsplit(":", 1)[1] for r in got_roads} == want
        sample = got_roads[0]
        assert sample["source"] == "osm" and sample["location"]["type"] == "LineString"
        assert sample["roadClass"] in ROAD_SPEEDS and isinstance(sample["oneWay"], bool)
        assert isinstance(sample["maximumAllowedSpeed"], int | float)
        # the police stations within 2 km of Văn Miếu
        police = query(
            type="PointOfInterest",
            q='category=="police"',
            georel="near;maxDistance==2000",
            geometry="Point",
            coordinates="[105.8355,21.0285]",
        )
        assert police and all("police" in p["category"] for p in police)
        # the entity's own document
        one = http.get(f"/ngsi-ld/v1/entities/{sample['id']}")
        assert one.status_code == 200, one.text
        assert one.json()["length"]["unitCode"] == "MTR"


# -- Ho Chi Minh City: a PBF file, counted with osmium-tool ------------------------------------
@pytest.fixture(scope="module")
def hcmc_export(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[int, dict[str, Any]]]:
    """The HCMC file as osmium-tool's ``export`` writes it: every way (as a line, or an
    area for ``area=yes``) and every multipolygon it could assemble, by type and id."""
    assert OSMIUM is not None
    out = tmp_path_factory.mktemp("osmium")
    config = out / "lines.json"
    config.write_text('{"linear_tags": true, "area_tags": false}')
    seq = out / "hcmc.geojsonseq"
    args = ["-c", str(config), "-f", "geojsonseq", "-a", "type,id", "-o", str(seq), "-O"]
    subprocess.run(
        [OSMIUM, "export", str(HCMC), *args],
        check=True,
        capture_output=True,
    )
    out: dict[str, dict[int, dict[str, Any]]] = {"way": {}, "relation": {}}
    with seq.open(encoding="utf-8") as f:
        for line in f:
            feature = json.loads(line.lstrip("\x1e"))
            props = feature["properties"]
            if props.get("@type") in out:
                out[props["@type"]][int(props["@id"])] = feature
    return out


@pytest.fixture(scope="module")
def hcmc_ways(hcmc_export: dict[str, dict[int, dict[str, Any]]]) -> dict[int, dict[str, Any]]:
    return hcmc_export["way"]


def is_water_area(tags: dict[str, Any]) -> bool:
    return (
        tags.get("natural") == "water"
        or tags.get("waterway") == "riverbank"
        or tags.get("landuse") == "reservoir"
    )


def line_of(feature: dict[str, Any]) -> list[list[float]]:
    """A way's positions: its line, or the outer ring of what osmium made an area."""
    geom = feature["geometry"]
    if geom["type"] == "MultiPolygon":
        ring: list[list[float]] = geom["coordinates"][0][0]
        return ring
    line: list[list[float]] = geom["coordinates"]
    return line


def osmium_tag_counts(*filters: str) -> dict[str, int]:
    assert OSMIUM is not None
    res = subprocess.run(
        [OSMIUM, "tags-count", str(HCMC), *filters], check=True, capture_output=True, text=True
    )
    counts = {}
    for line in res.stdout.splitlines():
        n, key, val = line.split("\t")
        counts[key.strip('"') + "=" + val.strip('"')] = int(n)
    return counts


@needs_hcmc
@needs_osmium
@pytest.mark.timeout(120)
def test_hcmc_whole_file_counts(hcmc_export: dict[str, dict[int, dict[str, Any]]]) -> None:
    hcmc_ways = hcmc_export["way"]
    read = read_osm(HCMC, "hcmc")
    try:
        roads = sum(1 for f in hcmc_ways.values() if f["properties"].get("highway") in ROAD_SPEEDS)
        highway_ways = sum(1 for f in hcmc_ways.values() if "highway" in f["properties"])
        assert highway_ways == 33_044  # the README's figure
        assert read.counts["RoadSegment"] == roads
        skipped = sum(n for r, n in read.skipped.items() if r.startswith("highway="))
        assert read.counts["RoadSegment"] + skipped == highway_ways
        tags = osmium_tag_counts(
            *(f"amenity={v}" for v in ("hospital", "clinic", "police", "fire_station", "school"))
        )
        # the README states 132 hospitals, 58 police stations, 7 fire stations, 859 schools
        assert (tags["amenity=hospital"], tags["amenity=police"]) == (132, 58)
        assert (tags["amenity=fire_station"], tags["amenity=school"]) == (7, 859)
        assert read.categories == {
            "hospital": tags["amenity=hospital"],
            "clinic": tags["amenity=clinic"],
            "police": tags["amenity=police"],
            "fire_station": tags["amenity=fire_station"],
            "school": tags["amenity=school"],
        }
        assert read.counts["PointOfInterest"] == sum(tags.values())
        # water: closed ways, waterway lines and coastlines, and the multipolygons
        # osmium-tool assembled (it cannot either where member ways lie outside the file)
        water_areas = sum(
            1
            for f in hcmc_ways.values()
            if is_water_area(f["properties"])
            and len(ring := line_of(f)) >= 4
            and ring[0] == ring[-1]
        )
        water_lines = sum(
            1
            for f in hcmc_ways.values()
            if f["properties"].get("waterway") in ("river", "canal", "stream")
            or f["properties"].get("natural") == "coastline"
        )
        water_relations = sum(
            1 for f in hcmc_export["relation"].values() if is_water_area(f["properties"])
        )
        assert water_relations > 30
        assert read.counts["WaterBody"] == water_areas + water_lines + water_relations
        assert read.warnings == []
    finally:
        read.spool.close()


@needs_hcmc
@needs_osmium
@pytest.mark.timeout(180)
def test_hcmc_bbox_import(settings: Settings, hcmc_ways: dict[int, dict[str, Any]]) -> None:
    area = box(*HCMC_BOX)
    want = {
        wid
        for wid, f in hcmc_ways.items()
        if f["properties"].get("highway") in ROAD_SPEEDS and LineString(line_of(f)).intersects(area)
    }
    assert len(want) > 1000
    report = import_osm(settings, HCMC, "hcmc", bbox=HCMC_BOX)
    assert report.errors == []
    assert report.written["RoadSegment"] == len(want)
    with open_platform(settings) as p:
        hub = hub_of(p)
        got = ids(hub, "hcmc", "RoadSegment")
        assert got == {f"urn:ngsi-ld:RoadSegment:hcmc:osm-{w}" for w in want}
        # geometry as osmium-tool builds it, kept whole, and its length
        for wid in sorted(want)[:: max(1, len(want) // 20)]:
            e = get(hub, "hcmc", f"urn:ngsi-ld:RoadSegment:hcmc:osm-{wid}")
            if hcmc_ways[wid]["geometry"]["type"] != "LineString":
                continue  # area=yes: osmium-tool makes a polygon (its ring may turn)
            line = hcmc_ways[wid]["geometry"]["coordinates"]
            props = hcmc_ways[wid]["properties"]
            if props.get("oneway") == "-1":
                line = line[::-1]
            assert value(e, "location")["coordinates"] == line
            assert value(e, "roadClass") == props["highway"]
            length = value(e, "length")
            assert abs(length - haversine(line)) <= 0.005 * length + 0.1
        pois = count(hub, "hcmc", "PointOfInterest")
        assert pois == report.written["PointOfInterest"] > 10


# -- the command --------------------------------------------------------------------------------
def cli(args: list[str], cwd: Path, url: str) -> subprocess.CompletedProcess[str]:
    return run(["import", "osm", *args], cwd, store_url=url, timeout=120)


def store_counts(url: str, tmp_path: Path, tenant: str) -> Counter[str]:
    settings = Settings.model_validate({"store": {"url": url}, "data_dir": str(tmp_path)})
    with open_platform(settings) as p:
        return Counter({t: count(hub_of(p), tenant, t) for t in TYPES})


@needs_hanoi
@pytest.mark.timeout(120)
def test_cli_dry_run_import_and_summary(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    expected = {t: len(v) for t, v in hanoi_expected().items()}
    res = cli([str(HANOI), "--tenant", "hanoi", "--dry-run"], tmp_path, url)
    assert res.returncode == 0, res.stderr
    roads = expected["RoadSegment"]
    assert re.search(rf"RoadSegment +{roads:,} would be written", res.stdout), res.stdout
    assert sum(store_counts(url, tmp_path, "hanoi").values()) == 0
    res = cli([str(HANOI), "--tenant", "hanoi"], tmp_path, url)
    assert res.returncode == 0, res.stderr
    assert re.search(rf"RoadSegment +{roads:,} written, {roads:,} new", res.stdout), res.stdout
    assert "highway=footway: not a road for vehicles (imported with --all-ways)" in res.stdout
    assert "entities/s" in res.stdout and "skipped:" in res.stdout
    assert "writing" in res.stderr  # the progress bar
    assert store_counts(url, tmp_path, "hanoi") == expected
    res = cli([str(HANOI), "--tenant", "hanoi"], tmp_path, url)
    assert re.search(rf"RoadSegment +{roads:,} written, 0 new", res.stdout), res.stdout
    assert store_counts(url, tmp_path, "hanoi") == expected


def invoke(args: list[str], url: str) -> Result:
    """The command in this process (the option and file checks, without a start-up)."""
    env = {k: None for k in os.environ if k.upper().startswith("SENCITY_")}
    return CliRunner().invoke(
        osm_command, args, obj=_Ctx(None), env={**env, "SENCITY_STORE__URL": url}
    )


def test_cli_bad_file_and_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    good = small_extract(tmp_path / "small.osm")
    truncated = tmp_path / "truncated.osm"
    truncated.write_bytes(good.read_bytes()[: len(good.read_bytes()) * 2 // 3])
    garbage = tmp_path / "garbage.osm.pbf"
    garbage.write_bytes(b"not a pbf file at all\n" * 10)
    cases = [
        ([str(tmp_path / "absent.osm.pbf")], "absent.osm.pbf: no such file"),
        ([str(truncated)], "truncated.osm: cannot be read as OpenStreetMap data: XML parsing"),
        ([str(garbage)], "garbage.osm.pbf: cannot be read as OpenStreetMap data: PBF error"),
        ([str(good), "--bbox", "1,2,3"], "expected 4 numbers W,S,E,N"),
        ([str(good), "--bbox", "108.3,16,108.2,16.1"], "west 108.3 must be less than east 108.2"),
        ([str(good), "--tenant", "Đà Nẵng"], "not a tenant name"),
    ]
    for args, message in cases:
        res = invoke(args, url)
        assert res.exit_code == 2, (args, res.output)
        assert message in res.stderr, (args, res.output)
        assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    # nothing was written by any of them
    assert sum(store_counts(url, tmp_path, "danang").values()) == 0
    res = invoke([str(good), "--tenant", "danang", "--bbox", "108.19,16.04,108.21,16.06"], url)
    assert res.exit_code == 0, res.output
    assert "inside --bbox 108.19,16.04,108.21,16.06" in res.stdout
    assert store_counts(url, tmp_path, "danang")["RoadSegment"] == 3  # 100, 101, 102


@needs_hcmc
def test_cli_truncated_pbf_writes_nothing(tmp_path: Path) -> None:
    """The first blocks of the file read well; the end is missing: nothing is written."""
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    cut = tmp_path / "hcmc_cut.osm.pbf"
    cut.write_bytes(HCMC.read_bytes()[:3_000_000])
    res = cli([str(cut), "--tenant", "hcmc"], tmp_path, url)
    assert res.returncode == 2, res.stdout
    assert res.stderr.strip().endswith(
        "error: hcmc_cut.osm.pbf: cannot be read as OpenStreetMap data: PBF error: unexpected EOF"
    ), res.stderr
    assert "Traceback" not in res.stderr
    assert sum(store_counts(url, tmp_path, "hcmc").values()) == 0
