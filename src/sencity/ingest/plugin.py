"""Plugs ingestion into the platform: the sensor agent's tables, routes, task and
metrics, and the ``sencity import`` commands."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable

import click
from prometheus_client import Gauge

from sencity.core.hooks import Task, hookimpl
from sencity.core.platform import Platform
from sencity.core.routing import Route
from sencity.ingest import api
from sencity.ingest import cli as ingest_cli
from sencity.ingest.registry import MIGRATIONS
from sencity.store.base import Migration

log = logging.getLogger("sencity.ingest")


@hookimpl
def sencity_cli(cli: click.Group) -> None:
    ingest_cli.register(cli)


@hookimpl
def sencity_migrations() -> list[Migration]:
    return list(MIGRATIONS)


@hookimpl
def sencity_routes() -> list[Route]:
    return api.routes()


@hookimpl(trylast=True)  # after the hub's start-up
def sencity_startup(platform: Platform) -> None:
    from sencity.ingest.service import IngestService

    if platform.state.get("hub") is None:
        log.warning("ingestion needs the hub plugin (sencity.hub.plugin); it is off")
        return
    svc = platform.state["ingest"] = IngestService(platform)
    reg, ing = platform.metrics.registry, svc.ingestor
    Gauge(
        "sencity_ingest_messages", "Sensor messages handled by this process", registry=reg
    ).set_function(lambda: ing.messages)
    Gauge(
        "sencity_ingest_observations", "Attribute values written from sensors", registry=reg
    ).set_function(lambda: ing.observations)
    Gauge(
        "sencity_ingest_queued", "Sensor messages waiting to be written", registry=reg
    ).set_function(lambda: ing.queue.qsize())
    Gauge(
        "sencity_ingest_store_failures", "Failed attempts to write a batch", registry=reg
    ).set_function(lambda: ing.store_failures)
    dead = Gauge(
        "sencity_ingest_deadletters",
        "Messages stored as dead letters by this process, by reason",
        ["reason"],
        registry=reg,
    )
    for reason in (
        "parse",
        "value",
        "time",
        "transform",
        "mapping",
        "encoding",
        "oversized",
        "topic",
        "unknown-apikey",
        "unknown-device",
        "wrong-apikey",
        "invalid",
        "rejected",
    ):
        dead.labels(reason=reason).set_function(_count(ing.dead, reason))


def _count(counter: Counter[str], key: str) -> Callable[[], float]:
    return lambda: float(counter[key])


@hookimpl
def sencity_tasks(platform: Platform) -> list[Task]:
    svc = platform.state.get("ingest")
    return [Task("ingest", svc.run)] if svc is not None else []
