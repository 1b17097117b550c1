"""``sencity import``: department files (``sencity import FILE --type T``) and transit
feeds (``sencity import gtfs FEED``)."""

from __future__ import annotations

from typing import Any

import click


class ImportGroup(click.Group):
    """A group whose first argument is a file unless it names a subcommand."""

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["file", *args]
        return super().resolve_command(ctx, args)

    def format_usage(self, ctx: click.Context, formatter: Any) -> None:
        usage = "FILE --type TYPE [OPTIONS] | gtfs FEED [OPTIONS] | osm FILE [OPTIONS]"
        formatter.write_usage(ctx.command_path, usage)


@click.group("import", cls=ImportGroup)
def import_group() -> None:
    """Import a department file (CSV, XLSX, GeoJSON), a GTFS feed or an OpenStreetMap
    extract into the hub."""


def register(cli: click.Group) -> None:
    """Add the ingestion commands to ``sencity``."""
    # each ingestion path adds its own command to the group
    from sencity.ingest import commands

    for cmd in commands.COMMANDS:
        import_group.add_command(cmd)
    cli.add_command(import_group)
    for cmd in commands.TOP_LEVEL:
        cli.add_command(cmd)
