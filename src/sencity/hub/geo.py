"""GeoJSON geometries and NGSI-LD geo-queries (ETSI GS CIM 009 v1.8, clause 4.10).

* :func:`validate_geometry` checks a GeoProperty value (RFC 7946 geometry, ``[lon, lat]``)
  and returns it normalised; :func:`bbox` gives its bounding box.
* :func:`parse_geoquery` / :meth:`GeoQuery.from_geoq` read the ``georel``, ``geometry``,
  ``coordinates`` and ``geoproperty`` parameters (URL or ``geoQ`` body form).
* :func:`geo_sql` compiles a geo-query to a SQL condition on ``hub_entities e``:
  PostGIS functions on PostgreSQL (the GiST indexes of ``e.location`` when the
  geoproperty is ``location``), and on SQLite an R*Tree bounding-box prefilter
  (``hub_location``) plus the exact check ``sc_geo(…)`` registered by
  :func:`register_sqlite_functions` and computed here with shapely.

Distances (``near``) are great-circle metres on the sphere of PostGIS (mean radius
6 371 008.8 m) on both backends.  Topological relations (``within``, ``contains``…) are
evaluated in the plane of longitude/latitude on both backends, as PostGIS ``geometry``
functions do.
"""

from __future__ import annotations

import json
import math
import re
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import shapely  # type: ignore[import-untyped]
from shapely.errors import ShapelyError  # type: ignore[import-untyped]
from shapely.geometry import shape as to_shape  # type: ignore[import-untyped]
from shapely.validation import explain_validity  # type: ignore[import-untyped]

from sencity.errors import BadRequest

EARTH_RADIUS_M = 6371008.7714
"""Mean radius of the WGS 84 ellipsoid: the sphere PostGIS uses for geography distances."""

GEOMETRY_TYPES = (
    "Point",
    "MultiPoint",
    "LineString",
    "MultiLineString",
    "Polygon",
    "MultiPolygon",
    "GeometryCollection",
)
QUERY_GEOMETRY_TYPES = GEOMETRY_TYPES[:-1]
GEORELS = ("near", "within", "contains", "intersects", "disjoint", "equals", "overlaps")
DISTANCES = ("maxDistance", "minDistance")

_DEPTH = {  # nesting depth of "coordinates": 0 is a single position
    "Point": 0,
    "MultiPoint": 1,
    "LineString": 1,
    "MultiLineString": 2,
    "Polygon": 2,
    "MultiPolygon": 3,
}
_FORM = {
    "Point": "[lon, lat]",
    "MultiPoint": "[[lon, lat], …]",
    "LineString": "[[lon, lat], …]",
    "MultiLineString": "[[[lon, lat], …], …]",
    "Polygon": "[[[lon, lat], …], …]",
    "MultiPolygon": "[[[[lon, lat], …], …], …]",
}
_NUMBER = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_VALIDITY = re.compile(r"^(.*?)\s*\[\s*(\S+)\s+(\S+)\s*\]\s*$")


# --------------------------------------------------------------------------- geometries


def validate_geometry(geom: Any, where: str = "geometry") -> dict[str, Any]:
    """Check a GeoJSON geometry object; return it normalised or raise :class:`BadRequest`.

    The result holds only ``type`` and ``coordinates`` (``geometries`` for a
    GeometryCollection) with every number as a float; foreign members (``bbox``,
    ``crs``…) are dropped.
    """
    out = _geometry(geom, where, nested=False)
    shape = to_shape(out)
    if not shape.is_valid:
        raise BadRequest(f"{where}: invalid {out['type']}: {_explain(shape)}")
    return out


def bbox(geom: dict[str, Any]) -> tuple[float, float, float, float]:
    """The bounding box ``(minx, maxx, miny, maxy)`` of a (valid) GeoJSON geometry."""
    xs: list[float] = []
    ys: list[float] = []
    for p in _positions(geom):
        xs.append(float(p[0]))
        ys.append(float(p[1]))
    if not xs:
        raise BadRequest("an empty geometry has no bounding box")
    return min(xs), max(xs), min(ys), max(ys)


