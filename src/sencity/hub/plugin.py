"""Plugs the context hub into the platform: tables, routes and its runtime service."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from sencity.core.hooks import hookimpl
from sencity.core.platform import Platform
from sencity.core.routing import Route
from sencity.hub import api
from sencity.hub.ldcontext import ContextResolver
from sencity.hub.schema import MIGRATIONS
from sencity.hub.store import HubStore
from sencity.store.base import Migration, Store, utcnow


@hookimpl
def sencity_migrations() -> list[Migration]:
    return list(MIGRATIONS)


@hookimpl
def sencity_routes() -> list[Route]:
    return api.routes()


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
    platform.state["hub"] = api.HubService(
        HubStore(platform.store, platform.bus), resolver, hs.default_limit, hs.max_limit
    )
