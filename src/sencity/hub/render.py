"""Entities out: normalized, concise or keyValues, compacted with the caller's @context,
optionally as GeoJSON features."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from sencity.hub.model import (
    GEOPROPERTY,
    INSTANCE_MEMBERS,
    LANGUAGEPROPERTY,
    PROPERTY,
    VALUE_KEY,
    VOCABPROPERTY,
    Entity,
)

FORMATS = ("normalized", "concise", "keyValues")


class Context(Protocol):
    def compact(self, iri: str) -> str: ...

    def compact_vocab_value(self, value: str) -> str: ...


@dataclass(frozen=True)
class Options:
    format: str = "normalized"
    sys_attrs: bool = False
    attrs: frozenset[str] | None = None  # expanded attribute names to keep
    pick: frozenset[str] | None = None  # short member names (id, type, attributes)
    omit: frozenset[str] | None = None
    lang: str | None = None


def _pick_language(lang_map: dict[str, Any], lang: str) -> tuple[str, Any]:
    if lang in lang_map:
        return lang, lang_map[lang]
    for tag in lang.split(","):
        tag = tag.split(";")[0].strip()
        if tag in lang_map:
            return tag, lang_map[tag]
    if "@none" in lang_map:
        return "@none", lang_map["@none"]
    first = next(iter(lang_map))
    return first, lang_map[first]


def _instance(inst: dict[str, Any], ctx: Context, o: Options) -> Any:
    kind = inst["type"]
    key = VALUE_KEY[kind]
    value: Any = inst.get(key)
    if kind == VOCABPROPERTY:
        value = (
            [ctx.compact_vocab_value(v) for v in value]
            if isinstance(value, list)
            else ctx.compact_vocab_value(value)
        )
    lang_tag = None
    if kind == LANGUAGEPROPERTY and o.lang and o.lang != "*":
        lang_tag, value = _pick_language(value, o.lang)
        kind, key = PROPERTY, "value"
    if o.format == "keyValues":
        return value
    out: dict[str, Any] = {}
    if o.format == "normalized":
        out["type"] = kind
    out[key] = value
    if lang_tag is not None:
        out["lang"] = lang_tag
    for member, v in inst.items():
        if member in ("type", VALUE_KEY[inst["type"]]):
            continue
        if member in ("createdAt", "modifiedAt"):
            if o.sys_attrs:
                out[member] = v
        elif member == "objectType":
            out[member] = [ctx.compact(t) for t in v] if len(v) > 1 else ctx.compact(v[0])
        elif member in INSTANCE_MEMBERS:
            out[member] = v
        else:
            out[ctx.compact(member)] = _instance(v, ctx, o)
    if (
        o.format == "concise"
        and len(out) == 1
        and key == "value"
        and (kind == GEOPROPERTY or not isinstance(value, dict))
    ):
        return value  # a bare value is unambiguous
    return out


def render(e: Entity, ctx: Context, o: Options) -> dict[str, Any]:
    out: dict[str, Any] = {"id": e.id}
    types = [ctx.compact(t) for t in e.types]
    out["type"] = types[0] if len(types) == 1 else types
    if e.scopes:
        out["scope"] = e.scopes[0] if len(e.scopes) == 1 else e.scopes
    for name, insts in e.attrs.items():
        if o.attrs is not None and name not in o.attrs:
            continue
        short = ctx.compact(name)
        if o.format == "keyValues":
            default = next((i for i in insts if "datasetId" not in i), insts[0])
            out[short] = _instance(default, ctx, o)
        elif len(insts) == 1:
            out[short] = _instance(insts[0], ctx, o)
        else:
            out[short] = [_instance(i, ctx, o) for i in insts]
    if o.sys_attrs and o.format != "keyValues":
        out["createdAt"] = e.created_at
        out["modifiedAt"] = e.modified_at
    if o.pick is not None:
        out = {k: v for k, v in out.items() if k in o.pick}
    if o.omit is not None:
        out = {k: v for k, v in out.items() if k not in o.omit}
    return out


def feature(entity: dict[str, Any], e: Entity, geoproperty_iri: str) -> dict[str, Any]:
    """An entity (already rendered) as a GeoJSON Feature."""
    geometry = None
    insts = e.attrs.get(geoproperty_iri)
    if insts:
        geometry = next((i for i in insts if "datasetId" not in i), insts[0]).get("value")
    props = {k: v for k, v in entity.items() if k not in ("id", "@context")}
    return {"id": e.id, "type": "Feature", "geometry": geometry, "properties": props}