def _positions(geom: dict[str, Any]) -> Iterator[Sequence[Any]]:
    if geom.get("type") == "GeometryCollection":
        for g in geom.get("geometries") or []:
            yield from _positions(g)
        return
    depth = _DEPTH.get(str(geom.get("type")), 0)

    def walk(c: Any, d: int) -> Iterator[Sequence[Any]]:
        if d == 0:
            yield c
        else:
            for sub in c:
                yield from walk(sub, d - 1)

    yield from walk(geom.get("coordinates"), depth)


def _geometry(geom: Any, where: str, nested: bool) -> dict[str, Any]:
    if not isinstance(geom, dict):
        raise BadRequest(
            f"{where}: a geometry must be a GeoJSON object with 'type' and 'coordinates', "
            f"not {_jtype(geom)}"
        )
    gtype = geom.get("type")
    if gtype not in GEOMETRY_TYPES:
        raise BadRequest(
            f"{where}: unknown geometry type {gtype!r} "
            f"(expected one of {', '.join(GEOMETRY_TYPES)})"
        )
    if gtype == "GeometryCollection":
        if nested:
            raise BadRequest(f"{where}: nested GeometryCollections are not supported")
        members = geom.get("geometries")
        if not isinstance(members, list) or not members:
            raise BadRequest(f"{where}: a GeometryCollection needs a non-empty 'geometries' array")
        return {
            "type": gtype,
            "geometries": [
                _geometry(g, f"{where} (geometries[{i}])", nested=True)
                for i, g in enumerate(members)
            ],
        }
    if "coordinates" not in geom:
        raise BadRequest(f"{where}: a {gtype} needs 'coordinates'")
    coords = geom["coordinates"]
    c = _coords(coords, _DEPTH[gtype], where, gtype, "coordinates")
    if gtype in ("LineString", "MultiLineString"):
        for path, line in _parts(c, gtype == "MultiLineString"):
            if len(line) < 2:
                raise BadRequest(
                    f"{where}: {path} of the {gtype} has {len(line)} position(s); "
                    "a LineString needs at least 2"
                )
    elif gtype in ("Polygon", "MultiPolygon"):
        for path, poly in _parts(c, gtype == "MultiPolygon"):
            if not poly:
                raise BadRequest(f"{where}: {path} of the {gtype} has no linear ring")
            for i, ring in enumerate(poly):
                rp = f"{path}[{i}]"
                if len(ring) < 4:
                    raise BadRequest(
                        f"{where}: linear ring {rp} of the {gtype} has {len(ring)} position(s); "
                        "a linear ring needs at least 4 (the last one repeating the first)"
                    )
                if ring[0] != ring[-1]:
                    raise BadRequest(
                        f"{where}: linear ring {rp} of the {gtype} is not closed "
                        f"(first position {_fmt(ring[0])} differs from last {_fmt(ring[-1])})"
                    )
    return {"type": gtype, "coordinates": c}


def _parts(c: list[Any], multi: bool) -> Iterator[tuple[str, list[Any]]]:
    if multi:
        for i, part in enumerate(c):
            yield f"coordinates[{i}]", part
    else:
        yield "coordinates", c


def _coords(c: Any, depth: int, where: str, gtype: str, path: str) -> Any:
    if depth == 0:
        return _position(c, where, gtype, path)
    if not isinstance(c, list | tuple):
        raise BadRequest(
            f"{where}: {path} of the {gtype} must be an array, not {_jtype(c)} "
            f"(a {gtype}'s coordinates look like {_FORM[gtype]})"
        )
    if not c and path == "coordinates":
        raise BadRequest(f"{where}: the {gtype} has empty coordinates")
    return [_coords(sub, depth - 1, where, gtype, f"{path}[{i}]") for i, sub in enumerate(c)]


