"""``sencity import gtfs``: real feeds into a real store (SQLite and PostgreSQL), counted
against the feed's own rows read here with the csv module; the partial Hanoi feed's
warnings; malformed feeds named by file, line and field; dry runs; the Vehicle body."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest

from sencity.config import Settings
from sencity.errors import BadRequest
from sencity.hub.ldcontext import ContextResolver
from sencity.hub.model import Entity
from sencity.hub.store import HubStore, Query
from sencity.ingest.gtfs import GTFS_CONTEXT, GtfsError, import_feed, read_feed, validate
from sencity.ingest.hubwrite import HubWriter, open_platform
from sencity.ingest.vehicles import VEHICLE_CONTEXT, vehicle_entity
from tests.conftest import SHARED
from tests.test_cli import run

CAIRNS = SHARED / "data" / "transit" / "cairns_gtfs.zip"
HANOI = SHARED / "data" / "transit" / "hanoi_gtfs_partial"
UM_CONTEXT = SHARED / "data" / "smart-data-models" / "dataModel.UrbanMobility" / "context.jsonld"
UM = "https://smartdatamodels.org/dataModel.UrbanMobility/"
LOCATION = "https://uri.etsi.org/ngsi-ld/location"

needs_data = pytest.mark.skipif(
    not CAIRNS.exists() or not HANOI.exists(), reason="shared transit data is absent"
)


def zip_rows(name: str) -> list[dict[str, str]]:
    """A file of the Cairns zip, read independently of the importer."""
    with zipfile.ZipFile(CAIRNS) as zf, zf.open(name) as f:
        return list(csv.DictReader(io.TextIOWrapper(f, encoding="utf-8-sig")))


def dir_rows(name: str) -> list[dict[str, str]]:
    with open(HANOI / name, encoding="utf-8-sig", newline="") as f:
        return [r for r in csv.DictReader(f) if any(r.values())]


def count(hub: HubStore, tenant: str, etype: str) -> int:
    _, n = hub.query(tenant, Query(types=[[UM + etype]], limit=0, count=True))
    return n or 0


def get(hub: HubStore, tenant: str, eid: str) -> Entity:
    found, _ = hub.query(tenant, Query(ids=[eid], limit=1))
    assert found, eid
    return found[0]


def first(entity: Entity, term: str) -> dict[str, Any]:
    return entity.attrs[LOCATION if term == "location" else GTFS_CONTEXT[term]][0]


def exists(hub: HubStore, tenant: str, eid: str) -> bool:
    found, _ = hub.query(tenant, Query(ids=[eid], limit=1))
    return bool(found)


def run_cli(args: list[str], cwd: Path, store_url: str) -> subprocess.CompletedProcess[str]:
    return run(["import", "gtfs", *args], cwd, store_url=store_url, timeout=120)


@needs_data
@pytest.mark.timeout(240)  # 30-80 s on a 2-core machine (PostgreSQL the slower)
def test_cairns_counts_locations_relationships_and_idempotence(settings: Settings) -> None:
    expected = {
        "GtfsAgency": len(zip_rows("agency.txt")),
        "GtfsStop": len(zip_rows("stops.txt")),
        "GtfsRoute": len(zip_rows("routes.txt")),
        "GtfsTrip": len(zip_rows("trips.txt")),
        "GtfsShape": len({r["shape_id"] for r in zip_rows("shapes.txt")}),
        "GtfsStopTime": len(zip_rows("stop_times.txt")),
        "GtfsCalendarRule": len(zip_rows("calendar.txt")),
        "GtfsCalendarDateRule": len(zip_rows("calendar_dates.txt")),
        "GtfsService": len(
            {r["service_id"] for f in ("calendar.txt", "trips.txt") for r in zip_rows(f)}
            | {r["service_id"] for r in zip_rows("calendar_dates.txt")}
        ),
    }
    report = import_feed(settings, CAIRNS, "cairns", "cns")
    assert report.written == expected and report.created == expected
    assert report.warnings == [] and report.errors == []
    with open_platform(settings) as p:
        hub: HubStore = p.state["hub"].hub
        for etype, n in expected.items():
            assert count(hub, "cairns", etype) == n, etype
        # a stop's location is its lat/lon
        stop = zip_rows("stops.txt")[7]
        ent = get(hub, "cairns", f"urn:ngsi-ld:GtfsStop:cns:{stop['stop_id']}")
        assert first(ent, "location")["value"] == {
            "type": "Point",
            "coordinates": [float(stop["stop_lon"]), float(stop["stop_lat"])],
        }
        assert first(ent, "name")["value"] == stop["stop_name"]
        assert first(ent, "operatedBy")["object"] == ["urn:ngsi-ld:GtfsAgency:cns:default"]
        # a trip's relationships point at entities that exist
        trip = zip_rows("trips.txt")[100]
        ent = get(hub, "cairns", f"urn:ngsi-ld:GtfsTrip:cns:{trip['trip_id']}")
        for term, etype, key in (
            ("hasRoute", "GtfsRoute", "route_id"),
            ("hasService", "GtfsService", "service_id"),
            ("hasShape", "GtfsShape", "shape_id"),
        ):
            target = first(ent, term)["object"]
            assert target == f"urn:ngsi-ld:{etype}:cns:{trip[key]}"
            assert exists(hub, "cairns", target), target
        # a stop time relates its trip and stop
        st = zip_rows("stop_times.txt")[5]
        ent = get(
            hub, "cairns", f"urn:ngsi-ld:GtfsStopTime:cns:{st['trip_id']}:{st['stop_sequence']}"
        )
        assert exists(hub, "cairns", first(ent, "hasStop")["object"])
        assert exists(hub, "cairns", first(ent, "hasTrip")["object"])
        assert first(ent, "arrivalTime")["value"] == st["arrival_time"]
        assert first(ent, "stopSequence")["value"] == int(st["stop_sequence"])
        # a shape's points in shape_pt_sequence order (the file's order shuffled is irrelevant)
        points = [r for r in zip_rows("shapes.txt") if r["shape_id"] == trip["shape_id"]]
        points.sort(key=lambda r: int(r["shape_pt_sequence"]))
        ent = get(hub, "cairns", f"urn:ngsi-ld:GtfsShape:cns:{trip['shape_id']}")
        line = first(ent, "location")["value"]
        assert line["type"] == "LineString"
        assert line["coordinates"] == [
            [float(r["shape_pt_lon"]), float(r["shape_pt_lat"])] for r in points
        ]
    # the same feed again: the same entities, none new
    again = import_feed(settings, CAIRNS, "cairns", "cns")
    assert again.written == expected and again.created == {}
    with open_platform(settings) as p:
        hub = p.state["hub"].hub
        for etype, n in expected.items():
            assert count(hub, "cairns", etype) == n, etype


@needs_data
def test_partial_hanoi_feed_imports_what_is_there(settings: Settings) -> None:
    report = import_feed(settings, HANOI, "hanoi")
    assert report.prefix == "hanoi_gtfs_partial"
    assert report.warnings == [
        "agency.txt: absent — routes, stops and services have no operatedBy",
        "stop_times.txt: absent — trips have no stop times",
        "shapes.txt: absent — trips have no shapes (no hasShape)",
    ]
    assert report.written == {
        "GtfsService": len({r["service_id"] for r in dir_rows("trips.txt")}),
        "GtfsCalendarRule": len(dir_rows("calendar.txt")),
        "GtfsStop": len(dir_rows("stops.txt")),
        "GtfsRoute": len(dir_rows("routes.txt")),
        "GtfsTrip": len(dir_rows("trips.txt")),
    }
    with open_platform(settings) as p:
        hub: HubStore = p.state["hub"].hub
        assert count(hub, "hanoi", "GtfsStopTime") == 0
        trip = dir_rows("trips.txt")[0]
        ent = get(hub, "hanoi", f"urn:ngsi-ld:GtfsTrip:hanoi_gtfs_partial:{trip['trip_id']}")
        assert UM + "hasShape" not in ent.attrs
        assert exists(hub, "hanoi", first(ent, "hasRoute")["object"])


@needs_data
@pytest.mark.timeout(240)
def test_cli_imports_cairns_and_dry_run_writes_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    res = run_cli([str(CAIRNS), "--dry-run", "--tenant", "cairns"], tmp_path, url)
    assert res.returncode == 0, res.stderr
    assert "GtfsStopTime" in res.stdout and "would write" in res.stdout
    settings = Settings.model_validate({"store": {"url": url}, "data_dir": str(tmp_path)})
    with open_platform(settings) as p:
        assert count(p.state["hub"].hub, "cairns", "GtfsStop") == 0
    res = run_cli([str(CAIRNS), "--tenant", "cairns", "--prefix", "cns"], tmp_path, url)
    assert res.returncode == 0, res.stderr
    stops = len(zip_rows("stops.txt"))
    assert re.search(rf"GtfsStop +{stops:,} written, {stops:,} new", res.stdout), res.stdout
    assert "entities/s" in res.stdout and "warnings: 0" in res.stdout
    with open_platform(settings) as p:
        hub = p.state["hub"].hub
        assert count(hub, "cairns", "GtfsStop") == stops
        assert count(hub, "cairns", "GtfsStopTime") == len(zip_rows("stop_times.txt"))


@needs_data
def test_cli_partial_feed_warns_and_exits_0(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    res = run_cli([str(HANOI), "--only", "stops,routes"], tmp_path, url)
    assert res.returncode == 0, res.stderr
    assert "warning: stop_times.txt: absent — trips have no stop times" in res.stderr
    assert "GtfsStop" in res.stdout and "GtfsTrip" not in res.stdout


def write_feed(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


GOOD = {
    "stops.txt": "stop_id,stop_name,stop_lat,stop_lon\nA,Alpha,21.0,105.8\nB,Beta,21.1,105.9\n",
    "routes.txt": "route_id,route_short_name,route_type\nR1,1,3\n",
    "trips.txt": "route_id,service_id,trip_id\nR1,WK,T1\n",
    "stop_times.txt": (
        "trip_id,arrival_time,departure_time,stop_id,stop_sequence\n"
        "T1,08:00:00,08:00:00,A,1\nT1,08:05:00,08:05:00,B,2\n"
    ),
}


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        (
            "stops.txt",
            "stop_id,stop_name,stop_lat,stop_lon\nA,Alpha,21.0,105.8\nB,Beta,abc,105.9\n",
            "stops.txt, line 3, field 'stop_lat': 'abc' is not a number",
        ),
        (
            "stop_times.txt",
            "trip_id,arrival_time,departure_time,stop_id,stop_sequence\n"
            "T1,08:00:00,08:00:00,A,1\nT1,8h05,08:05:00,B,2\n",
            "stop_times.txt, line 3, field 'arrival_time': '8h05' is not HH:MM:SS",
        ),
        (
            "trips.txt",
            "route_id,service_id,trip_id\nR1,,T1\n",
            "trips.txt, line 2, field 'service_id': empty (required)",
        ),
        (
            "routes.txt",
            "route_id,route_short_name\nR1,1\n",
            "routes.txt, line 1: required field 'route_type' is missing from the header",
        ),
        (
            "stops.txt",
            "stop_id,stop_name,stop_lat,stop_lon\nA,Alpha,21.0,105.8\nA,Again,21.1,105.9\n",
            "stops.txt, line 3, field 'stop_id': duplicate 'A'",
        ),
    ],
)
def test_malformed_feed_names_file_line_and_field(
    tmp_path: Path, name: str, text: str, message: str
) -> None:
    feed = write_feed(tmp_path / "feed", {**GOOD, name: text})
    with pytest.raises(GtfsError) as err:
        parsed = read_feed(feed)
        problems = validate(parsed)
        if problems:
            raise GtfsError(problems)
    assert message in err.value.problems


def test_cli_malformed_feed_is_an_error_and_writes_nothing(tmp_path: Path) -> None:
    bad = "stop_id,stop_name,stop_lat,stop_lon\nA,Alpha,21.0,105.8\nB,Beta,abc,105.9\n"
    feed = write_feed(tmp_path / "feed", {**GOOD, "stops.txt": bad})
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    res = run_cli([str(feed)], tmp_path, url)
    assert res.returncode == 1
    assert "error: stops.txt, line 3, field 'stop_lat': 'abc' is not a number" in res.stderr
    assert not (tmp_path / "cli.db").exists()


def test_tiny_feed_dry_run_then_write(settings: Settings, tmp_path: Path) -> None:
    feed = write_feed(tmp_path / "tiny", GOOD)
    dry = import_feed(settings, feed, "hue", dry_run=True)
    assert dry.written == {
        "GtfsService": 1,
        "GtfsStop": 2,
        "GtfsRoute": 1,
        "GtfsTrip": 1,
        "GtfsStopTime": 2,
    }
    assert "calendar.txt, calendar_dates.txt: absent — services have no calendar rules" in (
        dry.warnings
    )
    with open_platform(settings) as p:
        assert count(p.state["hub"].hub, "hue", "GtfsStop") == 0
    done = import_feed(settings, feed, "hue", "t", batch=1)
    assert done.created == dry.written
    with open_platform(settings) as p:
        hub = p.state["hub"].hub
        st = get(hub, "hue", "urn:ngsi-ld:GtfsStopTime:t:T1:2")
        assert first(st, "hasStop")["object"] == "urn:ngsi-ld:GtfsStop:t:B"


@pytest.mark.skipif(not UM_CONTEXT.exists(), reason="Smart Data Models context is absent")
def test_inline_context_matches_the_published_one() -> None:
    resolver = ContextResolver(fetch=False)
    published = resolver.resolve(json.loads(UM_CONTEXT.read_text())["@context"])
    ours = resolver.resolve(GTFS_CONTEXT)
    for term in GTFS_CONTEXT:
        assert ours.expand(term) == published.expand(term), term


def test_vehicle_entity_body(settings: Settings) -> None:
    body = vehicle_entity("29B-123.45", "01_1", 21.0285, 105.8542, 10.0, 32.5, 1767254400)
    assert body["id"] == "urn:ngsi-ld:Vehicle:29B-123.45"
    assert body["location"]["value"] == {"type": "Point", "coordinates": [105.8542, 21.0285]}
    assert body["location"]["observedAt"] == "2026-01-01T08:00:00Z"
    assert body["bearing"]["value"] == 10.0 and body["speed"]["value"] == 32.5
    assert body["vehicleType"]["value"] == "bus"
    assert body["refRoute"]["object"] == "urn:ngsi-ld:GtfsRoute:01_1"
    with_prefix = vehicle_entity(
        "v1", "R 2", 1, 2, None, None, "2026-01-01T08:00:00+07:00", prefix="hn"
    )
    assert with_prefix["refRoute"]["object"] == "urn:ngsi-ld:GtfsRoute:hn:R%202"
    assert with_prefix["location"]["observedAt"] == "2026-01-01T01:00:00Z"
    assert "bearing" not in with_prefix and "speed" not in with_prefix
    for bad in ({"lat": 91.0}, {"lon": float("nan")}, {"speed": -3.0}):
        args: dict[str, Any] = {"lat": 1.0, "lon": 2.0, "speed": 1.0, **bad}
        with pytest.raises(BadRequest):
            vehicle_entity("v", None, args["lat"], args["lon"], None, args["speed"], 0)
    with pytest.raises(BadRequest):
        vehicle_entity("v", None, 1, 2, None, None, "2026-01-01T08:00:00")  # no time zone
    # the hub takes it, with the Transportation terms expanded as the model's context does
    with open_platform(settings) as p:
        res = HubWriter.of(p, VEHICLE_CONTEXT).write("hanoi", [body])
        assert res.errors == {} and res.created == [body["id"]]
        ent = get(p.state["hub"].hub, "hanoi", body["id"])
        assert ent.types == ["https://smartdatamodels.org/dataModel.Transportation/Vehicle"]
        assert "https://smartdatamodels.org/dataModel.Transportation/speed" in ent.attrs
        assert ent.attrs[LOCATION][0]["value"]["coordinates"] == [105.8542, 21.0285]
        ref = ent.attrs["https://uri.etsi.org/ngsi-ld/default-context/refRoute"][0]
        assert ref["object"] == "urn:ngsi-ld:GtfsRoute:01_1"
