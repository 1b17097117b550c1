"""``sencity import gtfs FEED``: a GTFS feed → Smart Data Models UrbanMobility entities.

What becomes what (docs/TRANSIT.md has the attribute table): agency.txt → GtfsAgency,
stops.txt → GtfsStop (GtfsStation for ``location_type`` 1), routes.txt → GtfsRoute,
trips.txt → GtfsTrip, shapes.txt → one GtfsShape per ``shape_id`` (a LineString in
``shape_pt_sequence`` order), stop_times.txt → GtfsStopTime, every service_id →
GtfsService, calendar.txt → GtfsCalendarRule, calendar_dates.txt → GtfsCalendarDateRule.

Ids are ``urn:ngsi-ld:{Type}:{prefix}:{gtfs id}``, so importing the same feed again
replaces the same entities (upsert, no duplicates).

The feed is read with **gtfs-kit** rather than partridge: gtfs-kit is actively
released, reads a zip or a directory into DataFrames typed after the GTFS reference
(nullable ints, floats, ids kept as strings) and runs warning-free on current pandas,
while partridge's last release calls pandas APIs that pandas 3 deprecates (warnings
that our strict test run turns into errors).  Its cost is geopandas as a dependency.
gtfs-kit's reader stops at the first bad cell without saying where, so when it fails
we scan the files with the csv module (:func:`_locate`) to name the file, line and
field.  Our own checks (:func:`validate`) then cover what the model mapping needs.

@context: the bodies use the Smart Data Models terms; :data:`GTFS_CONTEXT` is an
inline @context giving those terms the IRIs of the published UrbanMobility context,
so the import works offline and stores exactly what a client using the official
context would write (a test compares it with the published file when present).
"""

from __future__ import annotations

import csv
import io
import re
import time
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import quote

import click

from sencity.errors import SenCityError

if TYPE_CHECKING:
    import pandas as pd  # type: ignore[import-untyped]

    from sencity.config import Settings
    from sencity.ingest.hubwrite import HubWriter

_UM = "https://smartdatamodels.org/dataModel.UrbanMobility/"
_SDM = "https://smartdatamodels.org/"
_UM_TERMS = [
    "GtfsAgency",
    "GtfsStop",
    "GtfsStation",
    "GtfsRoute",
    "GtfsTrip",
    "GtfsShape",
    "GtfsStopTime",
    "GtfsService",
    "GtfsCalendarRule",
    "GtfsCalendarDateRule",
    "agencyName",
    "page",
    "phone",
    "timezone",
    "language",
    "code",
    "zoneCode",
    "hasParentStation",
    "operatedBy",
    "wheelChairAccessible",
    "shortName",
    "routeType",
    "routeColor",
    "routeTextColor",
    "routeSortOrder",
    "hasRoute",
    "hasService",
    "hasShape",
    "headSign",
    "direction",
    "block",
    "bikesAllowed",
    "distanceTravelled",
    "arrivalTime",
    "departureTime",
    "hasStop",
    "hasTrip",
    "stopSequence",
    "stopHeadsign",
    "pickupType",
    "dropOffType",
    "timepoint",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
    "appliesOn",
    "exceptionType",
]

#: the UrbanMobility terms we write, with the IRIs of the published context
GTFS_CONTEXT: dict[str, str] = {
    **{t: _UM + t for t in _UM_TERMS},
    "name": _SDM + "name",
    "source": _SDM + "source",
    "startDate": _SDM + "startDate",
    "endDate": _SDM + "endDate",
    "description": "http://purl.org/dc/terms/description",
}

#: the files, in the order they are written (referenced entities first)
FILES = (
    "agency",
    "calendar",
    "calendar_dates",
    "stops",
    "routes",
    "shapes",
    "trips",
    "stop_times",
)

REQUIRED: dict[str, tuple[str, ...]] = {
    "agency": ("agency_name",),
    "stops": ("stop_id", "stop_lat", "stop_lon"),
    "routes": ("route_id", "route_type"),
    "trips": ("route_id", "service_id", "trip_id"),
    "stop_times": ("trip_id", "stop_id", "stop_sequence"),
    "shapes": ("shape_id", "shape_pt_lat", "shape_pt_lon", "shape_pt_sequence"),
    "calendar": (
        "service_id",
        *("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"),
        *("start_date", "end_date"),
    ),
    "calendar_dates": ("service_id", "date", "exception_type"),
}

