"""Plugs rules, alarms and notifications into the platform: tables, routes, the engine's
task and its change-feed subscription, metrics and the ``sencity rules`` commands."""

from __future__ import annotations

import logging

import click
from prometheus_client import Gauge

from sencity.core.bus import EventHandler
from sencity.core.hooks import Task, hookimpl
from sencity.core.platform import Platform
from sencity.core.routing import Route
from sencity.rules import api
from sencity.rules.store import MIGRATIONS
from sencity.store.base import Migration

log = logging.getLogger("sencity.rules")


@hookimpl
def sencity_migrations() -> list[Migration]:
    return list(MIGRATIONS)


@hookimpl
def sencity_routes() -> list[Route]:
    return api.routes()


@hookimpl
def sencity_cli(cli: click.Group) -> None:
    from sencity.rules.cli import rules_group

    cli.add_command(rules_group)


@hookimpl(trylast=True)  # after the hub's start-up
def sencity_startup(platform: Platform) -> None:
    from sencity.rules.service import RulesService

    if platform.state.get("hub") is None:
        log.warning("rules need the hub plugin (sencity.hub.plugin); they are off")
        return
    svc = platform.state["rules"] = RulesService(platform)
    reg, e, d = platform.metrics.registry, svc.engine, svc.dispatcher
    for name, doc, value in (
        ("evaluations", "Rule evaluations by this process", lambda: e.evaluations),
        ("transitions", "Rule transitions (raise or clear) in this process", lambda: e.transitions),
        ("rules", "Rules the engine of this process evaluates", lambda: e.rule_count()),
        ("notices_sent", "Alarm notices sent by this process", lambda: d.sent),
        ("notices_failed", "Alarm notices that failed", lambda: d.failed),
        ("notices_rate_limited", "Alarm notices dropped by a rate limit", lambda: d.limited),
        ("notices_quiet", "Alarm notices held back in quiet hours", lambda: d.quiet),
    ):
        Gauge(f"sencity_rules_{name}", doc, registry=reg).set_function(value)


@hookimpl
def sencity_tasks(platform: Platform) -> list[Task]:
    svc = platform.state.get("rules")
    return [Task("rules-engine", svc.engine.run)] if svc is not None else []


@hookimpl
def sencity_subscriptions(platform: Platform) -> list[tuple[str, EventHandler]]:
    from sencity.rules.engine import CHANGED

    svc = platform.state.get("rules")
    if svc is None:
        return []
    return [("hub.entity.*", svc.engine.on_event), (CHANGED, svc.engine.on_rules_changed)]
