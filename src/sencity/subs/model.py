"""Subscriptions in: validated, names expanded, ``q`` and ``geoQ`` compiled to SQL.

A subscription is kept as the client sent it (``body``, terms as in its @context) with
that @context; :func:`parse_subscription` turns the pair into a :class:`Subscription`
ready for matching, and is run again whenever it is loaded from the store.  Every
problem raises :class:`~sencity.errors.BadRequest` before anything is stored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urlsplit

from sencity.errors import BadRequest
from sencity.hub import geo, qlang
from sencity.hub.api import parse_types
from sencity.hub.ldcontext import ActiveContext
from sencity.hub.model import check_datetime, check_id, check_name
from sencity.hub.render import FORMATS

TRIGGERS = (
    "entityCreated",
    "entityUpdated",
    "entityDeleted",
    "attributeCreated",
    "attributeUpdated",
    "attributeDeleted",
)
#: NGSI-LD: without ``notificationTrigger``, attributes created or updated notify
DEFAULT_TRIGGERS = frozenset({"attributeCreated", "attributeUpdated"})
ACCEPTS = ("application/json", "application/ld+json", "application/geo+json")
SCHEMES = {"http": 80, "https": 443, "mqtt": 1883, "mqtts": 8883}
MQTT_VERSIONS = ("mqtt3.1.1", "mqtt5.0")

#: members the system writes; accepted in a body (a GET result sent back) and ignored
READ_ONLY = {"status", "createdAt", "modifiedAt"}
NOTIFICATION_READ_ONLY = {
    "status",
    "timesSent",
    "timesFailed",
    "lastNotification",
    "lastSuccess",
    "lastFailure",
}
MEMBERS = {
    "id",
    "type",
    "subscriptionName",
    "name",
    "description",
    "entities",
    "watchedAttributes",
    "notificationTrigger",
    "timeInterval",
    "q",
    "geoQ",
    "isActive",
    "notification",
    "expiresAt",
    "throttling",
    "lang",
    "jsonldContext",
    "@context",
    *READ_ONLY,
}
NOTIFICATION_MEMBERS = {
    "attributes",
    "format",
    "sysAttrs",
    "showChanges",
    "endpoint",
    *NOTIFICATION_READ_ONLY,
}
ENDPOINT_MEMBERS = {"uri", "accept", "timeout", "cooldown", "receiverInfo", "notifierInfo"}
UNSUPPORTED = {
    "csf": "context source filters",
    "temporalQ": "temporal queries in subscriptions",
    "scopeQ": "scope queries in subscriptions",
}


@dataclass(frozen=True)
class Selector:
    """One entry of ``entities``: id, idPattern and/or a type expression (OR of ANDs)."""

    id: str | None
    pattern: re.Pattern[str] | None
    types: list[list[str]] | None

    def matches(self, eid: str, types: list[str]) -> bool:
        if self.id is not None and eid != self.id:
            return False
        if self.pattern is not None and not self.pattern.search(eid):
            return False
        if self.types is not None:
            have = set(types)
            return any(have.issuperset(conj) for conj in self.types)
        return True


@dataclass(frozen=True)
class Endpoint:
    uri: str
    scheme: str
    accept: str
    receiver_info: tuple[tuple[str, str], ...]
    timeout: float | None  # seconds
    qos: int
    mqtt_version: str

    @property
    def mqtt(self) -> bool:
        return self.scheme in ("mqtt", "mqtts")


@dataclass
class Subscription:
    id: str
    body: dict[str, Any]  # as given, read-only members removed
    context: Any  # the @context value it was created with (None: the core context)
    ctx: ActiveContext
    selectors: list[Selector]
    watched: frozenset[str] | None  # expanded attribute names; None: any
    triggers: frozenset[str]
    where: list[tuple[str, list[Any]]]  # q and geoQ as SQL on a row "e" with "attrs"
    attrs: frozenset[str] | None  # notification.attributes, expanded
    format: str
    sys_attrs: bool
    show_changes: bool
    lang: str | None
    endpoint: Endpoint
    throttling: float | None
    time_interval: float | None
    expires_at: str | None  # UTC, utcnow() format
    active: bool

    def expired(self, now: str) -> bool:
        return self.expires_at is not None and self.expires_at <= now

    def live(self, now: str) -> bool:
        """Active and not expired: changes may notify."""
        return self.active and not self.expired(now)


def _str_list(value: Any, what: str) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise BadRequest(f"'{what}' must be a non-empty list of strings")
    return value


def _number(value: Any, what: str, positive: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadRequest(f"'{what}' must be a number")
    if value < 0 or (positive and value == 0):
        raise BadRequest(f"'{what}' must be {'positive' if positive else 'at least 0'}")
    return float(value)


def _bool(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise BadRequest(f"'{what}' must be true or false")
    return value


def _unknown(obj: dict[str, Any], known: set[str], where: str) -> None:
    for key, feature in UNSUPPORTED.items():
        if key in obj and where == "subscription":
            raise BadRequest(f"'{key}': {feature} are not supported")
    extra = sorted(set(obj) - known)
    if extra:
        raise BadRequest(f"{where}: unknown member(s) {', '.join(extra)}")


def utc_text(value: str) -> str:
    """An ISO 8601 date-time as UTC text in the store's format (sorts as text)."""
    dt = datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _selectors(value: Any, ctx: ActiveContext) -> list[Selector]:
    if not isinstance(value, list) or not value:
        raise BadRequest("'entities' must be a non-empty list of entity selectors")
    out = []
    for n, sel in enumerate(value):
        where = f"entities[{n}]"
        if not isinstance(sel, dict):
            raise BadRequest(f"{where} must be an object with id, idPattern and/or type")
        _unknown(sel, {"id", "idPattern", "type"}, where)
        if not any(k in sel for k in ("id", "idPattern", "type")):
            raise BadRequest(f"{where} needs an id, an idPattern or a type")
        if "id" in sel and "idPattern" in sel:
            raise BadRequest(f"{where}: id and idPattern exclude each other")
        eid = check_id(sel["id"], f"{where}.id") if "id" in sel else None
        pattern = None
        if "idPattern" in sel:
            if not isinstance(sel["idPattern"], str) or not sel["idPattern"]:
                raise BadRequest(f"{where}.idPattern must be a non-empty string")
            try:
                pattern = re.compile(sel["idPattern"])
            except re.error as exc:
                raise BadRequest(
                    f"{where}.idPattern is not a valid regular expression: {exc}"
                ) from None
        types = None
        if "type" in sel:
            if not isinstance(sel["type"], str) or not sel["type"]:
                raise BadRequest(f"{where}.type must be a non-empty string")
            types = parse_types(sel["type"], ctx)
        out.append(Selector(eid, pattern, types))
    return out


