"""Reading department files (CSV, XLSX, GeoJSON) into rows that know where they came from.

Every row carries the line a spreadsheet user sees (the header is line 1; for GeoJSON,
the feature's number), so every problem can be reported as ``schools.csv:14: …``.
CSV is UTF-8 with or without a byte-order mark, ``;``, ``,`` or tab separated (the
header line decides); XLSX is read with openpyxl in read-only mode (the first sheet, or
the one named); GeoJSON is a FeatureCollection (or one Feature) whose properties are the
columns and whose geometry becomes the location.
"""

from __future__ import annotations

import csv
import io
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sencity.ingest.mapping import MappingError

FORMATS = {
    ".csv": "csv",
    ".tsv": "csv",
    ".txt": "csv",
    ".xlsx": "xlsx",
    ".xlsm": "xlsx",
    ".geojson": "geojson",
    ".json": "geojson",
}


@dataclass
class Row:
    """One data row: its line (as the user sees it), its cells by header, and for
    GeoJSON its geometry; ``problem`` when the row cannot even be read as cells."""

    line: int
    cells: dict[str, Any]
    geometry: dict[str, Any] | None = None
    problem: str | None = None


@dataclass
class Table:
    """A whole file: its name for messages, its headers in order and its rows."""

    name: str
    format: str
    headers: list[str]
    rows: list[Row] = field(default_factory=list)

    def where(self, row: Row) -> str:
        """``file:line`` of a row (``file: feature N`` for GeoJSON)."""
        if self.format == "geojson":
            return f"{self.name}: feature {row.line}"
        return f"{self.name}:{row.line}"


def read_table(path: str | Path, sheet: str | None = None) -> Table:
    """All rows of ``path``, by its extension; raises :class:`MappingError` for a file
    that cannot be read at all (naming the file and, where known, the line)."""
    p = Path(path)
    fmt = FORMATS.get(p.suffix.lower())
    if fmt is None:
        raise MappingError(
            f"{p.name}: unknown file type {p.suffix!r} (CSV, XLSX or GeoJSON: {', '.join(FORMATS)})"
        )
    if sheet is not None and fmt != "xlsx":
        raise MappingError(f"{p.name}: --sheet is for XLSX files")
    try:
        if fmt == "csv":
            return read_csv(p)
        if fmt == "xlsx":
            return read_xlsx(p, sheet)
        return read_geojson(p)
    except OSError as exc:
        raise MappingError(f"{p.name}: cannot read it ({exc.strerror or exc})") from None


def _headers(name: str, raw: list[Any]) -> list[str]:
    """Header cells as names: trimmed; an empty one is "column N"; no duplicates."""
    headers: list[str] = []
    for n, cell in enumerate(raw, 1):
        h = "" if cell is None else str(cell).strip()
        headers.append(h or f"column {n}")
    seen: set[str] = set()
    for h in headers:
        if h in seen:
            raise MappingError(f"{name}:1: column {h!r} appears twice in the header")
        seen.add(h)
    return headers


def _delimiter(header_line: str) -> str:
    """The separator the header line uses most (``;`` in Vietnamese Excel exports)."""
    counts = {d: header_line.count(d) for d in (";", ",", "\t")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def read_csv(p: Path) -> Table:
    data = p.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise MappingError(
            f"{p.name}:{line}: not UTF-8 text (save the file as 'CSV UTF-8')"
        ) from None
    first = text.split("\n", 1)[0]
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(first))
    try:
        records = list(reader)
    except csv.Error as exc:
        raise MappingError(f"{p.name}:{reader.line_num}: {exc}") from None
    if not records:
        raise MappingError(f"{p.name}: the file is empty (a header line is needed)")
    headers = _headers(p.name, records[0])
    table = Table(p.name, "csv", headers)
    for line, rec in enumerate(records[1:], 2):
        if not any(c.strip() for c in rec):
            continue
        row = Row(line, dict(zip(headers, rec, strict=False)))
        if len(rec) > len(headers):
            row.problem = f"has {len(rec)} cells but the header has {len(headers)}"
        table.rows.append(row)
    return table


def read_xlsx(p: Path, sheet: str | None) -> Table:
    import openpyxl  # type: ignore[import-untyped]
    from openpyxl.utils.exceptions import InvalidFileException  # type: ignore[import-untyped]

    with warnings.catch_warnings():
        # openpyxl warns about styles and extensions it ignores; the values are what we need
        warnings.simplefilter("ignore")
        try:
            wb = openpyxl.load_workbook(p, read_only=True, data_only=True)
        except (InvalidFileException, KeyError, ValueError) as exc:
            raise MappingError(f"{p.name}: not a readable XLSX workbook ({exc})") from None
        try:
            if sheet is not None and sheet not in wb.sheetnames:
                raise MappingError(
                    f"{p.name}: no sheet {sheet!r} (sheets: {', '.join(wb.sheetnames)})"
                )
            ws = wb[sheet] if sheet is not None else wb.worksheets[0]
            rows = ws.iter_rows(values_only=True)
            first = next(rows, None)
            if first is None:
                raise MappingError(f"{p.name}: the sheet {ws.title!r} is empty")
            headers = _headers(p.name, list(first))
            width = max((n for n, h in enumerate(first, 1) if h is not None), default=0)
            table = Table(p.name, "xlsx", headers[:width] if width else headers)
            for line, values in enumerate(rows, 2):
                if all(v is None or (isinstance(v, str) and not v.strip()) for v in values):
                    continue
                row = Row(line, dict(zip(table.headers, values, strict=False)))
                if any(v is not None for v in values[len(table.headers) :]):
                    row.problem = "has cells to the right of the last header"
                table.rows.append(row)
        finally:
            wb.close()
    return table


def read_geojson(p: Path) -> Table:
    try:
        doc = json.loads(p.read_text(encoding="utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        where = f":{exc.lineno}" if isinstance(exc, json.JSONDecodeError) else ""
        raise MappingError(f"{p.name}{where}: not a GeoJSON document ({exc})") from None
    features: Any
    if isinstance(doc, dict) and doc.get("type") == "Feature":
        features = [doc]
    elif isinstance(doc, dict) and doc.get("type") == "FeatureCollection":
        features = doc.get("features")
        if not isinstance(features, list):
            raise MappingError(f"{p.name}: a FeatureCollection needs a 'features' list")
    else:
        raise MappingError(f"{p.name}: expected a GeoJSON FeatureCollection or Feature")
    headers: dict[str, None] = {}
    rows: list[Row] = []
    for n, feat in enumerate(features, 1):
        if not isinstance(feat, dict) or feat.get("type") != "Feature":
            rows.append(Row(n, {}, problem="is not a GeoJSON Feature"))
            continue
        props = feat.get("properties") or {}
        if not isinstance(props, dict):
            rows.append(Row(n, {}, problem="'properties' is not an object"))
            continue
        cells = dict(props)
        if "id" in feat and "id" not in cells:
            cells["id"] = feat["id"]
        headers.update(dict.fromkeys(cells))
        geom = feat.get("geometry")
        rows.append(Row(n, cells, geom if isinstance(geom, dict) else None))
    return Table(p.name, "geojson", list(headers), rows)
