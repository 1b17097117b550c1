"""Changes → notifications, inside the hub's write transaction.

:meth:`Matcher.write_hook` runs in every hub write transaction after the entities are
written: it finds the tenant's subscriptions a change concerns (an in-memory index by
entity id and type, reloaded when subscriptions change), checks the triggers and
watched attributes, evaluates ``q`` and ``geoQ`` with the SQL the hub's query
compilers produce (on the entity as it is after the change; as it was before, for a
deletion), and writes one outbox row per notification in the same transaction.
:meth:`Matcher.committed` then hands those rows to the delivery task.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sencity.errors import SenCityError
from sencity.hub.ldcontext import ContextResolver
from sencity.hub.model import Entity
from sencity.hub.store import Change
from sencity.store.base import Tx
from sencity.subs.model import Subscription, parse_subscription
from sencity.subs.notify import entity_data, make_job
from sencity.subs.store import Job, SubsStore

log = logging.getLogger("sencity.subs")
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
#: (entity id, change, attributes deleted by an update that are to be shown)
Hit = tuple[str, Change, frozenset[str]]


@dataclass
class TenantSubs:
    """A tenant's subscriptions, indexed for matching changes."""

    subs: dict[str, Subscription] = field(default_factory=dict)
    by_id: dict[str, list[Subscription]] = field(default_factory=dict)
    by_type: dict[str, list[Subscription]] = field(default_factory=dict)
    scan: list[Subscription] = field(default_factory=list)  # idPattern or attributes only

    def add(self, sub: Subscription) -> None:
        self.subs[sub.id] = sub
        if sub.time_interval is not None:
            return  # periodic: changes do not notify
        if not sub.selectors:
            self.scan.append(sub)
            return
        keys: set[tuple[str, str]] = set()
        for sel in sub.selectors:
            if sel.id is not None:
                keys.add(("id", sel.id))
            elif sel.types is not None:
                keys.update(("type", conj[0]) for conj in sel.types)
            else:
                self.scan.append(sub)
                return
        for kind, key in keys:
            (self.by_id if kind == "id" else self.by_type).setdefault(key, []).append(sub)

    def candidates(self, eid: str, types: set[str]) -> list[Subscription]:
        found: dict[str, Subscription] = {s.id: s for s in self.by_id.get(eid, ())}
        for t in types:
            for s in self.by_type.get(t, ()):
                found[s.id] = s
        for s in self.scan:
            found[s.id] = s
        return list(found.values())


def fires(sub: Subscription, ch: Change) -> tuple[bool, frozenset[str]]:
    """Whether ``ch`` triggers ``sub``, and which deleted attributes to show."""
    trig, watched = sub.triggers, sub.watched
    if ch.kind == "created":
        assert ch.after is not None
        hit = set(ch.after.attrs) if watched is None else watched & set(ch.after.attrs)
        ok = ("entityCreated" in trig and (watched is None or bool(hit))) or (
            "attributeCreated" in trig and bool(hit)
        )
        return ok, frozenset()
    if ch.kind == "deleted":
        assert ch.before is not None
        ok = "entityDeleted" in trig and (watched is None or bool(watched & set(ch.before.attrs)))
        return ok, frozenset()
    assert ch.before is not None and ch.after is not None
    old, new = ch.before.attrs, ch.after.attrs
    created = new.keys() - old.keys()
    deleted = old.keys() - new.keys()
    updated = {n for n in new.keys() & old.keys() if new[n] != old[n]}
    retyped = ch.before.types != ch.after.types
    if watched is not None:
        created, updated, deleted = created & watched, updated & watched, deleted & watched
        retyped = False
    ok = (
        ("entityUpdated" in trig and bool(created or updated or deleted or retyped))
        or ("attributeCreated" in trig and bool(created))
        or ("attributeUpdated" in trig and bool(updated))
        or ("attributeDeleted" in trig and bool(deleted))
    )
    shown: frozenset[str] = frozenset()
    if ok and ("attributeDeleted" in trig or "entityUpdated" in trig):
        shown = frozenset(old.keys() - new.keys())
    return ok, shown


