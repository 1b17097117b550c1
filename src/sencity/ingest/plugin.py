"""Plugs ingestion into the platform: the ``sencity import`` commands (and, as they
land, the sensor agent's tables, routes and tasks)."""

from __future__ import annotations

import click

from sencity.core.hooks import hookimpl
from sencity.ingest import cli as ingest_cli


@hookimpl
def sencity_cli(cli: click.Group) -> None:
    ingest_cli.register(cli)
