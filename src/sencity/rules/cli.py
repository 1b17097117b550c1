"""``sencity rules …``: import and export rule files, list rules, backtest a rule."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click

from sencity.cli import _Ctx, _fail, _table, out, pass_ctx
from sencity.errors import NonexistentTenant, SenCityError
from sencity.rules.model import dump_rules, read_rules_file
from sencity.rules.store import RulesStore


@click.group("rules")
def rules_group() -> None:
    """Rules and alarms: rule files, backtests."""


def _tenant(ctx: _Ctx, tenant: str | None) -> str:
    return tenant or ctx.settings().tenants.default


@rules_group.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--tenant", default=None, help="Tenant (default: tenants.default).")
@click.option("--check", is_flag=True, help="Only validate the file; write nothing.")
@pass_ctx
def import_rules(ctx: _Ctx, file: Path, tenant: str | None, check: bool) -> None:
    """Create or replace the rules of a YAML FILE (every rule is checked before any is
    written; a running server uses them within rules.reload_seconds, at once with
    PostgreSQL)."""
    try:
        rules = read_rules_file(file)
    except SenCityError as exc:
        _fail(exc.detail)
    if check:
        click.echo(f"{file}: {len(rules)} rule(s), all valid")
        return
    from sencity.ingest.hubwrite import open_platform

    settings = ctx.settings()
    name = _tenant(ctx, tenant)
    try:
        with open_platform(settings) as platform:
            try:
                platform.store.get_tenant(name)
            except NonexistentTenant:
                platform.store.create_tenant(name)
            made, replaced = RulesStore(platform.store).put_rules(name, rules)
            svc = platform.state.get("rules")
            if svc is not None:
                svc.changed(name)
    except SenCityError as exc:
        _fail(exc.detail)
    click.echo(f"{len(rules)} rule(s) in tenant {name}: {made} created, {replaced} replaced")


@rules_group.command("export")
@click.option("--tenant", default=None, help="Tenant (default: tenants.default).")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write to this file (default: standard output).",
)
@pass_ctx
def export_rules(ctx: _Ctx, tenant: str | None, output: Path | None) -> None:
    """Print the tenant's rules as YAML (for `sencity rules import`)."""
    store = ctx.store()
    try:
        rules = RulesStore(store).all_rules(_tenant(ctx, tenant)).get(_tenant(ctx, tenant), [])
    finally:
        store.close()
    text = dump_rules(rules)
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")
        click.echo(f"{len(rules)} rule(s) written to {output}", err=True)


@rules_group.command("list")
@click.option("--tenant", default=None, help="Tenant (default: tenants.default).")
@pass_ctx
def list_rules(ctx: _Ctx, tenant: str | None) -> None:
    """The tenant's rules: id, name, types, severity, enabled."""
    store = ctx.store()
    try:
        rows, _ = RulesStore(store).list_rows(_tenant(ctx, tenant), 1000, 0)
    finally:
        store.close()
    table = []
    for r in rows:
        body = json.loads(r["body"])
        types = body.get("scope", {}).get("type", "")
        table.append(
            [
                r["id"],
                str(body.get("name", "")),
                ",".join(types) if isinstance(types, list) else str(types),
                str(body.get("alarm", {}).get("severity", "major")),
                "yes" if body.get("enabled", True) else "no",
            ]
        )
    _table(["id", "name", "types", "severity", "enabled"], table)


def _when(text: str | None, default: datetime, name: str) -> float:
    if text is None:
        return default.timestamp()
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        _fail(f"{name}: '{text}' is not an ISO 8601 date-time")
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


@rules_group.command("backtest")
@click.argument("rule_id")
@click.option("--tenant", default=None, help="Tenant (default: tenants.default).")
@click.option("--from", "start", default=None, help="Start (ISO 8601; default: 7 days ago).")
@click.option("--to", "end", default=None, help="End (ISO 8601; default: now).")
@click.option("--entity", "entities", multiple=True, help="Only this entity (repeatable).")
@click.option(
    "--file",
    "rule_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Take RULE_ID from this rule file instead of the store.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_ctx
def backtest_rule(
    ctx: _Ctx,
    rule_id: str,
    tenant: str | None,
    start: str | None,
    end: str | None,
    entities: tuple[str, ...],
    rule_file: Path | None,
    as_json: bool,
) -> None:
    """When RULE_ID would have fired over stored history (a dry run: nothing is written)."""
    from sencity.ingest.hubwrite import open_platform
    from sencity.rules.backtest import backtest

    now = datetime.now(UTC)
    lo = _when(start, now - timedelta(days=7), "--from")
    hi = _when(end, now, "--to")
    settings = ctx.settings()
    name = _tenant(ctx, tenant)
    try:
        with open_platform(settings) as platform:
            svc = platform.state["rules"]
            if rule_file is not None:
                found = [r for r in read_rules_file(rule_file) if r.id == rule_id]
                if not found:
                    _fail(f"{rule_file}: no rule '{rule_id}'")
                rule = found[0]
            else:
                rule = svc.rstore.get_rule(name, rule_id)
            with out.status(f"replaying history for rule {rule_id}…"):
                result = backtest(
                    svc.hub,
                    svc.engine.views,
                    name,
                    rule,
                    lo,
                    hi,
                    settings.rules.backtest_max_instances,
                    svc.engine.tz(name),
                    lambda code: svc.engine.ward(name, code),
                    list(entities) or None,
                )
    except SenCityError as exc:
        _fail(exc.detail)
    if as_json:
        click.echo(json.dumps(result, indent=2, ensure_ascii=False))
        return
    _table(
        ["originator", "raised", "cleared", "values"],
        [
            [
                f["originator"],
                f["raisedAt"],
                f["clearedAt"] or "(still active)",
                json.dumps(f.get("values", {}), ensure_ascii=False),
            ]
            for f in result["firings"]
        ],
    )
    click.echo(
        f"{len(result['firings'])} firing(s) over {result['entities']} entities, "
        f"{result['instances']} history instances",
        err=True,
    )
