"""The mapping file of a department import: how columns become NGSI-LD attributes.

A mapping is YAML (see docs/IMPORT.md for the reference and an example)::

    type: School
    id: "urn:ngsi-ld:{type}:{ma_truong}"
    timezone: Asia/Ho_Chi_Minh
    observed_at: ngay_cap_nhat
    location: {lon: kinh_do, lat: vi_do}
    address: {column: dia_chi}
    columns:
      so_hoc_sinh: {name: students, type: integer}
      dien_tich: {name: area, type: number, unitCode: MTK}
      quan: {name: district, type: relationship, object: "urn:ngsi-ld:District:{value}"}
    skip: [ghi_chu]

Without a mapping every column is a Property named after it, of the type its cells fit.
Mistakes (unknown keys, types, columns the file does not have) are reported before any
row is read, naming the key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from sencity.errors import BadRequest
from sencity.ingest.values import TYPES, slug

DEFAULT_TIMEZONE = "Asia/Ho_Chi_Minh"
#: entity members a column may not be named as (rename the column in the mapping)
RESERVED = {"id", "type", "scope", "@context", "createdAt", "modifiedAt"}
#: column names taken as coordinates / geometry when the mapping says nothing
LON_NAMES = ("lon", "lng", "long", "longitude", "kinhdo")
LAT_NAMES = ("lat", "latitude", "vido")
WKT_NAMES = ("wkt", "geometry", "geom", "the_geom")
ID_NAMES = ("id",)
_PLACEHOLDER = re.compile(r"\{([^{}]+)\}")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")
_BAD_NAME = re.compile(r"[\s<>\"'=;()]")  # what NGSI-LD attribute names may not contain


class MappingError(BadRequest):
    """A mapping or file that cannot be used (reported before any row is written)."""


@dataclass
class Column:
    """What one column becomes."""

    source: str  # the column's header
    name: str  # the attribute name
    type: str = "auto"
    unit_code: str | None = None
    object: str | None = None  # relationship: template of the object id ("{value}")
    object_type: str | None = None
    format: str | None = None  # strptime format of date/datetime cells
    required: bool = False


@dataclass
class Address:
    """Columns that hold a Vietnamese address, resolved to a 2025 ward."""

    columns: list[str]
    attribute: str = "address"
    optional: bool = False  # unresolved: a warning, not a row error


@dataclass
class Mapping:
    """A whole mapping; :meth:`bind` fills in the defaults for a file's columns."""

    type: str | None = None
    id: str | None = None  # template ("urn:ngsi-ld:{type}:{code}") or a column name
    timezone: str = DEFAULT_TIMEZONE
    observed_at: str | None = None
    lon: str | None = None
    lat: str | None = None
    wkt: str | None = None
    latlon: str | None = None  # a column holding "lat,lon" somewhere in its text
    address: Address | None = None
    columns: dict[str, Column] = field(default_factory=dict)
    skip: set[str] = field(default_factory=set)
    source: str = "(no mapping)"

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def id_template(self, id_column: str | None) -> str:
        """The id rule: ``--id-column`` wins, then the mapping's ``id``."""
        rule = id_column or self.id
        if rule is None:
            raise MappingError(
                "no id rule: give --id-column COLUMN or 'id' in the mapping "
                '(e.g. id: "urn:ngsi-ld:{type}:{code}")'
            )
        return rule if "{" in rule else "{" + rule + "}"

    def bind(self, headers: list[str], id_column: str | None, geojson: bool = False) -> None:
        """Check the mapping against a file's ``headers`` and add the defaults: the id,
        coordinate and WKT columns by their usual names, a Property per other column."""
        known = set(headers)
        plain = {_fold(h): h for h in headers}
        if id_column is None and self.id is None:
            found = next((plain[n] for n in ID_NAMES if n in plain), None)
            if found is not None:
                self.id = found
        if not geojson and not (self.lon or self.lat or self.wkt or self.latlon):
            lon = next((plain[n] for n in LON_NAMES if n in plain), None)
            lat = next((plain[n] for n in LAT_NAMES if n in plain), None)
            if lon and lat:
                self.lon, self.lat = lon, lat
            else:
                self.wkt = next((plain[n] for n in WKT_NAMES if n in plain), None)
        template = self.id_template(id_column)
        used = {p for p in _PLACEHOLDER.findall(template) if p != "type"}
        for what, col in [
            *(("id", p) for p in sorted(used)),
            ("observed_at", self.observed_at),
            ("location.lon", self.lon),
            ("location.lat", self.lat),
            ("location.wkt", self.wkt),
            ("location.latlon", self.latlon),
            *(("address.column", c) for c in (self.address.columns if self.address else [])),
            *(("columns", c) for c in self.columns),
            *(("skip", c) for c in sorted(self.skip)),
        ]:
            if col is not None and col not in known:
                raise MappingError(
                    f"{self.source}: {what}: the file has no column {col!r} "
                    f"(columns: {', '.join(headers)})"
                )
        for c in self.columns.values():
            if c.object:
                for p in _PLACEHOLDER.findall(c.object):
                    if p not in ("value", "type") and p not in known:
                        raise MappingError(
                            f"{self.source}: columns.{c.source}.object: "
                            f"the file has no column {p!r}"
                        )
        consumed = {self.observed_at, self.lon, self.lat, self.wkt, self.latlon}
        consumed |= set(self.address.columns if self.address else [])
        consumed |= used  # the key columns are attributes too only when listed in columns
        for h in headers:
            if h in self.columns or h in self.skip or h in consumed:
                continue
            self.columns[h] = Column(h, default_name(h))
        names: dict[str, str] = {}
        geo = {"location"} if (self.lon or self.wkt or self.latlon or geojson) else set()
        taken = geo | ({self.address.attribute} if self.address else set())
        for c in self.columns.values():
            if c.name in RESERVED or c.name in taken:
                raise MappingError(
                    f"{self.source}: column {c.source!r} would be the attribute {c.name!r}, "
                    f"which is taken; rename it (columns: {{{c.source!r}: {{name: other}}}}) "
                    "or skip it"
                )
            if c.name in names:
                raise MappingError(
                    f"{self.source}: columns {names[c.name]!r} and {c.source!r} "
                    f"are both the attribute {c.name!r}"
                )
            names[c.name] = c.source


