"""``sencity sim``: run the simulated city against a SenCity server."""

from __future__ import annotations

import os
import re
import signal
import sys
from typing import Any

import click

from sencity.config import TENANT_PATTERN

_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}


def parse_duration(text: str, option: str) -> float:
    """``90``, ``90s``, ``5m``, ``2h``, ``30d``, ``1w`` → seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text)
    if m is None:
        raise click.BadParameter(
            f"{text!r} is not a duration: a number with s, m, h, d or w (e.g. 30d, 5m)",
            param_hint=option,
        )
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_rate(text: str) -> float:
    """``5000/s``, ``300/m`` or ``5000`` → messages per second."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(?:/\s*([smh]))?\s*", text)
    if m is None or float(m.group(1)) <= 0:
        raise click.BadParameter(
            f"{text!r} is not a rate: messages per second, e.g. 5000/s", param_hint="--rate"
        )
    return float(m.group(1)) / _UNITS[m.group(2) or "s"]


@click.command("sim")
@click.option("--url", default="http://127.0.0.1:8080", show_default=True, help="SenCity's URL.")
@click.option("--tenant", default="danang", show_default=True, help="Tenant (city) to feed.")
@click.option(
    "--mqtt-url",
    default="mqtt://127.0.0.1:1883",
    show_default=True,
    help="The MQTT broker SenCity's sensor agent listens to.",
)
@click.option("--seed", type=int, default=1, show_default=True, help="Same seed, same city.")
@click.option(
    "--speed",
    type=float,
    default=1.0,
    show_default=True,
    help="Simulated seconds per real second (60: an hour a minute).",
)
@click.option("--backfill", help="Write this much history first, e.g. 30d (default: none).")
@click.option("--duration", help="Stop after this long (real time), e.g. 10m (default: Ctrl-C).")
@click.option("--devices", type=click.IntRange(1, 1_000_000), help="Load mode: device count.")
@click.option("--rate", help="Load mode: messages per second, e.g. 5000/s.")
@click.option(
    "--invalid",
    type=click.FloatRange(0, 1),
    default=0.0,
    help="Load mode: share of deliberately invalid messages (dead letters).",
)
@click.option(
    "--scale",
    type=click.FloatRange(0.01, 100),
    default=1.0,
    show_default=True,
    help="Fleet size relative to the default city (0.1: a tenth of every kind).",
)
@click.option("--token", help="API token (default: the SENCITY_TOKEN environment variable).")
def sim_command(
    url: str,
    tenant: str,
    mqtt_url: str,
    seed: int,
    speed: float,
    backfill: str | None,
    duration: str | None,
    devices: int | None,
    rate: str | None,
    invalid: float,
    scale: float,
    token: str | None,
) -> None:
    """Simulate a city (Da Nang by default) feeding SenCity: air quality, traffic,
    flood gauges, streetlights, parking, noise, weather, buses, citizen reports and
    emergency calls, through the public APIs and MQTT.

    With --devices and --rate: load mode, a fixed message rate and a count report.
    Exit status: 0 done (or stopped with Ctrl-C), 1 load report not balanced, 2 an
    error (bad options, server refusal, unreachable server or broker).
    """
    from rich.console import Console

    from sencity.sim.client import ApiError, SimError
    from sencity.sim.runner import Options, Stop

    if not re.fullmatch(TENANT_PATTERN, tenant):
        raise click.BadParameter(f"{tenant!r} is not a tenant name", param_hint="--tenant")
    if speed <= 0:
        raise click.BadParameter("must be more than 0", param_hint="--speed")
    if (devices is None) != (rate is None):
        raise click.UsageError("load mode needs both --devices and --rate")
    opts = Options(
        url=url,
        tenant=tenant,
        mqtt_url=mqtt_url,
        seed=seed,
        speed=speed,
        backfill=parse_duration(backfill, "--backfill") if backfill else 0.0,
        duration=parse_duration(duration, "--duration") if duration else None,
        token=token or os.environ.get("SENCITY_TOKEN") or None,
        scale=scale,
        devices=devices,
        rate=parse_rate(rate) if rate else None,
        invalid=invalid,
    )
    console = Console(stderr=True)
    stop = Stop()

    def on_signal(_sig: int, _frame: Any) -> None:
        stop.event.set()

    old_int = signal.signal(signal.SIGINT, on_signal)
    old_term = signal.signal(signal.SIGTERM, on_signal)
    progress, done = _progress(console)
    try:
        if opts.devices:
            from sencity.sim.load import run_load

            load_report = run_load(opts, _say(console), progress, stop)
            done()
            for line in load_report.lines():
                click.echo(line)
            if not load_report.balanced:
                sys.exit(1)
            return
        from sencity.sim.runner import run

        console.print(
            f"sencity sim: tenant {tenant} at {url}, MQTT {mqtt_url}, seed {seed}, "
            f"speed {speed:g}x" + (f", backfill {backfill}" if backfill else ""),
            highlight=False,
        )
        report = run(opts, _say(console), progress, stop)
        done()
        for line in report.lines():
            click.echo(line)
    except ApiError as exc:
        done()
        hint = {
            401: " (give a valid token: --token or SENCITY_TOKEN)",
            403: f" (the token needs the operator or admin role on tenant {tenant!r})",
        }.get(exc.status, "")
        click.echo(f"error: the server refused {exc}{hint}", err=True)
        sys.exit(2)
    except SimError as exc:
        done()
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)


def _say(console: Any) -> Any:
    return lambda text: console.print(text, highlight=False, markup=False)


def _progress(console: Any) -> tuple[Any, Any]:
    """A progress callback (task, done, total) drawing rich bars, and a function that
    removes them."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )
    tasks: dict[str, Any] = {}
    started = [False]

    def progress(name: str, done_n: int, total: int) -> None:
        if not started[0]:
            bar.start()
            started[0] = True
        if name not in tasks:
            label = {"history": "backfill (instances)", "live": "live readings acknowledged"}
            tasks[name] = bar.add_task(label.get(name, name), total=total or None)
        bar.update(tasks[name], completed=done_n, total=total or None)

    def done() -> None:
        if started[0]:
            bar.stop()
            started[0] = False

    return progress, done