def _position(p: Any, where: str, gtype: str, path: str) -> list[float]:
    if not isinstance(p, list | tuple):
        raise BadRequest(
            f"{where}: {path} of the {gtype} must be a position [longitude, latitude], "
            f"not {_jtype(p)}"
        )
    for v in p:
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise BadRequest(
                f"{where}: position {path} of the {gtype} must hold numbers, not {_jtype(v)}"
            )
    if len(p) < 2:
        raise BadRequest(
            f"{where}: position {path} of the {gtype} has {len(p)} number(s); "
            "a position needs at least 2 [longitude, latitude]"
        )
    if len(p) > 3:
        raise BadRequest(
            f"{where}: position {path} of the {gtype} has {len(p)} numbers; "
            "at most 3 are supported [longitude, latitude, altitude]"
        )
    out: list[float] = []
    for v in p:
        try:
            f = float(v)
        except OverflowError:
            f = math.inf
        if not math.isfinite(f):
            raise BadRequest(
                f"{where}: position {path} of the {gtype} holds a number that is NaN, "
                "infinite or too large"
            )
        out.append(f)
    lon, lat = out[0], out[1]
    swapped = (
        " (GeoJSON positions are [longitude, latitude]: are they swapped?)"
        if -90 <= lon <= 90 and -180 <= lat <= 180
        else ""
    )
    if not -180 <= lon <= 180:
        raise BadRequest(
            f"{where}: longitude {lon:g} at {path} of the {gtype} is outside [-180, 180]"
        )
    if not -90 <= lat <= 90:
        raise BadRequest(
            f"{where}: latitude {lat:g} at {path} of the {gtype} is outside [-90, 90]{swapped}"
        )
    return out


def _explain(shape: Any) -> str:
    reason = str(explain_validity(shape))
    m = _VALIDITY.match(reason)
    if m:
        reason = f"{m.group(1)} at [{m.group(2)}, {m.group(3)}]"
    if "self-intersection" in reason.lower():
        reason += " (rings and polygons must not cross themselves or one another)"
    elif "too few points" in reason.lower():
        reason += " (too few distinct positions)"
    return reason


def _fmt(p: Sequence[float]) -> str:
    return "[" + ", ".join(f"{v:g}" for v in p) + "]"


def _num(v: float) -> str:
    return str(int(v)) if v.is_integer() and abs(v) < 1e15 else repr(v)


def _jtype(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, int | float):
        return "a number"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, list | tuple):
        return "an array"
    if isinstance(v, dict):
        return "an object"
    return type(v).__name__


# --------------------------------------------------------------------------- queries


@dataclass(frozen=True)
class GeoQuery:
    """A parsed geo-query; ``geometry`` is the validated reference geometry."""

    georel: str
    geometry: dict[str, Any]
    geoproperty: str = "location"
    max_distance: float | None = None
    min_distance: float | None = None
    geometry_json: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "geometry_json", json.dumps(self.geometry, separators=(",", ":")))

    def __hash__(self) -> int:
        return hash(
            (
                self.georel,
                self.geometry_json,
                self.geoproperty,
                self.max_distance,
                self.min_distance,
            )
        )

    @property
    def georel_text(self) -> str:
        """The ``georel`` parameter this query was read from (canonical form)."""
        parts = [self.georel]
        if self.max_distance is not None:
            parts.append(f"maxDistance=={_num(self.max_distance)}")
        if self.min_distance is not None:
            parts.append(f"minDistance=={_num(self.min_distance)}")
        return ";".join(parts)

    def to_geoq(self) -> dict[str, Any]:
        """The NGSI-LD ``GeoQuery`` data type (clause 5.2.13) of this query."""
        return {
            "georel": self.georel_text,
            "geometry": self.geometry["type"],
            "coordinates": self.geometry["coordinates"],
            "geoproperty": self.geoproperty,
        }

    @classmethod
    def from_geoq(cls, obj: Any) -> GeoQuery:
        """Read the ``geoQ`` member of a query body (``georel``, ``geometry``, ``coordinates``,
        optional ``geoproperty``)."""
        if not isinstance(obj, dict):
            raise BadRequest(f"geoQ must be an object, not {_jtype(obj)}")
        unknown = sorted(set(obj) - {"georel", "geometry", "coordinates", "geoproperty"})
        if unknown:
            raise BadRequest(f"geoQ: unknown member(s) {', '.join(unknown)}")
        missing = [k for k in ("georel", "geometry", "coordinates") if obj.get(k) is None]
        if missing:
            raise BadRequest(f"geoQ needs {', '.join(missing)}")
        for k in ("georel", "geometry", "geoproperty"):
            if obj.get(k) is not None and not isinstance(obj[k], str):
                raise BadRequest(f"geoQ: {k} must be a string, not {_jtype(obj[k])}")
        gq = parse_geoquery(
            obj["georel"], obj["geometry"], obj["coordinates"], obj.get("geoproperty")
        )
        assert gq is not None
        return gq


