"""``sencity replay CSV``: a recorded time series sent again through the MQTT path.

Each CSV row becomes one message to ``/{apikey}/{device}/attrs`` carrying the row's time
as the reading time (UltraLight's leading time field, or the group's ``timestamp`` key
in JSON) and the row's numeric cells as measures.  Messages go to the broker the server
listens to (QoS 1, every PUBACK awaited), so a replay exercises exactly what a real
sensor does: the broker, the agent's parsing and mappings, batching, history, dead
letters.  Rows are paced at ``--speed`` times their real spacing (0: as fast as the
broker takes them), which turns a year of hourly readings into a live demo.

The group and the device are provisioned through the store when missing (a group with
the API key and the entity type, a device whose entity is ``--entity``).
"""

from __future__ import annotations

import csv
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import click

from sencity.cli import pass_ctx
from sencity.config import TENANT_PATTERN
from sencity.errors import AlreadyExists, NonexistentTenant, SenCityError
from sencity.ingest.mapping import default_name
from sencity.ingest.model import KEY, NAME, Device, Group, entity_id
from sencity.ingest.publisher import Publisher
from sencity.ingest.values import ValueProblem, to_datetime, to_number

if TYPE_CHECKING:
    from sencity.cli import _Ctx
    from sencity.config import Settings
    from sencity.store.base import Store

#: time formats tried after ISO 8601 and the day-first ones of :mod:`values`
#: (AirNow / US-embassy files write ``2016-08-09 01:00 AM``)
EXTRA_TIME_FORMATS = (
    "%Y-%m-%d %I:%M %p",
    "%Y-%m-%d %I:%M:%S %p",
    "%m/%d/%Y %I:%M %p",
    "%m/%d/%Y %I:%M:%S %p",
)
TIMESTAMP_KEY = "TimeInstant"  # the group's timestamp key when the replay makes the group
WINDOW = 1_000  # messages published and not yet acknowledged, at most
FIRST_TIMEOUT = 30.0  # seconds for the server to take the first (and the last) message


class ReplayError(SenCityError):
    """A replay that cannot start or go on; the text says what to do."""


@dataclass
class Row:
    """One CSV row ready to send: its line, its time (UTC) and its measures."""

    line: int
    time: datetime
    measures: dict[str, int | float]


@dataclass
class Plan:
    """What to read from the file: the time source and the columns → measure names."""

    columns: dict[str, str]  # CSV header -> measure name
    time_column: str | None = None
    time_format: str | None = None
    start: datetime | None = None  # files without a time column: first row's time
    interval: float = 0.0  # ... and the seconds between rows
    tz: tzinfo = UTC
    missing: frozenset[str] = frozenset()


@dataclass
class Report:
    """What a replay did."""

    rows: int = 0  # rows read
    sent: int = 0  # messages acknowledged by the broker
    observations: int = 0  # measured values in them
    skipped: Counter[str] = field(default_factory=Counter)  # rows not sent, by reason
    cells: Counter[str] = field(default_factory=Counter)  # cells left out of sent rows
    seconds: float = 0.0
    provisioned: list[str] = field(default_factory=list)
    dead: Counter[str] = field(default_factory=Counter)  # dead letters of this replay

    def summary(self) -> list[str]:
        rate = self.sent / self.seconds if self.seconds > 0 else 0.0
        lines = [
            f"{self.rows} rows read, {self.sent} sent ({self.observations} observations) "
            f"in {self.seconds:.1f} s: {rate:,.0f} messages/s, "
            f"{self.observations / self.seconds if self.seconds > 0 else 0:,.0f} observations/s",
        ]
        skipped = sum(self.skipped.values())
        if skipped:
            why = ", ".join(f"{n} {r}" for r, n in self.skipped.most_common())
            lines.append(f"{skipped} rows skipped: {why}")
        if self.cells:
            why = ", ".join(f"{n} {r}" for r, n in self.cells.most_common())
            lines.append(f"cells left out of sent rows: {why}")
        if self.dead:
            why = ", ".join(f"{n} {r}" for r, n in self.dead.most_common())
            lines.append(f"dead letters (see /ingest/v1/deadletters): {why}")
        return lines


