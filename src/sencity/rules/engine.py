"""The live rules engine, kept in ``platform.state["rules"].engine``.

Change events (``hub.entity.*``) of entity types some rule watches are gathered for
``rules.batch_wait`` seconds, the changed entities read in one query per tenant, and
only the rules indexed under their types evaluated.  Transitions raise or clear alarms;
the state machines that changed are written to ``rules_state`` once per batch.  A timer
runs every ``rules.tick_seconds``: ``for:`` durations that ended, ``no_data`` scans and
due escalations and reminders.

With PostgreSQL, one process evaluates (an advisory lock, as for the MQTT session); the
others stand by and take over, with the stored state, when it goes away.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, tzinfo
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from shapely.geometry import shape  # type: ignore[import-untyped]

from sencity.core.bus import Event
from sencity.hub.model import VALUE_KEY, Entity
from sencity.hub.store import Query
from sencity.ingest.service import LEASE_CHECK, Leadership
from sencity.rules.alarms import AlarmService, Change, iso
from sencity.rules.conditions import Clock, Machine, View, advance, evaluate
from sencity.rules.evaluator import GROUP, Evaluator, Transition
from sencity.rules.model import Rule
from sencity.rules.store import RulesStore

if TYPE_CHECKING:
    from sencity.rules.service import RulesService

log = logging.getLogger("sencity.rules")
CHANGED = "rules.changed"
CHUNK = 500
SCAN_LIMIT = 100_000
WARD_TTL = 300.0
FRESH_MAX = 200_000
RETRY_MAX = 10_000  # alarm changes kept while the store fails


_EPOCHS: dict[str, float] = {}


def _epoch(text: str | None) -> float:
    if not text:
        return 0.0
    got = _EPOCHS.get(text)
    if got is not None:
        return got
    try:
        got = datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        got = 0.0
    if len(_EPOCHS) > 50_000:
        _EPOCHS.clear()
    _EPOCHS[text] = got
    return got


def data_time(view: View, wall: float) -> float:
    """The time a state of an entity is judged at: the latest ``observedAt`` among the
    attributes its write changed (a replay's or a late sensor's own time), else when it
    was written, else ``wall``."""
    return view.observed or view.updated or wall


def local_clock(clock: Clock, view: View) -> Clock:
    """``clock`` (the wall clock of a timer run) moved back by how far the entity's latest
    observation is behind its last write: for live data the same clock; for a replay the
    data's own time, so a timer never ends a ``for:`` the data has not shown to pass."""
    if not view.latest or not view.updated:
        return clock
    lag = view.updated - view.latest
    if lag < 1.0:
        return clock
    return Clock(clock.now - lag, clock.tz, clock.wards, clock.update)


class Views:
    """Entities → :class:`View` with the short names rules use."""

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx
        self._short: dict[str, str] = {}
        #: attributes whose times conditions read (no_data, rate); None: all of them
        self.timed: set[str] | None = None

    def short(self, iri: str) -> str:
        s = self._short.get(iri)
        if s is None:
            s = self._short[iri] = self.ctx.compact(iri)
        return s

    def of(self, e: Entity) -> View:
        values: dict[str, Any] = {}
        times: dict[str, float] = {}
        location = None
        observed = latest = ""
        written = e.modified_at
        for iri, insts in e.attrs.items():
            inst = insts[0]
            if len(insts) > 1:
                inst = next((i for i in insts if "datasetId" not in i), insts[0])
            name = self.short(iri)
            kind = inst.get("type", "Property")
            value = inst.get(VALUE_KEY.get(kind, "value"))
            if kind == "GeoProperty" and name == "location":
                location = value
            values[name] = value
            seen = inst.get("observedAt")
            if seen and seen != latest and (not latest or _epoch(seen) > _epoch(latest)):
                latest = seen
            # the latest observedAt of what the last write changed: the state's time
            if (
                seen
                and seen != observed
                and inst.get("modifiedAt") == written
                and (not observed or _epoch(seen) > _epoch(observed))
            ):
                observed = seen
            if self.timed is None or name in self.timed:
                t = seen or inst.get("modifiedAt")
                if t:
                    times[name] = _epoch(t)
        return View(
            e.id,
            self.short(e.types[0]) if e.types else "",
            values,
            times,
            _epoch(e.modified_at),
            location if isinstance(location, dict) else None,
            _epoch(observed),
            _epoch(latest),
        )


ANY = "*"