def parse_geoquery(
    georel: str | None,
    geometry: str | None,
    coordinates: str | Any | None,
    geoproperty: str | None = None,
) -> GeoQuery | None:
    """The geo-query of these parameters; None when none of the first three is given."""
    given = {"georel": georel, "geometry": geometry, "coordinates": coordinates}
    if all(v is None for v in given.values()):
        return None
    missing = [k for k, v in given.items() if v is None]
    if missing:
        raise BadRequest(
            "a geo-query needs georel, geometry and coordinates together; missing: "
            + ", ".join(missing)
        )
    assert georel is not None and geometry is not None
    rel, max_d, min_d = parse_georel(georel)
    if geometry not in QUERY_GEOMETRY_TYPES:
        raise BadRequest(
            f"geometry {geometry!r} is not supported in a geo-query "
            f"(expected one of {', '.join(QUERY_GEOMETRY_TYPES)})"
        )
    if isinstance(coordinates, str):
        try:
            coords = json.loads(coordinates)
        except ValueError:
            raise BadRequest(
                f"coordinates must be a JSON array such as [108.22,16.07], not {coordinates[:80]!r}"
            ) from None
    else:
        coords = coordinates
    if not isinstance(coords, list):
        raise BadRequest(f"coordinates must be a JSON array, not {_jtype(coords)}")
    geom = validate_geometry({"type": geometry, "coordinates": coords}, "geo-query coordinates")
    prop = "location" if geoproperty is None or geoproperty == "" else geoproperty
    if not isinstance(prop, str) or any(ch in prop for ch in '"\\') or prop != prop.strip():
        raise BadRequest(f"geoproperty {prop!r} is not a valid attribute name")
    return GeoQuery(rel, geom, prop, max_d, min_d)


def parse_georel(text: str) -> tuple[str, float | None, float | None]:
    """``(relation, maxDistance, minDistance)`` of a ``georel`` parameter."""
    if not isinstance(text, str):
        raise BadRequest(f"georel must be a string, not {_jtype(text)}")
    parts = [p.strip() for p in text.split(";")]
    rel = parts[0]
    if rel not in GEORELS:
        raise BadRequest(
            f"georel {text!r}: unknown relation {rel!r} (expected one of {', '.join(GEORELS)})"
        )
    dist: dict[str, float] = {}
    for part in parts[1:]:
        name, sep, value = part.partition("==")
        if not sep or name not in DISTANCES:
            raise BadRequest(
                f"georel {text!r}: {part!r} is not maxDistance==<metres> or minDistance==<metres>"
            )
        if rel != "near":
            raise BadRequest(f"georel {text!r}: only 'near' takes a distance")
        if name in dist:
            raise BadRequest(f"georel {text!r}: {name} is given twice")
        if not _NUMBER.fullmatch(value.strip()) or not math.isfinite(float(value)):
            raise BadRequest(
                f"georel {text!r}: {name} must be a non-negative number of metres, not {value!r}"
            )
        dist[name] = float(value)
    if rel == "near" and not dist:
        raise BadRequest(
            f"georel {text!r}: near needs a distance, e.g. near;maxDistance==1000 (metres)"
        )
    max_d, min_d = dist.get("maxDistance"), dist.get("minDistance")
    if max_d is not None and min_d is not None and min_d > max_d:
        raise BadRequest(f"georel {text!r}: minDistance is greater than maxDistance")
    return rel, max_d, min_d


