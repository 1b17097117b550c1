"""The ingestion commands, listed once: ``COMMANDS`` go under ``sencity import``,
``TOP_LEVEL`` ones directly under ``sencity``."""

from __future__ import annotations

import click

COMMANDS: list[click.Command] = []
TOP_LEVEL: list[click.Command] = []