class TypeIndex:
    """The rules of one entity type, indexed by ward code (rules scoped to wards) and by
    the attributes they read: a change evaluates only the rules of its ward (and the
    unscoped ones) that read an attribute it changed (and those that depend on time)."""

    def __init__(self) -> None:
        self.full: dict[str, list[Evaluator]] = {}  # ward or ANY -> rules
        self.keyed: dict[tuple[str, str], list[Evaluator]] = {}  # (ward|ANY, attr|ANY)

    def add(self, ev: Evaluator) -> None:
        attrs = ev.reads or {ANY}
        for w in ev.wards or (ANY,):
            self.full.setdefault(w, []).append(ev)
            for a in attrs:
                self.keyed.setdefault((w, a), []).append(ev)

    def rules(self, ward: Any, changed: set[str] | None) -> list[Evaluator]:
        wards = (ANY,) if ward is None else (ANY, str(ward))
        if changed is None:
            return [ev for w in wards for ev in self.full.get(w, ())]
        out: dict[int, Evaluator] = {}
        for w in wards:
            if w not in self.full:
                continue
            for a in (ANY, *changed):
                for ev in self.keyed.get((w, a), ()):
                    out[id(ev)] = ev
        return list(out.values())


def originator_of(rule: Rule, key: str, tenant: str) -> tuple[str, str]:
    """(alertSource id, its type) of a transition key."""
    if not key.startswith(GROUP):
        return key, ""
    value = key[len(GROUP) :]
    assert rule.group is not None
    if rule.group.by == "wardCode":
        return f"urn:ngsi-ld:AdministrativeArea:{tenant}:{value}", "AdministrativeArea"
    return f"urn:sencity:group:{tenant}:{rule.group.by}:{value}", "Group"


