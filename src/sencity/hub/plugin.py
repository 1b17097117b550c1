"""Plugs the context hub into the platform: tables, routes and its runtime service."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from sencity.core.hooks import Task, hookimpl
from sencity.core.platform import Platform
from sencity.core.routing import Route
from sencity.hub import api, temporal_api
from sencity.hub.durations import parse_duration, to_us
from sencity.hub.ldcontext import ContextResolver
from sencity.hub.schema import MIGRATIONS
from sencity.hub.store import HubStore
from sencity.hub.temporal import TemporalStore
from sencity.store.base import Migration, Store, utcnow

log = logging.getLogger("sencity.hub")


@hookimpl
def sencity_migrations() -> list[Migration]:
    return list(MIGRATIONS)


@hookimpl
def sencity_routes() -> list[Route]:
    return [*temporal_api.routes(), *api.routes()]


def _persist(store: Store) -> Callable[[str, Mapping[str, Any] | None], None]:
    """Hosted @contexts survive restarts and are shared by every worker process."""

    def hook(ident: str, doc: Mapping[str, Any] | None) -> None:
        with store.transaction() as tx:
            tx.execute("DELETE FROM hub_contexts WHERE id = ?", (ident,))
            if doc is not None:
                tx.execute(
                    "INSERT INTO hub_contexts (id, body, created_at) VALUES (?, ?, ?)",
                    (ident, json.dumps(doc), utcnow()),
                )

    return hook


@hookimpl
def sencity_startup(platform: Platform) -> None:
    hs = platform.settings.hub
    resolver = ContextResolver(
        hs.context_preload,
        fetch=hs.context_fetch,
        timeout=hs.context_timeout,
        store_hook=_persist(platform.store),
    )
    with platform.store.transaction(write=False) as tx:
        saved = tx.execute("SELECT id, body FROM hub_contexts")
    resolver.restore_hosted({r["id"]: json.loads(r["body"]) for r in saved})
    hub = HubStore(platform.store, platform.bus)
    temporal = TemporalStore(platform.store)
    if hs.history:
        hub.write_hooks.append(temporal.record)
    platform.state["hub"] = api.HubService(hub, resolver, hs.default_limit, hs.max_limit)
    platform.state["temporal"] = temporal_api.TemporalService(temporal, hs.temporal_page_size)


def apply_retention(platform: Platform, now: datetime | None = None) -> list[tuple[int, int]]:
    """Run every retention rule once; (raw instances, rollups) removed per rule."""
    temporal: temporal_api.TemporalService = platform.state["temporal"]
    now = now or datetime.now(UTC)
    done = []
    for rule in platform.settings.hub.retention:
        raw_before = to_us(now - timedelta(days=rule.raw_days))
        period = parse_duration(rule.rollup, "rollup").us if rule.rollup else None
        rollup_before = to_us(now - timedelta(days=rule.rollup_days)) if rule.rollup else None
        done.append(
            temporal.store.prune(
                None if rule.tenant == "*" else rule.tenant,
                None if rule.type == "*" else rule.type,
                raw_before,
                period,
                rollup_before,
            )
        )
    return done


@hookimpl
def sencity_tasks(platform: Platform) -> list[Task]:
    if not platform.settings.hub.retention:
        return []

    async def retention() -> None:
        while True:
            removed = await asyncio.to_thread(apply_retention, platform)
            if any(r or d for r, d in removed):
                log.info("history retention removed %s (raw, rollups) per rule", removed)
            await asyncio.sleep(platform.settings.hub.retention_interval)

    return [Task("hub-retention", retention)]