def default_name(header: str) -> str:
    """An attribute name for a header: accents folded, words in lowerCamelCase
    ("Số học sinh" → "soHocSinh"); names that are already valid are kept."""
    if _NAME.match(header):
        return header
    words = [w for w in re.split(r"[^A-Za-z0-9]+", slug(header)) if w]
    if not words:
        return "column"
    first = words[0].lower() if words[0].isupper() else words[0][0].lower() + words[0][1:]
    name = first + "".join(w[0].upper() + w[1:] for w in words[1:])
    return name if name[0].isalpha() else "c" + name


def _fold(header: str) -> str:
    return re.sub(r"[^a-z0-9]", "", slug(header).lower())


_TOP = {"type", "id", "timezone", "observed_at", "location", "address", "columns", "skip"}
_COLUMN = {"name", "type", "unitCode", "object", "objectType", "format", "required", "skip"}


def _str(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise MappingError(f"{where}: must be a non-empty string")
    return value


def _keys(d: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(d) - allowed)
    if unknown:
        raise MappingError(
            f"{where}: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})"
        )


def _column(source: str, raw: Any, where: str) -> Column | None:
    """One ``columns`` entry (None: the column is skipped)."""
    if raw == "skip" or raw is False or raw is None:
        return None
    if isinstance(raw, str):  # shorthand: the type, or the attribute name
        raw = {"type": raw} if raw in TYPES else {"name": raw}
    if not isinstance(raw, dict):
        raise MappingError(f"{where}: must be a mapping (name, type, unitCode, ...) or 'skip'")
    _keys(raw, _COLUMN, where)
    if raw.get("skip"):
        return None
    col = Column(source, _str(raw.get("name", default_name(source)), f"{where}.name"))
    if _BAD_NAME.search(col.name):
        raise MappingError(f"{where}.name: {col.name!r} is not a valid attribute name")
    kind = raw.get("type", "auto")
    if kind not in TYPES:
        raise MappingError(f"{where}.type: {kind!r} is not one of {', '.join(TYPES)}")
    col.type = kind
    if "unitCode" in raw:
        col.unit_code = _str(raw["unitCode"], f"{where}.unitCode")
    if "object" in raw:
        col.object = _str(raw["object"], f"{where}.object")
    if "objectType" in raw:
        col.object_type = _str(raw["objectType"], f"{where}.objectType")
    if kind != "relationship" and (col.object or col.object_type):
        raise MappingError(f"{where}: 'object' and 'objectType' are for type: relationship")
    if "format" in raw:
        col.format = _str(raw["format"], f"{where}.format")
    col.required = bool(raw.get("required", False))
    return col


def parse_mapping(raw: Any, source: str = "mapping") -> Mapping:
    """A mapping from its YAML value; raises :class:`MappingError` naming the key."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise MappingError(f"{source}: must be a YAML mapping (type, id, columns, ...)")
    _keys(raw, _TOP, source)
    m = Mapping(source=source)
    if "type" in raw:
        m.type = _str(raw["type"], f"{source}: type")
    if "id" in raw:
        m.id = _str(raw["id"], f"{source}: id")
    if "timezone" in raw:
        m.timezone = _str(raw["timezone"], f"{source}: timezone")
        try:
            ZoneInfo(m.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise MappingError(f"{source}: timezone: unknown time zone {m.timezone!r}") from None
    if "observed_at" in raw:
        m.observed_at = _str(raw["observed_at"], f"{source}: observed_at")
    loc = raw.get("location")
    if loc is not None:
        if isinstance(loc, str):
            loc = {"wkt": loc}
        if not isinstance(loc, dict):
            raise MappingError(f"{source}: location: must be {{lon, lat}}, {{wkt}} or {{latlon}}")
        _keys(loc, {"lon", "lat", "wkt", "latlon"}, f"{source}: location")
        for key in loc:
            setattr(m, key, _str(loc[key], f"{source}: location.{key}"))
        if bool(m.lon) != bool(m.lat):
            raise MappingError(f"{source}: location: give both lon and lat")
        if sum(1 for x in (m.lon, m.wkt, m.latlon) if x) > 1:
            raise MappingError(f"{source}: location: give one of lon/lat, wkt or latlon")
    addr = raw.get("address")
    if addr is not None:
        if isinstance(addr, str):
            addr = {"column": addr}
        if not isinstance(addr, dict):
            raise MappingError(f"{source}: address: must be {{column, attribute, optional}}")
        _keys(addr, {"column", "attribute", "optional"}, f"{source}: address")
        cols = addr.get("column")
        cols = [cols] if isinstance(cols, str) else cols
        if not isinstance(cols, list) or not cols or not all(isinstance(c, str) for c in cols):
            raise MappingError(f"{source}: address.column: a column name or a list of them")
        m.address = Address(
            cols,
            _str(addr.get("attribute", "address"), f"{source}: address.attribute"),
            bool(addr.get("optional", False)),
        )
    columns = raw.get("columns") or {}
    if not isinstance(columns, dict):
        raise MappingError(f"{source}: columns: must map column headers to rules")
    for name, rule in columns.items():
        col = _column(str(name), rule, f"{source}: columns.{name}")
        if col is None:
            m.skip.add(str(name))
        else:
            m.columns[str(name)] = col
    skip = raw.get("skip") or []
    if isinstance(skip, str):
        skip = [skip]
    if not isinstance(skip, list):
        raise MappingError(f"{source}: skip: must be a list of column headers")
    m.skip |= {str(s) for s in skip}
    return m


def load_mapping(path: str | Path | None) -> Mapping:
    """The mapping in the YAML file ``path`` (None: an empty mapping, all defaults)."""
    if path is None:
        return Mapping()
    p = Path(path)
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8-sig"))
    except OSError as exc:
        raise MappingError(f"{p.name}: cannot read it ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise MappingError(f"{p.name}: not valid YAML ({exc})") from None
    return parse_mapping(raw, p.name)