def _endpoint(value: Any) -> Endpoint:
    if not isinstance(value, dict):
        raise BadRequest("'notification.endpoint' must be an object with a 'uri'")
    _unknown(value, ENDPOINT_MEMBERS, "notification.endpoint")
    uri = value.get("uri")
    if not isinstance(uri, str) or not uri:
        raise BadRequest("'notification.endpoint.uri' must be a non-empty string")
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError as exc:
        raise BadRequest(f"'notification.endpoint.uri' is not a valid URI: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise BadRequest(
            f"'notification.endpoint.uri': scheme '{scheme or '(none)'}' is not supported "
            f"(use one of {', '.join(SCHEMES)})"
        )
    if not parts.hostname:
        raise BadRequest("'notification.endpoint.uri' has no host")
    del port
    if scheme.startswith("mqtt") and not unquote(parts.path).strip("/"):
        raise BadRequest("'notification.endpoint.uri': an MQTT endpoint needs a topic (path)")
    accept = value.get("accept", "application/json")
    if accept not in ACCEPTS:
        raise BadRequest(f"'notification.endpoint.accept' must be one of {', '.join(ACCEPTS)}")
    timeout = None
    if value.get("timeout") is not None:
        timeout = _number(value["timeout"], "notification.endpoint.timeout") / 1000.0
    if value.get("cooldown") is not None:
        _number(value["cooldown"], "notification.endpoint.cooldown", positive=False)
    receiver = tuple(_key_values(value.get("receiverInfo"), "receiverInfo"))
    notifier = dict(_key_values(value.get("notifierInfo"), "notifierInfo"))
    qos_text = notifier.get("MQTT-QoS", "0")
    if qos_text not in ("0", "1", "2"):
        raise BadRequest("notifierInfo 'MQTT-QoS' must be 0, 1 or 2")
    version = notifier.get("MQTT-Version", "mqtt3.1.1")
    if version not in MQTT_VERSIONS:
        raise BadRequest(f"notifierInfo 'MQTT-Version' must be one of {', '.join(MQTT_VERSIONS)}")
    return Endpoint(uri, scheme, accept, receiver, timeout, int(qos_text), version)