#: one primary key per file: a repeated key would collapse two rows into one entity
KEYS: dict[str, tuple[str, ...]] = {
    "agency": ("agency_id",),
    "stops": ("stop_id",),
    "routes": ("route_id",),
    "trips": ("trip_id",),
    "stop_times": ("trip_id", "stop_sequence"),
    "calendar": ("service_id",),
    "calendar_dates": ("service_id", "date"),
}

ABSENT = {
    "agency": "routes, stops and services have no operatedBy",
    "stops": "no stops; stop times point at stops that are not in the hub",
    "routes": "no routes; trips point at routes that are not in the hub",
    "trips": "no trips; stop times point at trips that are not in the hub",
    "stop_times": "trips have no stop times",
    "shapes": "trips have no shapes (no hasShape)",
}

BATCH = 1000
MAX_ERRORS = 20
_TIME = r"^\d{1,3}:[0-5]\d:[0-5]\d$"
_DATE = r"^\d{4}(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])$"
_ID_SAFE = "-._~:@!$&'()*+,;="


class GtfsError(SenCityError):
    """The feed cannot be imported; ``problems`` name file, line and field."""

    def __init__(self, problems: list[str]) -> None:
        shown = problems[:MAX_ERRORS]
        more = len(problems) - len(shown)
        super().__init__("\n".join(shown + ([f"… and {more} more"] if more else [])))
        self.problems = problems


def entity_id(etype: str, prefix: str, *key: Any) -> str:
    """``urn:ngsi-ld:{etype}:{prefix}:{key…}``, unsafe characters percent-encoded."""
    parts = [quote(str(k), safe=_ID_SAFE) for k in key]
    return ":".join(["urn:ngsi-ld", etype, *([prefix] if prefix else []), *parts])


def default_prefix(path: Path) -> str:
    """The feed's file or directory name, e.g. ``cairns_gtfs`` for cairns_gtfs.zip."""
    stem = path.name[:-4] if path.name.lower().endswith(".zip") else path.name
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("_") or "gtfs"


# -- reading ---------------------------------------------------------------------------
@dataclass
class Feed:
    """The tables of a feed (None: file absent or empty) and what reading found."""

    path: Path
    tables: dict[str, pd.DataFrame | None]
    warnings: list[str] = field(default_factory=list)

    def rows(self, name: str) -> int:
        df = self.tables.get(name)
        return 0 if df is None else len(df)


@contextmanager
def _sources(path: Path) -> Iterator[dict[str, Callable[[], IO[str]]]]:
    """The GTFS files of a zip or a directory, each as a function opening its text."""
    if path.is_dir():
        yield {
            p.stem: partial(open, p, encoding="utf-8-sig", newline="")
            for p in sorted(path.iterdir())
            if p.is_file() and p.suffix == ".txt" and p.stem in FILES
        }
        return
    with zipfile.ZipFile(path) as zf:
        yield {
            Path(n).stem: partial(_zip_text, zf, n)
            for n in zf.namelist()
            if n.endswith(".txt") and Path(n).stem in FILES
        }


def _zip_text(zf: zipfile.ZipFile, name: str) -> IO[str]:
    return io.TextIOWrapper(zf.open(name), encoding="utf-8-sig", newline="")


def _locate(path: Path, dtypes: dict[str, dict[str, str]]) -> list[str]:
    """Cells the typed reader cannot take: 'file, line N, field F: problem'."""
    problems: list[str] = []
    with _sources(path) as sources:
        for name, opener in sources.items():
            problems += _locate_file(name, opener, dtypes.get(name, {}))
    return problems


