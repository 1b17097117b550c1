"""``sencity import FILE --type TYPE``: a department file into the hub, all or per row.

Two passes: every row is converted and validated first (as the hub would parse it), so
a bad row is reported with its line and never written, then the good rows are upserted
in batches (one transaction each).  Ids come from a key column, so importing the same
file again updates the same entities (``--dry-run`` stops after the first pass).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from sencity.cli import pass_ctx
from sencity.config import TENANT_PATTERN
from sencity.errors import SenCityError
from sencity.ingest.files import read_table
from sencity.ingest.hubwrite import HubWriter, open_platform
from sencity.ingest.mapping import MappingError, load_mapping
from sencity.ingest.rows import RowConverter

if TYPE_CHECKING:
    from sencity.cli import _Ctx
    from sencity.config import Settings

BATCH = 500


@dataclass
class RowError:
    """A row not imported: where (``file:line``) and why (``column 'x': reason``)."""

    where: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


@dataclass
class Report:
    """What an import did (or, for a dry run, would do)."""

    file: str
    rows: int = 0
    valid: int = 0
    written: int = 0
    created: int = 0
    errors: list[RowError] = field(default_factory=list)
    warnings: list[RowError] = field(default_factory=list)
    dry_run: bool = False
    ids: list[str] = field(default_factory=list)  # of the rows written, in file order

    @property
    def failed(self) -> int:
        return len({e.line for e in self.errors})

    @property
    def updated(self) -> int:
        return self.written - self.created

    def summary(self) -> str:
        if self.dry_run:
            return (
                f"{self.file}: {self.rows} rows read, {self.valid} valid, "
                f"{self.failed} failed (dry run: nothing written)"
            )
        return (
            f"{self.file}: {self.rows} rows read, {self.written} written "
            f"({self.created} created, {self.updated} updated), {self.failed} failed"
        )


Progress = Callable[[str, int, int], None]  # (phase, done, total)


def import_file(
    settings: Settings,
    path: str | Path,
    etype: str | None = None,
    *,
    mapping: str | Path | None = None,
    tenant: str | None = None,
    id_column: str | None = None,
    context: Any = None,
    sheet: str | None = None,
    dry_run: bool = False,
    batch: int = BATCH,
    progress: Progress | None = None,
) -> Report:
    """Import ``path`` as entities of ``etype`` (or the mapping's ``type``).

    Raises :class:`MappingError` when nothing can be imported (bad mapping, unreadable
    file, no id rule); row problems are in the report and those rows are not written.
    """
    m = load_mapping(mapping)
    etype = etype or m.type
    if not etype:
        raise MappingError("no entity type: give --type TYPE (or 'type' in the mapping)")
    table = read_table(path, sheet)
    m.bind(table.headers, id_column, geojson=table.format == "geojson")
    conv = RowConverter(table, m, etype, id_column)
    report = Report(table.name, rows=len(table.rows), dry_run=dry_run)
    tick = progress or (lambda phase, done, total: None)
    with open_platform(settings) as platform:
        try:
            writer = HubWriter.of(platform, context)
        except SenCityError as exc:
            raise MappingError(f"--context: {exc.detail}") from None
        bodies: list[dict[str, Any]] = []
        lines: list[int] = []
        first_line: dict[str, int] = {}
        for n, row in enumerate(table.rows, 1):
            where = table.where(row)
            out = conv.row(row)
            report.warnings += [RowError(where, row.line, w) for w in out.warnings]
            problems = list(out.problems)
            if out.body is not None:
                try:
                    writer.parse(out.body)
                except SenCityError as exc:
                    problems.append(exc.detail)
                eid = out.body["id"]
                if not problems and eid in first_line:
                    problems.append(
                        f"id {eid} is the same as on line {first_line[eid]} "
                        "(the key column must be unique)"
                    )
            report.errors += [RowError(where, row.line, p) for p in problems]
            if not problems and out.body is not None:
                first_line[out.body["id"]] = row.line
                bodies.append(out.body)
                lines.append(row.line)
            tick("validating", n, len(table.rows))
        report.valid = len(bodies)
        if dry_run:
            return report
        tenant = tenant or settings.tenants.default
        by_line = {r.line: r for r in table.rows}
        for start in range(0, len(bodies), batch):
            chunk = bodies[start : start + batch]
            res = writer.write(tenant, chunk, update=True)
            failed = set()
            for index, detail in res.errors.items():
                if 0 <= index < len(chunk):
                    line = lines[start + index]
                    where = table.where(by_line[line])
                else:  # not traceable to a row (the hub reports by id)
                    line, where = 0, table.name
                report.errors.append(RowError(where, line, detail))
                failed.add(index)
            report.written += len(res.written)
            report.created += len(res.created)
            report.ids += [b["id"] for i, b in enumerate(chunk) if i not in failed]
            tick("writing", min(start + batch, len(bodies)), len(bodies))
    report.errors.sort(key=lambda e: e.line)
    return report


@click.command("file")
@click.argument("path", metavar="FILE", type=click.Path(exists=True, dir_okay=False))
@click.option("--type", "etype", help="Entity type of the rows (e.g. School).")
@click.option("--mapping", type=click.Path(exists=True, dir_okay=False), help="Mapping (YAML).")
@click.option("--tenant", help="Tenant to write to. Default: tenants.default.")
@click.option("--id-column", help="Column whose value identifies a row's entity.")
@click.option("--context", help="@context URL the attribute names are expanded with.")
@click.option("--sheet", help="XLSX: the sheet to read (default: the first).")
@click.option("--dry-run", is_flag=True, help="Validate every row, write nothing.")
@click.option("--batch-size", type=click.IntRange(1, 10_000), default=BATCH, show_default=True)
@pass_ctx
def file_command(
    ctx: _Ctx,
    path: str,
    etype: str | None,
    mapping: str | None,
    tenant: str | None,
    id_column: str | None,
    context: str | None,
    sheet: str | None,
    dry_run: bool,
    batch_size: int,
) -> None:
    """Import a CSV, XLSX or GeoJSON file: one entity per row, upserted by its id.

    Exit status: 0 all rows imported, 1 some rows failed (the others are written),
    2 nothing imported (bad options, mapping or file).
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    settings = ctx.settings()
    if tenant is not None and not re.fullmatch(TENANT_PATTERN, tenant):
        raise click.BadParameter(f"{tenant!r} is not a tenant name", param_hint="--tenant")
    console = Console(stderr=True)
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )
    tasks: dict[str, Any] = {}

    def tick(phase: str, done: int, total: int) -> None:
        if phase not in tasks:
            tasks[phase] = bar.add_task(phase, total=total)
        bar.update(tasks[phase], completed=done)

    try:
        with bar:
            report = import_file(
                settings,
                path,
                etype,
                mapping=mapping,
                tenant=tenant,
                id_column=id_column,
                context=context,
                sheet=sheet,
                dry_run=dry_run,
                batch=batch_size,
                progress=tick,
            )
    except SenCityError as exc:
        click.echo(f"error: {exc.detail}", err=True)
        sys.exit(2)
    for w in report.warnings:
        click.echo(f"warning: {w}", err=True)
    for e in report.errors:
        click.echo(str(e), err=True)
    click.echo(report.summary())
    if report.errors:
        sys.exit(1)