_HEADER = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


def _key_values(value: Any, what: str) -> list[tuple[str, str]]:
    if value is None:
        return []
    where = f"notification.endpoint.{what}"
    if not isinstance(value, list):
        raise BadRequest(f"'{where}' must be a list of {{key, value}} objects")
    out = []
    for item in value:
        if (
            not isinstance(item, dict)
            or set(item) != {"key", "value"}
            or not isinstance(item["key"], str)
            or not isinstance(item["value"], str)
        ):
            raise BadRequest(f'\'{where}\' entries must be {{"key": string, "value": string}}')
        if what == "receiverInfo" and not _HEADER.match(item["key"]):
            raise BadRequest(f"'{where}': '{item['key'][:60]}' is not a valid header name")
        if "\r" in item["value"] or "\n" in item["value"]:
            raise BadRequest(f"'{where}': values cannot contain line breaks")
        out.append((item["key"], item["value"]))
    return out


def clean_body(body: dict[str, Any]) -> dict[str, Any]:
    """The body without @context and the members the system writes."""
    out = {k: v for k, v in body.items() if k not in READ_ONLY and k != "@context"}
    note = out.get("notification")
    if isinstance(note, dict):
        out["notification"] = {k: v for k, v in note.items() if k not in NOTIFICATION_READ_ONLY}
    return out


def parse_subscription(
    body: Any, context: Any, ctx: ActiveContext, dialect: str, now: str | None = None
) -> Subscription:
    """Validate ``body`` (terms in ``ctx``); ``now`` given: expiresAt must be after it."""
    if not isinstance(body, dict):
        raise BadRequest("a subscription must be a JSON object")
    _unknown(body, MEMBERS, "subscription")
    if body.get("type") != "Subscription":
        raise BadRequest('a subscription needs "type": "Subscription"')
    sid = check_id(body.get("id"), "id")
    for key in ("subscriptionName", "name", "description", "lang", "jsonldContext"):
        if key in body and not isinstance(body[key], str):
            raise BadRequest(f"'{key}' must be a string")
    if "entities" not in body and "watchedAttributes" not in body:
        raise BadRequest("a subscription needs 'entities', 'watchedAttributes' or both")
    selectors = _selectors(body["entities"], ctx) if "entities" in body else []
    watched = None
    if "watchedAttributes" in body:
        names = _str_list(body["watchedAttributes"], "watchedAttributes")
        watched = frozenset(ctx.expand(check_name(n, "watchedAttributes")) for n in names)
    triggers = DEFAULT_TRIGGERS
    if "notificationTrigger" in body:
        given = _str_list(body["notificationTrigger"], "notificationTrigger")
        bad = sorted(set(given) - set(TRIGGERS))
        if bad:
            raise BadRequest(
                f"unknown notificationTrigger {', '.join(bad)} (known: {', '.join(TRIGGERS)})"
            )
        triggers = frozenset(given)
    interval = throttling = None
    if body.get("timeInterval") is not None:
        interval = _number(body["timeInterval"], "timeInterval")
        if watched is not None:
            raise BadRequest("timeInterval and watchedAttributes exclude each other")
        if not selectors:
            raise BadRequest("a periodic subscription (timeInterval) needs 'entities'")
    if body.get("throttling") is not None:
        throttling = _number(body["throttling"], "throttling", positive=False) or None
        if interval is not None and throttling is not None:
            raise BadRequest("timeInterval and throttling exclude each other")
    where: list[tuple[str, list[Any]]] = []
    if body.get("q") is not None:
        if not isinstance(body["q"], str) or not body["q"].strip():
            raise BadRequest("'q' must be a non-empty string")
        where.append(qlang.compile_q(qlang.parse(body["q"]), dialect, ctx.expand))
    if body.get("geoQ") is not None:
        gq = geo.GeoQuery.from_geoq(body["geoQ"])
        # never the indexed column: the condition is checked on entity states in memory
        where.append(geo.geo_sql(gq, dialect, ctx.expand(gq.geoproperty), indexed=False))
    expires = None
    if body.get("expiresAt") is not None:
        expires = utc_text(check_datetime(body["expiresAt"], "expiresAt"))
        if now is not None and expires <= now:
            raise BadRequest(f"expiresAt {body['expiresAt']} is in the past")
    active = _bool(body["isActive"], "isActive") if "isActive" in body else True
    note = body.get("notification")
    if not isinstance(note, dict):
        raise BadRequest("a subscription needs a 'notification' object with an 'endpoint'")
    _unknown(note, NOTIFICATION_MEMBERS, "notification")
    if "endpoint" not in note:
        raise BadRequest("'notification' needs an 'endpoint'")
    endpoint = _endpoint(note["endpoint"])
    attrs = None
    if note.get("attributes") is not None:
        names = _str_list(note["attributes"], "notification.attributes")
        attrs = frozenset(ctx.expand(check_name(n, "notification.attributes")) for n in names)
    fmt = note.get("format", "normalized")
    if fmt == "simplified":
        fmt = "keyValues"
    if fmt not in FORMATS:
        raise BadRequest(
            f"unknown notification.format '{str(fmt)[:40]}' (use normalized, concise, "
            "keyValues or simplified)"
        )
    sys_attrs = _bool(note.get("sysAttrs", False), "notification.sysAttrs")
    show = _bool(note.get("showChanges", False), "notification.showChanges")
    if show and fmt == "keyValues":
        raise BadRequest("notification.showChanges cannot be used with the keyValues format")
    return Subscription(
        id=sid,
        body=clean_body(body),
        context=context,
        ctx=ctx,
        selectors=selectors,
        watched=watched,
        triggers=triggers,
        where=where,
        attrs=attrs,
        format=fmt,
        sys_attrs=sys_attrs,
        show_changes=show,
        lang=body.get("lang"),
        endpoint=endpoint,
        throttling=throttling,
        time_interval=interval,
        expires_at=expires,
        active=active,
    )