# -- reading the file -----------------------------------------------------------------------
def parse_time(text: str, tz: tzinfo, fmt: str | None = None) -> datetime:
    """A CSV time (UTC); one without a zone is in ``tz``.  ISO 8601, day-first
    (``09/08/2016 01:00``) and 12-hour (``2016-08-09 01:00 AM``) forms are read."""
    try:
        iso = to_datetime(text, tz, fmt)
    except ValueProblem:
        if fmt:
            raise
        for f in EXTRA_TIME_FORMATS:
            try:
                iso = to_datetime(text, tz, f)
                break
            except ValueProblem:
                continue
        else:
            raise ValueProblem(f"{text[:40]!r} is not a date-time") from None
    return datetime.fromisoformat(iso.replace("Z", "+00:00"))


def measure_name(header: str) -> str:
    """A measure name for a header (``Raw Conc.`` → ``rawConc``), safe in UltraLight."""
    return default_name(header.strip())


def parse_columns(
    spec: str | None, headers: list[str], sample: list[dict[str, str]]
) -> dict[str, str]:
    """``a,b=name,...`` → {header: measure}; by default the columns whose sampled cells
    are mostly numbers (a stray 'n/a' is then reported per row, not a reason to drop
    the column)."""
    if spec:
        out: dict[str, str] = {}
        for item in (s.strip() for s in spec.split(",")):
            if not item:
                continue
            col, _, name = item.partition("=")
            col, name = col.strip(), name.strip() or measure_name(col.strip())
            if col not in headers:
                raise ReplayError(f"no column {col!r} in the file (columns: {', '.join(headers)})")
            if not re.fullmatch(NAME[1:-1], name) or name[0].isdigit():
                raise ReplayError(
                    f"{name!r} cannot be a measure name: give one (--columns {col}=name)"
                )
            out[col] = name
        return out
    out = {}
    for h in headers:
        cells = [r.get(h) or "" for r in sample]
        filled = [c for c in cells if c.strip()]
        if filled and sum(map(_is_number, filled)) * 2 > len(filled):
            name = measure_name(h)
            if name[0].isdigit():
                name = "c" + name
            out[h] = name
    return out


def _is_number(text: str) -> bool:
    try:
        to_number(text)
    except ValueProblem:
        return False
    return True


