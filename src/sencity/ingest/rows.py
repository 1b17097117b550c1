"""One row of a department file → one NGSI-LD entity body (normalized form).

Every problem of a row is collected (not just the first), each naming its column, so
the user can fix a line in one go; a row with any problem yields no body at all.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sencity.ingest.address import Unresolved, resolve
from sencity.ingest.files import Row, Table
from sencity.ingest.mapping import Column, Mapping
from sencity.ingest.values import (
    ValueProblem,
    classify,
    converter,
    infer,
    is_empty,
    show,
    slug,
    to_datetime,
    to_number,
    to_text,
)

_PLACEHOLDER = re.compile(r"\{([^{}]+)\}")
_LATLON = re.compile(r"(-?\d{1,3}(?:\.\d+)?)\s*,\s*(-?\d{1,3}(?:\.\d+)?)")


@dataclass
class Converted:
    """The body of a row, or its problems (``column …: reason``), and its warnings."""

    body: dict[str, Any] | None
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def fill(template: str, cells: dict[str, Any], extra: dict[str, str]) -> str:
    """A template with ``{column}`` placeholders filled with URI-safe values."""

    def sub(m: re.Match[str]) -> str:
        key = m.group(1)
        if key in extra:
            return extra[key]
        raw = cells.get(key)
        if is_empty(raw):
            raise ValueProblem(f"column {key!r}: is empty but the id needs it")
        part = slug(raw)
        if not part:
            raise ValueProblem(f"column {key!r}: {show(raw)} gives no usable id part")
        return part

    return _PLACEHOLDER.sub(sub, template)


class RowConverter:
    """Turns rows of one table into bodies of entity type ``etype`` under ``mapping``
    (already bound to the table's headers, see :meth:`Mapping.bind`)."""

    def __init__(self, table: Table, mapping: Mapping, etype: str, id_column: str | None) -> None:
        self.table = table
        self.mapping = mapping
        self.etype = etype
        self.id_template = mapping.id_template(id_column)
        self.tz = mapping.tz
        self.convert: dict[str, Callable[[Any], Any]] = {}
        for col in mapping.columns.values():
            kind = col.type
            if kind == "auto":
                kinds = {
                    classify(r.cells[col.source])
                    for r in table.rows
                    if not is_empty(r.cells.get(col.source))
                }
                kind = infer(kinds)
                col.type = kind
            self.convert[col.source] = converter(kind, self.tz, col.format)

    def entity_id(self, cells: dict[str, Any]) -> str:
        if self.id_template.startswith("{") and self.id_template.count("{") == 1:
            # a bare column: its value is the id when it is already a URN/URL
            key = self.id_template[1:-1]
            raw = cells.get(key)
            if isinstance(raw, str) and raw.strip().startswith(("urn:", "http://", "https://")):
                return raw.strip()
            return f"urn:ngsi-ld:{self.etype}:" + fill(self.id_template, cells, {})
        return fill(self.id_template, cells, {"type": self.etype})

    def attribute(self, col: Column, raw: Any, cells: dict[str, Any]) -> dict[str, Any]:
        if col.type == "relationship":
            value = to_text(raw)
            if col.object:
                obj = fill(col.object, cells, {"value": slug(raw), "type": self.etype})
            elif value.startswith(("urn:", "http://", "https://")):
                obj = value
            elif col.object_type:
                obj = f"urn:ngsi-ld:{col.object_type}:{slug(raw)}"
            else:
                raise ValueProblem(
                    f"{show(raw)} is not an entity id (give 'object' or 'objectType' "
                    "in the mapping)"
                )
            attr: dict[str, Any] = {"type": "Relationship", "object": obj}
            if col.object_type:
                attr["objectType"] = col.object_type
            return attr
        attr = {"type": "Property", "value": self.convert[col.source](raw)}
        if col.unit_code:
            attr["unitCode"] = col.unit_code
        return attr

    def location(self, row: Row, problems: list[str]) -> dict[str, Any] | None:
        """The row's geometry from GeoJSON, lon/lat, WKT or a "lat,lon" text column."""
        m, cells = self.mapping, row.cells
        if row.geometry is not None:
            return row.geometry
        if m.lon and m.lat:
            lon, lat = cells.get(m.lon), cells.get(m.lat)
            if is_empty(lon) and is_empty(lat):
                return None
            point: list[float] = []
            for name, raw, limit in ((m.lon, lon, 180), (m.lat, lat, 90)):
                try:
                    if is_empty(raw):
                        raise ValueProblem("is empty while the other coordinate is given")
                    v = float(to_number(raw))
                    if not -limit <= v <= limit:
                        raise ValueProblem(f"{show(raw)} is out of range (±{limit})")
                    point.append(v)
                except ValueProblem as exc:
                    problems.append(f"column {name!r}: {exc}")
            return {"type": "Point", "coordinates": point} if len(point) == 2 else None
        if m.wkt:
            raw = cells.get(m.wkt)
            if is_empty(raw):
                return None
            try:
                return wkt_geometry(to_text(raw))
            except ValueProblem as exc:
                problems.append(f"column {m.wkt!r}: {exc}")
                return None
        if m.latlon:
            raw = cells.get(m.latlon)
            if is_empty(raw):
                return None
            found = _LATLON.findall(to_text(raw))
            if not found:
                problems.append(f"column {m.latlon!r}: no 'lat,lon' pair in {show(raw)}")
                return None
            lat_s, lon_s = found[-1]
            return {"type": "Point", "coordinates": [float(lon_s), float(lat_s)]}
        return None

    def row(self, row: Row) -> Converted:
        """The body of ``row`` (with every problem named when it has any)."""
        if row.problem:
            return Converted(None, [row.problem])
        m, cells = self.mapping, row.cells
        out = Converted(None)
        body: dict[str, Any] = {"type": self.etype}
        try:
            body["id"] = self.entity_id(cells)
        except ValueProblem as exc:
            out.problems.append(str(exc))
        observed: str | None = None
        if m.observed_at and not is_empty(cells.get(m.observed_at)):
            try:
                observed = to_datetime(cells[m.observed_at], self.tz)
            except ValueProblem as exc:
                out.problems.append(f"column {m.observed_at!r}: {exc}")
        for col in m.columns.values():
            raw = cells.get(col.source)
            if is_empty(raw):
                if col.required:
                    out.problems.append(f"column {col.source!r}: is empty (it is required)")
                continue
            try:
                attr = self.attribute(col, raw, cells)
            except ValueProblem as exc:
                out.problems.append(f"column {col.source!r}: {exc}")
                continue
            if observed:
                attr["observedAt"] = observed
            body[col.name] = attr
        geometry = self.location(row, out.problems)
        if m.address:
            parts = [to_text(cells[c]) for c in m.address.columns if not is_empty(cells.get(c))]
            label = "column " + "/".join(repr(c) for c in m.address.columns)
            if not parts:
                if not m.address.optional:
                    out.problems.append(f"{label}: the address is empty")
            else:
                text = ", ".join(parts)
                try:
                    found = resolve(text)
                except Unresolved as exc:
                    if m.address.optional:
                        out.warnings.append(f"{label}: {exc}")
                        body[m.address.attribute] = {
                            "type": "Property",
                            "value": {"streetAddress": text, "addressCountry": "VN"},
                        }
                    else:
                        out.problems.append(f"{label}: {exc}")
                else:
                    body[m.address.attribute] = {
                        "type": "Property",
                        "value": found.postal_address(),
                    }
                    if geometry is None:
                        geometry = found.point()
        if geometry is not None:
            body["location"] = {"type": "GeoProperty", "value": geometry}
        if not out.problems:
            out.body = body
        return out


def wkt_geometry(text: str) -> dict[str, Any]:
    """A GeoJSON geometry from WKT ("POINT (108.22 16.07)"; lon before lat)."""
    import shapely.wkt  # type: ignore[import-untyped]
    from shapely import GEOSException
    from shapely.geometry import mapping  # type: ignore[import-untyped]

    try:
        geom = shapely.wkt.loads(text)
    except (GEOSException, ValueError, TypeError):
        raise ValueProblem(f"{show(text)} is not WKT (e.g. POINT (108.22 16.07))") from None
    if geom.is_empty:
        raise ValueProblem(f"{show(text)} is an empty geometry")
    # tuples → lists, as JSON has them
    value: dict[str, Any] = json.loads(json.dumps(mapping(geom)))
    return value