def merge_fragment(body: dict[str, Any], fragment: Any) -> dict[str, Any]:
    """A subscription updated by a PATCH fragment: members replace the old ones, except
    ``notification``, whose members are replaced one by one; null removes a member."""
    if not isinstance(fragment, dict) or not fragment:
        raise BadRequest("the body must be a non-empty JSON object (a subscription fragment)")
    if fragment.get("id", body["id"]) != body["id"]:
        raise BadRequest("the fragment's id differs from the subscription's")
    if fragment.get("type", "Subscription") != "Subscription":
        raise BadRequest('a subscription fragment\'s type must be "Subscription"')
    out = dict(body)
    for key, value in clean_body(fragment).items():
        if key == "notification" and isinstance(value, dict):
            note = dict(out.get("notification") or {})
            for k, v in value.items():
                if v is None:
                    note.pop(k, None)
                else:
                    note[k] = v
            out["notification"] = note
        elif value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def _recompact(name: str, old: ActiveContext, new: ActiveContext) -> str:
    return new.compact(old.expand(name))


def compact_body(sub: Subscription, ctx: ActiveContext) -> dict[str, Any]:
    """The subscription as stored, its names compacted with ``ctx`` instead."""
    out = dict(sub.body)
    old = sub.ctx
    if "entities" in out:
        ents = []
        for sel in out["entities"]:
            sel = dict(sel)
            t = sel.get("type")
            if isinstance(t, str) and not re.search(r"[,;|()]", t):
                sel["type"] = _recompact(t, old, ctx)
            ents.append(sel)
        out["entities"] = ents
    if "watchedAttributes" in out:
        out["watchedAttributes"] = [_recompact(a, old, ctx) for a in out["watchedAttributes"]]
    note = dict(out["notification"])
    if note.get("attributes"):
        note["attributes"] = [_recompact(a, old, ctx) for a in note["attributes"]]
    out["notification"] = note
    if isinstance(out.get("geoQ"), dict) and out["geoQ"].get("geoproperty"):
        out["geoQ"] = {
            **out["geoQ"],
            "geoproperty": _recompact(out["geoQ"]["geoproperty"], old, ctx),
        }
    return out


def represent(sub: Subscription, ctx: ActiveContext, status: dict[str, Any]) -> dict[str, Any]:
    """The subscription for a GET: names compacted with ``ctx``, status members added."""
    out = compact_body(sub, ctx)
    note = dict(out["notification"])
    out.setdefault("isActive", sub.active)
    now = status["now"]
    out["status"] = "expired" if sub.expired(now) else ("active" if sub.active else "paused")
    note["timesSent"] = status["times_sent"]
    note["timesFailed"] = status["times_failed"]
    if status.get("last_status"):
        note["status"] = status["last_status"]
    for key, col in (
        ("lastNotification", "last_notification"),
        ("lastSuccess", "last_success"),
        ("lastFailure", "last_failure"),
    ):
        if status.get(col):
            note[key] = status[col]
    out["notification"] = note
    return out
