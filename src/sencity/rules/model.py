"""Rules as data: the rule document (YAML or JSON), validated into :class:`Rule`.

Every problem raises :class:`~sencity.errors.BadRequest` whose detail names the rule,
the field (a dotted path such as ``when.all[1].above``) and what is wrong; the problem
body carries them as ``rule`` and ``field`` too.  ``docs/RULES.md`` documents the
format with a runnable example.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from sencity.errors import BadRequest
from sencity.hub.durations import parse_duration
from sencity.hub.geo import validate_geometry

RULE_ID = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"
SEVERITIES = ("critical", "major", "minor", "warning")
SEVERITY_RANK = {s: n for n, s in enumerate(reversed(SEVERITIES))}  # warning 0 … critical 3
CHANNEL_TYPES = ("webhook", "mqtt", "email", "dashboard")
NOTICE_EVENTS = ("raised", "updated", "escalated", "reminder", "cleared", "acknowledged")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_SHORT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)\s*$")
_HHMM = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class RuleError(BadRequest):
    """A rule document problem, naming the rule and the field."""

    def __init__(self, rule: str, where: str, problem: str) -> None:
        prefix = f"rule '{rule}'" if rule else "rule"
        super().__init__(
            f"{prefix}: field '{where}': {problem}" if where else f"{prefix}: {problem}",
            rule=rule,
            field=where,
        )


def seconds(value: Any, where: str = "duration") -> float:
    """A duration in seconds: ISO 8601 (``PT10M``) or short (``10m``, ``30s``, ``2h``)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value <= 0:
            raise ValueError("must be longer than zero")
        return float(value)
    if not isinstance(value, str):
        raise ValueError("must be a duration such as PT10M or 10m")
    m = _SHORT.match(value)
    if m:
        n = float(m.group(1)) * _UNITS[m.group(2)]
        if n <= 0:
            raise ValueError("must be longer than zero")
        return n
    try:
        p = parse_duration(value, where)
    except BadRequest:
        raise ValueError(f"'{value[:40]}' is not a duration (PT10M, 10m, 30s, 2h, P1D)") from None
    if p.calendar:
        raise ValueError("months and years have no fixed length: use days")
    return p.us / 1e6


def hhmm(value: Any) -> int:
    """``HH:MM`` as minutes after midnight."""
    if not isinstance(value, str) or not _HHMM.match(value.strip()):
        raise ValueError(f"must be a time of day HH:MM, got {value!r}")
    h, m = value.strip().split(":")
    return int(h) * 60 + int(m)


# -- conditions ---------------------------------------------------------------------------
COMPARATORS = ("above", "below", "at_least", "at_most", "equals", "not_equals")
CLEARS = {"above": "clear_below", "at_least": "clear_below", "below": "clear_above"}
CLEARS["at_most"] = "clear_above"


@dataclass(frozen=True)
class Operand:
    """A constant, or another attribute of the same entity (``{attr: alertLevel2}``)."""

    value: Any = None
    attr: str | None = None


@dataclass
class Cond:
    """One node of a condition tree.  ``kind`` says which members are used."""

    # compare | exists | all | any | not | no_data | count | rate | inside | outside | near
    # | schedule
    kind: str
    attr: str | None = None
    op: str | None = None
    operand: Operand | None = None
    clear: Operand | None = None  # hysteresis threshold
    children: list[Cond] = field(default_factory=list)
    period: float = 0.0  # no_data, count window, rate per
    at_least: int = 0  # count
    geometry: dict[str, Any] | None = None  # inside/outside polygon, near point
    ward: str | None = None  # inside/outside a ward's polygon
    distance: float = 0.0  # near, metres
    days: frozenset[int] = frozenset()
    start: int = 0  # schedule: minutes after midnight
    end: int = 0
    path: str = ""  # where it was in the document

    def attrs(self) -> set[str]:
        """Every attribute name the condition reads."""
        out = {self.attr} if self.attr else set()
        if self.operand is not None and self.operand.attr:
            out.add(self.operand.attr)
        if self.clear is not None and self.clear.attr:
            out.add(self.clear.attr)
        for c in self.children:
            out |= c.attrs()
        return out

    def walk(self) -> Iterable[Cond]:
        yield self
        for c in self.children:
            yield from c.walk()


