"""Plugs NGSI-LD subscriptions into the platform: tables, routes, the hub's write and
commit hooks, the delivery and periodic tasks, and the ``subs.changed`` event."""

from __future__ import annotations

import logging

from prometheus_client import Gauge

from sencity.core.bus import EventHandler
from sencity.core.hooks import Task, hookimpl
from sencity.core.platform import Platform
from sencity.core.routing import Route
from sencity.store.base import Migration
from sencity.subs import api
from sencity.subs.service import CHANGED, SubsService
from sencity.subs.store import MIGRATIONS

log = logging.getLogger("sencity.subs")


@hookimpl
def sencity_migrations() -> list[Migration]:
    return list(MIGRATIONS)


@hookimpl
def sencity_routes() -> list[Route]:
    return api.routes()


@hookimpl(trylast=True)  # after the hub's start-up, which makes platform.state["hub"]
def sencity_startup(platform: Platform) -> None:
    hub = platform.state.get("hub")
    if hub is None:
        log.warning("subscriptions need the hub plugin (sencity.hub.plugin); they are off")
        return
    svc = platform.state["subs"] = SubsService(
        platform.store, platform.bus, hub, platform.settings.subscriptions
    )
    reg, d = platform.metrics.registry, svc.deliverer
    for name, doc, value in (
        ("sent", "Notifications delivered by this process", lambda: d.delivered),
        ("failed", "Failed notification attempts in this process", lambda: d.failed),
        ("dropped", "Notifications given up after their last retry", lambda: d.dropped),
        ("pending", "Notifications in the outbox (all processes)", lambda: _backlog(svc)),
    ):
        Gauge(f"sencity_notifications_{name}", doc, registry=reg).set_function(value)


def _backlog(svc: SubsService) -> float:
    try:
        return svc.store.backlog()
    except Exception:  # the store is down: /health says so; /metrics still answers
        return float("nan")


def _service(platform: Platform) -> SubsService | None:
    svc: SubsService | None = platform.state.get("subs")
    return svc


@hookimpl
def sencity_tasks(platform: Platform) -> list[Task]:
    svc = _service(platform)
    if svc is None:
        return []
    return [
        Task("subs-delivery", svc.deliverer.run),
        Task("subs-periodic", svc.periodic),
        Task("subs-reload", svc.reload),
    ]


@hookimpl
def sencity_subscriptions(platform: Platform) -> list[tuple[str, EventHandler]]:
    svc = _service(platform)
    return [(CHANGED, svc.on_changed)] if svc is not None else []
