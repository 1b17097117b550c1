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
import time
import zlib
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


def _epoch(text: str | None) -> float:
    if not text:
        return 0.0
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


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
            if self.timed is None or name in self.timed:
                t = inst.get("observedAt") or inst.get("modifiedAt")
                if t:
                    times[name] = _epoch(t)
        return View(
            e.id,
            self.short(e.types[0]) if e.types else "",
            values,
            times,
            _epoch(e.modified_at),
            location if isinstance(location, dict) else None,
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
        self._tz: dict[str, tzinfo] = {}
        self._wards: dict[str, tuple[float, dict[str, Any]]] = {}
        self._scanned: dict[tuple[str, str], float] = {}
        self.evaluations = 0
        self.batches = 0
        self.transitions = 0
        self.ticks = 0
        self._changes: dict[str, list[Change]] = {}
        #: new states kept by the commit hook (SQLite: every write is in this process)
        self._fresh: dict[tuple[str, str], Entity] = {}
        if self.rstore.store.dialect == "sqlite":
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
            self.pending.setdefault(event.tenant, set()).add(event.payload["id"])
            self.wake.set()

    def on_rules_changed(self, event: Event) -> None:
        self.stale.add(event.tenant)
        self.wake.set()

    def apply(self, tenant: str, ev: Evaluator, transitions: list[Transition]) -> int:
        rule = ev.rule
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
                Change(tr.kind, rule, origin, otype, tr.at, values, location, detail)
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
    def timers(self, now: float | None = None) -> int:
        """Durations that ended, no-data scans, due escalations and reminders."""
        now = time.time() if now is None else now
        self.ticks += 1
        made = 0
        for tenant, evs in list(self.evaluators.items()):
            clock = self.clock(tenant, now, update=False)

            def reader(ids: Iterable[str], t: str = tenant) -> dict[str, View]:
                return self.read(t, ids)

            scanned: dict[tuple[str, ...], list[View]] = {}  # one read per type per tick
            for ev in evs.values():
                made += self.apply(tenant, ev, ev.timers(clock, reader))
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
            made += self.apply(tenant, ev, ev.entity(view, clock))
        return made

    # -- the task -----------------------------------------------------------------------
    async def run(self) -> None:
        self.svc.dispatcher.bind(asyncio.get_running_loop())
        url = self.svc.platform.settings.store_url
        lead: Leadership | None = None
        if self.rstore.store.dialect == "postgresql":
            lead = Leadership(url, "rules")
            lead.key = zlib.crc32(b"sencity-rules-engine")
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
                if now >= next_reload:
                    stale = {None}
                    self.stale.add(None)
                    next_reload = now + self.settings.reload_seconds
                for t in sorted(stale, key=lambda x: x or ""):
                    await asyncio.to_thread(self.load, t)
                self.stale -= stale
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
        """Hub commit hook (single-process stores): keep the new states of entities the
        rules watch, so the engine need not read them back."""
        index = self.by_type.get(tenant)
        if not self.leading or not index:
            return
        if len(self._fresh) > FRESH_MAX:
            self._fresh.clear()
        for eid, ch in changes.items():
            after = ch.after
            if after is not None and any(t in index for t in after.types):
                self._fresh[(tenant, eid)] = after

    def _entities(self, tenant: str, ids: list[str]) -> list[Entity]:
        out: list[Entity] = []
        missing = []
        for eid in ids:
            e = self._fresh.pop((tenant, eid), None)
            if e is None:
                missing.append(eid)
            else:
                out.append(e)
        if missing:
            out += self.hub.hub.query(tenant, Query(ids=missing, limit=len(missing)))[0]
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
            return self.process(batch)
        except Exception:
            log.exception("rules evaluation of a batch failed")
            return 0

    def process(self, batch: dict[str, set[str]]) -> int:
        """Evaluate the rules for the changed entities of ``batch``; transitions made."""
        now = time.time()
        made = 0
        for tenant, ids in batch.items():
            index = self.by_type.get(tenant, {})
            if not index:
                continue
            clock = self.clock(tenant, now)
            todo = sorted(ids)
            for i in range(0, len(todo), CHUNK):
                chunk = todo[i : i + CHUNK]
                found = self._entities(tenant, chunk)
                for e in found:
                    view = self.views.of(e)
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
                        trs = ev.entity(view, clock)
                        if trs:
                            made += self.apply(tenant, ev, trs)
        self.save()
        return made
