"""Public warnings in the Common Alerting Protocol (OASIS CAP 1.2) and an Atom feed of them.

An alarm whose rule has a ``cap:`` section is an ``Alert`` entity with
``publicWarning: true`` and ``capInfo`` (JSON: ``event``, ``headline``, ``instruction``
— each ``{vi, en}`` — and optionally ``description`` ``{vi, en}``, ``urgency``,
``certainty``, ``severity``, ``category``, ``area``).  :func:`alert_xml` makes its CAP
message:

* ``msgType``: ``Alert`` while the alarm is active and unchanged since it was raised;
  ``Update`` once its severity, description, location or warning text changed (it
  references the first message); ``Cancel`` once the alarm is cleared (it references
  the first message, and its ``info`` says ``AllClear`` with ``urgency`` ``Past``);
* ``identifier``: the alarm's id for the first message, ``<id>.u<unix time>`` for an
  update and ``<id>.c<unix time>`` for the cancellation (identifiers are never reused);
* ``sender``: ``rules.cap_sender`` (else ``sencity@<tenant>``); ``sent``: when the
  alarm was raised, changed or cleared; ``status`` ``Actual``; ``scope`` ``Public``;
* one ``info`` per language (``vi-VN`` then ``en-US``) with the category (``Met`` for
  flood and weather, ``Env`` for air quality and noise, … unless ``capInfo`` says),
  urgency, severity (``critical`` → ``Extreme``, ``major`` → ``Severe``, ``minor`` →
  ``Moderate``, ``warning`` → ``Minor`` unless ``capInfo`` says), certainty, effective
  and expiry times, texts, and an ``area`` (``capInfo.area`` or the ward, with the
  alarm's location as a ``polygon`` or a ``circle``, and the ward code as a geocode).

:func:`atom_feed` lists the messages of a tenant, newest first, each entry linking to
its CAP document (the practice of the OASIS CAP feeds note and national alert hubs).
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shapely.geometry import shape  # type: ignore[import-untyped]

CAP_NS = "urn:oasis:names:tc:emergency:cap:1.2"
ATOM_NS = "http://www.w3.org/2005/Atom"
CAP_MEDIA = "application/cap+xml"
ATOM_MEDIA = "application/atom+xml"
LANGUAGES = (("vi", "vi-VN"), ("en", "en-US"))

SEVERITY = {"critical": "Extreme", "major": "Severe", "minor": "Moderate", "warning": "Minor"}
CAP_SEVERITIES = ("Extreme", "Severe", "Moderate", "Minor", "Unknown")
CAP_URGENCIES = ("Immediate", "Expected", "Future", "Past", "Unknown")
CAP_CERTAINTIES = ("Observed", "Likely", "Possible", "Unlikely", "Unknown")
CAP_CATEGORIES = (
    "Geo",
    "Met",
    "Safety",
    "Security",
    "Rescue",
    "Fire",
    "Health",
    "Env",
    "Transport",
    "Infra",
    "CBRNE",
    "Other",
)
#: words of an alarm's category (or sub-category) → CAP category
CATEGORY_WORDS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("flood", "weather", "rain", "storm", "typhoon", "wind", "heat", "water"), "Met"),
    (("air", "aqi", "pollution", "environment", "noise", "waste", "dust"), "Env"),
    (("traffic", "transport", "road", "bus", "parking"), "Transport"),
    (("fire",), "Fire"),
    (("health", "medical", "disease"), "Health"),
    (("earthquake", "landslide", "geo"), "Geo"),
    (("crime", "security"), "Security"),
    (("power", "electric", "infrastructure", "light"), "Infra"),
)
CLEARED = ("cleared-unacknowledged", "cleared-acknowledged")
#: attributes whose change makes the public message an Update
PUBLIC_ATTRS = ("severity", "description", "capInfo", "location")


@dataclass
class AlertView:
    """What the CAP message of one Alert entity needs (values by short name, and when
    each public attribute last changed)."""

    id: str
    tenant: str
    values: dict[str, Any]
    changed: dict[str, str] = field(default_factory=dict)  # attr -> modifiedAt when changed

    @property
    def cap(self) -> dict[str, Any]:
        c = self.values.get("capInfo")
        return c if isinstance(c, dict) else {}

    @property
    def cleared(self) -> bool:
        return self.values.get("alarmStatus") in CLEARED

    @property
    def local_id(self) -> str:
        return self.id.rsplit(":", 1)[-1]


@dataclass(frozen=True)
class Message:
    msg_type: str
    identifier: str
    sent: datetime
    first_identifier: str
    first_sent: datetime


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def cap_time(dt: datetime) -> str:
    """CAP's dateTime form: seconds, an explicit offset (``+00:00``, never ``Z``)."""
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def atom_time(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def message_of(view: AlertView) -> Message:
    """Which CAP message the alarm's present state is, and its identifier and time."""
    v = view.values
    issued = parse_time(v.get("dateIssued")) or parse_time(v.get("validFrom"))
    first_sent = issued or datetime.now(UTC)
    first = view.id
    if view.cleared:
        at = parse_time(v.get("validTo")) or parse_time(view.changed.get("alarmStatus"))
        at = at or first_sent
        return Message("Cancel", f"{first}.c{int(at.timestamp())}", at, first, first_sent)
    changes = [t for a in PUBLIC_ATTRS if (t := parse_time(view.changed.get(a))) and t > first_sent]
    if changes:
        at = max(changes)
        return Message("Update", f"{first}.u{int(at.timestamp())}", at, first, first_sent)
    return Message("Alert", first, first_sent, first, first_sent)


def _text(value: Any, lang: str) -> str:
    if isinstance(value, Mapping):
        for key in (lang, "vi" if lang == "en" else "en"):
            if isinstance(value.get(key), str) and value[key]:
                return str(value[key])
        return next((str(x) for x in value.values() if isinstance(x, str)), "")
    return "" if value is None else str(value)


def category_of(view: AlertView) -> str:
    given = view.cap.get("category")
    if isinstance(given, str) and given in CAP_CATEGORIES:
        return given
    words = f"{view.values.get('category', '')} {view.values.get('subCategory', '')}".lower()
    for keys, cat in CATEGORY_WORDS:
        if any(k in words for k in keys):
            return cat
    return "Other"


def severity_of(view: AlertView) -> str:
    given = view.cap.get("severity")
    if isinstance(given, str) and given in CAP_SEVERITIES:
        return given
    return SEVERITY.get(str(view.values.get("severity", "")), "Unknown")


def _pick(value: Any, allowed: Sequence[str], default: str) -> str:
    return value if isinstance(value, str) and value in allowed else default


def _latlon(x: float, y: float) -> str:
    return f"{round(y, 6)},{round(x, 6)}"


def area_shapes(location: Any) -> tuple[list[str], list[str]]:
    """CAP polygons and circles ("lat,lon radius-km") of a GeoJSON geometry."""
    if not isinstance(location, Mapping):
        return [], []
    try:
        geom = shape(location)
    except Exception:  # not a geometry shapely knows: no shape, the areaDesc still says where
        return [], []
    if geom.is_empty:
        return [], []
    kind = geom.geom_type
    if kind == "Point":
        return [], [f"{_latlon(geom.x, geom.y)} 0"]
    if kind in ("Polygon", "MultiPolygon"):
        polys = [geom] if kind == "Polygon" else list(geom.geoms)
        out = []
        for p in polys:
            ring = list(p.exterior.coords)
            if ring[0] != ring[-1]:
                ring.append(ring[0])
            out.append(" ".join(_latlon(x, y) for x, y, *_ in ring))
        return out, []
    # lines and the rest: the circle around them, from their centre to the farthest point
    c = geom.centroid
    pts = [(x, y) for g in getattr(geom, "geoms", [geom]) for x, y, *_ in _coords(g)]
    radius = max((_km(c.x, c.y, x, y) for x, y in pts), default=0.0)
    return [], [f"{_latlon(c.x, c.y)} {round(radius, 3)}"]


def _coords(g: Any) -> Iterable[tuple[float, ...]]:
    if hasattr(g, "exterior"):
        return list(g.exterior.coords)
    return list(getattr(g, "coords", []))


def _km(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    r = 6371.0088
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * r * math.asin(math.sqrt(min(1.0, a)))


def _sub(parent: ET.Element, tag: str, text: str | None = None, ns: str = CAP_NS) -> ET.Element:
    """A child element: ``{ns}tag``, or plain ``tag`` when ``ns`` is empty."""
    el = ET.SubElement(parent, f"{{{ns}}}{tag}" if ns else tag)
    if text is not None:
        el.text = text
    return el


def _clean(text: str) -> str:
    """CAP's sender and references may not hold spaces, commas, '<' or '&'."""
    return "".join("_" if ch in " ,<&" else ch for ch in text)


def sender_of(tenant: str, configured: str = "") -> str:
    return _clean(configured or f"sencity@{tenant}")


def alert_xml(
    view: AlertView,
    sender: str,
    sender_name: str = "",
    web: str | None = None,
) -> bytes:
    """The CAP 1.2 document of an alarm (UTF-8 XML)."""
    msg = message_of(view)
    v, cap = view.values, view.cap
    root = ET.Element(f"{{{CAP_NS}}}alert")
    _sub(root, "identifier", msg.identifier)
    _sub(root, "sender", sender)
    _sub(root, "sent", cap_time(msg.sent))
    _sub(root, "status", "Actual")
    _sub(root, "msgType", msg.msg_type)
    _sub(root, "source", "SenCity")
    _sub(root, "scope", "Public")
    if msg.msg_type != "Alert":
        _sub(root, "references", f"{sender},{msg.first_identifier},{cap_time(msg.first_sent)}")
    category = category_of(view)
    urgency = _pick(cap.get("urgency"), CAP_URGENCIES, "Expected")
    certainty = _pick(cap.get("certainty"), CAP_CERTAINTIES, "Observed")
    if msg.msg_type == "Cancel":
        urgency = "Past"
    effective = parse_time(v.get("validFrom")) or msg.first_sent
    expires = parse_time(v.get("validTo")) if view.cleared else None
    polygons, circles = area_shapes(v.get("location"))
    for lang, tag in LANGUAGES:
        info = _sub(root, "info")
        _sub(info, "language", tag)
        _sub(info, "category", category)
        _sub(info, "event", _text(cap.get("event"), lang) or _text(v.get("name"), lang))
        if msg.msg_type == "Cancel":
            _sub(info, "responseType", "AllClear")
        _sub(info, "urgency", urgency)
        _sub(info, "severity", severity_of(view))
        _sub(info, "certainty", certainty)
        _sub(info, "effective", cap_time(effective))
        if expires is not None:
            _sub(info, "expires", cap_time(expires))
        if sender_name:
            _sub(info, "senderName", sender_name)
        headline = _text(cap.get("headline"), lang)
        if msg.msg_type == "Cancel":
            done = "Đã kết thúc" if lang == "vi" else "Ended"
            headline = f"{done}: {headline}" if headline else done
        if headline:
            _sub(info, "headline", headline)
        desc = _text(cap.get("description"), lang) or _text(v.get("description"), lang)
        if desc:
            _sub(info, "description", desc)
        instruction = _text(cap.get("instruction"), lang)
        if instruction and msg.msg_type != "Cancel":
            _sub(info, "instruction", instruction)
        if web:
            _sub(info, "web", web)
        for name, value in (("SenCity:rule", v.get("refRule")), ("SenCity:alarm", view.id)):
            if value:
                p = _sub(info, "parameter")
                _sub(p, "valueName", name)
                _sub(p, "value", str(value))
        area = _sub(info, "area")
        desc_area = (
            _text(cap.get("area"), lang)
            or _text(v.get("areaServed"), lang)
            or _text(v.get("wardCode"), lang)
            or sender_name
            or view.tenant
        )
        _sub(area, "areaDesc", desc_area)
        for poly in polygons:
            _sub(area, "polygon", poly)
        for circle in circles:
            _sub(area, "circle", circle)
        if v.get("wardCode"):
            g = _sub(area, "geocode")
            _sub(g, "valueName", "wardCode")
            _sub(g, "value", str(v["wardCode"]))
    out: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True, default_namespace=CAP_NS)
    return out


@dataclass(frozen=True)
class FeedEntry:
    view: AlertView
    url: str  # of its CAP document


def atom_feed(
    entries: Sequence[FeedEntry],
    feed_url: str,
    title: str,
    author: str,
    now: datetime | None = None,
) -> bytes:
    """An Atom (RFC 4287) feed of CAP messages, newest first."""
    msgs = sorted(((e, message_of(e.view)) for e in entries), key=lambda p: p[1].sent, reverse=True)
    # plain names under a default xmlns: ElementTree's default_namespace refuses the
    # unqualified attributes (href, rel, term) Atom uses
    root = ET.Element("feed", {"xmlns": ATOM_NS})
    root.set("{http://www.w3.org/XML/1998/namespace}lang", "vi")
    _sub(root, "id", feed_url, "")
    _sub(root, "title", title, "")
    updated = msgs[0][1].sent if msgs else (now or datetime.now(UTC))
    _sub(root, "updated", atom_time(updated), "")
    a = _sub(root, "author", None, "")
    _sub(a, "name", author, "")
    link = _sub(root, "link", None, "")
    link.set("rel", "self")
    link.set("href", feed_url)
    link.set("type", ATOM_MEDIA)
    _sub(root, "generator", "SenCity", "")
    for e, msg in msgs:
        cap = e.view.cap
        entry = _sub(root, "entry", None, "")
        _sub(entry, "id", msg.identifier if msg.identifier.startswith("urn:") else e.url, "")
        vi = _text(cap.get("headline"), "vi") or _text(e.view.values.get("name"), "vi")
        en = _text(cap.get("headline"), "en")
        head = f"{vi} / {en}" if en and en != vi else vi
        if msg.msg_type == "Cancel":
            head = f"Đã kết thúc / Ended: {head}"
        _sub(entry, "title", head or e.view.id, "")
        _sub(entry, "updated", atom_time(msg.sent), "")
        _sub(entry, "published", atom_time(msg.first_sent), "")
        summary = _text(cap.get("description"), "vi") or _text(
            e.view.values.get("description"), "vi"
        )
        if summary:
            _sub(entry, "summary", summary, "")
        cat = _sub(entry, "category", None, "")
        cat.set("term", category_of(e.view))
        alt = _sub(entry, "link", None, "")
        alt.set("rel", "alternate")
        alt.set("type", CAP_MEDIA)
        alt.set("href", e.url)
    out: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return out