def _operand(rule: str, where: str, value: Any) -> Operand:
    if isinstance(value, dict):
        if set(value) != {"attr"} or not isinstance(value["attr"], str) or not value["attr"]:
            raise RuleError(rule, where, "an operand is a value or {attr: <attribute name>}")
        return Operand(attr=value["attr"])
    if isinstance(value, list):
        raise RuleError(rule, where, "must be a single value or {attr: <attribute name>}")
    return Operand(value=value)


def _need(rule: str, where: str, body: dict[str, Any], allowed: set[str]) -> None:
    extra = set(body) - allowed
    if extra:
        raise RuleError(
            rule,
            f"{where}.{sorted(extra)[0]}" if where else sorted(extra)[0],
            f"unknown member (allowed here: {', '.join(sorted(allowed))})",
        )


def _dur(rule: str, where: str, value: Any) -> float:
    try:
        return seconds(value, where)
    except ValueError as exc:
        raise RuleError(rule, where, str(exc)) from None


def _geometry(rule: str, where: str, value: Any, kinds: tuple[str, ...]) -> dict[str, Any]:
    try:
        geom = validate_geometry(value, where)
    except BadRequest as exc:
        raise RuleError(rule, where, exc.detail) from None
    if geom["type"] not in kinds:
        raise RuleError(rule, where, f"must be a GeoJSON {' or '.join(kinds)}")
    return geom


def _attr_name(rule: str, where: str, value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z_][\w:./\-]{0,127}", value):
        raise RuleError(rule, where, f"must be an attribute name, got {value!r}")
    return value


