"""The subscriptions module's runtime: its store, matcher, delivery task and periodic
notifications, kept in ``platform.state["subs"]``."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import TYPE_CHECKING, Any

from sencity.core.bus import Event, EventBus
from sencity.hub.store import Query
from sencity.store.base import utcnow
from sencity.subs.deliver import Deliverer
from sencity.subs.match import Matcher
from sencity.subs.model import Subscription
from sencity.subs.notify import entity_data, make_job
from sencity.subs.store import SubsStore, later

if TYPE_CHECKING:
    from sencity.config import SubscriptionSettings
    from sencity.hub.api import HubService
    from sencity.hub.model import Entity
    from sencity.store.base import Store

log = logging.getLogger("sencity.subs")
CHANGED = "subs.changed"


class SubsService:
    def __init__(
        self, store: Store, bus: EventBus, hub: HubService, settings: SubscriptionSettings
    ) -> None:
        self.hub = hub
        self.bus = bus
        self.settings = settings
        self.owner = uuid.uuid4().hex  # this process, as the holder of outbox leases
        self.store = SubsStore(store)
        self.deliverer = Deliverer(self.store, settings, self.owner)
        self.matcher = Matcher(
            self.store,
            hub.resolver,
            store.dialect,
            self.deliverer.lease,
            self.deliverer.submit,
        )
        hub.hub.write_hooks.append(self.matcher.write_hook)
        hub.hub.commit_hooks.append(self.matcher.committed)

    # -- subscriptions changed -----------------------------------------------------------
    def changed(self, tenant: str) -> None:
        """After a subscription of ``tenant`` was created, updated or deleted."""
        self.matcher.invalidate(tenant)
        self.bus.publish(Event(CHANGED, {"owner": self.owner}, tenant=tenant))

    def on_changed(self, event: Event) -> None:
        """Another process changed a subscription: read the tenant's again."""
        if event.payload.get("owner") != self.owner:
            self.matcher.invalidate(event.tenant)

    async def reload(self) -> None:
        """Task: forget every cached subscription now and then (a missed event heals)."""
        while True:
            await asyncio.sleep(self.settings.reload_seconds)
            self.matcher.invalidate()

    # -- periodic notifications (timeInterval) -------------------------------------------
    async def periodic(self) -> None:
        """Task: send the notifications of periodic subscriptions that are due."""
        while True:
            await asyncio.sleep(min(1.0, self.settings.poll_interval))
            try:
                due = await asyncio.to_thread(self.store.due_periodic, utcnow())
            except Exception as exc:
                log.warning("could not read periodic subscriptions: %s", exc)
                continue
            for row in due:
                try:
                    await asyncio.to_thread(self._periodic, row)
                except Exception:
                    log.exception("periodic notification of %s failed", row["id"])

    def _periodic(self, row: dict[str, Any]) -> None:
        tenant, sid = row["tenant"], row["id"]
        with self.store.store.transaction(write=False) as tx:
            sub = self.matcher.get(tx, tenant, sid)
        now = utcnow()
        following = later(float(row["time_interval"]), now)
        entities = self.matching_entities(tenant, sub) if sub and sub.live(now) else []
        with self.store.store.transaction() as tx:
            if not SubsStore.take_period(tx, tenant, sid, row["next_periodic"], following):
                return  # another process sends this one
            if not entities:
                return
            assert sub is not None
            job = make_job(sub, tenant, [entity_data(sub, None, e, now) for e in entities], now)
            lease = self.deliverer.lease()
            if lease is not None:
                job.lease_until = lease[1]
            SubsStore.enqueue(tx, [job], lease[0] if lease else None, now)
        if lease is not None:
            self.deliverer.submit([job])

    def matching_entities(self, tenant: str, sub: Subscription) -> list[Entity]:
        """The entities a periodic notification carries (at most ``hub.max_limit``)."""
        found: dict[str, Entity] = {}
        for sel in sub.selectors:
            q = Query(
                types=sel.types,
                ids=[sel.id] if sel.id else None,
                id_pattern=sel.pattern.pattern if sel.pattern else None,
                where=list(sub.where),
                limit=self.hub.max_limit,
            )
            for e in self.hub.hub.query(tenant, q)[0]:
                found.setdefault(e.id, e)
        return list(found.values())[: self.hub.max_limit]
