"""``sencity import osm FILE``: an OpenStreetMap extract → RoadSegment, PointOfInterest
and WaterBody entities (docs/DATAMODEL.md; docs/IMPORT.md, "OpenStreetMap").

The file (``.osm.pbf``, ``.osm`` XML, ``.osm.gz``/``.osm.bz2``) is read with **pyosmium**
(PyPI ``osmium``, the Python binding of libosmium, the reader behind osmium-tool): it
streams the file, keeps node locations in memory for the ways, and assembles
multipolygon relations into areas.

Two passes, so a bad file writes nothing:

1. **read**: every object of interest becomes an NGSI-LD body, spooled as a JSON line to
   a temporary file (memory stays flat whatever the extract's size); objects that are
   not imported are counted by reason.  A corrupt file stops here.
2. **write**: the spooled bodies are upserted in batches through
   :class:`~sencity.ingest.hubwrite.HubWriter` (one transaction per batch; history
   and subscriptions as for every write).

Ids are ``urn:ngsi-ld:RoadSegment:<tenant>:osm-<way id>`` and
``urn:ngsi-ld:{PointOfInterest|WaterBody}:<tenant>:osm-{n|w|r}<id>`` (node, way and
relation ids are separate number spaces in OSM), so importing the extract again replaces
the same entities: nothing is duplicated.
"""

from __future__ import annotations

import json
import math
import re
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import click
import osmium
import osmium.geom
import shapely  # type: ignore[import-untyped]
from shapely.geometry import LineString, Polygon, box, mapping, shape  # type: ignore[import-untyped]

from sencity.config import TENANT_PATTERN
from sencity.errors import SenCityError

if TYPE_CHECKING:
    from sencity.config import Settings

BATCH = 500
MAX_WARNINGS = 20

#: highway values imported as roads, with the speed limit (km/h) used when the way has
#: no readable ``maxspeed`` (Vietnamese limits: Circular 38/2024/TT-BGTVT; urban roads
#: 50-60, outside towns 80-90, motorways up to 120; minor classes at a typical speed)
ROAD_SPEEDS: dict[str, float] = {
    "motorway": 100,
    "motorway_link": 60,
    "trunk": 80,
    "trunk_link": 50,
    "primary": 60,
    "primary_link": 40,
    "secondary": 50,
    "secondary_link": 40,
    "tertiary": 50,
    "tertiary_link": 40,
    "unclassified": 40,
    "residential": 30,
    "living_street": 20,
    "service": 20,
    "road": 40,
    "track": 20,
    "busway": 50,
}
#: highway values that are not roads for vehicles: imported only with ``--all-ways``
PATH_SPEEDS: dict[str, float] = {
    "pedestrian": 5,
    "footway": 5,
    "path": 5,
    "steps": 5,
    "corridor": 5,
    "platform": 5,
    "bridleway": 10,
    "cycleway": 20,
}
#: the default for any other highway value imported with ``--all-ways``
OTHER_SPEED = 20.0
#: highway values of ways that are not on the ground: never imported
NOT_BUILT = {"proposed", "construction", "planned", "abandoned", "disused", "razed"}

#: ``maxspeed=<country>:<zone>`` (Vietnam's limits, used for any country code)
ZONE_SPEEDS: dict[str, float] = {
    "urban": 50,
    "rural": 80,
    "motorway": 120,
    "trunk": 90,
    "living_street": 20,
    "zone20": 20,
    "zone30": 30,
    "school": 30,
    "walk": 5,
}
_UNITS = {"": 1.0, "km/h": 1.0, "kmh": 1.0, "kph": 1.0, "mph": 1.609344, "knots": 1.852}
_SPEED = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(km/h|kmh|kph|mph|knots)?\s*$", re.IGNORECASE)
_ONEWAY_YES = {"yes", "1", "true"}
_ONEWAY_REVERSE = {"-1", "reverse"}