# --------------------------------------------------------------------------- SQL

_PG_RELATION = {
    "within": "ST_Within",
    "contains": "ST_Contains",
    "intersects": "ST_Intersects",
    "disjoint": "ST_Disjoint",
    "equals": "ST_Equals",
    "overlaps": "ST_Overlaps",
}
_PG_QUERY = "ST_SetSRID(ST_GeomFromGeoJSON(?), 4326)"
# the default instance (no datasetId) of the attribute, else its first; NULL unless a
# GeoProperty with an object value (CASE: a Property's value never reaches PostGIS)
_PG_ATTR = (
    "(SELECT CASE WHEN gi.i ->> 'type' = 'GeoProperty' AND jsonb_typeof(gi.i -> 'value') = "
    "'object' THEN ST_SetSRID(ST_GeomFromGeoJSON(gi.i ->> 'value'), 4326) END "
    "FROM jsonb_array_elements(CASE WHEN jsonb_typeof(e.attrs -> CAST(? AS text)) = 'array' "
    "THEN e.attrs -> CAST(? AS text) END) WITH ORDINALITY AS gi(i, n) "
    "ORDER BY gi.i -> 'datasetId' IS NOT NULL, gi.n LIMIT 1)"
)


def geo_sql(gq: GeoQuery, dialect: str, attr_iri: str, indexed: bool) -> tuple[str, list[Any]]:
    """A SQL condition on ``hub_entities e`` (``?`` placeholders) and its parameters.

    ``attr_iri`` is the expanded geoproperty; ``indexed`` says it is ``location``, whose
    geometry is indexed (``e.location`` on PostgreSQL, ``hub_location`` on SQLite).
    Entities without that GeoProperty never match.
    """
    if '"' in attr_iri:
        raise BadRequest(f"geoproperty {attr_iri!r} is not a valid attribute name")
    if dialect == "postgresql":
        return _pg_sql(gq, attr_iri, indexed)
    if dialect == "sqlite":
        return _sqlite_sql(gq, attr_iri, indexed)
    raise ValueError(f"unknown SQL dialect {dialect!r}")


def _pg_sql(gq: GeoQuery, attr_iri: str, indexed: bool) -> tuple[str, list[Any]]:
    ent, ent_params = ("e.location", []) if indexed else (_PG_ATTR, [attr_iri, attr_iri])
    params: list[Any] = []
    if gq.georel != "near":
        params += [*ent_params, gq.geometry_json]
        return f"{_PG_RELATION[gq.georel]}({ent}, {_PG_QUERY})", params
    parts = []
    dwithin = f"ST_DWithin(({ent})::geography, ({_PG_QUERY})::geography, ?, false)"
    if gq.max_distance is not None:
        parts.append(dwithin)
        params += [*ent_params, gq.geometry_json, gq.max_distance]
    if gq.min_distance is not None:
        # NULL (no geometry) stays NULL under NOT: such entities do not match either
        parts.append(f"NOT {dwithin}")
        params += [*ent_params, gq.geometry_json, gq.min_distance]
    return "(" + " AND ".join(parts) + ")", params


def distance_sql(gq: GeoQuery, dialect: str, attr_iri: str, indexed: bool) -> tuple[str, list[Any]]:
    """The distance in metres from an entity's geoproperty to the query geometry, as a
    SQL expression on ``hub_entities e``: what ``near`` results are ordered by.

    On PostgreSQL the indexed ``location`` uses ``<->`` on geography (great circle on the
    sphere), which a GiST index scan returns in order (nearest-neighbour search)."""
    if '"' in attr_iri:
        raise BadRequest(f"geoproperty {attr_iri!r} is not a valid attribute name")
    if dialect == "postgresql":
        if indexed:
            return f"((e.location)::geography <-> ({_PG_QUERY})::geography)", [gq.geometry_json]
        return (
            f"ST_Distance(({_PG_ATTR})::geography, ({_PG_QUERY})::geography, false)",
            [attr_iri, attr_iri, gq.geometry_json],
        )
    return "sc_distance(json_extract(e.attrs, ?), ?)", ['$."' + attr_iri + '"', gq.geometry_json]