def parse_condition(rule: str, body: Any, where: str = "when") -> Cond:
    """A condition document → a :class:`Cond` tree (RuleError naming the field)."""
    if not isinstance(body, dict) or not body:
        raise RuleError(
            rule, where, "a condition must be a mapping such as {attr: pm25, above: 150}"
        )
    if "all" in body or "any" in body:
        key = "all" if "all" in body else "any"
        _need(rule, where, body, {key})
        items = body[key]
        if not isinstance(items, list) or not items:
            raise RuleError(rule, f"{where}.{key}", "must be a non-empty list of conditions")
        kids = [parse_condition(rule, c, f"{where}.{key}[{n}]") for n, c in enumerate(items)]
        return Cond(key, children=kids, path=where)
    if "not" in body:
        _need(rule, where, body, {"not"})
        return Cond(
            "not", children=[parse_condition(rule, body["not"], f"{where}.not")], path=where
        )
    if "no_data" in body:
        _need(rule, where, body, {"no_data", "attr"})
        attr = _attr_name(rule, f"{where}.attr", body["attr"]) if "attr" in body else None
        period = _dur(rule, f"{where}.no_data", body["no_data"])
        return Cond("no_data", attr=attr, period=period, path=where)
    if "count" in body:
        _need(rule, where, body, {"count", "within", "at_least"})
        inner = parse_condition(rule, body["count"], f"{where}.count")
        if "within" not in body:
            raise RuleError(rule, f"{where}.within", "is required (the sliding window, e.g. PT10M)")
        n = body.get("at_least")
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise RuleError(rule, f"{where}.at_least", "must be a whole number ≥ 1")
        period = _dur(rule, f"{where}.within", body["within"])
        return Cond("count", children=[inner], period=period, at_least=n, path=where)
    if "rate" in body:
        _need(rule, where, body, {"rate", "per", "above", "below"})
        attr = _attr_name(rule, f"{where}.rate", body["rate"])
        ops = [k for k in ("above", "below") if k in body]
        if len(ops) != 1:
            raise RuleError(rule, where, "a rate condition needs one of 'above' or 'below'")
        val = body[ops[0]]
        if not isinstance(val, int | float) or isinstance(val, bool):
            raise RuleError(rule, f"{where}.{ops[0]}", "must be a number (change per 'per')")
        per = _dur(rule, f"{where}.per", body.get("per", "PT1M"))
        return Cond(
            "rate", attr=attr, op=ops[0], operand=Operand(float(val)), period=per, path=where
        )
    for kind in ("inside", "outside"):
        if kind in body:
            _need(rule, where, body, {kind})
            spec = body[kind]
            w = f"{where}.{kind}"
            if not isinstance(spec, dict) or len(spec) != 1 or not set(spec) <= {"ward", "polygon"}:
                raise RuleError(
                    rule, w, "must be {ward: <wardCode>} or {polygon: <GeoJSON Polygon>}"
                )
            if "ward" in spec:
                if not isinstance(spec["ward"], str | int) or not str(spec["ward"]):
                    raise RuleError(rule, f"{w}.ward", "must be a ward code")
                return Cond(kind, ward=str(spec["ward"]), path=where)
            geom = _geometry(rule, f"{w}.polygon", spec["polygon"], ("Polygon", "MultiPolygon"))
            return Cond(kind, geometry=geom, path=where)
    if "near" in body:
        _need(rule, where, body, {"near"})
        spec = body["near"]
        w = f"{where}.near"
        if not isinstance(spec, dict) or set(spec) != {"point", "within_m"}:
            raise RuleError(rule, w, "must be {point: [lon, lat], within_m: <metres>}")
        pt = spec["point"]
        if isinstance(pt, list):
            pt = {"type": "Point", "coordinates": pt}
        geom = _geometry(rule, f"{w}.point", pt, ("Point",))
        dist = spec["within_m"]
        if not isinstance(dist, int | float) or isinstance(dist, bool) or dist <= 0:
            raise RuleError(rule, f"{w}.within_m", "must be a distance in metres > 0")
        return Cond("near", geometry=geom, distance=float(dist), path=where)
    if "schedule" in body:
        _need(rule, where, body, {"schedule"})
        spec = body["schedule"]
        w = f"{where}.schedule"
        if not isinstance(spec, dict):
            raise RuleError(rule, w, "must be {days: [mon, …], from: 'HH:MM', to: 'HH:MM'}")
        _need(rule, w, spec, {"days", "from", "to"})
        days = _days(rule, f"{w}.days", spec.get("days", list(DAYS)))
        try:
            start = hhmm(spec.get("from", "00:00"))
        except ValueError as exc:
            raise RuleError(rule, f"{w}.from", str(exc)) from None
        end = 24 * 60
        if "to" in spec:
            try:
                end = hhmm(spec["to"])
            except ValueError as exc:
                raise RuleError(rule, f"{w}.to", str(exc)) from None
        return Cond("schedule", days=days, start=start, end=end, path=where)
    if "attr" in body:
        attr = _attr_name(rule, f"{where}.attr", body["attr"])
        ops = [k for k in COMPARATORS if k in body]
        if "exists" in body:
            _need(rule, where, body, {"attr", "exists"})
            if not isinstance(body["exists"], bool):
                raise RuleError(rule, f"{where}.exists", "must be true or false")
            return Cond("exists", attr=attr, operand=Operand(body["exists"]), path=where)
        if len(ops) != 1:
            raise RuleError(
                rule, where, f"a comparison needs exactly one of {', '.join(COMPARATORS)}"
            )
        op = ops[0]
        allowed = {"attr", op}
        clear_key = CLEARS.get(op)
        if clear_key:
            allowed.add(clear_key)
        _need(rule, where, body, allowed)
        operand = _operand(rule, f"{where}.{op}", body[op])
        numeric = isinstance(operand.value, int | float) and not isinstance(operand.value, bool)
        if op not in ("equals", "not_equals") and operand.attr is None and not numeric:
            raise RuleError(rule, f"{where}.{op}", f"must be a number, got {operand.value!r}")
        clear = None
        if clear_key and clear_key in body:
            clear = _operand(rule, f"{where}.{clear_key}", body[clear_key])
            if clear.attr is None:
                cv = clear.value
                if not isinstance(cv, int | float) or isinstance(cv, bool):
                    raise RuleError(rule, f"{where}.{clear_key}", "must be a number")
                if operand.attr is None:
                    bad = cv > operand.value if clear_key == "clear_below" else cv < operand.value
                    if bad:
                        side = "at or below" if clear_key == "clear_below" else "at or above"
                        raise RuleError(
                            rule,
                            f"{where}.{clear_key}",
                            f"must be {side} the '{op}' threshold {operand.value} (hysteresis)",
                        )
        return Cond("compare", attr=attr, op=op, operand=operand, clear=clear, path=where)
    raise RuleError(
        rule,
        where,
        "unknown condition: use attr (with above/below/at_least/at_most/equals/not_equals or "
        "exists), all, any, not, no_data, count, rate, inside, outside, near or schedule",
    )