def read_rows(path: Path, plan: Plan, report: Report, limit: int | None = None) -> Iterator[Row]:
    """The file's rows to send, in file order; rows that cannot be sent are counted in
    ``report.skipped`` (cells left out of a sent row in ``report.cells``)."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        for n, raw in enumerate(reader):
            if limit is not None and n >= limit:
                return
            report.rows += 1
            line = reader.line_num
            if plan.time_column is not None:
                cell = (raw.get(plan.time_column) or "").strip()
                if not cell:
                    report.skipped["empty time"] += 1
                    continue
                try:
                    when = parse_time(cell, plan.tz, plan.time_format)
                except ValueProblem:
                    report.skipped["unreadable time"] += 1
                    continue
            else:
                assert plan.start is not None
                when = plan.start + timedelta(seconds=plan.interval * n)
            measures: dict[str, int | float] = {}
            problems: list[str] = []
            for col, name in plan.columns.items():
                cell = (raw.get(col) or "").strip()
                if not cell:
                    problems.append("empty cell")
                elif cell in plan.missing:
                    problems.append("missing-value marker")
                else:
                    try:
                        measures[name] = to_number(cell)
                    except ValueProblem:
                        problems.append("non-numeric cell")
            if not measures:
                reason = problems[0] if len(set(problems)) == 1 else "no numeric cell"
                report.skipped[reason] += 1
                continue
            for p in problems:
                report.cells[p] += 1
            yield Row(line, when, measures)


# -- messages ---------------------------------------------------------------------------
def iso(when: datetime) -> str:
    """UTC ISO 8601 with a Z (what the agent reads as a reading's time)."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _num(value: int | float) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def ul_payload(row: Row) -> bytes:
    """UltraLight 2.0 with a leading time: ``2016-08-08T18:00:00Z|pm25|6.2``."""
    parts = [iso(row.time)]
    for k, v in row.measures.items():
        parts += [k, _num(v)]
    return "|".join(parts).encode()


def json_payload(row: Row, ts_key: str) -> bytes:
    """A JSON object of measures with the time under the group's timestamp key."""
    import json

    return json.dumps({ts_key: iso(row.time), **row.measures}, separators=(",", ":")).encode()


# -- provisioning -----------------------------------------------------------------------------
def provision(
    store: Store, tenant: str, apikey: str, device_id: str, etype: str, entity: str
) -> tuple[Group, Device, list[str]]:
    """The group and device to send as, made in the store when missing; what was made."""
    from sencity.ingest.registry import Registry

    registry = Registry(store)
    made: list[str] = []
    found = registry.group(apikey)
    if found is not None:
        owner, group = found
        if owner != tenant:
            raise ReplayError(
                f"API key {apikey!r} belongs to tenant {owner!r}, not {tenant!r}: "
                "choose another --apikey or --tenant"
            )
    else:
        try:
            store.get_tenant(tenant)
        except NonexistentTenant:
            try:
                store.create_tenant(tenant)
                made.append(f"tenant {tenant}")
            except AlreadyExists:
                pass
        group = Group(
            apikey=apikey,
            entity_type=etype,
            timestamp=TIMESTAMP_KEY,
            description="made by sencity replay",
        )
        registry.add_group(tenant, group)
        made.append(f"service group {apikey} (type {etype})")
    device = registry.device(tenant, device_id)
    if device is not None:
        if device.apikey != apikey:
            raise ReplayError(
                f"device {device_id!r} belongs to API key {device.apikey!r}: "
                "choose another --device or --apikey"
            )
        have = entity_id(device, group)
        if have != entity:
            raise ReplayError(
                f"device {device_id!r} writes entity {have!r}, not {entity!r}: "
                "choose another --device"
            )
    else:
        device = Device(
            device_id=device_id,
            apikey=apikey,
            entity_id=entity,
            entity_type=None if etype == group.entity_type else etype,
            description="made by sencity replay",
        )
        registry.add_devices(tenant, [device])
        made.append(f"device {device_id} (entity {entity})")
    return group, device, made


def handled_mark(store: Store, tenant: str, apikey: str, device_id: str) -> str:
    """The server's latest handling of this device: its last-seen time or its latest dead
    letter's, whichever is later ("" when none)."""
    with store.transaction(write=False) as tx:
        seen = tx.one(
            "SELECT last_seen FROM ingest_devices WHERE tenant = ? AND device_id = ?",
            (tenant, device_id),
        )
        dead = tx.one(
            "SELECT max(received_at) AS t FROM ingest_deadletters WHERE apikey = ? "
            "AND device_id = ?",
            (apikey, device_id),
        )
    return max((seen or {}).get("last_seen") or "", (dead or {}).get("t") or "")


def wait_handled(
    store: Store, tenant: str, apikey: str, device_id: str, since: str, timeout: float
) -> bool:
    """Poll the store until the server has handled a message of this device received at
    ``since`` or later; False after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while handled_mark(store, tenant, apikey, device_id) < since:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def dead_letters(store: Store, apikey: str, device_id: str, since: str) -> Counter[str]:
    """Dead letters of this replay's device since ``since`` (by reason)."""
    with store.transaction(write=False) as tx:
        rows = tx.execute(
            "SELECT reason, count(*) AS n FROM ingest_deadletters WHERE apikey = ? "
            "AND device_id = ? AND received_at >= ? GROUP BY reason",
            (apikey, device_id, since),
        )
    return Counter({r["reason"]: int(r["n"]) for r in rows})


# -- sending ----------------------------------------------------------------------------------
def broker_url(settings: Settings) -> str:
    """The configured broker, else the embedded one's address."""
    return settings.ingest.mqtt_url or f"mqtt://127.0.0.1:{settings.ingest.embedded_port}"


def _utc_stamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def replay(
    settings: Settings,
    path: Path,
    plan: Plan,
    *,
    etype: str,
    entity: str,
    tenant: str,
    apikey: str,
    device_id: str,
    speed: float,
    broker: str,
    fmt: str = "ul",
    limit: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    say: Callable[[str], None] = print,
) -> Report:
    """Provision if needed, then send the file's rows; the report of what was done."""
    from sencity.core.platform import prepare_store

    report = Report()
    store = prepare_store(settings)
    try:
        group, device, made = provision(store, tenant, apikey, device_id, etype, entity)
        report.provisioned = made
        for m in made:
            say(f"provisioned {m} in the store")
        ts_key = device.timestamp or group.timestamp
        if fmt == "json" and not ts_key:
            raise ReplayError(
                f"service group {apikey!r} has no timestamp key, so JSON readings cannot "
                "carry their time: use --format ul (or set the group's 'timestamp')"
            )
        topic = f"/{'ul' if fmt == 'ul' else 'json'}/{apikey}/{device_id}/attrs"
        sender = Publisher(
            broker,
            f"sencity-replay-{int(time.time() * 1000) % 10**9}",
            WINDOW,
            error=ReplayError,
            option="--broker",
        )
        sender.connect()
        since = _utc_stamp()

        def first_through() -> None:
            # the broker's PUBACK says nothing of the server: wait until the server has
            # written the first message (the device's last-seen time moves) or refused it
            if not wait_handled(store, tenant, apikey, device_id, since, FIRST_TIMEOUT):
                raise ReplayError(
                    f"no server took the first message within {FIRST_TIMEOUT:.0f} s: is "
                    f"'sencity serve' running with this store and ingest.mqtt_url = {broker}?"
                )
            dead = dead_letters(store, apikey, device_id, since)
            if dead.keys() & {"unknown-apikey", "unknown-device", "wrong-apikey"}:
                report.dead = dead
                raise ReplayError(
                    f"the server refused the first message ({', '.join(dead)}): it does not "
                    "know the group or device"
                    + (" made just now: replay again in a few seconds" if made else "")
                )

        try:
            _send_rows(
                sender,
                path,
                plan,
                report,
                topic,
                fmt,
                ts_key,
                speed,
                limit,
                on_progress,
                first_through,
            )
            # messages reach the server in order: once it has handled one received after
            # the last PUBACK, it has (nearly always) handled them all
            wait_handled(store, tenant, apikey, device_id, _utc_stamp(), FIRST_TIMEOUT)
            report.dead = dead_letters(store, apikey, device_id, since)
        finally:
            sender.close()
    finally:
        store.close()
    return report


def _send_rows(
    sender: Publisher,
    path: Path,
    plan: Plan,
    report: Report,
    topic: str,
    fmt: str,
    ts_key: str | None,
    speed: float,
    limit: int | None,
    on_progress: Callable[[int, int], None] | None,
    first_through: Callable[[], None],
) -> None:
    """Publish the rows, paced; the first one alone, checked by ``first_through``."""
    t0 = time.monotonic()
    first_time: datetime | None = None
    checked = False
    obs = 0

    def tick() -> None:
        if on_progress is not None:
            on_progress(sender.acked, report.rows)

    for row in read_rows(path, plan, report, limit):
        if first_time is None:
            first_time = row.time
        elif speed > 0:
            due = t0 + (row.time - first_time).total_seconds() / speed
            while (left := due - time.monotonic()) > 0:
                time.sleep(min(left, 0.2))
                tick()
        payload = ul_payload(row) if fmt == "ul" else json_payload(row, ts_key or TIMESTAMP_KEY)
        sender.send(topic, payload)
        obs += len(row.measures)
        if not checked:
            sender.wait(0)
            first_through()
            checked = True
            t0 = time.monotonic()  # pacing starts once the first message is through
        if sender.published % 50 == 0:
            tick()
    sender.wait(0, tick)
    tick()
    report.sent = sender.acked
    report.observations = obs
    report.seconds = time.monotonic() - t0


@click.command("replay")
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--type", "etype", required=True, help="Entity type (of the group when made).")
@click.option("--entity", required=True, help="Entity id the readings go to.")
@click.option("--time-column", help="Column holding each row's time.")
@click.option("--time-format", help="strptime format of the time column (default: guessed).")
@click.option(
    "--start",
    "start_time",
    help="Files without a time column: the first row's time (with --interval).",
)
@click.option("--interval", type=float, help="Files without a time column: seconds between rows.")
@click.option(
    "--columns",
    help="Columns to send, comma-separated; 'col=name' names the measure "
    "(default: every numeric column).",
)
@click.option(
    "--missing", multiple=True, help="A cell value meaning 'no reading' (e.g. -999); repeatable."
)
@click.option(
    "--speed",
    type=float,
    default=1.0,
    show_default=True,
    help="Times real time (3600: an hour of data per second); 0: as fast as possible.",
)
@click.option("--broker", help="MQTT broker URL (default: ingest.mqtt_url, else the embedded one).")
@click.option("--apikey", default="replay", show_default=True, help="Service group API key.")
@click.option("--device", "device_id", help="Device id (default: from the entity id).")
@click.option("--tenant", help="Tenant (default: tenants.default).")
@click.option("--limit", type=click.IntRange(min=0), help="Send at most this many rows.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["ul", "json"]),
    default="ul",
    show_default=True,
    help="Payload format: UltraLight 2.0 with a leading time, or JSON.",
)
@click.option(
    "--timezone",
    default="Asia/Ho_Chi_Minh",
    show_default=True,
    help="Zone of the file's times that have none.",
)
@pass_ctx
def replay_command(
    ctx: _Ctx,
    csv_file: Path,
    etype: str,
    entity: str,
    time_column: str | None,
    time_format: str | None,
    start_time: str | None,
    interval: float | None,
    columns: str | None,
    missing: tuple[str, ...],
    speed: float,
    broker: str | None,
    apikey: str,
    device_id: str | None,
    tenant: str | None,
    limit: int | None,
    fmt: str,
    timezone: str,
) -> None:
    """Replay a CSV time series through MQTT, one message per row, at --speed.

    Provisions the service group and device in the store when they do not exist.  Exit
    status: 0 every row sent and accepted, 1 some rows skipped or dead letters, 2 nothing
    sent (bad options, file, broker).
    """
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    settings = ctx.settings()
    tenant = tenant or settings.tenants.default
    if not re.fullmatch(TENANT_PATTERN, tenant):
        raise click.BadParameter(f"{tenant!r} is not a tenant name", param_hint="--tenant")
    if not re.fullmatch(KEY, apikey):
        raise click.BadParameter("letters, digits, '_' and '-' only", param_hint="--apikey")
    device_id = device_id or re.sub(r"[^A-Za-z0-9_.\-]+", "-", entity.rsplit(":", 1)[-1])[:128]
    if not re.fullmatch(NAME, device_id):
        raise click.BadParameter(f"{device_id!r} is not a device id", param_hint="--device")
    if speed < 0:
        raise click.BadParameter("0 (as fast as possible) or more", param_hint="--speed")
    try:
        tz = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise click.BadParameter(
            f"unknown time zone {timezone!r}", param_hint="--timezone"
        ) from None
    with open(csv_file, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        headers = list(reader.fieldnames or [])
        sample = [r for _, r in zip(range(100), reader, strict=False)]
        total = sum(1 for _ in reader) + len(sample)
    if time_column is None and (start_time is None or interval is None):
        raise click.UsageError(
            "give --time-column, or --start and --interval for a file without one"
        )
    if time_column is not None and time_column not in headers:
        raise click.BadParameter(
            f"no column {time_column!r} (columns: {', '.join(headers)})", param_hint="--time-column"
        )
    try:
        cols = parse_columns(columns, [h for h in headers if h != time_column], sample)
        start = parse_time(start_time, tz) if start_time else None
    except (ReplayError, ValueProblem) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    if not cols:
        click.echo("error: no numeric column to send (see --columns)", err=True)
        sys.exit(2)
    plan = Plan(cols, time_column, time_format, start, interval or 0.0, tz, frozenset(missing))
    total = min(total, limit) if limit is not None else total
    url = broker or broker_url(settings)
    console = Console(stderr=True)
    click.echo(
        f"replaying {csv_file.name}: {total} rows, measures "
        f"{', '.join(f'{c}→{n}' if c != n else n for c, n in cols.items())}, "
        f"to {url} as {apikey}/{device_id} (entity {entity}, tenant {tenant}), "
        f"speed {'max' if speed == 0 else f'{speed:g}x'}"
    )
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )
    task = bar.add_task("acknowledged", total=total)
    try:
        with bar:
            report = replay(
                settings,
                csv_file,
                plan,
                etype=etype,
                entity=entity,
                tenant=tenant,
                apikey=apikey,
                device_id=device_id,
                speed=speed,
                broker=url,
                fmt=fmt,
                limit=limit,
                on_progress=lambda done, _read: bar.update(task, completed=done),
                say=lambda text: console.print(text, highlight=False, markup=False),
            )
    except SenCityError as exc:
        click.echo(f"error: {exc.detail}", err=True)
        sys.exit(2)
    for line in report.summary():
        click.echo(line)
    if report.dead or report.skipped:
        sys.exit(1)
