"""Sensor payloads → measures.

* JSON: an object of measures (``{"t": 25.3, "pm25": 41}``) or an array of such objects
  (several readings in one message).
* UltraLight 2.0: ``t|25.3|pm25|41``; several readings separated by ``#``; a reading
  with an odd number of fields starts with its time (``2026-12-01T03:00:00Z|t|25.3``).
* A single measure (topic ``…/attrs/{name}``): the payload is the bare value.
* A fleet's own JSON format: the values found at the mapping's JSON paths.

Every failure is a :class:`PayloadError` whose text says what is wrong; the message then
goes to the dead letters.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sencity.ingest.model import json_path


class PayloadError(Exception):
    """A payload that cannot be read; ``reason`` is a short code for metrics."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass
class Reading:
    """One set of measures taken at one time (``None``: when it was received)."""

    measures: dict[str, Any]
    time: str | None = None


def _text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PayloadError("encoding", f"the payload is not UTF-8 ({exc.reason})") from None


def decode_json(raw: bytes) -> list[Reading]:
    try:
        doc = json.loads(_text(raw))
    except json.JSONDecodeError as exc:
        raise PayloadError("parse", f"invalid JSON at character {exc.pos}: {exc.msg}") from None
    items = doc if isinstance(doc, list) else [doc]
    if not items:
        raise PayloadError("parse", "an empty JSON array holds no measures")
    out = []
    for n, item in enumerate(items):
        if not isinstance(item, dict) or not item:
            where = f"element {n}" if isinstance(doc, list) else "the payload"
            raise PayloadError("parse", f"{where} must be a non-empty JSON object of measures")
        out.append(Reading(dict(item)))
    return out


def decode_ul(raw: bytes) -> list[Reading]:
    text = _text(raw).strip()
    if not text:
        raise PayloadError("parse", "an empty UltraLight payload holds no measures")
    out = []
    for n, group in enumerate(text.split("#")):
        fields = group.strip().split("|")
        when = None
        if len(fields) % 2 == 1:
            when, fields = fields[0], fields[1:]
            if not when:
                raise PayloadError("parse", f"UltraLight group {n + 1}: odd number of fields")
        if not fields:
            raise PayloadError("parse", f"UltraLight group {n + 1} holds no measures")
        measures: dict[str, Any] = {}
        for i in range(0, len(fields), 2):
            key = fields[i].strip()
            if not key:
                raise PayloadError("parse", f"UltraLight group {n + 1}: an empty measure name")
            measures[key] = fields[i + 1]
        out.append(Reading(measures, when))
    return out


def decode(raw: bytes, protocol: str) -> list[Reading]:
    """Readings of a whole-device payload (``protocol``: json, ul or auto)."""
    if protocol == "auto":
        head = raw.lstrip()[:1]
        protocol = "json" if head in (b"{", b"[") else "ul"
    return decode_json(raw) if protocol == "json" else decode_ul(raw)


def decode_single(raw: bytes, name: str) -> list[Reading]:
    """A bare value for measure ``name`` (JSON scalars are read as JSON, else text)."""
    text = _text(raw).strip()
    value: Any = text
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError:
        pass
    else:
        if not isinstance(parsed, (dict, list)):
            value = parsed
    return [Reading({name: value})]


def decode_mapped(raw: bytes, paths: dict[str, str]) -> list[Reading]:
    """A fleet's own JSON: each measure at its path (absent paths are skipped)."""
    try:
        doc = json.loads(_text(raw))
    except json.JSONDecodeError as exc:
        raise PayloadError("parse", f"invalid JSON at character {exc.pos}: {exc.msg}") from None
    measures: dict[str, Any] = {}
    for name, path in paths.items():
        try:
            measures[name] = json_path(doc, path)
        except KeyError:
            continue
    if not measures:
        raise PayloadError("mapping", "none of the mapping's JSON paths is in the payload")
    return [Reading(measures)]