def _days(rule: str, where: str, value: Any) -> frozenset[int]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise RuleError(rule, where, f"must be a list of days ({', '.join(DAYS)})")
    out = set()
    for d in items:
        key = str(d).lower()[:3]
        if key not in DAYS:
            raise RuleError(rule, where, f"unknown day {d!r} (use {', '.join(DAYS)})")
        out.add(DAYS.index(key))
    return frozenset(out)


# -- the rule document --------------------------------------------------------------------
class _M(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Scope(_M):
    type: list[str] = Field(min_length=1)
    id_pattern: str | None = None
    ward: list[str] | None = None
    area: dict[str, Any] | None = None

    @field_validator("type", "ward", mode="before")
    @classmethod
    def _listify(cls, v: Any) -> Any:
        if isinstance(v, str):
            return [v]
        if isinstance(v, int) and not isinstance(v, bool):
            return [str(v)]
        if isinstance(v, list):
            return [str(x) if isinstance(x, int) and not isinstance(x, bool) else x for x in v]
        return v

    @field_validator("type")
    @classmethod
    def _types(cls, v: list[str]) -> list[str]:
        for t in v:
            if not re.fullmatch(r"[A-Za-z_][\w:./#\-]{0,255}", t):
                raise ValueError(f"{t!r} is not an entity type name")
        return v

    @field_validator("id_pattern")
    @classmethod
    def _regex(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as exc:
                raise ValueError(f"not a regular expression: {exc}") from None
        return v

    @field_validator("area")
    @classmethod
    def _area(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        if v is not None:
            try:
                v = validate_geometry(v, "area")
            except BadRequest as exc:
                raise ValueError(exc.detail) from None
            if v["type"] not in ("Polygon", "MultiPolygon"):
                raise ValueError("must be a GeoJSON Polygon or MultiPolygon")
        return v


class Group(_M):
    by: str = Field(min_length=1, max_length=128)
    at_least: int = Field(ge=1)


class AlarmSpec(_M):
    severity: Literal["critical", "major", "minor", "warning"] = "major"
    category: str = Field("", max_length=64)
    sub_category: str = Field("", max_length=64)
    description: str = Field("", max_length=2000)


class Channel(BaseModel):
    """A notification channel: ``type`` plus the channel's own fields."""

    model_config = ConfigDict(extra="allow")
    type: Literal["webhook", "mqtt", "email", "dashboard"]
    rate_limit: int | None = Field(None, ge=1)
    on: (
        list[Literal["raised", "updated", "escalated", "reminder", "cleared", "acknowledged"]]
        | None
    ) = None

    def model_post_init(self, _ctx: Any) -> None:
        extra = self.model_extra or {}
        need = {"webhook": "url", "mqtt": "topic", "email": "to"}.get(self.type)
        if need and not extra.get(need):
            raise ValueError(f"a {self.type} channel needs '{need}'")


class Escalation(_M):
    after: float
    severity: Literal["critical", "major", "minor", "warning"] | None = None
    notify: list[Channel] = Field(default_factory=list)

    @field_validator("after", mode="before")
    @classmethod
    def _after(cls, v: Any) -> float:
        return seconds(v)


class QuietHours(_M):
    from_: int = Field(alias="from")
    to: int
    days: list[str] | None = None
    allow: list[Literal["critical", "major", "minor", "warning"]] = Field(
        default_factory=lambda: ["critical"]  # type: ignore[arg-type,return-value,unused-ignore]
    )

    @field_validator("from_", "to", mode="before")
    @classmethod
    def _time(cls, v: Any) -> int:
        return hhmm(v)


class Bilingual(_M):
    vi: str = Field(min_length=1, max_length=2000)
    en: str = Field(min_length=1, max_length=2000)


class CapSpec(_M):
    event: Bilingual
    headline: Bilingual
    instruction: Bilingual
    urgency: Literal["Immediate", "Expected", "Future", "Past", "Unknown"] = "Expected"
    certainty: Literal["Observed", "Likely", "Possible", "Unlikely", "Unknown"] = "Observed"
    area: str = Field("", max_length=500)


class Rule(_M):
    id: str = Field(pattern=RULE_ID)
    name: str = Field(min_length=1, max_length=200)
    description: str = Field("", max_length=2000)
    enabled: bool = True
    scope: Scope
    when: dict[str, Any]
    for_: float | None = Field(None, alias="for")
    group: Group | None = None
    alarm: AlarmSpec = Field(default_factory=AlarmSpec)
    notify: list[Channel] = Field(default_factory=list)
    escalation: list[Escalation] = Field(default_factory=list)
    reminder: float | None = None
    quiet_hours: QuietHours | None = None
    cap: CapSpec | None = None

    @field_validator("for_", "reminder", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> float | None:
        return None if v is None else seconds(v)

    @field_validator("escalation")
    @classmethod
    def _ordered(cls, v: list[Escalation]) -> list[Escalation]:
        return sorted(v, key=lambda e: e.after)

    # the parsed condition and the document as given (set by parse_rule)
    _cond: Cond | None = None
    _body: dict[str, Any] | None = None

    @property
    def cond(self) -> Cond:
        assert self._cond is not None
        return self._cond

    def attrs(self) -> set[str]:
        out = self.cond.attrs()
        if self.group is not None:
            out.add(self.group.by)
        return out

    def document(self) -> dict[str, Any]:
        """The rule as a document again (for export and the API): as it was given."""
        if self._body is not None:
            return dict(self._body)
        return self.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_unset=True)


def _loc(rule: str, err: Any) -> str:
    parts = []
    for p in err["loc"]:
        if isinstance(p, int):
            parts.append(f"[{p}]")
        else:
            name = "for" if p == "for_" else ("from" if p == "from_" else str(p))
            parts.append(("." if parts else "") + name)
    return "".join(parts)


def parse_rule(body: Any, where: str = "") -> Rule:
    """A rule document → :class:`Rule`; RuleError naming the rule and the field."""
    if not isinstance(body, dict):
        raise RuleError("", "", f"{where + ': ' if where else ''}a rule must be a mapping")
    rid: str = body["id"] if isinstance(body.get("id"), str) else ""
    raw = dict(body)
    # the channels' own documents are kept as given (extra members)
    try:
        rule = Rule.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        msg = str(err["msg"]).removeprefix("Value error, ")
        got = err.get("input")
        shown = (
            f" (got {got!r})"
            if isinstance(got, str | int | float) and len(repr(got)) < 80 and "got" not in msg
            else ""
        )
        if err["type"] == "missing":
            msg = "is required"
        elif err["type"] == "extra_forbidden":
            msg = "unknown member"
        raise RuleError(rid, _loc(rid, err), msg + shown) from None
    rule._cond = parse_condition(rule.id, body["when"])
    rule._body = raw
    return rule


def read_rules(text: str, source: str = "rules.yaml") -> list[Rule]:
    """The rules of a YAML (or JSON) file: ``rules: [...]`` or a bare list; every rule is
    checked before any is returned (BadRequest naming the file, the rule and the field)."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        first = str(exc).replace("\n", " ")
        raise BadRequest(f"{source}: not valid YAML: {first}") from None
    if isinstance(doc, dict) and "rules" in doc:
        doc = doc["rules"]
    if not isinstance(doc, list):
        raise BadRequest(f"{source}: expected a list of rules (or a mapping with 'rules')")
    rules: list[Rule] = []
    seen: set[str] = set()
    for n, body in enumerate(doc):
        try:
            rule = parse_rule(body)
        except BadRequest as exc:
            raise BadRequest(f"{source}: rules[{n}]: {exc.detail}", **exc.extra) from None
        if rule.id in seen:
            raise BadRequest(f"{source}: rules[{n}]: rule '{rule.id}' is given twice", rule=rule.id)
        seen.add(rule.id)
        rules.append(rule)
    return rules


def read_rules_file(path: Path) -> list[Rule]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BadRequest(f"{path}: cannot read: {exc.strerror}") from None
    return read_rules(text, str(path))


def dump_rules(rules: Iterable[Rule]) -> str:
    return yaml.safe_dump(
        {"rules": [r.document() for r in rules]}, allow_unicode=True, sort_keys=False
    )
