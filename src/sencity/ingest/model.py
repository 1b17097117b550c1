"""Provisioning: service groups (an API key, an entity type, default mappings) and
devices (a device id, its entity, how its payload keys become NGSI-LD attributes).

Bodies are validated with pydantic; errors become 400 problems naming the field.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from simpleeval import EvalWithCompoundTypes, InvalidExpression

from sencity.errors import BadRequest

NAME = r"^[A-Za-z0-9_.:\-]{1,128}$"
KEY = r"^[A-Za-z0-9_\-]{1,64}$"
Protocol = Literal["auto", "json", "ul"]
DataType = Literal["auto", "number", "integer", "text", "boolean"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class AttrMap(_Model):
    """One payload key → one NGSI-LD attribute."""

    object_id: str = Field(pattern=NAME, description="Key in the payload (UL: the measure name).")
    name: str = Field(pattern=NAME, description="NGSI-LD attribute name.")
    type: Literal["Property", "GeoProperty", "Relationship"] = "Property"
    datatype: DataType = "auto"
    unitCode: str | None = Field(None, max_length=16)
    scale: float | None = None
    offset: float | None = None
    expression: str | None = Field(
        None,
        max_length=500,
        description="A formula of `value` and the payload's other keys (e.g. `value * 1.8 + 32`).",
    )

    @field_validator("expression")
    @classmethod
    def _check_expression(cls, text: str | None) -> str | None:
        if text is None:
            return text
        try:
            EvalWithCompoundTypes(names={"value": 1.0}).eval(text, previously_parsed=None)
        except (InvalidExpression, SyntaxError) as exc:
            raise ValueError(f"invalid expression {text!r}: {exc}") from None
        except Exception:  # noqa: S110 - other run-time errors depend on the values
            pass
        return text


class StaticAttr(_Model):
    name: str = Field(pattern=NAME)
    type: Literal["Property", "GeoProperty", "Relationship"] = "Property"
    value: Any


class Command(_Model):
    name: str = Field(pattern=NAME)


class Mapping(_Model):
    """A fleet's own format: a topic pattern with ``{device_id}`` and JSON paths."""

    topic: str = Field(min_length=3, max_length=256)
    paths: dict[str, str] = Field(
        default_factory=dict, description="measure name → dotted JSON path (`data.temp`, `v[0]`)"
    )

    @field_validator("topic")
    @classmethod
    def _check_topic(cls, topic: str) -> str:
        if topic.count("{device_id}") != 1:
            raise ValueError("the topic pattern needs '{device_id}' once")
        if any(c in topic for c in "#+"):
            raise ValueError("the topic pattern cannot hold MQTT wildcards (+, #)")
        return topic


class Group(_Model):
    apikey: str = Field(pattern=KEY)
    entity_type: str = Field(pattern=NAME)
    protocol: Protocol = "auto"
    attributes: list[AttrMap] = Field(default_factory=list)
    static_attributes: list[StaticAttr] = Field(default_factory=list)
    timestamp: str | None = Field(
        None, pattern=NAME, description="Payload key holding the observation time."
    )
    explicit_attrs: bool = Field(False, description="Drop payload keys that are not mapped.")
    autoprovision: bool = Field(False, description="Create unknown devices on first message.")
    mapping: Mapping | None = None
    description: str = Field("", max_length=500)


class Device(_Model):
    device_id: str = Field(pattern=NAME)
    apikey: str = Field(pattern=KEY)
    entity_id: str | None = Field(None, max_length=256)
    entity_type: str | None = Field(None, pattern=NAME)
    protocol: Protocol | None = None
    attributes: list[AttrMap] = Field(default_factory=list)
    static_attributes: list[StaticAttr] = Field(default_factory=list)
    location: dict[str, Any] | None = Field(None, description="A GeoJSON geometry (static).")
    timestamp: str | None = Field(None, pattern=NAME)
    commands: list[Command] = Field(default_factory=list)
    description: str = Field("", max_length=500)


def _loc(err: Any) -> str:
    return ".".join(str(p) for p in err["loc"]) or "(body)"


def validate(model: type[_Model], body: Any, where: str) -> Any:
    """``body`` as ``model``; a BadRequest naming every wrong field otherwise."""
    if not isinstance(body, dict):
        raise BadRequest(f"{where} must be a JSON object")
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        problems = "; ".join(f"'{_loc(e)}': {e['msg']}" for e in exc.errors()[:10])
        raise BadRequest(f"{where}: {problems}") from None


def entity_id(device: Device, group: Group) -> str:
    """The device's entity id: given, or ``urn:ngsi-ld:{type}:{device_id}``."""
    if device.entity_id:
        return device.entity_id
    return f"urn:ngsi-ld:{device.entity_type or group.entity_type}:{device.device_id}"


_SEGMENT = re.compile(r"^([^\[\]]+)?((?:\[\d+\])*)$")


def json_path(doc: Any, path: str) -> Any:
    """The value at a dotted path (`data.temp`, `values[0].v`); KeyError when absent."""
    cur = doc
    for part in path.split("."):
        m = _SEGMENT.match(part)
        if m is None:
            raise KeyError(path)
        key, idx = m.group(1), m.group(2)
        if key is not None:
            if not isinstance(cur, dict) or key not in cur:
                raise KeyError(path)
            cur = cur[key]
        for n in re.findall(r"\[(\d+)\]", idx or ""):
            if not isinstance(cur, list) or int(n) >= len(cur):
                raise KeyError(path)
            cur = cur[int(n)]
    return cur
