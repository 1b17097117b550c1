"""Backtest: a rule evaluated over stored history, listing when it would have fired.

The entities in the rule's scope are replayed from ``hub_history`` in time order: each
attribute instance updates the entity's view (static attributes without history in the
interval come from the entity as it is now) and the rule is evaluated, with ``for:``
durations ending at their due time and ``no_data`` checked on a regular grid.  Nothing
is written: the same :class:`~sencity.rules.evaluator.Evaluator` as the live engine
runs on fresh in-memory state.
"""

from __future__ import annotations

import copy
import heapq
import json
from dataclasses import dataclass, field
from datetime import tzinfo
from typing import TYPE_CHECKING, Any

from sencity.errors import BadRequest
from sencity.hub.store import Query
from sencity.rules.alarms import iso
from sencity.rules.conditions import Clock, View
from sencity.rules.evaluator import GROUP, Evaluator, Transition
from sencity.rules.model import Rule

if TYPE_CHECKING:
    from collections.abc import Callable

    from sencity.hub.api import HubService
    from sencity.rules.engine import Views

CHUNK = 500
MAX_TICKS = 20_000


@dataclass
class Firing:
    originator: str
    raised: float
    cleared: float | None = None
    values: dict[str, Any] = field(default_factory=dict)

    def out(self) -> dict[str, Any]:
        d: dict[str, Any] = {"originator": self.originator, "raisedAt": iso(self.raised)}
        d["clearedAt"] = iso(self.cleared) if self.cleared is not None else None
        if self.cleared is not None:
            d["durationSeconds"] = round(self.cleared - self.raised, 3)
        if self.values:
            d["values"] = self.values
        return d


def backtest(
    hub: HubService,
    views: Views,
    tenant: str,
    rule: Rule,
    lo: float,
    hi: float,
    max_instances: int,
    tz: tzinfo,
    wards: Callable[[str], Any],
    entity_ids: list[str] | None = None,
) -> dict[str, Any]:
    """When ``rule`` would have raised and cleared between ``lo`` and ``hi`` (epoch s)."""
    if hi <= lo:
        raise BadRequest("'to' must be later than 'from'")
    ctx = views.ctx
    types = [ctx.expand(t) for t in rule.scope.type]
    q = Query(
        types=[[t] for t in types],
        ids=entity_ids,
        id_pattern=rule.scope.id_pattern,
        limit=100_000,
    )
    current = {e.id: views.of(e) for e in hub.hub.query(tenant, q)[0]}
    store = hub.hub.store
    needed = {ctx.expand(a) for a in rule.attrs()} | {ctx.expand("location")}
    with store.transaction(write=False) as tx:
        rows = tx.execute("SELECT tid, id FROM hub_tentities WHERE tenant = ?", [tenant])
        tids = {r["tid"]: r["id"] for r in rows if r["id"] in current}
        series: dict[int, tuple[str, str]] = {}
        tid_list = list(tids)
        for i in range(0, len(tid_list), CHUNK):
            chunk = tid_list[i : i + CHUNK]
            for r in tx.execute(
                f"SELECT sid, tid, attr FROM hub_tseries WHERE ds = '' AND tid IN "
                f"({','.join('?' * len(chunk))})",
                chunk,
            ):
                if r["attr"] in needed:
                    series[r["sid"]] = (tids[r["tid"]], views.short(r["attr"]))
        events: list[tuple[int, int, int, Any]] = []
        sids = list(series)
        lo_us, hi_us = int(lo * 1e6), int(hi * 1e6)
        for i in range(0, len(sids), CHUNK):
            chunk = sids[i : i + CHUNK]
            got = tx.execute(
                "SELECT sid, ts, iid, val FROM hub_history WHERE deleted = 0 AND ts >= ? "
                f"AND ts < ? AND sid IN ({','.join('?' * len(chunk))}) ORDER BY ts LIMIT ?",
                [lo_us, hi_us, *chunk, max_instances + 1 - len(events)],
            )
            events += [(r["ts"], r["iid"], r["sid"], r["val"]) for r in got]
            if len(events) > max_instances:
                raise BadRequest(
                    f"the backtest would read more than {max_instances} history instances "
                    "(rules.backtest_max_instances): narrow 'from'/'to' or give 'entities'"
                )
    events.sort()
    # views start from the entities as they are now, without the attributes replayed
    replayed: dict[str, set[str]] = {}
    for _, _, sid, _ in events:
        eid, name = series[sid]
        replayed.setdefault(eid, set()).add(name)
    state: dict[str, View] = {}
    for eid, v in current.items():
        view = copy.deepcopy(v)
        for name in replayed.get(eid, ()):
            view.values.pop(name, None)
            view.times.pop(name, None)
        view.updated = lo
        if "location" in replayed.get(eid, ()):
            view.location = None
        state[eid] = view
    ev = Evaluator(rule)
    firings: list[Firing] = []
    open_: dict[str, Firing] = {}
    evaluations = 0

    def record(trs: list[Transition]) -> None:
        for tr in trs:
            key = tr.key
            if tr.kind == "raise":
                vals: dict[str, Any] = {}
                if tr.view is not None:
                    vals = {
                        a: tr.view.values[a]
                        for a in sorted(rule.attrs())
                        if isinstance(tr.view.values.get(a), str | int | float | bool)
                    }
                else:
                    vals = {"members": tr.members or []}
                f = Firing(_origin(rule, key, tenant), tr.at, None, vals)
                firings.append(f)
                open_[key] = f
            else:
                f2 = open_.pop(key, None)
                if f2 is not None:
                    f2.cleared = tr.at

    def lookup(ids: Any) -> dict[str, View]:
        return {i: state[i] for i in ids if i in state}

    ticks: list[float] = []
    if ev.periodic:
        step = max(ev.scan_every, (hi - lo) / MAX_TICKS)
        n = min(MAX_TICKS, int((hi - lo) / step))
        ticks = [lo + step * (k + 1) for k in range(n)]
    heapq.heapify(ticks)

    def until(t: float) -> None:
        nonlocal evaluations
        while True:
            nd = ev.next_due()
            nt = ticks[0] if ticks else None
            cands = [x for x in (nd, nt) if x is not None and x <= t]
            if not cands:
                return
            at = min(cands)
            clock = Clock(at, tz, wards, update=False)
            if nt is not None and at == nt:
                heapq.heappop(ticks)
                for view in state.values():
                    evaluations += 1
                    record(ev.entity(view, clock))
            else:
                record(ev.timers(clock, lookup))

    for ts, _, sid, val in events:
        t = ts / 1e6
        until(t)
        eid, name = series[sid]
        view = state[eid]
        value = json.loads(val) if val is not None else None
        if name == "location":
            view.location = value if isinstance(value, dict) else None
        view.values[name] = value
        view.times[name] = t
        view.updated = t
        evaluations += 1
        record(ev.entity(view, Clock(t, tz, wards, update=True)))
    until(hi)
    return {
        "rule": rule.id,
        "from": iso(lo),
        "to": iso(hi),
        "entities": len(state),
        "instances": len(events),
        "evaluations": evaluations,
        "firings": [f.out() for f in firings],
        "stillActive": sorted(_origin(rule, k, tenant) for k in open_),
    }


def _origin(rule: Rule, key: str, tenant: str) -> str:
    from sencity.rules.engine import originator_of

    return originator_of(rule, key, tenant)[0] if key.startswith(GROUP) else key
