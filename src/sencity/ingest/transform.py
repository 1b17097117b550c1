"""Readings of a device → NGSI-LD entity fragments (one per reading, for an upsert in
update mode: the attributes given are set, the entity's others are kept).

Per payload key, the device's mapping (else the group's) says the attribute name, its
kind, data type, unit code and a transform (scale, offset, or a formula evaluated with
``simpleeval``: no access to Python beyond arithmetic and the payload's values). Keys
without a mapping become Properties of the same name, unless the group asks for
explicit attributes only.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from simpleeval import EvalWithCompoundTypes

from sencity.errors import SenCityError
from sencity.hub.durations import parse_time, us_iso
from sencity.ingest.model import AttrMap, Device, Group, entity_id
from sencity.ingest.payloads import PayloadError, Reading

_TRUE = {"true", "1", "on", "yes"}
_FALSE = {"false", "0", "off", "no"}


def observed_at(value: Any) -> str:
    """A reading's time: ISO 8601 with a zone, or epoch seconds / milliseconds."""
    if isinstance(value, bool):
        raise PayloadError("time", f"the time {value!r} is neither ISO 8601 nor epoch seconds")
    if isinstance(value, (int, float)) or (isinstance(value, str) and _is_number(value)):
        secs = float(value)
        if secs > 1e11:  # milliseconds
            secs /= 1000.0
        try:
            return us_iso(round(secs * 1_000_000))
        except (OverflowError, ValueError):
            raise PayloadError("time", f"the time {value!r} is out of range") from None
    try:
        return us_iso(parse_time(str(value), "time"))
    except SenCityError as exc:
        raise PayloadError("time", f"the reading's time: {exc.detail}") from None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _number(key: str, value: Any) -> float | int:
    if isinstance(value, bool):
        raise PayloadError("value", f"measure '{key}': {value!r} is not a number")
    if isinstance(value, (int, float)):
        num: float | int = value
    else:
        text = str(value).strip()
        try:
            num = int(text)
        except ValueError:
            try:
                num = float(text)
            except ValueError:
                raise PayloadError(
                    "value", f"measure '{key}': {str(value)[:40]!r} is not a number"
                ) from None
    if isinstance(num, float) and not math.isfinite(num):
        raise PayloadError("value", f"measure '{key}': {value!r} is not a finite number")
    return num


def convert(key: str, value: Any, m: AttrMap | None, measures: dict[str, Any]) -> Any:
    """The attribute value of one measure, after its data type and transform."""
    datatype = m.datatype if m else "auto"
    if m is not None and m.type == "Relationship" and datatype == "auto":
        datatype = "text"  # entity ids
    if datatype == "text":
        text = value if isinstance(value, str) else str(value)
        if m is not None and m.expression:  # e.g. "urn:ngsi-ld:GtfsRoute:hue:" + value
            try:
                return EvalWithCompoundTypes(names={"value": text}).eval(m.expression)
            except Exception as exc:
                raise PayloadError(
                    "transform", f"measure '{key}': expression {m.expression!r} failed: {exc}"
                ) from None
        return text
    if datatype == "boolean":
        text = str(value).strip().lower()
        if isinstance(value, bool):
            return value
        if text in _TRUE or text in _FALSE:
            return text in _TRUE
        raise PayloadError("value", f"measure '{key}': {str(value)[:40]!r} is not a boolean")
    numeric = datatype in ("number", "integer") or bool(
        m and (m.scale is not None or m.offset is not None or m.expression)
    )
    if datatype == "auto" and not numeric:
        if isinstance(value, str) and _is_number(value.strip()):
            return _number(key, value)
        return value
    num = _number(key, value) if numeric else value
    if m is not None:
        if m.scale is not None:
            num = num * m.scale
        if m.offset is not None:
            num = num + m.offset
        if m.expression:
            names = {k: _maybe_number(v) for k, v in measures.items() if k.isidentifier()}
            names["value"] = num
            try:
                num = EvalWithCompoundTypes(names=names).eval(m.expression)
            except Exception as exc:
                raise PayloadError(
                    "transform", f"measure '{key}': expression {m.expression!r} failed: {exc}"
                ) from None
    if datatype == "integer":
        if isinstance(num, float) and not num.is_integer():
            raise PayloadError("value", f"measure '{key}': {value!r} is not an integer")
        num = int(num)
    return num


def _maybe_number(value: Any) -> Any:
    if isinstance(value, str) and _is_number(value.strip()):
        return float(value)
    return value


def _geometry(key: str, value: Any) -> dict[str, Any]:
    """A location measure: GeoJSON, ``[lon, lat]``, ``{"lat", "lon"}`` or ``"lat,lon"``."""
    if isinstance(value, dict) and "type" in value and "coordinates" in value:
        return value
    try:
        if isinstance(value, dict):
            lon = float(value.get("lon", value.get("lng", value.get("longitude"))))  # type: ignore[arg-type]
            lat = float(value.get("lat", value.get("latitude")))  # type: ignore[arg-type]
        elif isinstance(value, (list, tuple)) and len(value) == 2:
            lon, lat = float(value[0]), float(value[1])
        else:
            lat_text, lon_text = str(value).split(",")
            lat, lon = float(lat_text), float(lon_text)
    except (TypeError, ValueError):
        raise PayloadError(
            "value", f"measure '{key}': {str(value)[:60]!r} is not a position"
        ) from None
    return {"type": "Point", "coordinates": [lon, lat]}


def _attr(kind: str, value: Any, observed: str, unit: str | None) -> dict[str, Any]:
    if kind == "Relationship":
        attr: dict[str, Any] = {"type": kind, "object": value}
    else:
        attr = {"type": kind, "value": value}
    attr["observedAt"] = observed
    if unit:
        attr["unitCode"] = unit
    return attr


def fragments(
    group: Group, device: Device, readings: list[Reading], received: datetime | None = None
) -> list[dict[str, Any]]:
    """One entity body per reading; PayloadError when a measure cannot be converted."""
    eid = entity_id(device, group)
    etype = device.entity_type or group.entity_type
    maps = {m.object_id: m for m in group.attributes}
    maps.update({m.object_id: m for m in device.attributes})
    ts_key = device.timestamp or group.timestamp
    now = us_iso(round((received or datetime.now(UTC)).timestamp() * 1_000_000))
    statics = {a.name: a for a in group.static_attributes}
    statics.update({a.name: a for a in device.static_attributes})
    out = []
    for r in readings:
        measures = dict(r.measures)
        when = r.time
        if ts_key and ts_key in measures:
            when = measures.pop(ts_key)
        observed = observed_at(when) if when is not None else now
        body: dict[str, Any] = {"id": eid, "type": etype}
        for key, value in measures.items():
            m = maps.get(key)
            if m is None and group.explicit_attrs:
                continue
            name = m.name if m else key
            kind = m.type if m else "Property"
            if kind == "GeoProperty":
                body[name] = {"type": kind, "value": _geometry(key, value), "observedAt": observed}
                continue
            unit = m.unitCode if m else None
            body[name] = _attr(kind, convert(key, value, m, measures), observed, unit)
        if not any(k not in ("id", "type") for k in body):
            raise PayloadError("mapping", "no measure of the payload is mapped to an attribute")
        for name, a in statics.items():
            body.setdefault(name, _attr(a.type, a.value, observed, None) | {})
            body[name].pop("observedAt", None)
        if device.location is not None and "location" not in body:
            body["location"] = {"type": "GeoProperty", "value": device.location}
        out.append(body)
    return out
