"""Plugs the built-in city indicators, the notification channels' settings and the public
CAP feed into the platform: the change-feed subscription, the worker task, the routes."""

from __future__ import annotations

import logging

from prometheus_client import Gauge

from sencity.core.bus import EventHandler
from sencity.core.hooks import Task, hookimpl
from sencity.core.platform import Platform
from sencity.core.routing import Route
from sencity.rules import cap_api, channels
from sencity.rules.indicators import IndicatorService

log = logging.getLogger("sencity.rules.indicators")


@hookimpl
def sencity_routes() -> list[Route]:
    return cap_api.routes()


@hookimpl(trylast=True)  # after the hub's start-up, which makes platform.state["hub"]
def sencity_startup(platform: Platform) -> None:
    channels.configure(platform.settings)  # what the rules' notifications use
    if not platform.settings.rules.indicators:
        return
    if platform.state.get("hub") is None:
        log.warning("indicators need the hub plugin (sencity.hub.plugin); they are off")
        return
    svc = platform.state["indicators"] = IndicatorService.of(platform)
    Gauge(
        "sencity_indicator_writes",
        "Entities whose derived indicators this process wrote",
        registry=platform.metrics.registry,
    ).set_function(lambda: svc.writes)


def _service(platform: Platform) -> IndicatorService | None:
    svc: IndicatorService | None = platform.state.get("indicators")
    return svc


@hookimpl
def sencity_subscriptions(platform: Platform) -> list[tuple[str, EventHandler]]:
    svc = _service(platform)
    return [("hub.entity.*", svc.on_change)] if svc is not None else []


@hookimpl
def sencity_tasks(platform: Platform) -> list[Task]:
    svc = _service(platform)
    return [Task("rules-indicators", svc.run)] if svc is not None else []
