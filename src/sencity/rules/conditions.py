"""Condition evaluation, pure: no store, no bus.

The engine (live) and the backtest (over history) both feed :func:`evaluate` an
entity :class:`View` (its current values by short attribute name), the (rule, entity)
:class:`Machine` (hysteresis, pending ``for:`` durations, window hits, last values for
rates) and a :class:`Clock` (now, the tenant's time zone, ward polygons); then
:func:`advance` turns the condition's truth into a transition: ``"raise"``,
``"clear"`` or nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any

import shapely  # type: ignore[import-untyped]
from shapely.geometry import shape  # type: ignore[import-untyped]

from sencity.hub import geo
from sencity.rules.model import Cond


@dataclass
class View:
    """An entity as conditions see it."""

    id: str
    type: str  # short name of its first type
    values: dict[str, Any]  # short attribute name -> value of the default instance
    times: dict[str, float] = field(default_factory=dict)  # short name -> epoch s observed
    updated: float = 0.0  # epoch s of the entity's last change (written in the hub)
    location: dict[str, Any] | None = None
    observed: float = 0.0  # latest ``observedAt`` its last write changed (0: none)
    latest: float = 0.0  # latest ``observedAt`` of all its attributes (0: none)


@dataclass
class Clock:
    now: float  # epoch seconds
    tz: tzinfo
    wards: Callable[[str], Any] = lambda code: None  # ward code -> shapely geometry | None
    update: bool = True  # evaluation driven by a change (counts in windows, rates)


@dataclass
class Machine:
    """The state of one rule for one entity (or group): what must outlive a restart."""

    active: bool = False
    since: float | None = None  # the condition holds since then; waiting for ``for:``
    hits: dict[str, list[float]] = field(default_factory=dict)  # count windows, by path
    prev: dict[str, list[float]] = field(default_factory=dict)  # rate: attr -> [t, value]
    rates: dict[str, bool] = field(default_factory=dict)  # rate: last result, by path
    dirty: bool = False

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"active": self.active}
        if self.since is not None:
            out["since"] = self.since
        if self.hits:
            out["hits"] = self.hits
        if self.prev:
            out["prev"] = self.prev
        if self.rates:
            out["rates"] = self.rates
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Machine:
        return cls(
            active=bool(data.get("active")),
            since=data.get("since"),
            hits={k: list(v) for k, v in (data.get("hits") or {}).items()},
            prev={k: list(v) for k, v in (data.get("prev") or {}).items()},
            rates=dict(data.get("rates") or {}),
        )

    def worth_keeping(self) -> bool:
        return self.active or self.since is not None or any(self.hits.values())


# -- geometry helpers, cached per condition -----------------------------------------------
_shapes: dict[int, Any] = {}


def _shape_of(cond: Cond) -> Any:
    key = id(cond)
    got = _shapes.get(key)
    if got is None:
        got = shape(cond.geometry)
        shapely.prepare(got)
        if len(_shapes) > 10_000:
            _shapes.clear()
        _shapes[key] = got
    return got


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def _operand(op: Any, view: View) -> Any:
    return view.values.get(op.attr) if op.attr else op.value


def _compare(c: Cond, view: View, active: bool) -> bool:
    v = view.values.get(c.attr or "")
    if v is None:
        return False
    op = c.op
    assert c.operand is not None
    ref = _operand(c.operand, view)
    if op == "equals":
        return bool(v == ref)
    if op == "not_equals":
        return bool(v != ref)
    x = _number(v)
    if x is None:
        return False
    if active and c.clear is not None:
        cl = _number(_operand(c.clear, view))
        if cl is not None:  # hysteresis: stays true until past the clear threshold
            return x >= cl if op in ("above", "at_least") else x <= cl
    t = _number(ref)
    if t is None:
        return False
    if op == "above":
        return x > t
    if op == "at_least":
        return x >= t
    if op == "below":
        return x < t
    return x <= t  # at_most


def _located(view: View) -> Any:
    if not view.location:
        return None
    try:
        return shape(view.location)
    except Exception:
        return None


def evaluate(c: Cond, view: View, m: Machine, clock: Clock) -> bool:
    """The truth of condition ``c`` for ``view`` now (updating ``m``'s windows)."""
    k = c.kind
    if k == "compare":
        return _compare(c, view, m.active)
    if k == "all":
        results = [evaluate(x, view, m, clock) for x in c.children]  # every window counts
        return all(results)
    if k == "any":
        results = [evaluate(x, view, m, clock) for x in c.children]
        return any(results)
    if k == "not":
        return not evaluate(c.children[0], view, m, clock)
    if k == "exists":
        assert c.operand is not None
        return (c.attr in view.values) == bool(c.operand.value)
    if k == "no_data":
        last = view.times.get(c.attr, view.updated) if c.attr else view.updated
        if c.attr and c.attr not in view.values:
            last = view.updated
        return clock.now - last >= c.period
    if k == "count":
        hits = m.hits.get(c.path, [])
        inner = evaluate(c.children[0], view, m, clock)
        horizon = clock.now - c.period
        kept = [t for t in hits if t > horizon]
        if clock.update and inner:
            kept.append(clock.now)
        if kept != hits:
            if kept:
                m.hits[c.path] = kept
            else:
                m.hits.pop(c.path, None)
            m.dirty = True
        return len(kept) >= c.at_least
    if k == "rate":
        attr = c.attr or ""
        x = _number(view.values.get(attr))
        t = view.times.get(attr, view.updated)
        last = m.rates.get(c.path, False)
        if x is None:
            return last
        prev = m.prev.get(attr)
        m.prev[attr] = [t, x]
        if prev is None or t <= prev[0]:
            return last
        assert c.operand is not None
        rate = (x - prev[1]) / (t - prev[0]) * c.period
        limit = float(c.operand.value)
        got = rate > limit if c.op == "above" else rate < limit
        if got != last:
            m.rates[c.path] = got
        return got
    if k in ("inside", "outside"):
        where = _located(view)
        if where is None:
            return False
        area = clock.wards(c.ward) if c.ward is not None else _shape_of(c)
        if area is None:
            return False
        inside = bool(area.intersects(where))
        return inside if k == "inside" else not inside
    if k == "near":
        if not view.location or c.geometry is None:
            return False
        try:
            return geo.distance_m(view.location, c.geometry) <= c.distance
        except Exception:
            return False
    if k == "schedule":
        local = datetime.fromtimestamp(clock.now, clock.tz)
        minute = local.hour * 60 + local.minute
        if c.start == c.end:  # the whole day
            return local.weekday() in c.days
        if c.start < c.end:
            return local.weekday() in c.days and c.start <= minute < c.end
        # over midnight: the part after midnight belongs to the day before
        if minute >= c.start:
            return local.weekday() in c.days
        return minute < c.end and (local.weekday() - 1) % 7 in c.days
    raise ValueError(f"unknown condition kind {k}")


def advance(m: Machine, truth: bool, now: float, hold: float | None) -> str | None:
    """The transition of machine ``m`` when its condition is ``truth`` at ``now``;
    ``hold`` is the rule's ``for:`` (seconds the condition must hold before it raises)."""
    if truth:
        if m.active:
            return None
        if hold:
            if m.since is None:
                m.since = now
                m.dirty = True
                if hold > 0:
                    return None
            if now - m.since < hold:
                return None
        m.active, m.since, m.dirty = True, None, True
        return "raise"
    if m.since is not None:
        m.since, m.dirty = None, True
    if m.active:
        m.active, m.dirty = False, True
        return "clear"
    return None


def due(m: Machine, hold: float | None) -> float | None:
    """When a pending ``for:`` duration ends (to evaluate again then), else None."""
    if hold and m.since is not None and not m.active:
        return m.since + hold
    return None


def in_quiet_hours(start: int, end: int, days: frozenset[int] | None, when: datetime) -> bool:
    """Is local time ``when`` within HH:MM ``start``..``end`` (minutes; may span midnight)?"""
    minute = when.hour * 60 + when.minute
    day = when.weekday()
    if start == end:  # the whole day
        return days is None or day in days
    if start < end:
        return (days is None or day in days) and start <= minute < end
    if minute >= start:
        return days is None or day in days
    return minute < end and (days is None or (day - 1) % 7 in days)


# -- compiled conditions (the engine's hot path) ------------------------------------------
Check = Callable[[View, Machine, Clock], bool]
_STATEFUL = ("count", "rate")
_OPS: dict[str, Callable[[float, float], bool]] = {
    "above": lambda x, t: x > t,
    "at_least": lambda x, t: x >= t,
    "below": lambda x, t: x < t,
    "at_most": lambda x, t: x <= t,
}


def _num(v: Any) -> float | None:
    t = type(v)
    if t is float:
        return v if math.isfinite(v) else None
    if t is int:
        return float(v)
    return None


def compile_condition(c: Cond) -> Check:
    """``evaluate`` for ``c`` as a closure: the same results, faster for the common
    kinds (constant comparisons and their combinations)."""
    constant = (
        c.kind == "compare"
        and c.op in _OPS
        and c.operand is not None
        and c.operand.attr is None
        and (c.clear is None or c.clear.attr is None)
    )
    if constant:
        assert c.operand is not None and c.op is not None
        attr, test = c.attr or "", _OPS[c.op]
        limit = float(c.operand.value)
        clear = float(c.clear.value) if c.clear is not None else None
        back = _OPS["at_least"] if c.op in ("above", "at_least") else _OPS["at_most"]

        def compare(view: View, m: Machine, clock: Clock) -> bool:
            x = _num(view.values.get(attr))
            if x is None:
                return False
            if clear is not None and m.active:
                return back(x, clear)
            return test(x, limit)

        return compare
    if c.kind in ("all", "any"):
        parts = [compile_condition(x) for x in c.children]
        stateful = any(x.kind in _STATEFUL for x in c.walk())
        if c.kind == "all":
            if stateful:
                return lambda v, m, k: all([p(v, m, k) for p in parts])
            return lambda v, m, k: all(p(v, m, k) for p in parts)
        if stateful:
            return lambda v, m, k: any([p(v, m, k) for p in parts])
        return lambda v, m, k: any(p(v, m, k) for p in parts)
    if c.kind == "not":
        inner = compile_condition(c.children[0])
        return lambda v, m, k: not inner(v, m, k)
    return lambda v, m, k: evaluate(c, v, m, k)