class Matcher:
    def __init__(
        self,
        store: SubsStore,
        resolver: ContextResolver,
        dialect: str,
        lease: Callable[[], tuple[str, str] | None],
        submit: Callable[[list[Job]], None],
    ) -> None:
        self.store = store
        self.resolver = resolver
        self.dialect = dialect
        self.lease = lease  # (owner, lease_until) when this process delivers, else None
        self.submit = submit
        self._cache: dict[str, TenantSubs] = {}
        self._gen = 0
        self._lock = threading.Lock()
        self._local = threading.local()

    # -- the cache -----------------------------------------------------------------------
    def invalidate(self, tenant: str | None = None) -> None:
        """Forget the subscriptions of ``tenant`` (None: of every tenant)."""
        with self._lock:
            self._gen += 1
            if tenant is None:
                self._cache.clear()
            else:
                self._cache.pop(tenant, None)

    def parse_row(self, row: dict[str, Any]) -> Subscription | None:
        try:
            context = json.loads(row["context"]) if row["context"] else None
            return parse_subscription(
                json.loads(row["body"]), context, self.resolver.resolve(context), self.dialect
            )
        except (SenCityError, ValueError) as exc:
            log.error("subscription %s cannot be used: %s", row["id"], exc)
            return None

    def tenant_subs(self, tx: Tx, tenant: str) -> TenantSubs:
        with self._lock:
            found = self._cache.get(tenant)
            gen = self._gen
        if found is not None:
            return found
        ts = TenantSubs()
        for row in SubsStore.load(tx, tenant):
            sub = self.parse_row(row)
            if sub is not None:
                ts.add(sub)
        with self._lock:
            if gen == self._gen:  # nothing changed meanwhile: keep it
                self._cache[tenant] = ts
        return ts

    def get(self, tx: Tx, tenant: str, sid: str) -> Subscription | None:
        return self.tenant_subs(tx, tenant).subs.get(sid)

    # -- the hub's hooks -----------------------------------------------------------------
    def write_hook(self, tx: Tx, tenant: str, changes: dict[str, Change], now: str) -> None:
        self._local.pending = None
        ts = self.tenant_subs(tx, tenant)
        if not ts.subs:
            return
        hits: dict[str, tuple[Subscription, list[Hit]]] = {}
        for eid, ch in changes.items():
            state = ch.after or ch.before
            assert state is not None
            types = set(state.types)
            if ch.before is not None and ch.after is not None:
                types.update(ch.before.types)
            for sub in ts.candidates(eid, types):
                if not sub.live(now):
                    continue
                if sub.selectors and not any(s.matches(eid, state.types) for s in sub.selectors):
                    continue
                ok, shown = fires(sub, ch)
                if ok:
                    hits.setdefault(sub.id, (sub, []))[1].append((eid, ch, shown))
        if not hits:
            return
        self._where(tx, hits)
        jobs: list[Job] = []
        for sub, items in hits.values():
            if not items:
                continue
            if sub.throttling and not SubsStore.throttle(tx, tenant, sub.id, now, sub.throttling):
                continue
            data = [entity_data(sub, ch.before, ch.after, now, shown) for _, ch, shown in items]
            jobs.append(make_job(sub, tenant, data, now))
        if not jobs:
            return
        lease = self.lease()
        if lease is not None:
            for job in jobs:
                job.lease_until = lease[1]
        SubsStore.enqueue(tx, jobs, lease[0] if lease else None, now)
        if lease is not None:
            self._local.pending = (changes, jobs)

    def committed(self, tenant: str, changes: dict[str, Change]) -> None:
        pending = getattr(self._local, "pending", None)
        self._local.pending = None
        if pending is not None and pending[0] is changes:
            self.submit(pending[1])

    def _where(self, tx: Tx, hits: dict[str, tuple[Subscription, list[Hit]]]) -> None:
        """Keep only the hits whose entity meets the subscription's q and geoQ (one
        statement for a batch of subscriptions, on the entities' states as JSON rows)."""
        todo = [(sub, items) for sub, items in hits.values() if sub.where]
        batch: list[tuple[Subscription, list[Hit]]] = []
        size = 0
        for sub, items in todo:
            batch.append((sub, items))
            size += len(items)
            if size >= 200 or len(batch) >= 50:
                self._where_batch(tx, batch)
                batch, size = [], 0
        if batch:
            self._where_batch(tx, batch)

    def _where_batch(self, tx: Tx, batch: Sequence[tuple[Subscription, list[Hit]]]) -> None:
        states: dict[str, Entity] = {}
        for _, items in batch:
            for eid, ch, _ in items:
                state = ch.after or ch.before
                assert state is not None
                states[eid] = state
        jsonb = "CAST(? AS jsonb)" if self.dialect == "postgresql" else "?"
        values = ", ".join(f"(CAST(? AS TEXT), {jsonb})" for _ in states)
        params: list[Any] = []
        for eid, state in states.items():
            params += [eid, _dumps(state.attrs)]
        selects = []
        for n, (sub, items) in enumerate(batch):
            ids = list(dict.fromkeys(eid for eid, _, _ in items))
            conds = " AND ".join(f"({sql})" for sql, _ in sub.where)
            selects.append(
                f"SELECT CAST(? AS INTEGER) AS s, e.id AS id FROM e "
                f"WHERE e.id IN ({','.join('?' * len(ids))}) AND {conds}"
            )
            params += [n, *ids]
            for _, p in sub.where:
                params += p
        rows = tx.execute(
            f"WITH e(id, attrs) AS (VALUES {values}) " + " UNION ALL ".join(selects), params
        )
        keep: dict[int, set[str]] = {}
        for r in rows:
            keep.setdefault(int(r["s"]), set()).add(r["id"])
        for n, (_, items) in enumerate(batch):
            ok = keep.get(n, set())
            items[:] = [h for h in items if h[0] in ok]