def sqlite_split(
    gq: GeoQuery, attr_iri: str, indexed: bool
) -> tuple[tuple[str, list[Any]] | None, tuple[str, list[Any]]]:
    """The SQLite geo-query as (R*Tree prefilter or None, exact check), so a query can
    start from the prefilter and run the (costlier) exact check after its other tests."""
    check = (
        "sc_geo(?, json_extract(e.attrs, ?), ?, ?, ?) = 1",
        [gq.georel, '$."' + attr_iri + '"', gq.geometry_json, gq.min_distance, gq.max_distance],
    )
    box = search_box(gq) if indexed else None
    if box is None:
        return None, check
    if gq.georel == "contains":  # the entity's box contains the query's box
        cond = "minx <= ? AND maxx >= ? AND miny <= ? AND maxy >= ?"
    else:  # the boxes intersect
        cond = "maxx >= ? AND minx <= ? AND maxy >= ? AND miny <= ?"
    return (f"e.rid IN (SELECT rid FROM hub_location WHERE {cond})", list(box)), check


def _sqlite_sql(gq: GeoQuery, attr_iri: str, indexed: bool) -> tuple[str, list[Any]]:
    prefilter, check = sqlite_split(gq, attr_iri, indexed)
    if prefilter is None:
        return check
    return f"({prefilter[0]} AND {check[0]})", [*prefilter[1], *check[1]]


def search_box(gq: GeoQuery) -> tuple[float, float, float, float] | None:
    """The box ``(minx, maxx, miny, maxy)`` every matching entity's box must meet (or, for
    ``contains``, contain); None when no box prefilter is possible (disjoint, minDistance).

    For ``near;maxDistance`` the query box grows by the distance (plus 1 %), converted to
    degrees for the highest latitude of the box; across a pole or the antimeridian the
    box spans every longitude.
    """
    b = bbox(gq.geometry)
    if gq.georel == "disjoint":
        return None
    if gq.georel != "near":
        return b
    if gq.max_distance is None:
        return None
    return _grow(b, gq.max_distance)


def _grow(b: tuple[float, float, float, float], metres: float) -> tuple[float, float, float, float]:
    """A box holding every point within ``metres`` (great-circle, plus 1 %) of box ``b``."""
    minx, maxx, miny, maxy = b
    c = metres / EARTH_RADIUS_M * 1.01 + 1e-9  # angular radius, radians
    dlat = math.degrees(c)
    lo, hi = miny - dlat, maxy + dlat
    if lo <= -90 or hi >= 90:
        return -180.0, 180.0, max(lo, -90.0), min(hi, 90.0)
    s = math.sin(c) / math.cos(math.radians(max(abs(miny), abs(maxy))))
    dlon = 180.0 if s >= 1 else math.degrees(math.asin(s)) + 1e-9
    west, east = minx - dlon, maxx + dlon
    if west < -180 or east > 180:
        west, east = -180.0, 180.0
    return west, east, lo, hi


# --------------------------------------------------------------------------- exact checks


def haversine_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Great-circle distance in metres between two positions (degrees)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = (
        math.sin((p2 - p1) / 2) ** 2
        + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(min(1.0, a)))