class Engine:
    def __init__(self, svc: RulesService) -> None:
        self.svc = svc
        self.settings = svc.settings
        self.hub = svc.hub
        self.rstore: RulesStore = svc.rstore
        self.alarms: AlarmService = svc.alarms
        self.ctx = self.hub.resolver.resolve(None)
        self.views = Views(self.ctx)
        self.evaluators: dict[str, dict[str, Evaluator]] = {}  # tenant -> rule id -> …
        self.by_type: dict[str, dict[str, TypeIndex]] = {}  # tenant -> type IRI -> rules
        self.pending: dict[str, set[str]] = {}
        self.wake = asyncio.Event()
        self.leading = False
        self.stale: set[str | None] = set()  # tenants whose rules must be read again
        #: rules changes seen per tenant: a change during a read of its rules keeps it stale
        self.stale_marks: dict[str | None, int] = {}
        self._tz: dict[str, tzinfo] = {}
        self._wards: dict[str, tuple[float, dict[str, Any]]] = {}
        self._scanned: dict[tuple[str, str], float] = {}
        self.evaluations = 0
        self.batches = 0
        self.transitions = 0
        self.ticks = 0
        self._changes: dict[str, list[Change]] = {}
        #: the states written by this process, in order, kept by the commit hook: each
        #: is evaluated (several readings of one entity in one batch, e.g. a replay)
        self._fresh: dict[tuple[str, str], list[Entity]] = {}
        self._fresh_n = 0
        self._fresh_lock = threading.Lock()
        #: states kept by the hook whose change event has not come yet (each write has
        #: its hook call before its event); an event without one is another process's
        #: write (PostgreSQL) or one the hook did not keep: the entity is read back
        self._credit: dict[tuple[str, str], int] = {}
        self._foreign: set[tuple[str, str]] = set()
        self.hub.hub.commit_hooks.append(self.committed)
        self.seen: dict[str, str] = {}  # entity id -> modifiedAt when last evaluated
        self.last_latency = 0.0
        self._stored: dict[tuple[str, str], dict[str, Machine]] = {}
        #: called with (tenant, view) for each entity state evaluated (tests, tools)
        self.observers: list[Callable[[str, View], None]] = []

    # -- rules --------------------------------------------------------------------------
    def load(self, tenant: str | None = None) -> None:
        """Read the rules (of ``tenant``, or all) and index them; keep machines of rules
        that remain; group rules scan their scope once to know their members."""
        found = self.rstore.all_rules(tenant)
        tenants = [tenant] if tenant is not None else sorted(set(found) | set(self.evaluators))
        fresh: list[tuple[str, Evaluator]] = []
        for t in tenants:
            old = self.evaluators.get(t, {})
            new: dict[str, Evaluator] = {}
            for rule in found.get(t, []):
                if not rule.enabled:
                    continue
                prev = old.get(rule.id)
                if prev is not None and prev.rule.document() == rule.document():
                    new[rule.id] = prev
                    continue
                ev = Evaluator(rule)
                if prev is not None:
                    ev.machines, ev.dues = prev.machines, prev.dues
                new[rule.id] = ev
                fresh.append((t, ev))
            self.evaluators[t] = new
            index: dict[str, TypeIndex] = {}
            for ev in new.values():
                for ty in ev.rule.scope.type:
                    index.setdefault(self.ctx.expand(ty), TypeIndex()).add(ev)
            self.by_type[t] = index
        self.views.timed = {
            c.attr
            for evs in self.evaluators.values()
            for ev in evs.values()
            for c in ev.rule.cond.walk()
            if c.kind in ("no_data", "rate") and c.attr
        }
        for t, ev in fresh:
            if prev_state := self._stored.get((t, ev.rule.id)):
                for key, m in prev_state.items():
                    ev.restore(key, m)
            if ev.rule.group is not None:
                self._scan_group(t, ev)

    def restore_state(self) -> None:
        stored: dict[tuple[str, str], dict[str, Machine]] = {}
        for r in self.rstore.load_state():
            stored.setdefault((r["tenant"], r["rule_id"]), {})[r["key"]] = Machine.from_json(
                json.loads(r["state"])
            )
        self._stored = stored

    def _scan_group(self, tenant: str, ev: Evaluator) -> None:
        """Members of a group rule from the entities as they are (no alarm writes: the
        group's own machine, restored from the store, says whether it is active)."""
        clock = self.clock(tenant, time.time(), update=False)
        for view in self.scope_views(tenant, ev.rule.scope.type):
            if not ev.in_scope(view):
                continue
            m = ev.machine(view.id)
            g = ev.rule.group
            assert g is not None
            advance(m, evaluate(ev.rule.cond, view, m, clock), clock.now, None)
            ev._keep(view.id, m)
            value = view.values.get(g.by)
            if m.active and value is not None:
                ev.groups.setdefault(str(value), set()).add(view.id)
                ev.member_of[view.id] = str(value)

    # -- time zones and wards -----------------------------------------------------------
    def tz(self, tenant: str) -> tzinfo:
        got = self._tz.get(tenant)
        if got is None:
            try:
                got = ZoneInfo(self.rstore.store.get_tenant(tenant)["timezone"])
            except Exception:
                got = UTC
            self._tz[tenant] = got
        return got

    def ward(self, tenant: str, code: str) -> Any:
        at, shapes = self._wards.get(tenant, (0.0, {}))
        if time.monotonic() - at > WARD_TTL:
            shapes = {}
            q = Query(types=[[self.ctx.expand("AdministrativeArea")]], limit=SCAN_LIMIT)
            for e in self.hub.hub.query(tenant, q)[0]:
                v = self.views.of(e)
                if v.location and v.values.get("wardCode") is not None:
                    with contextlib.suppress(Exception):
                        shapes[str(v.values["wardCode"])] = shape(v.location)
            self._wards[tenant] = (time.monotonic(), shapes)
        return shapes.get(code)

    def clock(self, tenant: str, now: float, update: bool = True) -> Clock:
        return Clock(now, self.tz(tenant), lambda code: self.ward(tenant, code), update)

    # -- reading entities ---------------------------------------------------------------
    def read(self, tenant: str, ids: Iterable[str]) -> dict[str, View]:
        ids = list(ids)
        out: dict[str, View] = {}
        for i in range(0, len(ids), CHUNK):
            chunk = ids[i : i + CHUNK]
            for e in self.hub.hub.query(tenant, Query(ids=chunk, limit=len(chunk)))[0]:
                out[e.id] = self.views.of(e)
        return out

    def scope_views(self, tenant: str, types: list[str]) -> list[View]:
        """Every entity of ``types`` (short names) in the tenant."""
        q = Query(types=[[self.ctx.expand(t)] for t in types], limit=SCAN_LIMIT)
        return [self.views.of(e) for e in self.hub.hub.query(tenant, q)[0]]

    # -- the change feed ----------------------------------------------------------------
    def on_event(self, event: Event) -> None:
        if not self.leading or event.tenant is None or event.topic.endswith(".deleted"):
            return
        index = self.by_type.get(event.tenant)
        # while a tenant's rules are being read again, keep its changes for them
        fresh = event.tenant in self.stale or None in self.stale
        if fresh or (index and any(t in index for t in event.payload.get("types", ()))):
            eid = event.payload["id"]
            key = (event.tenant, eid)
            with self._fresh_lock:
                got = self._credit.get(key, 0)
                if got > 1:
                    self._credit[key] = got - 1
                elif got == 1:
                    del self._credit[key]
                else:  # no state of this write kept here (another process): read it
                    self._foreign.add(key)
            self.pending.setdefault(event.tenant, set()).add(eid)
            self.wake.set()

    def on_rules_changed(self, event: Event) -> None:
        self.stale_marks[event.tenant] = self.stale_marks.get(event.tenant, 0) + 1
        self.stale.add(event.tenant)
        self.wake.set()

    def apply(self, tenant: str, ev: Evaluator, transitions: list[Transition]) -> int:
        rule = ev.rule
        noted = time.time()
        for tr in transitions:
            self.transitions += 1
            origin, otype = originator_of(rule, tr.key, tenant)
            detail: dict[str, Any] = {}
            values: dict[str, Any] = {}
            location = None
            if tr.view is not None:
                values = tr.view.values
                otype = tr.view.type
                location = tr.view.location
                detail = {
                    "values": {
                        a: values[a]
                        for a in sorted(rule.attrs())
                        if a in values and isinstance(values[a], str | int | float | bool)
                    }
                }
            else:
                detail = {"members": tr.members or []}
                values = {"count": len(tr.members or []), "group": tr.key[len(GROUP) :]}
            self._changes.setdefault(tenant, []).append(
                Change(tr.kind, rule, origin, otype, tr.at, values, location, detail, noted)
            )
        return len(transitions)

    def flush(self) -> None:
        """Write the alarms of the transitions queued by :meth:`apply`, one transaction
        per tenant, and tell about them."""
        queued, self._changes = self._changes, {}
        for tenant, changes in queued.items():
            rules = {c.rule.id: c.rule for c in changes}
            try:
                outs = self.alarms.apply(tenant, changes)
            except Exception as exc:
                # the store failed: keep them for the next batch or timer run (bounded)
                kept = self._changes.setdefault(tenant, [])
                if len(kept) + len(changes) <= RETRY_MAX:
                    kept[:0] = changes
                log.warning(
                    "could not write %d alarm change(s) of %s (%s); trying again",
                    len(changes),
                    tenant,
                    str(exc).strip()[:200],
                )
                continue
            for out in outs:
                self.svc.dispatcher.submit(out, rules.get(out.rule_id))

    def save(self) -> None:
        """Alarms of the transitions, then the state machines that changed."""
        self.flush()
        puts, drops = [], []
        taken: list[tuple[Evaluator, str]] = []
        for tenant, evs in self.evaluators.items():
            for rid, ev in evs.items():
                for key, state in ev.take_dirty():
                    taken.append((ev, key))
                    if state is None:
                        drops.append((tenant, rid, key))
                    else:
                        d = ev.dues.get(key)
                        puts.append((tenant, rid, key, state, iso(d) if d is not None else None))
        if puts or drops:
            try:
                self.rstore.save_state(puts, drops)
            except Exception:
                for ev, key in taken:  # written at the next save
                    ev.dirty.add(key)
                raise

    # -- timers -------------------------------------------------------------------------
    def queued(self, tenant: str, view: View) -> bool:
        """Whether states of the entity wait for a batch (kept by the hook, or newer than
        the one last evaluated): a timer leaves it alone, so that every state is
        evaluated once and in order by the batch."""
        if (tenant, view.id) in self._fresh or view.id in self.pending.get(tenant, ()):
            return True
        last = self.seen.get(f"{tenant}\x1f{view.id}")
        return last is not None and view.updated > _epoch(last)

    def timers(self, now: float | None = None) -> int:
        """Durations that ended, no-data scans, due escalations and reminders."""
        now = time.time() if now is None else now
        self.ticks += 1
        made = 0
        for tenant, evs in list(self.evaluators.items()):
            clock = self.clock(tenant, now, update=False)

            def reader(ids: Iterable[str], t: str = tenant) -> dict[str, View]:
                return self.read(t, ids)

            def local(c: Clock, view: View, t: str = tenant) -> Clock | None:
                return None if self.queued(t, view) else local_clock(c, view)

            scanned: dict[tuple[str, ...], list[View]] = {}  # one read per type per tick
            for ev in evs.values():
                made += self.apply(tenant, ev, ev.timers(clock, reader, local))
                if ev.periodic:
                    made += self._scan(tenant, ev, clock, scanned)
        self.save()
        for row in self.rstore.due_alarms(iso(now)):
            rule_ev = self.evaluators.get(row["tenant"], {}).get(row["rule_id"])
            rule = rule_ev.rule if rule_ev else None
            try:
                out = self.alarms.escalate_or_remind(row["tenant"], row, rule, now)
            except Exception:
                log.exception("could not escalate alarm %s", row["id"])
                continue
            if out is not None:
                made += 1
                self.svc.dispatcher.submit(out, rule)
        return made

    def _scan(
        self, tenant: str, ev: Evaluator, clock: Clock, scanned: dict[tuple[str, ...], list[View]]
    ) -> int:
        """Evaluate a rule that depends on time (no data, schedules, windows) for every
        entity in its scope, every ``scan_every`` seconds."""
        every = max(self.settings.tick_seconds, ev.scan_every)
        key = (tenant, ev.rule.id)
        if clock.now - self._scanned.get(key, 0.0) < every:
            return 0
        self._scanned[key] = clock.now
        types = tuple(sorted(ev.rule.scope.type))
        if types not in scanned:
            scanned[types] = self.scope_views(tenant, ev.rule.scope.type)
        made = 0
        for view in scanned[types]:
            if not self.queued(tenant, view):
                made += self.apply(tenant, ev, ev.entity(view, local_clock(clock, view)))
        return made

    # -- the task -----------------------------------------------------------------------
    async def run(self) -> None:
        self.svc.dispatcher.bind(asyncio.get_running_loop())
        url = self.svc.platform.settings.store_url
        lead: Leadership | None = None
        if self.rstore.store.dialect == "postgresql":
            lead = Leadership(url, "engine", name="sencity-rules")
        try:
            while True:
                if lead is not None:
                    await self._acquire(lead)
                await asyncio.to_thread(self._start)
                self.leading = True
                log.info("rules engine evaluating (%d rule(s))", self.rule_count())
                try:
                    await self._loop(lead)
                finally:
                    self.leading = False
        finally:
            if lead is not None:
                await asyncio.to_thread(lead.release)

    def rule_count(self) -> int:
        return sum(len(v) for v in self.evaluators.values())

    def _start(self) -> None:
        self.evaluators, self.by_type = {}, {}
        self.restore_state()
        self.load()
        self._stored = {}

    async def _acquire(self, lead: Leadership) -> None:
        told = False
        while not await asyncio.to_thread(lead.try_acquire):
            if not told:
                log.info("another SenCity process evaluates the rules; standing by")
                told = True
            await asyncio.sleep(LEASE_CHECK)
        if told:
            log.info("taking over the rules engine")

    async def _loop(self, lead: Leadership | None) -> None:
        tick = self.settings.tick_seconds
        next_tick = time.monotonic()
        next_reload = time.monotonic() + self.settings.reload_seconds
        next_lease = time.monotonic() + LEASE_CHECK
        while True:
            timeout = max(0.0, next_tick - time.monotonic())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout)
            self.wake.clear()
            if self.pending and self.settings.batch_wait:
                await asyncio.sleep(self.settings.batch_wait)
            now = time.monotonic()
            if self.stale or now >= next_reload:
                # changes that arrive while the rules are read are kept for them (see
                # on_event): a tenant is stale until its rules are in the index
                stale = set(self.stale)
                marks = dict(self.stale_marks)
                if now >= next_reload:
                    stale = {None}
                    self.stale.add(None)
                    next_reload = now + self.settings.reload_seconds
                for t in sorted(stale, key=lambda x: x or ""):
                    await asyncio.to_thread(self.load, t)
                # a rule changed while its tenant's rules were read (the read may have
                # missed it): that tenant stays stale and is read again at once
                again = {t for t in stale if self.stale_marks.get(t, 0) != marks.get(t, 0)}
                self.stale -= stale - again
                if again:
                    self.wake.set()
            if self.pending:
                batch, self.pending = self.pending, {}
                started = time.monotonic()
                await asyncio.to_thread(self._process_typed, batch)
                self.batches += 1
                self.last_latency = time.monotonic() - started
            if time.monotonic() >= next_tick:
                await asyncio.to_thread(self._timers_logged)
                next_tick = time.monotonic() + tick
            if lead is not None and time.monotonic() >= next_lease:
                next_lease = time.monotonic() + LEASE_CHECK
                if not await asyncio.to_thread(lead.alive):
                    log.warning("lost the rules engine lock (store connection); standing by")
                    return

    def committed(self, tenant: str, changes: dict[str, Any]) -> None:
        """Hub commit hook: keep the new states of entities the rules watch, in order, so
        the engine evaluates each (and need not read them back).  Writes of other
        processes (PostgreSQL) are read back when their change event comes."""
        index = self.by_type.get(tenant) or {}
        # while a tenant's rules are being read again, keep all its states for them
        stale = tenant in self.stale or None in self.stale
        if not self.leading or not (index or stale):
            return
        with self._fresh_lock:
            if self._fresh_n > FRESH_MAX:  # the engine is far behind: read back instead
                self._fresh.clear()
                self._credit.clear()
                self._fresh_n = 0
            for eid, ch in changes.items():
                after = ch.after
                if after is not None and (stale or any(t in index for t in after.types)):
                    key = (tenant, eid)
                    self._fresh.setdefault(key, []).append(after)
                    self._credit[key] = self._credit.get(key, 0) + 1
                    self._fresh_n += 1

    def _entities(
        self, tenant: str, ids: list[str], again: bool = True
    ) -> list[tuple[Entity, bool]]:
        """The states to evaluate of ``ids``, oldest first: (entity, kept by the hook).
        Entities without kept states are read back — with ``again=False`` only those
        written by another process (an entity whose states were all evaluated already
        is not read again: the read could see a newer state before its hook ran)."""
        out: list[tuple[Entity, bool]] = []
        missing = []
        with self._fresh_lock:
            for eid in ids:
                key = (tenant, eid)
                states = self._fresh.pop(key, None)
                foreign = key in self._foreign
                if foreign:
                    self._foreign.discard(key)
                if states is not None:
                    self._fresh_n -= len(states)
                    out += [(e, True) for e in states]
                if foreign or (states is None and again):
                    missing.append(eid)
        if missing:
            got = self.hub.hub.query(tenant, Query(ids=missing, limit=len(missing)))[0]
            out += [(e, False) for e in got]
        return out

    def _changed(self, tenant: str, e: Entity) -> set[str] | None:
        """Short names of the attributes changed since this engine last saw the entity
        (None: all of them, for an entity not seen since the start)."""
        key = f"{tenant}\x1f{e.id}"
        last = self.seen.get(key)
        now = e.modified_at or ""
        self.seen[key] = now
        if last is None:
            return None
        short = self.views.short
        return {
            short(iri)
            for iri, insts in e.attrs.items()
            if any(i.get("modifiedAt", now) > last for i in insts)
        }

    def _timers_logged(self) -> int:
        try:
            return self.timers()
        except Exception as exc:
            log.warning("rules timers failed (%s); trying again", str(exc).strip()[:200])
            return 0

    def _process_typed(self, batch: dict[str, set[str]]) -> int:
        try:
            return self.process(batch, again=False)
        except Exception:
            log.exception("rules evaluation of a batch failed")
            return 0

    def process(self, batch: dict[str, set[str]], again: bool = True) -> int:
        """Evaluate the rules for the changed entities of ``batch``; transitions made.

        Every state of an entity written since the last batch is evaluated, in order, at
        its own time (:func:`data_time`).  ``again=False`` skips a state read back that
        was already evaluated (its change event came after the commit hook's copy)."""
        now = time.time()
        made = 0
        for tenant, ids in batch.items():
            index = self.by_type.get(tenant, {})
            if not index:
                continue
            base = self.clock(tenant, now)
            todo = sorted(ids)
            for i in range(0, len(todo), CHUNK):
                chunk = todo[i : i + CHUNK]
                found = self._entities(tenant, chunk, again)
                for e, fresh in found:
                    if (
                        not again
                        and not fresh
                        and self.seen.get(f"{tenant}\x1f{e.id}") == (e.modified_at or "")
                    ):
                        continue
                    view = self.views.of(e)
                    clock = Clock(data_time(view, now), base.tz, base.wards, True)
                    for obs in self.observers:
                        obs(tenant, view)
                    ward = view.values.get("wardCode")
                    changed = self._changed(tenant, e)
                    evs = [
                        ev for t in e.types if t in index for ev in index[t].rules(ward, changed)
                    ]
                    if len(e.types) > 1:
                        evs = list({id(ev): ev for ev in evs}.values())
                    self.evaluations += len(evs)
                    for ev in evs:
                        trs = ev.entity(view, clock, True)
                        if trs:
                            made += self.apply(tenant, ev, trs)
        self.save()
        return made
