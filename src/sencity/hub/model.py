"""NGSI-LD entities in, validated and expanded: the hub's internal form.

Input may be *normalized* (every attribute with its ``type``), *concise* (types
implied by ``value``/``object``/``languageMap``/…) or *keyValues* (bare values; GeoJSON
geometries become GeoProperties).  Names are expanded with the request's @context.
The internal form (see :mod:`sencity.hub.schema`) keeps one list of instances per
attribute; instances differ by ``datasetId`` (the default instance has none).

Every problem raises :class:`~sencity.errors.BadRequest` naming the entity, the
attribute and what is wrong — before anything is written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sencity.errors import BadRequest
from sencity.hub.geo import GEOMETRY_TYPES, validate_geometry

PROPERTY = "Property"
RELATIONSHIP = "Relationship"
GEOPROPERTY = "GeoProperty"
LANGUAGEPROPERTY = "LanguageProperty"
JSONPROPERTY = "JsonProperty"
VOCABPROPERTY = "VocabProperty"
LISTPROPERTY = "ListProperty"
LISTRELATIONSHIP = "ListRelationship"

#: attribute kind -> the member that holds its value
VALUE_KEY = {
    PROPERTY: "value",
    GEOPROPERTY: "value",
    RELATIONSHIP: "object",
    LANGUAGEPROPERTY: "languageMap",
    JSONPROPERTY: "json",
    VOCABPROPERTY: "vocab",
    LISTPROPERTY: "valueList",
    LISTRELATIONSHIP: "objectList",
}
KIND_OF_KEY = {v: k for k, v in VALUE_KEY.items() if k != GEOPROPERTY}
#: members of an attribute instance that are not sub-attributes
INSTANCE_MEMBERS = {
    "type",
    "observedAt",
    "unitCode",
    "datasetId",
    "createdAt",
    "modifiedAt",
    "objectType",
    "lang",
    "instanceId",
    "previousValue",
    *VALUE_KEY.values(),
}
SYSTEM_MEMBERS = ("createdAt", "modifiedAt")
GEO_ATTRIBUTES = {"location", "observationSpace", "operationSpace"}
ENTITY_MEMBERS = {"id", "type", "@context", "scope", "createdAt", "modifiedAt"}
NGSI_LD_NULL = "urn:ngsi-ld:null"

_uri = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:[^\s<>\"{}|\\^`]+$")
_bad_name = re.compile(r"[\s<>\"'=;()]")


class Context(Protocol):
    def expand(self, term: str) -> str: ...

    def expand_vocab_value(self, value: str) -> str: ...


@dataclass
class Entity:
    id: str
    types: list[str]  # expanded
    attrs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # expanded names
    scopes: list[str] | None = None
    created_at: str | None = None
    modified_at: str | None = None


def is_uri(value: Any) -> bool:
    return isinstance(value, str) and bool(_uri.match(value))


def check_id(value: Any, what: str = "id") -> str:
    if not isinstance(value, str) or not value:
        raise BadRequest(f"'{what}' must be a non-empty string")
    if not is_uri(value):
        raise BadRequest(f"'{what}' must be a URI (e.g. urn:ngsi-ld:Type:1), got '{value[:200]}'")
    return value


def check_name(name: str, where: str) -> str:
    if not name or _bad_name.search(name):
        raise BadRequest(f"{where}: invalid attribute name '{name[:100]}'")
    return name


def check_datetime(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise BadRequest(f"{where}: must be an ISO 8601 date-time string")
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(f"{where}: '{value[:60]}' is not an ISO 8601 date-time") from None
    if dt.tzinfo is None:
        raise BadRequest(f"{where}: '{value[:60]}' has no time zone (add Z or an offset)")
    return value


def expand_types(value: Any, ctx: Context, where: str = "type") -> list[str]:
    types = [value] if isinstance(value, str) else value
    if not isinstance(types, list) or not types or not all(isinstance(t, str) and t for t in types):
        raise BadRequest(f"'{where}' must be a non-empty string or a list of strings")
    for t in types:
        check_name(t, where)
    return list(dict.fromkeys(ctx.expand(t) for t in types))


def _kind(name: str, raw: Any) -> tuple[str, dict[str, Any]]:
    """Work out the attribute kind of one instance; returns (kind, members)."""
    if isinstance(raw, dict):
        t = raw.get("type")
        if isinstance(t, str) and t in VALUE_KEY:
            return t, raw
        if t in GEOMETRY_TYPES and ("coordinates" in raw or "geometries" in raw):
            return GEOPROPERTY, {"value": raw}  # keyValues / concise geometry
        if t is not None and any(k in raw for k in KIND_OF_KEY):
            raise BadRequest(
                f"attribute '{name}': type '{str(t)[:40]}' is not an NGSI-LD attribute type "
                f"({', '.join(VALUE_KEY)})"
            )
        for key, kind in KIND_OF_KEY.items():
            if key in raw:
                if (
                    key == "value"
                    and name in GEO_ATTRIBUTES
                    and isinstance(raw["value"], dict)
                    and raw["value"].get("type") in GEOMETRY_TYPES
                ):
                    return GEOPROPERTY, raw
                return kind, raw
        return PROPERTY, {"value": raw}  # keyValues compound value
    return PROPERTY, {"value": raw}


def parse_instance(
    name: str, raw: Any, ctx: Context, where: str, *, depth: int = 0, allow_null: bool = False
) -> dict[str, Any]:
    """One attribute instance (or sub-attribute) in internal form; ``name`` is the short name."""
    if raw is None:
        raise BadRequest(f"{where}: null is not a valid attribute value")
    if depth > 8:
        raise BadRequest(f"{where}: sub-attributes nested too deeply")
    kind, members = _kind(name, raw)
    key = VALUE_KEY[kind]
    if key not in members:
        raise BadRequest(f"{where}: a {kind} needs '{key}'")
    value = members[key]
    if value is None or (value == NGSI_LD_NULL and not allow_null):
        raise BadRequest(f"{where}: '{key}' must not be null")
    inst: dict[str, Any] = {"type": kind}
    if value == NGSI_LD_NULL:
        inst[key] = value
    elif kind == GEOPROPERTY:
        inst["value"] = validate_geometry(value, where)
    elif kind == RELATIONSHIP:
        objs = value if isinstance(value, list) else [value]
        if not objs or not all(is_uri(o) for o in objs):
            raise BadRequest(f"{where}: a Relationship's 'object' must be a URI or list of URIs")
        inst["object"] = value
    elif kind == LISTRELATIONSHIP:
        if not isinstance(value, list) or not all(
            is_uri(o if not isinstance(o, dict) else o.get("object")) for o in value
        ):
            raise BadRequest(f"{where}: 'objectList' must be a list of URIs")
        inst["objectList"] = [o if not isinstance(o, dict) else o["object"] for o in value]
    elif kind == LANGUAGEPROPERTY:
        if (
            not isinstance(value, dict)
            or not value
            or not all(isinstance(k, str) and isinstance(v, str | list) for k, v in value.items())
        ):
            raise BadRequest(f"{where}: 'languageMap' must map language tags to strings")
        inst["languageMap"] = value
    elif kind == VOCABPROPERTY:
        terms = value if isinstance(value, list) else [value]
        if not terms or not all(isinstance(t, str) and t for t in terms):
            raise BadRequest(f"{where}: 'vocab' must be a string or a list of strings")
        expanded = [ctx.expand_vocab_value(t) for t in terms]
        inst["vocab"] = expanded if isinstance(value, list) else expanded[0]
    elif kind == LISTPROPERTY:
        if not isinstance(value, list):
            raise BadRequest(f"{where}: 'valueList' must be a list")
        inst["valueList"] = value
    else:  # Property, JsonProperty
        inst[key] = value
    for member, sub in members.items():
        if (
            member in ("type", key)
            or member in SYSTEM_MEMBERS
            or member in ("instanceId", "previousValue")
        ):
            continue
        if member == "observedAt":
            inst["observedAt"] = check_datetime(sub, f"{where}.observedAt")
        elif member == "unitCode":
            if not isinstance(sub, str) or not sub:
                raise BadRequest(f"{where}.unitCode: must be a non-empty string")
            inst["unitCode"] = sub
        elif member == "datasetId":
            inst["datasetId"] = check_id(sub, f"{where}.datasetId")
        elif member == "objectType" and kind in (RELATIONSHIP, LISTRELATIONSHIP):
            inst["objectType"] = expand_types(sub, ctx, f"{where}.objectType")
        elif member == "lang":
            if not isinstance(sub, str):
                raise BadRequest(f"{where}.lang: must be a string")
            inst["lang"] = sub
        elif member == "@context":
            continue
        else:
            check_name(member, where)
            inst[ctx.expand(member)] = parse_instance(
                member, sub, ctx, f"{where}.{member}", depth=depth + 1, allow_null=allow_null
            )
    return inst


def parse_attribute(
    name: str, raw: Any, ctx: Context, where: str, *, allow_null: bool = False
) -> list[dict[str, Any]]:
    """All instances of one attribute: a list in normalized form means several datasetIds."""
    if (
        isinstance(raw, list)
        and raw
        and all(
            isinstance(i, dict) and (i.get("type") in VALUE_KEY or "datasetId" in i) for i in raw
        )
    ):
        instances = [
            parse_instance(name, i, ctx, f"{where}[{n}]", allow_null=allow_null)
            for n, i in enumerate(raw)
        ]
        seen: set[str | None] = set()
        for inst in instances:
            ds = inst.get("datasetId")
            if ds in seen:
                raise BadRequest(f"{where}: two instances with datasetId {ds or '(default)'}")
            seen.add(ds)
        return instances
    return [parse_instance(name, raw, ctx, where, allow_null=allow_null)]


def parse_attributes(
    body: dict[str, Any], ctx: Context, where: str, *, allow_null: bool = False
) -> dict[str, list[dict[str, Any]]]:
    """The attributes of an entity fragment (members other than id/type/@context/scope)."""
    attrs: dict[str, list[dict[str, Any]]] = {}
    for name, raw in body.items():
        if name in ENTITY_MEMBERS:
            continue
        check_name(name, where)
        iri = ctx.expand(name)
        if iri in attrs:
            raise BadRequest(f"{where}: attribute '{name}' given twice")
        attrs[iri] = parse_attribute(
            name, raw, ctx, f"{where}: attribute '{name}'", allow_null=allow_null
        )
    return attrs


def parse_scope(value: Any, where: str) -> list[str] | None:
    if value is None:
        return None
    scopes = [value] if isinstance(value, str) else value
    if not isinstance(scopes, list) or not all(
        isinstance(s, str) and re.fullmatch(r"/[\w\-]+(/[\w\-]+)*", s) for s in scopes
    ):
        raise BadRequest(f"{where}: 'scope' must be a path like /Vietnam/DaNang or a list of them")
    return scopes


def parse_entity(
    body: Any, ctx: Context, *, require_type: bool = True, allow_null: bool = False
) -> Entity:
    """A whole entity (create, replace, batch); raises BadRequest naming the problem."""
    if not isinstance(body, dict):
        raise BadRequest("an entity must be a JSON object")
    eid = check_id(body.get("id"), "id")
    where = f"entity {eid}"
    if "type" not in body:
        if require_type:
            raise BadRequest(f"{where}: 'type' is required")
        types: list[str] = []
    else:
        types = expand_types(body["type"], ctx)
    return Entity(
        id=eid,
        types=types,
        attrs=parse_attributes(body, ctx, where, allow_null=allow_null),
        scopes=parse_scope(body.get("scope"), where),
    )
