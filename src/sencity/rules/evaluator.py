"""One rule's evaluation over a stream of entity views, shared by the live engine and the
backtest: scope checks, per-entity state machines, ``for:`` timers and cross-entity
groups.  It returns transitions; what to do with them (write alarms, list firings) is
the caller's business."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from shapely.geometry import shape  # type: ignore[import-untyped]

from sencity.rules.conditions import Clock, Machine, View, advance, compile_condition, due
from sencity.rules.model import Rule

GROUP = "group:"
_IDLE = Machine()  # read-only: the state of an entity the rule has nothing on


@dataclass
class Transition:
    kind: str  # raise | clear
    key: str  # the entity id, or GROUP + the group's value
    at: float
    view: View | None  # the entity (None for a group)
    members: list[str] | None = None  # a group's entities that hold the condition


class Evaluator:
    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        self.hold = rule.for_
        self.id_re = re.compile(rule.scope.id_pattern) if rule.scope.id_pattern else None
        self.wards = set(rule.scope.ward) if rule.scope.ward else None
        self.area = shape(rule.scope.area) if rule.scope.area else None
        self.machines: dict[str, Machine] = {}
        self.dues: dict[str, float] = {}
        self.groups: dict[str, set[str]] = {}
        self.member_of: dict[str, str] = {}
        self.dirty: set[str] = set()
        self.check = compile_condition(rule.cond)
        #: attributes whose change may change the truth; empty: depends on time too
        self.periodic = any(c.kind in ("no_data", "schedule", "count") for c in rule.cond.walk())
        self.reads: set[str] = set() if self.periodic else set(rule.attrs())
        if any(c.kind in ("inside", "outside", "near") for c in rule.cond.walk()):
            self.reads.add("location")
        if self.reads and self.area is not None:
            self.reads.add("location")
        #: how often a rule that depends on time is evaluated without changes (seconds)
        self.scan_every = 60.0
        for c in rule.cond.walk():
            if c.kind in ("no_data", "count"):
                self.scan_every = min(self.scan_every, max(1.0, c.period / 4))
        self.group = rule.group
        self.scoped = self.id_re is not None or self.wards is not None or self.area is not None
        #: scoped by ward only: the engine's index (by ward) has checked the scope
        self.ward_only = self.wards is not None and self.id_re is None and self.area is None
        #: no windows or rates: a false condition of an entity without state changes nothing
        self.stateless = self.group is None and not any(
            c.kind in ("count", "rate") for c in rule.cond.walk()
        )

    # -- scope -------------------------------------------------------------------------
    def in_scope(self, view: View) -> bool:
        if not self.scoped:
            return True
        if self.id_re is not None and not self.id_re.search(view.id):
            return False
        if self.wards is not None and str(view.values.get("wardCode")) not in self.wards:
            return False
        if self.area is not None:
            if not view.location:
                return False
            try:
                if not self.area.intersects(shape(view.location)):
                    return False
            except Exception:
                return False
        return True

    # -- state -------------------------------------------------------------------------
    def machine(self, key: str) -> Machine:
        m = self.machines.get(key)
        if m is None:
            m = Machine()
        return m

    def _keep(self, key: str, m: Machine) -> None:
        if not m.dirty and not m.active and m.since is None and not m.hits and not m.prev:
            if key in self.machines:
                del self.machines[key]
            return  # the common case: nothing to remember
        if m.dirty:
            self.dirty.add(key)
            m.dirty = False
        if m.worth_keeping() or m.prev:
            self.machines[key] = m
        else:
            self.machines.pop(key, None)
        d = due(m, self.hold if not self.group or key.startswith(GROUP) else None)
        if d is None:
            self.dues.pop(key, None)
        else:
            self.dues[key] = d

    def restore(self, key: str, m: Machine) -> None:
        self.machines[key] = m
        d = due(m, self.hold if not self.rule.group or key.startswith(GROUP) else None)
        if d is not None:
            self.dues[key] = d
        if self.rule.group is not None and not key.startswith(GROUP) and m.active:
            pass  # membership comes back with the group scan at start-up

    # -- evaluation --------------------------------------------------------------------
    def entity(self, view: View, clock: Clock, indexed: bool = False) -> list[Transition]:
        """Evaluate the rule for one entity's new state (``indexed``: found through the
        engine's index, whose ward matched)."""
        if self.scoped and not (indexed and self.ward_only) and not self.in_scope(view):
            return []
        m = self.machines.get(view.id)
        if m is None:
            if self.stateless and not self.check(view, _IDLE, clock):
                return []  # the common case: nothing held, nothing holds
            m = Machine()
        truth = self.check(view, m, clock)
        g = self.group
        if g is None:
            tr = advance(m, truth, clock.now, self.hold)
            self._keep(view.id, m)
            return [Transition(tr, view.id, clock.now, view)] if tr else []
        advance(m, truth, clock.now, None)  # a member: hysteresis, no duration
        self._keep(view.id, m)
        value = view.values.get(g.by)
        gkey = None if value is None else str(value)
        touched = set()
        old = self.member_of.get(view.id)
        if old is not None and (not m.active or old != gkey):
            self.groups.get(old, set()).discard(view.id)
            self.member_of.pop(view.id, None)
            touched.add(old)
        if m.active and gkey is not None:
            self.groups.setdefault(gkey, set()).add(view.id)
            self.member_of[view.id] = gkey
            touched.add(gkey)
        out = []
        for gk in sorted(touched):
            out += self._group(gk, clock.now)
        return out

    def _group(self, gkey: str, now: float) -> list[Transition]:
        g = self.rule.group
        assert g is not None
        members = self.groups.get(gkey, set())
        key = GROUP + gkey
        m = self.machine(key)
        tr = advance(m, len(members) >= g.at_least, now, self.hold)
        self._keep(key, m)
        if not members:
            self.groups.pop(gkey, None)
        return [Transition(tr, key, now, None, sorted(members))] if tr else []

    def timers(
        self,
        clock: Clock,
        views: Callable[[Iterable[str]], dict[str, View]],
        local: Callable[[Clock, View], Clock | None] | None = None,
    ) -> list[Transition]:
        """Evaluate again the keys whose ``for:`` duration has ended by ``clock.now``
        (``local``: the clock to judge an entity's state by, e.g. in its data's time;
        None: not now — the state has changes waiting to be evaluated in order)."""
        ready = [k for k, t in self.dues.items() if t <= clock.now]
        if not ready:
            return []
        out: list[Transition] = []
        ents = [k for k in ready if not k.startswith(GROUP)]
        found = views(ents) if ents else {}
        for key in ready:
            if key.startswith(GROUP):
                out += self._group(key[len(GROUP) :], clock.now)
                continue
            view = found.get(key)
            if view is None:  # the entity is gone: forget its pending duration
                m = self.machine(key)
                m.since, m.dirty = None, True
                self._keep(key, m)
                continue
            at = local(clock, view) if local is not None else clock
            if at is not None:
                out += self.entity(view, at)
        return out

    def next_due(self) -> float | None:
        return min(self.dues.values()) if self.dues else None

    def take_dirty(self) -> list[tuple[str, dict[str, Any] | None]]:
        """(key, state or None to delete) of the machines changed since the last call."""
        out = []
        for key in self.dirty:
            m = self.machines.get(key)
            out.append((key, m.to_json() if m is not None and m.worth_keeping() else None))
        self.dirty.clear()
        return out