def _aeqd(lon0: float, lat0: float) -> Callable[[Any], Any]:
    """Azimuthal equidistant projection (metres) on the sphere, centred at (lon0, lat0), of
    an (n, 2) array of [lon, lat]: exact for distances from the centre, other distances
    within a factor 1 + c²/6 (c the angle from the centre: 4e-7 at 10 km, 4e-5 at 100 km)."""
    l0, p0 = math.radians(lon0), math.radians(lat0)
    sp0, cp0 = math.sin(p0), math.cos(p0)

    def project(xy: Any) -> Any:
        lam = np.radians(xy[:, 0]) - l0
        lam = (lam + np.pi) % (2 * np.pi) - np.pi
        phi = np.radians(xy[:, 1])
        sp, cp, cl = np.sin(phi), np.cos(phi), np.cos(lam)
        a = np.sin((phi - p0) / 2) ** 2 + cp0 * cp * np.sin(lam / 2) ** 2
        c = 2 * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))
        sc = np.sin(c)
        k = np.where(sc > 1e-12, c / np.where(sc > 1e-12, sc, 1.0), 1.0) * EARTH_RADIUS_M
        return np.column_stack((k * cp * np.sin(lam), k * (cp0 * sp - sp0 * cp * cl)))

    return project


def _aeqd_xy(lon: float, lat: float, lon0: float, lat0: float) -> tuple[float, float]:
    """:func:`_aeqd` of one position, without numpy (fast for one point)."""
    p0, phi = math.radians(lat0), math.radians(lat)
    lam = (math.radians(lon - lon0) + math.pi) % (2 * math.pi) - math.pi
    cp0, cp = math.cos(p0), math.cos(phi)
    a = math.sin((phi - p0) / 2) ** 2 + cp0 * cp * math.sin(lam / 2) ** 2
    c = 2 * math.asin(math.sqrt(min(1.0, max(0.0, a))))
    sc = math.sin(c)
    k = (c / sc if sc > 1e-12 else 1.0) * EARTH_RADIUS_M
    return k * cp * math.sin(lam), k * (cp0 * math.sin(phi) - math.sin(p0) * cp * math.cos(lam))


@dataclass(frozen=True)
class _Reference:
    geom: Any  # shapely geometry (prepared)
    point: tuple[float, float] | None  # set when the geometry is a Point
    center: tuple[float, float]
    projected: Any  # the geometry in the AEQD plane around center (prepared)
    bounds: tuple[float, float, float, float]  # minx, maxx, miny, maxy


@lru_cache(maxsize=128)
def _reference(text: str) -> _Reference | None:
    try:
        obj = json.loads(text)
        geom = to_shape(obj)
        if geom.is_empty:
            return None
    except (ValueError, TypeError, KeyError, AttributeError, ShapelyError):
        return None
    minx, miny, maxx, maxy = geom.bounds
    point = (float(geom.x), float(geom.y)) if geom.geom_type == "Point" else None
    center = point or ((minx + maxx) / 2, (miny + maxy) / 2)
    projected = shapely.transform(geom, _aeqd(*center))
    shapely.prepare(geom)
    shapely.prepare(projected)
    return _Reference(geom, point, center, projected, (minx, maxx, miny, maxy))


@lru_cache(maxsize=128)
def _near_box(text: str, metres: float) -> tuple[float, float, float, float] | None:
    ref = _reference(text)
    return None if ref is None else _grow(ref.bounds, metres)


def _entity_geometry(text: Any) -> dict[str, Any] | None:
    """The GeoJSON geometry in ``text``: a geometry, an attribute instance or a list of
    instances (the default one, without datasetId, else the first); None if none."""
    if not isinstance(text, str | bytes):
        return None
    obj = json.loads(text)
    if isinstance(obj, list):
        insts = [i for i in obj if isinstance(i, dict)]
        obj = next((i for i in insts if "datasetId" not in i), insts[0] if insts else None)
    if not isinstance(obj, dict):
        return None
    if obj.get("type") == "GeoProperty":
        obj = obj.get("value")
        if not isinstance(obj, dict):
            return None
    if obj.get("type") not in GEOMETRY_TYPES:
        return None
    return obj


def distance_m(a: dict[str, Any], b: dict[str, Any]) -> float:
    """Distance in metres between two GeoJSON geometries, as ``near`` measures it on SQLite:
    great-circle between points, else planar in an azimuthal equidistant projection
    around ``b`` (error well under 0.1 % within 100 km of ``b``)."""
    ref = _reference(json.dumps(b, separators=(",", ":")))
    if ref is None:
        raise ValueError("not a geometry")
    return _distance(a, ref)