def _locate_file(name: str, opener: Callable[[], IO[str]], types: dict[str, str]) -> list[str]:
    """The bad cells of one file (numbers that are not, rows of the wrong width)."""
    problems: list[str] = []
    with opener() as f:
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader, [])]
        for row in reader:
            line = reader.line_num
            if not any(c.strip() for c in row):
                continue
            if len(row) != len(header):
                problems.append(
                    f"{name}.txt, line {line}: {len(row)} fields, the header has {len(header)}"
                )
                continue
            for col, raw in zip(header, row, strict=True):
                kind, cell = types.get(col, "string"), raw.strip()
                if not cell or kind == "string":
                    continue
                try:
                    float(cell) if kind.startswith("float") else int(cell)
                except ValueError:
                    what = "a number" if kind.startswith("float") else "an integer"
                    problems.append(
                        f"{name}.txt, line {line}, field '{col}': {cell!r} is not {what}"
                    )
    return problems


def read_feed(path: Path) -> Feed:
    """Read a zip or directory with gtfs-kit; GtfsError naming file, line and field."""
    import gtfs_kit  # type: ignore[import-untyped]
    import gtfs_kit.constants  # type: ignore[import-untyped]
    import pandas as pd

    if not path.exists():
        raise GtfsError([f"{path}: no such file or directory"])
    try:
        with _sources(path) as sources:
            present = set(sources)
    except zipfile.BadZipFile:
        raise GtfsError([f"{path.name}: not a zip file nor a directory"]) from None
    if not present:
        raise GtfsError([f"{path.name}: no GTFS files (stops.txt, routes.txt, trips.txt…)"])
    try:
        # distances stay in the feed's own units; "km" only stops gtfs-kit guessing them
        kit = gtfs_kit.read_feed(path, dist_units="km")
    except (ValueError, TypeError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        problems = _locate(path, gtfs_kit.constants.DTYPES)
        raise GtfsError(problems or [f"{path.name}: cannot be read: {exc}"]) from None
    tables = {name: getattr(kit, name, None) for name in FILES}
    feed = Feed(path, tables)
    for name, consequence in ABSENT.items():
        if tables[name] is None:
            feed.warnings.append(f"{name}.txt: absent — {consequence}")
    if tables["calendar"] is None and tables["calendar_dates"] is None:
        feed.warnings.append(
            "calendar.txt, calendar_dates.txt: absent — services have no calendar rules"
        )
    return feed


# -- validation --------------------------------------------------------------------------
def _lines(mask: pd.Series) -> list[int]:
    """File line numbers of the rows where ``mask`` holds (line 1 is the header)."""
    return [int(i) + 2 for i in mask[mask].index]


def validate(feed: Feed) -> list[str]:
    """Problems that stop the import (file, line, field); adds warnings to ``feed``."""
    errors: list[str] = []
    for name, df in feed.tables.items():
        if df is None:
            continue
        file = f"{name}.txt"
        for col in REQUIRED.get(name, ()):
            if col not in df.columns:
                errors.append(f"{file}, line 1: required field '{col}' is missing from the header")
                continue
            errors += [
                f"{file}, line {n}, field '{col}': empty (required)" for n in _lines(df[col].isna())
            ]
        key = [c for c in KEYS.get(name, ()) if c in df.columns]
        if key and len(key) == len(KEYS[name]):
            dup = df.duplicated(key) & df[key].notna().all(axis=1)
            for n in _lines(dup):
                value = ", ".join(str(v) for v in df.loc[n - 2, key])
                errors.append(f"{file}, line {n}, field '{key[-1]}': duplicate {value!r}")
        errors += _check_values(name, df)
    if errors:
        return errors
    feed.warnings += _dangling(feed)
    return []


def _check_values(name: str, df: pd.DataFrame) -> list[str]:
    file = f"{name}.txt"
    checks: list[tuple[str, Callable[[pd.Series], pd.Series], str]] = []
    if name == "stops":
        checks += [
            ("stop_lat", lambda s: (s < -90) | (s > 90), "latitude out of [-90, 90]"),
            ("stop_lon", lambda s: (s < -180) | (s > 180), "longitude out of [-180, 180]"),
        ]
    elif name == "shapes":
        checks += [
            ("shape_pt_lat", lambda s: (s < -90) | (s > 90), "latitude out of [-90, 90]"),
            ("shape_pt_lon", lambda s: (s < -180) | (s > 180), "longitude out of [-180, 180]"),
        ]
    elif name == "stop_times":
        for col in ("arrival_time", "departure_time"):
            checks.append((col, lambda s: ~s.str.strip().str.match(_TIME), "not HH:MM:SS"))
        checks.append(("stop_sequence", lambda s: s < 0, "negative"))
    elif name == "calendar":
        for day in REQUIRED["calendar"][1:8]:
            checks.append((day, lambda s: ~s.isin([0, 1]), "not 0 or 1"))
        for col in ("start_date", "end_date"):
            checks.append((col, lambda s: ~s.str.match(_DATE), "not a date YYYYMMDD"))
    elif name == "calendar_dates":
        checks += [
            ("date", lambda s: ~s.str.match(_DATE), "not a date YYYYMMDD"),
            ("exception_type", lambda s: ~s.isin([1, 2]), "not 1 or 2"),
        ]
    elif name == "routes":
        checks.append(("route_type", lambda s: s < 0, "negative"))
    out: list[str] = []
    for col, bad, what in checks:
        if col not in df.columns:
            continue
        series = df[col]
        mask = bad(series).fillna(False).astype(bool) & series.notna()
        for n in _lines(mask):
            out.append(f"{file}, line {n}, field '{col}': {series[n - 2]!r} is {what}")
    return out


def _dangling(feed: Feed) -> list[str]:
    """References to rows the feed does not have (warnings: the entities are still written)."""
    t = feed.tables
    found: list[str] = []

    def check(name: str, col: str, target: str, target_col: str) -> None:
        df, ref = t[name], t[target]
        if df is None or ref is None or col not in df.columns or target_col not in ref.columns:
            return
        values = df[col].dropna()
        missing = values[~values.isin(ref[target_col])]
        if len(missing):
            first = int(missing.index[0]) + 2
            found.append(
                f"{name}.txt: {len(missing)} rows refer to a {col} not in {target}.txt "
                f"(first: line {first}, {missing.iloc[0]!r})"
            )

    check("trips", "route_id", "routes", "route_id")
    check("trips", "shape_id", "shapes", "shape_id")
    check("stop_times", "trip_id", "trips", "trip_id")
    check("stop_times", "stop_id", "stops", "stop_id")
    check("stops", "parent_station", "stops", "stop_id")
    return found


# -- mapping -----------------------------------------------------------------------------
def _records(df: pd.DataFrame | None) -> list[dict[str, Any]]:
    """Rows as dicts of plain Python values (None for empty cells)."""
    if df is None:
        return []
    return df.astype(object).where(df.notna(), None).to_dict("records")  # type: ignore[no-any-return]


def _prop(value: Any) -> dict[str, Any]:
    return {"type": "Property", "value": value}


def _rel(obj: str | list[str]) -> dict[str, Any]:
    return {"type": "Relationship", "object": obj}


def _iso_date(yyyymmdd: str) -> dict[str, Any]:
    d = yyyymmdd.strip()
    return {"@type": "Date", "@value": f"{d[:4]}-{d[4:6]}-{d[6:]}"}


def _put(body: dict[str, Any], attr: str, value: Any, conv: Callable[[Any], Any] = str) -> None:
    """Set ``attr`` as a Property unless the GTFS cell is empty."""
    if value is not None and value != "":
        body[attr] = _prop(conv(value))


class Mapper:
    """Builds the entity bodies of one feed (ids under ``prefix``)."""

    def __init__(self, feed: Feed, prefix: str) -> None:
        self.feed = feed
        self.prefix = prefix
        agencies = _records(feed.tables["agency"])
        self.agency_ids = [str(a.get("agency_id") or "default") for a in agencies]
        # a single agency operates everything that does not name one
        self.sole_agency = (
            self.id("GtfsAgency", self.agency_ids[0]) if len(self.agency_ids) == 1 else None
        )
        shapes = feed.tables["shapes"]
        self.shape_ids: set[str] = set() if shapes is None else set(shapes["shape_id"].dropna())
        stops = feed.tables["stops"]
        self.stations: set[str] = set()
        if stops is not None and "location_type" in stops.columns:
            self.stations = set(stops.loc[stops["location_type"] == 1, "stop_id"].dropna())

    def id(self, etype: str, *key: Any) -> str:
        return entity_id(etype, self.prefix, *key)

    def _agency(self, agency_id: Any) -> str | None:
        return self.id("GtfsAgency", agency_id) if agency_id else self.sole_agency

    def agency(self) -> Iterator[dict[str, Any]]:
        for a, key in zip(_records(self.feed.tables["agency"]), self.agency_ids, strict=True):
            body: dict[str, Any] = {"id": self.id("GtfsAgency", key), "type": "GtfsAgency"}
            _put(body, "agencyName", a.get("agency_name"))
            _put(body, "source", self.feed.path.name)
            _put(body, "page", a.get("agency_url"))
            _put(body, "timezone", a.get("agency_timezone"))
            _put(body, "language", a.get("agency_lang"))
            _put(body, "phone", a.get("agency_phone"))
            yield body

    def service_ids(self) -> list[str]:
        ids: dict[str, None] = {}
        for name in ("calendar", "calendar_dates", "trips"):
            df = self.feed.tables[name]
            if df is not None and "service_id" in df.columns:
                ids.update(dict.fromkeys(df["service_id"].dropna()))
        return list(ids)

    def services(self) -> Iterator[dict[str, Any]]:
        for sid in self.service_ids():
            body: dict[str, Any] = {"id": self.id("GtfsService", sid), "type": "GtfsService"}
            body["name"] = _prop(sid)
            if self.sole_agency:
                body["operatedBy"] = _rel(self.sole_agency)
            yield body

    def calendar(self) -> Iterator[dict[str, Any]]:
        for r in _records(self.feed.tables["calendar"]):
            sid = r["service_id"]
            body: dict[str, Any] = {"id": self.id("GtfsCalendarRule", sid)}
            body["type"] = "GtfsCalendarRule"
            body["name"] = _prop(sid)
            body["hasService"] = _rel(self.id("GtfsService", sid))
            for day in REQUIRED["calendar"][1:8]:
                body[day] = _prop(r[day] == 1)
            body["startDate"] = _prop(_iso_date(r["start_date"]))
            body["endDate"] = _prop(_iso_date(r["end_date"]))
            yield body

    def calendar_dates(self) -> Iterator[dict[str, Any]]:
        for r in _records(self.feed.tables["calendar_dates"]):
            sid, date = r["service_id"], r["date"].strip()
            body: dict[str, Any] = {"id": self.id("GtfsCalendarDateRule", sid, date)}
            body["type"] = "GtfsCalendarDateRule"
            body["name"] = _prop(f"{sid} {date}")
            body["hasService"] = _rel(self.id("GtfsService", sid))
            body["appliesOn"] = _prop(_iso_date(date))
            body["exceptionType"] = _prop(str(r["exception_type"]))
            yield body

    def stops(self) -> Iterator[dict[str, Any]]:
        for r in _records(self.feed.tables["stops"]):
            etype = "GtfsStation" if r.get("location_type") == 1 else "GtfsStop"
            body: dict[str, Any] = {"id": self.id(etype, r["stop_id"]), "type": etype}
            body["name"] = _prop(r.get("stop_name") or r["stop_id"])
            body["location"] = {
                "type": "GeoProperty",
                "value": {"type": "Point", "coordinates": [r["stop_lon"], r["stop_lat"]]},
            }
            _put(body, "code", r.get("stop_code"))
            _put(body, "description", r.get("stop_desc"))
            _put(body, "zoneCode", r.get("zone_id"))
            _put(body, "page", r.get("stop_url"))
            _put(body, "wheelChairAccessible", r.get("wheelchair_boarding"), int)
            parent = r.get("parent_station")
            if parent:
                body["hasParentStation"] = _rel(self.id("GtfsStation", parent))
            if self.sole_agency:
                body["operatedBy"] = _rel([self.sole_agency])
            yield body

    def routes(self) -> Iterator[dict[str, Any]]:
        for r in _records(self.feed.tables["routes"]):
            body: dict[str, Any] = {"id": self.id("GtfsRoute", r["route_id"]), "type": "GtfsRoute"}
            _put(body, "name", r.get("route_long_name") or r.get("route_short_name"))
            _put(body, "shortName", r.get("route_short_name"))
            _put(body, "description", r.get("route_desc"))
            _put(body, "routeType", r["route_type"])
            _put(body, "page", r.get("route_url"))
            _put(body, "routeColor", r.get("route_color"))
            _put(body, "routeTextColor", r.get("route_text_color"))
            _put(body, "routeSortOrder", r.get("route_sort_order"), int)
            agency = self._agency(r.get("agency_id"))
            if agency:
                body["operatedBy"] = _rel(agency)
            yield body

    def shapes(self) -> Iterator[dict[str, Any]]:
        df = self.feed.tables["shapes"]
        if df is None:
            return
        df = df.sort_values(["shape_id", "shape_pt_sequence"], kind="stable")
        dist = "shape_dist_traveled" in df.columns and bool(df["shape_dist_traveled"].notna().any())
        for sid, points in df.groupby("shape_id", sort=False):
            coords = [
                [float(lon), float(lat)]
                for lon, lat in zip(points["shape_pt_lon"], points["shape_pt_lat"], strict=True)
            ]
            if len(coords) < 2:
                self.feed.warnings.append(f"shapes.txt: shape {sid!r} has one point, skipped")
                continue
            body: dict[str, Any] = {"id": self.id("GtfsShape", sid), "type": "GtfsShape"}
            body["name"] = _prop(str(sid))
            body["location"] = {
                "type": "GeoProperty",
                "value": {"type": "LineString", "coordinates": coords},
            }
            if dist:
                body["distanceTravelled"] = _prop(
                    [None if d != d else float(d) for d in points["shape_dist_traveled"]]
                )
            yield body

    def trips(self) -> Iterator[dict[str, Any]]:
        for r in _records(self.feed.tables["trips"]):
            body: dict[str, Any] = {"id": self.id("GtfsTrip", r["trip_id"]), "type": "GtfsTrip"}
            body["hasRoute"] = _rel(self.id("GtfsRoute", r["route_id"]))
            body["hasService"] = _rel(self.id("GtfsService", r["service_id"]))
            shape = r.get("shape_id")
            if shape and shape in self.shape_ids:
                body["hasShape"] = _rel(self.id("GtfsShape", shape))
            _put(body, "headSign", r.get("trip_headsign"))
            _put(body, "shortName", r.get("trip_short_name"))
            _put(body, "direction", r.get("direction_id"), int)
            _put(body, "block", r.get("block_id"))
            _put(body, "wheelChairAccessible", r.get("wheelchair_accessible"), int)
            _put(body, "bikesAllowed", r.get("bikes_allowed"), int)
            yield body

    def stop_times(self) -> Iterator[dict[str, Any]]:
        for r in _records(self.feed.tables["stop_times"]):
            trip, seq = r["trip_id"], r["stop_sequence"]
            stop_type = "GtfsStation" if r["stop_id"] in self.stations else "GtfsStop"
            body: dict[str, Any] = {"id": self.id("GtfsStopTime", trip, seq)}
            body["type"] = "GtfsStopTime"
            body["hasTrip"] = _rel(self.id("GtfsTrip", trip))
            body["hasStop"] = _rel(self.id(stop_type, r["stop_id"]))
            body["stopSequence"] = _prop(int(seq))
            _put(body, "arrivalTime", r.get("arrival_time"), lambda v: str(v).strip())
            _put(body, "departureTime", r.get("departure_time"), lambda v: str(v).strip())
            _put(body, "stopHeadsign", r.get("stop_headsign"))
            _put(body, "pickupType", r.get("pickup_type"))
            _put(body, "dropOffType", r.get("drop_off_type"))
            _put(body, "timepoint", r.get("timepoint"))
            _put(body, "distanceTravelled", r.get("shape_dist_traveled"), float)
            yield body

    def steps(self, only: Iterable[str] | None = None) -> list[Step]:
        """What to write, in order: (label, entity count, bodies) per selected file."""
        chosen = set(only or FILES)
        t = self.feed
        steps: list[Step] = []

        def add(label: str, count: int, bodies: Callable[[], Iterator[dict[str, Any]]]) -> None:
            if count:
                steps.append(Step(label, count, bodies))

        if "agency" in chosen:
            add("agency.txt", t.rows("agency"), self.agency)
        if chosen & {"calendar", "calendar_dates", "trips"}:
            add("services", len(self.service_ids()), self.services)
        if "calendar" in chosen:
            add("calendar.txt", t.rows("calendar"), self.calendar)
        if "calendar_dates" in chosen:
            add("calendar_dates.txt", t.rows("calendar_dates"), self.calendar_dates)
        if "stops" in chosen:
            add("stops.txt", t.rows("stops"), self.stops)
        if "routes" in chosen:
            add("routes.txt", t.rows("routes"), self.routes)
        if "shapes" in chosen:
            add("shapes.txt", len(self.shape_ids), self.shapes)
        if "trips" in chosen:
            add("trips.txt", t.rows("trips"), self.trips)
        if "stop_times" in chosen:
            add("stop_times.txt", t.rows("stop_times"), self.stop_times)
        return steps


@dataclass
class Step:
    """One file's entities: a progress label, how many, and a generator of bodies."""

    label: str
    count: int
    bodies: Callable[[], Iterator[dict[str, Any]]]


# -- importing ---------------------------------------------------------------------------
@dataclass
class ImportReport:
    """What an import did: entities per type, new ones per type, warnings, timing."""

    prefix: str
    written: dict[str, int] = field(default_factory=dict)
    created: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    dry_run: bool = False

    @property
    def total(self) -> int:
        return sum(self.written.values())

    @property
    def rate(self) -> float:
        return self.total / self.seconds if self.seconds > 0 else 0.0


def _batched(items: Iterator[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


Progress = Callable[[str, int], Callable[[int], None]]


def _no_progress(label: str, total: int) -> Callable[[int], None]:
    return lambda n: None


def import_feed(
    settings: Settings,
    path: Path,
    tenant: str,
    prefix: str | None = None,
    *,
    only: Sequence[str] | None = None,
    dry_run: bool = False,
    batch: int = BATCH,
    progress: Progress = _no_progress,
) -> ImportReport:
    """Read, validate and write a feed; GtfsError (nothing written) if it is malformed.

    ``progress(label, total)`` is called per file and returns a function taking the
    number of entities just done.  With ``dry_run`` every body is still checked as the
    hub would (ids, attributes, GeoJSON) but the store is not opened.
    """
    feed = read_feed(path)
    errors = validate(feed)
    if errors:
        raise GtfsError(errors)
    report = ImportReport(default_prefix(path) if prefix is None else prefix, dry_run=dry_run)
    steps = Mapper(feed, report.prefix).steps(only)
    if dry_run:
        _dry_run(steps, report, progress)
    else:
        from sencity.ingest.hubwrite import HubWriter, open_platform

        with open_platform(settings) as platform:
            writer = HubWriter.of(platform, GTFS_CONTEXT)
            _write(writer, tenant, steps, batch, report, progress)
    report.warnings = feed.warnings
    return report


def _etype(body: dict[str, Any]) -> str:
    return str(body["type"])


def _dry_run(steps: list[Step], report: ImportReport, progress: Progress) -> None:
    from sencity.hub.ldcontext import ContextResolver
    from sencity.hub.model import parse_entity

    ctx = ContextResolver(fetch=False).resolve(GTFS_CONTEXT)
    start = time.perf_counter()
    for step in steps:
        advance = progress(step.label, step.count)
        for body in step.bodies():
            try:
                parse_entity(body, ctx)
            except SenCityError as exc:
                report.errors.append(f"{step.label}: {exc.detail}")
                continue
            report.written[_etype(body)] = report.written.get(_etype(body), 0) + 1
            advance(1)
    report.seconds = time.perf_counter() - start


def _write(
    writer: HubWriter,
    tenant: str,
    steps: list[Step],
    batch: int,
    report: ImportReport,
    progress: Progress,
) -> None:
    start = time.perf_counter()
    for step in steps:
        advance = progress(step.label, step.count)
        for bodies in _batched(step.bodies(), batch):
            res = writer.write(tenant, bodies, update=False)
            bad = set(res.errors)
            for n, detail in res.errors.items():
                where = bodies[n]["id"] if 0 <= n < len(bodies) else step.label
                report.errors.append(f"{step.label}: {where}: {detail}")
            created = set(res.created)
            for n, body in enumerate(bodies):
                if n in bad:
                    continue
                t = _etype(body)
                report.written[t] = report.written.get(t, 0) + 1
                if body["id"] in created:
                    report.created[t] = report.created.get(t, 0) + 1
            advance(len(bodies))
    report.seconds = time.perf_counter() - start


# -- command -----------------------------------------------------------------------------
def _rich_progress(console: Any) -> tuple[Any, Progress]:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.progress import Progress as RichProgress

    bar = RichProgress(
        TextColumn("{task.description:<20}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )

    def start(label: str, total: int) -> Callable[[int], None]:
        task = bar.add_task(label, total=total)
        return lambda n: bar.advance(task, n)

    return bar, start


def _print_report(report: ImportReport) -> None:
    verb = "would write" if report.dry_run else "written"
    click.echo(f"GTFS import (ids urn:ngsi-ld:<Type>:{report.prefix}:…)")
    for etype, n in report.written.items():
        new = "" if report.dry_run else f", {report.created.get(etype, 0):,} new"
        click.echo(f"  {etype:<22}{n:>9,} {verb}{new}")
    click.echo(
        f"  {'total':<22}{report.total:>9,} {verb} in {report.seconds:.1f} s "
        f"({report.rate:,.0f} entities/s)"
    )
    click.echo(f"  warnings: {len(report.warnings)}")
    for w in report.warnings:
        click.echo(f"warning: {w}", err=True)


def _only(value: str | None) -> list[str] | None:
    if not value:
        return None
    names = [v.strip().removesuffix(".txt") for v in value.split(",") if v.strip()]
    unknown = [n for n in names if n not in FILES]
    if unknown:
        raise click.BadParameter(f"unknown file(s) {', '.join(unknown)}; use {', '.join(FILES)}")
    return names


@click.command("gtfs")
@click.argument("feed", type=click.Path(exists=True, path_type=Path))
@click.option("--tenant", help="Tenant to write to (default: tenants.default).")
@click.option("--prefix", help="Id prefix: urn:ngsi-ld:GtfsStop:PREFIX:… (default: feed name).")
@click.option("--only", help="Comma-separated files to import, e.g. stops,routes,trips.")
@click.option("--batch", type=click.IntRange(1, 100_000), default=BATCH, show_default=True)
@click.option("--dry-run", is_flag=True, help="Read and validate only; write nothing.")
def gtfs_command(
    feed: Path,
    tenant: str | None,
    prefix: str | None,
    only: str | None,
    batch: int,
    dry_run: bool,
) -> None:
    """Import a GTFS feed (zip or directory) as Smart Data Models UrbanMobility entities."""
    from rich.console import Console

    from sencity.cli import _Ctx

    ctx = click.get_current_context().find_object(_Ctx)
    assert ctx is not None
    settings = ctx.settings()
    tenant = tenant or settings.tenants.default
    if not re.match(r"^[a-z0-9][a-z0-9_-]{0,62}$", tenant):
        raise click.BadParameter(f"invalid tenant name {tenant!r}", param_hint="--tenant")
    bar, progress = _rich_progress(Console(stderr=True))
    try:
        with bar:
            report = import_feed(
                settings,
                feed,
                tenant,
                prefix,
                only=_only(only),
                dry_run=dry_run,
                batch=batch,
                progress=progress,
            )
    except SenCityError as exc:
        for line in exc.detail.splitlines():
            click.echo(f"error: {line}", err=True)
        raise SystemExit(1) from None
    _print_report(report)
    if report.errors:
        for e in report.errors[:MAX_ERRORS]:
            click.echo(f"error: {e}", err=True)
        raise SystemExit(1)