#: (key, value) → PointOfInterest category
POI_CATEGORIES: dict[tuple[str, str], str] = {
    ("amenity", "hospital"): "hospital",
    ("healthcare", "hospital"): "hospital",
    ("amenity", "clinic"): "clinic",
    ("healthcare", "clinic"): "clinic",
    ("amenity", "police"): "police",
    ("amenity", "fire_station"): "fire_station",
    ("amenity", "school"): "school",
}
#: waterway values drawn as lines (WaterBody LineString), with their waterType
WATERWAY_LINES = {"river": "river", "canal": "canal", "stream": "stream"}
#: water=* values → waterType of a natural=water area (otherwise "lake")
WATER_TYPES = {
    "river": "river",
    "canal": "canal",
    "oxbow": "river",
    "lake": "lake",
    "pond": "pond",
    "reservoir": "reservoir",
    "basin": "reservoir",
    "lagoon": "lagoon",
}
_KEYS = ("highway", "amenity", "healthcare", "natural", "waterway", "landuse")

Progress = Callable[[str, int, "int | None"], None]  # (phase, done, total or None)


class OsmError(SenCityError):
    """The file or an option cannot be used; nothing was written."""


# -- options ---------------------------------------------------------------------------------
BBox = tuple[float, float, float, float]


def parse_bbox(text: str) -> BBox:
    """``W,S,E,N`` in degrees (WGS 84) → a tuple; OsmError naming what is wrong."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 4:
        raise OsmError(
            f"--bbox {text!r}: expected 4 numbers W,S,E,N (west, south, east, north), "
            f"got {len(parts)}"
        )
    values: list[float] = []
    for name, part in zip(("W", "S", "E", "N"), parts, strict=True):
        try:
            v = float(part)
        except ValueError:
            raise OsmError(f"--bbox {text!r}: {name} = {part!r} is not a number") from None
        if not math.isfinite(v):
            raise OsmError(f"--bbox {text!r}: {name} = {part!r} is not a finite number")
        values.append(v)
    w, s, e, n = values
    for name, v in (("W", w), ("E", e)):
        if not -180 <= v <= 180:
            raise OsmError(f"--bbox {text!r}: longitude {name} = {v} is outside [-180, 180]")
    for name, v in (("S", s), ("N", n)):
        if not -90 <= v <= 90:
            raise OsmError(f"--bbox {text!r}: latitude {name} = {v} is outside [-90, 90]")
    if w >= e:
        raise OsmError(f"--bbox {text!r}: west {w} must be less than east {e}")
    if s >= n:
        raise OsmError(f"--bbox {text!r}: south {s} must be less than north {n}")
    return w, s, e, n


# -- tags → attributes -----------------------------------------------------------------------
def parse_maxspeed(value: str | None) -> tuple[float | None, str]:
    """A ``maxspeed`` value in km/h and how it was read: ``tagged`` (a number, with its
    unit), ``zone`` (``VN:urban``…), ``absent`` or ``unreadable`` (``none``,
    ``signals``, …: the class default applies).  ``50;60`` reads the first value."""
    if value is None or not value.strip():
        return None, "absent"
    first = value.split(";")[0].strip()
    m = _SPEED.match(first)
    if m:
        kmh = float(m.group(1)) * _UNITS[(m.group(2) or "").lower()]
        return (_round(kmh) if kmh > 0 else None), ("tagged" if kmh > 0 else "unreadable")
    if first.lower() == "walk":
        return ZONE_SPEEDS["walk"], "zone"
    if ":" in first:
        zone = first.split(":", 1)[1].strip().lower()
        if zone in ZONE_SPEEDS:
            return ZONE_SPEEDS[zone], "zone"
    return None, "unreadable"


def _round(v: float) -> float | int:
    r = round(v, 1)
    return int(r) if r == int(r) else r


def parse_lanes(value: str | None) -> int | None:
    """``lanes`` as a positive integer (``2;3`` → 3), else None."""
    if not value:
        return None
    best: int | None = None
    for part in value.split(";"):
        part = part.strip()
        if part.isdigit() and int(part) > 0:
            best = max(best or 0, int(part))
    return best


def one_way(tags: dict[str, str]) -> tuple[bool, bool]:
    """(one way, geometry to reverse): ``oneway=yes/1/true``, ``-1`` (against the way's
    direction), and what OSM implies without the tag: motorways and roundabouts."""
    value = tags.get("oneway", "").strip().lower()
    if value in _ONEWAY_YES:
        return True, False
    if value in _ONEWAY_REVERSE:
        return True, True
    if value:
        return False, False  # no, reversible, alternating: both directions
    implied = tags.get("highway") in ("motorway", "motorway_link") or tags.get("junction") in (
        "roundabout",
        "circular",
    )
    return implied, False


def best_name(tags: dict[str, str]) -> str | None:
    for key in ("name", "name:vi", "name:en"):
        v = tags.get(key, "").strip()
        if v:
            return v
    return None


def _prop(value: Any, unit: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "Property", "value": value}
    if unit:
        out["unitCode"] = unit
    return out


def _geo(geometry: dict[str, Any]) -> dict[str, Any]:
    return {"type": "GeoProperty", "value": geometry}


# -- geometry --------------------------------------------------------------------------------
_GEOD: Any = None


def geodesic_length(coords: list[list[float]]) -> float:
    """Length in metres of a lon/lat line on the WGS 84 ellipsoid (pyproj's Geod)."""
    global _GEOD
    if _GEOD is None:
        from pyproj import Geod

        _GEOD = Geod(ellps="WGS84")
    lons = [c[0] for c in coords]
    lats = [c[1] for c in coords]
    return float(_GEOD.line_length(lons, lats))


def _longest_run(points: list[list[float] | None]) -> tuple[list[list[float]], int]:
    """The longest run of consecutive located points, and how many had no location."""
    best: list[list[float]] = []
    run: list[list[float]] = []
    missing = 0
    for p in points:
        if p is None:
            missing += 1
            run = []
            continue
        run.append(p)
        if len(run) > len(best):
            best = run
    return list(best), missing


def _dedupe(coords: list[list[float]]) -> list[list[float]]:
    out: list[list[float]] = []
    for c in coords:
        if not out or out[-1] != c:
            out.append(c)
    return out


def _polygonal(geom: Any) -> dict[str, Any] | None:
    """A shapely geometry → GeoJSON Polygon/MultiPolygon (repaired if invalid), or None."""
    if not geom.is_valid:
        geom = shapely.make_valid(geom)
    parts = [
        g for g in getattr(geom, "geoms", [geom]) if g.geom_type in ("Polygon", "MultiPolygon")
    ]
    polys = [p for g in parts for p in getattr(g, "geoms", [g]) if not p.is_empty]
    if not polys:
        return None
    out = mapping(polys[0] if len(polys) == 1 else shapely.MultiPolygon(polys))
    geojson: dict[str, Any] = json.loads(json.dumps(out))  # tuples → lists
    return geojson


# -- reading ---------------------------------------------------------------------------------
@dataclass
class ReadResult:
    """What the read pass found: bodies spooled per type, skips by reason, warnings."""

    spool: IO[str]
    counts: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    speeds: Counter[str] = field(default_factory=Counter)  # tagged / zone / default
    categories: Counter[str] = field(default_factory=Counter)  # of the POIs
    warnings: list[str] = field(default_factory=list)
    more_warnings: int = 0  # beyond the MAX_WARNINGS kept
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def warn(self, text: str) -> None:
        if len(self.warnings) < MAX_WARNINGS:
            self.warnings.append(text)
        else:
            self.more_warnings += 1


class _Reader:
    """Turns the osmium objects of interest into bodies (see :func:`read_osm`)."""

    def __init__(self, tenant: str, bbox: BBox | None, all_ways: bool, out: ReadResult) -> None:
        self.tenant = tenant
        self.bbox = bbox
        self.all_ways = all_ways
        self.out = out
        self.relations: dict[int, str] = {}  # multipolygon candidates → what they would be
        self.areas: dict[int, tuple[dict[str, str], Any]] = {}  # relation id → tags, GeoJSON
        self.factory = osmium.geom.GeoJSONFactory()
        self._box: Any = None
        if bbox is not None:
            self._box = box(*bbox)

    # -- helpers
    def id(self, etype: str, local: str) -> str:
        return f"urn:ngsi-ld:{etype}:{self.tenant}:osm-{local}"

    def emit(self, body: dict[str, Any]) -> None:
        self.out.spool.write(json.dumps(body, ensure_ascii=False, separators=(",", ":")))
        self.out.spool.write("\n")
        self.out.counts[str(body["type"])] += 1

    def skip(self, reason: str) -> None:
        self.out.skipped[reason] += 1

    def inside(self, coords: list[list[float]]) -> bool:
        """Whether a line or ring touches the --bbox (always, without one)."""
        if self.bbox is None:
            return True
        w, s, e, n = self.bbox
        lons = [c[0] for c in coords]
        lats = [c[1] for c in coords]
        if max(lons) < w or min(lons) > e or max(lats) < s or min(lats) > n:
            return False
        if any(w <= x <= e and s <= y <= n for x, y in coords):
            return True
        return bool(self._box.intersects(LineString(coords)))

    def inside_geojson(self, geom: dict[str, Any]) -> bool:
        if self.bbox is None:
            return True
        return bool(self._box.intersects(shape(geom)))

    @staticmethod
    def categories(tags: dict[str, str]) -> list[str]:
        found: list[str] = []
        for (key, value), cat in POI_CATEGORIES.items():
            if tags.get(key) == value and cat not in found:
                found.append(cat)
        return found

    @staticmethod
    def water_area_type(tags: dict[str, str]) -> str | None:
        """waterType of an area with these tags, or None if it is not water."""
        if tags.get("natural") == "water":
            return WATER_TYPES.get(tags.get("water", ""), "lake")
        if tags.get("waterway") == "riverbank":
            return "river"
        if tags.get("landuse") == "reservoir":
            return "reservoir"
        return None

    # -- objects
    def node(self, o: Any) -> None:
        tags = {t.k: t.v for t in o.tags}
        cats = self.categories(tags)
        if not cats:
            return
        loc = o.location
        if not loc.valid():
            self.skip("POI node without a valid location")
            return
        point = [round(loc.lon, 7), round(loc.lat, 7)]
        if not self.inside([point]):
            self.skip("outside --bbox")
            return
        self.poi(f"n{o.id}", tags, cats, {"type": "Point", "coordinates": point})

    def poi(self, local: str, tags: dict[str, str], cats: list[str], point: dict[str, Any]) -> None:
        body: dict[str, Any] = {"id": self.id("PointOfInterest", local), "type": "PointOfInterest"}
        name = best_name(tags)
        if name:
            body["name"] = _prop(name)
        en = tags.get("name:en", "").strip()
        if en and en != name:
            body["alternateName"] = _prop(en)
        body["category"] = _prop(cats)
        self.out.categories.update(cats)
        body["location"] = _geo(point)
        body["source"] = _prop("osm")
        self.emit(body)

    def way(self, o: Any) -> None:
        tags = {t.k: t.v for t in o.tags}
        highway = tags.get("highway")
        cats = self.categories(tags)
        water_area = self.water_area_type(tags)
        waterway = tags.get("waterway")
        coastline = tags.get("natural") == "coastline"
        if not (highway or cats or water_area or waterway in WATERWAY_LINES or coastline):
            if waterway:
                self.skip(f"waterway={waterway}: not imported (rivers, canals and streams are)")
            return
        closed = len(o.nodes) >= 4 and o.is_closed()
        coords, missing = self.line(o)
        if len(coords) < 2:
            self.skip("way with fewer than 2 located nodes (nodes missing from the extract)")
            return
        if missing:
            closed = False
            self.out.warn(
                f"way {o.id}: {missing} of its nodes are not in the extract; "
                f"kept the longest part with locations ({len(coords)} nodes)"
            )
        if not self.inside(coords):
            self.skip("outside --bbox")
            return
        if highway:
            self.road(o.id, tags, highway, coords)
        if cats:
            self.poi(f"w{o.id}", tags, cats, self.centroid(coords, closed))
        if water_area:
            if closed:
                self.water_polygon(o.id, tags, water_area, coords)
            else:
                self.skip(f"{_water_tag(tags)} way is not closed (not an area)")
        elif waterway in WATERWAY_LINES:
            self.water(f"w{o.id}", tags, WATERWAY_LINES[waterway], _line(coords))
        elif coastline:
            self.water(f"w{o.id}", tags, "coastline", _line(coords))

    def line(self, o: Any) -> tuple[list[list[float]], int]:
        """A way's positions (repeated ones dropped) and how many nodes had no location;
        with missing nodes, the longest run of located ones."""
        try:  # libosmium builds it (7 decimals), much faster than a loop here
            geojson = json.loads(self.factory.create_linestring(o))
            coords: list[list[float]] = geojson["coordinates"]
            return coords, 0
        except (osmium.InvalidLocationError, RuntimeError):  # a location missing, one point
            pass
        points: list[list[float] | None] = []
        for n in o.nodes:
            loc = n.location
            points.append([round(loc.lon, 7), round(loc.lat, 7)] if loc.valid() else None)
        run, missing = _longest_run(points)
        return _dedupe(run), missing

    def road(
        self, way_id: int, tags: dict[str, str], highway: str, coords: list[list[float]]
    ) -> None:
        if highway in NOT_BUILT:
            self.skip(f"highway={highway}: not built")
            return
        if highway in ROAD_SPEEDS:
            default = ROAD_SPEEDS[highway]
        elif not self.all_ways:
            self.skip(f"highway={highway}: not a road for vehicles (imported with --all-ways)")
            return
        else:
            default = PATH_SPEEDS.get(highway, OTHER_SPEED)
        oneway, reverse = one_way(tags)
        if reverse:
            coords = coords[::-1]
        raw = tags.get("maxspeed")
        if raw is None and ("maxspeed:forward" in tags or "maxspeed:backward" in tags):
            both = [
                parse_maxspeed(tags.get(k))[0] for k in ("maxspeed:forward", "maxspeed:backward")
            ]
            known = [v for v in both if v is not None]
            speed, how = (min(known), "tagged") if known else (None, "absent")
        else:
            speed, how = parse_maxspeed(raw)
        if how == "unreadable":
            self.out.warn(f"way {way_id}: maxspeed={raw!r} not understood; {default:g} km/h used")
        if speed is None:
            speed, how = _round(default), "default"
        self.out.speeds[how] += 1
        body: dict[str, Any] = {"id": self.id("RoadSegment", str(way_id)), "type": "RoadSegment"}
        name = best_name(tags)
        if name:
            body["name"] = _prop(name)
        body["roadClass"] = _prop(highway)
        body["maximumAllowedSpeed"] = _prop(speed, "KMH")
        body["oneWay"] = _prop(oneway)
        lanes = parse_lanes(tags.get("lanes"))
        if lanes is not None:
            body["totalLaneNumber"] = _prop(lanes)
        body["length"] = _prop(round(geodesic_length(coords), 1), "MTR")
        body["location"] = _geo({"type": "LineString", "coordinates": coords})
        body["source"] = _prop("osm")
        self.emit(body)

    @staticmethod
    def centroid(coords: list[list[float]], closed: bool) -> dict[str, Any]:
        geom: Any = Polygon(coords) if closed and len(coords) >= 4 else LineString(coords)
        if closed and (not geom.is_valid or geom.area == 0):
            geom = LineString(coords)
        c = geom.centroid
        return {"type": "Point", "coordinates": [round(c.x, 7), round(c.y, 7)]}

    def water_polygon(
        self, way_id: int, tags: dict[str, str], wtype: str, coords: list[list[float]]
    ) -> None:
        if len(coords) < 4 or coords[0] != coords[-1]:
            self.skip(f"{_water_tag(tags)} way is not closed (not an area)")
            return
        geom = _polygonal(Polygon(coords))
        if geom is None:
            self.skip(f"{_water_tag(tags)} way: polygon without area")
            return
        self.water(f"w{way_id}", tags, wtype, geom)

    def water(self, local: str, tags: dict[str, str], wtype: str, geom: dict[str, Any]) -> None:
        body: dict[str, Any] = {"id": self.id("WaterBody", local), "type": "WaterBody"}
        name = best_name(tags)
        if name:
            body["name"] = _prop(name)
        body["waterType"] = _prop(wtype)
        body["location"] = _geo(geom)
        body["source"] = _prop("osm")
        self.emit(body)

    def relation(self, o: Any) -> None:
        tags = {t.k: t.v for t in o.tags}
        cats = self.categories(tags)
        water = self.water_area_type(tags)
        if not (cats or water):
            return
        if tags.get("type") != "multipolygon":
            what = ",".join(cats) if cats else _water_tag(tags)
            self.skip(f"{what} relation of type={tags.get('type', '?')} (only multipolygons)")
            return
        self.relations[o.id] = "poi" if cats else "water"

    def area(self, o: Any) -> None:
        """A multipolygon relation's area: kept until the end, since libosmium assembles it
        when its last member way is read, usually before the relation itself comes."""
        if o.from_way():
            return  # closed ways are handled as ways
        tags = {t.k: t.v for t in o.tags}
        if not (self.categories(tags) or self.water_area_type(tags)):
            return
        try:
            raw = json.loads(self.factory.create_multipolygon(o))
        except (osmium.InvalidLocationError, RuntimeError):
            return  # not assembled: counted as skipped at the end
        self.areas[o.orig_id()] = (tags, raw)

    def finish(self) -> None:
        """The multipolygons, once every relation has been seen."""
        for rel_id, what in self.relations.items():
            if rel_id not in self.areas:
                self.skip(
                    f"{'POI' if what == 'poi' else 'water'} multipolygon relation not "
                    "assembled (members missing from the extract or broken rings)"
                )
                continue
            tags, raw = self.areas[rel_id]
            geom = _polygonal(shape(raw))
            if geom is None:
                self.skip("multipolygon without area")
                continue
            if not self.inside_geojson(geom):
                self.skip("outside --bbox")
                continue
            cats = self.categories(tags)
            if cats:
                c = shape(geom).centroid
                point = {"type": "Point", "coordinates": [round(c.x, 7), round(c.y, 7)]}
                self.poi(f"r{rel_id}", tags, cats, point)
            else:
                wtype = self.water_area_type(tags)
                if wtype:
                    self.water(f"r{rel_id}", tags, wtype, geom)
        self.areas.clear()


def _water_tag(tags: dict[str, str]) -> str:
    for key, value in (("natural", "water"), ("waterway", "riverbank"), ("landuse", "reservoir")):
        if tags.get(key) == value:
            return f"{key}={value}"
    return "water"


def _line(coords: list[list[float]]) -> dict[str, Any]:
    return {"type": "LineString", "coordinates": coords}


def read_osm(
    path: Path,
    tenant: str,
    *,
    bbox: BBox | None = None,
    all_ways: bool = False,
    progress: Progress | None = None,
) -> ReadResult:
    """Read ``path`` into a spool of bodies (the returned result's ``spool``, rewound).

    Raises OsmError naming the file and the problem if it is missing or cannot be read
    (corrupt, truncated, not OSM)."""
    from osmium.filter import KeyFilter

    if not path.exists():
        raise OsmError(f"{path}: no such file")
    if not path.is_file():
        raise OsmError(f"{path}: not a file")
    spool = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115 (returned)
    out = ReadResult(spool)
    reader = _Reader(tenant, bbox, all_ways, out)
    tick = progress or (lambda phase, done, total: None)
    start = time.perf_counter()
    seen = 0
    try:
        fp = osmium.FileProcessor(str(path)).with_locations().with_areas()
        fp.with_filter(KeyFilter(*_KEYS))
        for o in fp:
            kind = o.type_str()
            if kind == "n":
                reader.node(o)
            elif kind == "w":
                reader.way(o)
            elif kind == "r":
                reader.relation(o)
            elif kind == "a":
                reader.area(o)
            seen += 1
            if seen % 2000 == 0:
                tick("reading", out.total, None)
    except RuntimeError as exc:
        spool.close()
        raise OsmError(f"{path.name}: cannot be read as OpenStreetMap data: {exc}") from None
    except BaseException:
        spool.close()
        raise
    reader.finish()
    tick("reading", out.total, out.total)
    out.seconds = time.perf_counter() - start
    spool.seek(0)
    return out


# -- importing -------------------------------------------------------------------------------
@dataclass
class OsmReport:
    """What an import did (or, for a dry run, would do)."""

    file: str
    tenant: str
    written: Counter[str] = field(default_factory=Counter)
    created: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    speeds: Counter[str] = field(default_factory=Counter)
    categories: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    more_warnings: int = 0
    read_seconds: float = 0.0
    seconds: float = 0.0
    dry_run: bool = False
    bbox: BBox | None = None

    @property
    def total(self) -> int:
        return sum(self.written.values())

    @property
    def rate(self) -> float:
        return self.total / self.seconds if self.seconds > 0 else 0.0


def _spooled(spool: IO[str]) -> Iterator[dict[str, Any]]:
    for line in spool:
        body: dict[str, Any] = json.loads(line)
        yield body


def _batches(items: Iterator[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def import_osm(
    settings: Settings,
    path: Path,
    tenant: str | None = None,
    *,
    bbox: BBox | None = None,
    all_ways: bool = False,
    dry_run: bool = False,
    batch: int = BATCH,
    progress: Progress | None = None,
) -> OsmReport:
    """Import an OSM extract into ``tenant`` (default: ``tenants.default``).

    OsmError (nothing written) for a missing or unreadable file or a bad tenant.  With
    ``dry_run`` every body is checked as the hub would (ids, GeoJSON) and nothing is
    written; the store is not opened."""
    tenant = tenant or settings.tenants.default
    if not re.fullmatch(TENANT_PATTERN, tenant):
        raise OsmError(f"--tenant {tenant!r}: not a tenant name (a-z, 0-9, _ and -)")
    tick = progress or (lambda phase, done, total: None)
    start = time.perf_counter()
    read = read_osm(path, tenant, bbox=bbox, all_ways=all_ways, progress=tick)
    report = OsmReport(path.name, tenant, dry_run=dry_run, bbox=bbox)
    report.skipped, report.speeds = read.skipped, read.speeds
    report.categories = read.categories
    report.warnings = read.warnings
    report.more_warnings = read.more_warnings
    report.read_seconds = read.seconds
    if bbox is not None and read.total == 0:
        report.warnings.append(f"nothing of interest inside --bbox {','.join(map(str, bbox))}")
    total = read.total
    with read.spool:
        if dry_run:
            _check(read.spool, report, total, tick)
        else:
            from sencity.ingest.hubwrite import HubWriter, open_platform

            with open_platform(settings) as platform:
                writer = HubWriter.of(platform)
                done = 0
                for bodies in _batches(_spooled(read.spool), batch):
                    res = writer.write(tenant, bodies, update=False)
                    created = set(res.created)
                    for n, body in enumerate(bodies):
                        if n in res.errors:
                            report.errors.append(f"{body['id']}: {res.errors[n]}")
                            continue
                        report.written[body["type"]] += 1
                        if body["id"] in created:
                            report.created[body["type"]] += 1
                    report.errors += [
                        f"{bodies[0]['type']}: {d}" for n, d in res.errors.items() if n < 0
                    ]
                    done += len(bodies)
                    tick("writing", done, total)
    report.seconds = time.perf_counter() - start
    return report


def _check(spool: IO[str], report: OsmReport, total: int, tick: Progress) -> None:
    from sencity.hub.ldcontext import ContextResolver
    from sencity.hub.model import parse_entity

    ctx = ContextResolver(fetch=False).resolve(None)
    for done, body in enumerate(_spooled(spool), 1):
        try:
            parse_entity(body, ctx)
        except SenCityError as exc:
            report.errors.append(f"{body['id']}: {exc.detail}")
        else:
            report.written[body["type"]] += 1
        if done % BATCH == 0 or done == total:
            tick("checking", done, total)


# -- command ---------------------------------------------------------------------------------
def format_report(report: OsmReport) -> list[str]:
    verb = "would be written" if report.dry_run else "written"
    where = f" inside --bbox {','.join(f'{v:g}' for v in report.bbox)}" if report.bbox else ""
    lines = [
        f"OpenStreetMap import of {report.file} into tenant {report.tenant}{where} "
        f"(ids urn:ngsi-ld:<Type>:{report.tenant}:osm-…)"
    ]
    for etype in ("RoadSegment", "PointOfInterest", "WaterBody"):
        n = report.written.get(etype, 0)
        new = "" if report.dry_run else f", {report.created.get(etype, 0):,} new"
        lines.append(f"  {etype:<16}{n:>9,} {verb}{new}")
        if etype == "PointOfInterest" and report.categories:
            cats = ", ".join(f"{c} {k:,}" for c, k in sorted(report.categories.items()))
            lines.append(f"  {'':<16}{'':>9} ({cats})")
    lines.append(
        f"  {'total':<16}{report.total:>9,} {verb} in {report.seconds:.1f} s "
        f"(read {report.read_seconds:.1f} s; {report.rate:,.0f} entities/s)"
    )
    if report.speeds:
        s = report.speeds
        lines.append(
            f"  speed limits: {s.get('tagged', 0):,} from maxspeed, {s.get('zone', 0):,} "
            f"from a zone (VN:urban…), {s.get('default', 0):,} class defaults"
        )
    skipped = sum(report.skipped.values())
    lines.append(f"  skipped: {skipped:,}")
    for reason, n in report.skipped.most_common():
        lines.append(f"    {n:>7,}  {reason}")
    return lines


def _bbox_option(ctx: click.Context, param: click.Parameter, value: str | None) -> BBox | None:
    if value is None:
        return None
    try:
        return parse_bbox(value)
    except OsmError as exc:
        raise click.BadParameter(exc.detail.removeprefix(f"--bbox {value!r}: ")) from None


@click.command("osm")
@click.argument("path", metavar="FILE", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--bbox",
    callback=_bbox_option,
    metavar="W,S,E,N",
    help="Only ways, areas and nodes that touch this box (ways are kept whole).",
)
@click.option("--tenant", help="Tenant to write to (default: tenants.default).")
@click.option("--all-ways", is_flag=True, help="Also footways, paths, steps, cycleways….")
@click.option("--dry-run", is_flag=True, help="Read and check everything; write nothing.")
@click.option("--batch-size", type=click.IntRange(1, 10_000), default=BATCH, show_default=True)
def osm_command(
    path: Path,
    bbox: BBox | None,
    tenant: str | None,
    all_ways: bool,
    dry_run: bool,
    batch_size: int,
) -> None:
    """Import an OpenStreetMap extract (.osm.pbf, .osm): roads, hospitals, police and fire
    stations, schools and water.

    Exit status: 0 imported, 1 some entities were rejected (the others are written),
    2 nothing imported (missing or unreadable file, bad option).
    """
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )
    from rich.progress import Progress as RichProgress

    from sencity.cli import _Ctx

    ctx = click.get_current_context().find_object(_Ctx)
    assert ctx is not None
    settings = ctx.settings()
    console = Console(stderr=True)
    bar = RichProgress(
        SpinnerColumn(),
        TextColumn("{task.description:<28}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )
    tasks: dict[str, Any] = {}

    def tick(phase: str, done: int, total: int | None) -> None:
        if phase not in tasks:
            tasks[phase] = bar.add_task(phase, total=total)
        label = f"reading {path.name}: {done:,} entities" if phase == "reading" else phase
        bar.update(tasks[phase], completed=done, total=total, description=label)

    try:
        with bar:
            report = import_osm(
                settings,
                path,
                tenant,
                bbox=bbox,
                all_ways=all_ways,
                dry_run=dry_run,
                batch=batch_size,
                progress=tick,
            )
    except SenCityError as exc:
        click.echo(f"error: {exc.detail}", err=True)
        raise SystemExit(2) from None
    for w in report.warnings:
        click.echo(f"warning: {w}", err=True)
    if report.more_warnings:
        click.echo(f"warning: … and {report.more_warnings} more", err=True)
    for line in format_report(report):
        click.echo(line)
    if report.errors:
        for e in report.errors[:MAX_WARNINGS]:
            click.echo(f"error: {e}", err=True)
        if len(report.errors) > MAX_WARNINGS:
            click.echo(f"error: … and {len(report.errors) - MAX_WARNINGS} more", err=True)
        raise SystemExit(1)