def _distance(obj: dict[str, Any], ref: _Reference) -> float:
    if obj["type"] == "Point":
        x, y = float(obj["coordinates"][0]), float(obj["coordinates"][1])
        if ref.point is not None:
            return haversine_m(x, y, ref.point[0], ref.point[1])
        px, py = _aeqd_xy(x, y, *ref.center)
        return float(shapely.distance(ref.projected, shapely.Point(px, py)))
    geom = shapely.transform(to_shape(obj), _aeqd(*ref.center))
    return float(shapely.distance(ref.projected, geom))


def _too_far(obj: dict[str, Any], query: str, metres: float) -> bool:
    """True when the entity's box misses the query box grown by ``metres`` (cheap test)."""
    box = _near_box(query, metres)
    if box is None:
        return False
    if obj["type"] == "Point":
        x, y = float(obj["coordinates"][0]), float(obj["coordinates"][1])
        return not (box[0] <= x <= box[1] and box[2] <= y <= box[3])
    minx, maxx, miny, maxy = bbox(obj)
    return maxx < box[0] or minx > box[1] or maxy < box[2] or miny > box[3]


def _relate(georel: str, obj: dict[str, Any], ref: _Reference) -> bool:
    q = ref.geom  # prepared: put it first where the predicate allows
    if obj["type"] == "Point":
        x, y = float(obj["coordinates"][0]), float(obj["coordinates"][1])
        if georel == "within":
            return bool(shapely.contains_xy(q, x, y))
        if georel == "intersects":
            return bool(shapely.intersects_xy(q, x, y))
        if georel == "disjoint":
            return not bool(shapely.intersects_xy(q, x, y))
        g = shapely.Point(x, y)
    else:
        g = to_shape(obj)
    if georel == "within":
        return bool(shapely.contains(q, g))
    if georel == "contains":
        return bool(shapely.within(q, g))
    if georel == "intersects":
        return bool(shapely.intersects(q, g))
    if georel == "disjoint":
        return bool(shapely.disjoint(q, g))
    if georel == "equals":
        return bool(shapely.equals(g, q))
    if georel == "overlaps":
        return bool(shapely.overlaps(q, g))
    return False


def sc_geo(georel: Any, entity: Any, query: Any, min_distance: Any, max_distance: Any) -> int:
    """The SQLite function ``sc_geo``: 1 when the entity geometry (a GeoJSON geometry, an
    attribute instance or an instance array, as JSON text) satisfies the relation with
    the query geometry (JSON text), else 0 (also for a missing or invalid geometry)."""
    try:
        if not isinstance(query, str):
            return 0
        ref = _reference(query)
        obj = _entity_geometry(entity)
        if ref is None or obj is None:
            return 0
        if georel == "near":
            if min_distance is None and max_distance is None:
                return 0
            if max_distance is not None and _too_far(obj, query, float(max_distance)):
                return 0
            d = _distance(obj, ref)
            if max_distance is not None and not d <= float(max_distance):
                return 0
            if min_distance is not None and not d > float(min_distance):
                return 0
            return 1
        return 1 if _relate(str(georel), obj, ref) else 0
    except Exception:  # a bad row must not fail the whole query
        return 0


def sc_distance(entity: Any, query: Any) -> float | None:
    """The SQLite function ``sc_distance``: metres from the entity geometry (as for
    :func:`sc_geo`) to the query geometry; NULL for a missing or invalid geometry."""
    try:
        ref = _reference(query) if isinstance(query, str) else None
        obj = _entity_geometry(entity)
        if ref is None or obj is None:
            return None
        return _distance(obj, ref)
    except Exception:  # a bad row must not fail the whole query
        return None


def register_sqlite_functions(conn: sqlite3.Connection) -> None:
    """Register ``sc_geo(georel, entity_json, query_json, min_distance, max_distance)``
    and ``sc_distance(entity_json, query_json)``."""
    conn.create_function("sc_geo", 5, sc_geo, deterministic=True)
    conn.create_function("sc_distance", 2, sc_distance, deterministic=True)
