"""The ingestion commands, listed once: ``COMMANDS`` go under ``sencity import``,
``TOP_LEVEL`` ones directly under ``sencity``."""

from __future__ import annotations

import click

from sencity.ingest.fileimport import file_command
from sencity.ingest.gtfs import gtfs_command
from sencity.ingest.osm import osm_command
from sencity.ingest.provision_cli import devices_group
from sencity.ingest.replay import replay_command

COMMANDS: list[click.Command] = [file_command, gtfs_command, osm_command]
TOP_LEVEL: list[click.Command] = [replay_command, devices_group]
