"""``sencity devices …``: the provisioning API from the command line, and YAML files of
service groups and devices (export one city's fleet, import it into another instance,
keep it in version control)::

    groups:
      - apikey: hue-air
        entity_type: AirQualityObserved
        attributes: [{object_id: t, name: temperature, unitCode: CEL}]
    devices:
      - {device_id: aq-01, apikey: hue-air}
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
import yaml

from sencity.cli import _Ctx, _fail, _table, pass_ctx
from sencity.errors import AlreadyExists, BadRequest, NonexistentTenant, SenCityError
from sencity.ingest.model import Device, Group, validate
from sencity.ingest.registry import Registry


@click.group("devices")
def devices_group() -> None:
    """Provision sensors: service groups and devices, as YAML files or lists."""


def _tenant(ctx: _Ctx, tenant: str | None) -> str:
    return tenant or ctx.settings().tenants.default


def read_fleet(path: Path) -> tuple[list[Group], list[Device]]:
    """The groups and devices of a YAML file; BadRequest naming the file, item and field."""
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise BadRequest(f"{path}: {exc}") from None
    if not isinstance(doc, dict) or not set(doc) <= {"groups", "devices"}:
        raise BadRequest(f"{path}: expected a mapping with 'groups' and/or 'devices'")
    groups = [
        validate(Group, g, f"{path}: groups[{n}]") for n, g in enumerate(doc.get("groups") or [])
    ]
    devices = [
        validate(Device, d, f"{path}: devices[{n}]") for n, d in enumerate(doc.get("devices") or [])
    ]
    return groups, devices


@devices_group.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--tenant", default=None, help="Tenant (default: tenants.default).")
@pass_ctx
def import_fleet(ctx: _Ctx, file: Path, tenant: str | None) -> None:
    """Create or replace the groups and devices of a YAML FILE (everything is checked
    before anything is written)."""
    settings = ctx.settings()
    store = ctx.store(settings)
    name = _tenant(ctx, tenant)
    try:
        groups, devices = read_fleet(file)
        try:
            store.get_tenant(name)
        except NonexistentTenant:
            store.create_tenant(name)
        reg = Registry(store)
        made = replaced = 0
        for g in groups:
            try:
                reg.add_group(name, g)
                made += 1
            except AlreadyExists:
                reg.replace_group(name, g)
                replaced += 1
        new = []
        for d in devices:
            try:
                reg.get_device(name, d.device_id)
            except SenCityError:
                new.append(d)
            else:
                reg.replace_device(name, d)
                replaced += 1
        if new:
            reg.add_devices(name, new)
            made += len(new)
    except SenCityError as exc:
        _fail(exc.detail)
    finally:
        store.close()
    click.echo(
        f"{len(groups)} group(s), {len(devices)} device(s) in tenant {name}: "
        f"{made} created, {replaced} replaced"
    )


@devices_group.command("export")
@click.option("--tenant", default=None, help="Tenant (default: tenants.default).")
@pass_ctx
def export_fleet(ctx: _Ctx, tenant: str | None) -> None:
    """Print the tenant's groups and devices as YAML (for `sencity devices import`)."""
    store = ctx.store()
    name = _tenant(ctx, tenant)
    reg = Registry(store)
    out: dict[str, list[Any]] = {"groups": [], "devices": []}
    try:
        offset = 0
        while True:
            groups, total = reg.list_groups(name, 1000, offset)
            out["groups"] += [
                g.model_dump(exclude_none=True, exclude_defaults=True) for g in groups
            ]
            offset += len(groups)
            if not groups or offset >= total:
                break
        offset = 0
        while True:
            rows, total = reg.list_devices(name, 1000, offset)
            out["devices"] += [
                d.model_dump(exclude_none=True, exclude_defaults=True) for d, _ in rows
            ]
            offset += len(rows)
            if not rows or offset >= total:
                break
    finally:
        store.close()
    yaml.safe_dump(out, sys.stdout, allow_unicode=True, sort_keys=False)


@devices_group.command("list")
@click.option("--tenant", default=None, help="Tenant (default: tenants.default).")
@click.option("--silent-for", default=None, help="Only devices silent this long (PT1H, P1D).")
@pass_ctx
def list_devices(ctx: _Ctx, tenant: str | None, silent_for: str | None) -> None:
    """Devices with their entity and when they last reported."""
    from sencity.ingest.model import entity_id

    store = ctx.store()
    name = _tenant(ctx, tenant)
    reg = Registry(store)
    try:
        since = reg.silent_since(silent_for, "--silent-for") if silent_for else None
        rows, _ = reg.list_devices(name, 1000, 0, None, since)
        table = []
        for d, seen in rows:
            g = reg.group(d.apikey)
            table.append([d.device_id, d.apikey, entity_id(d, g[1]) if g else "?", seen or "never"])
    except SenCityError as exc:
        _fail(exc.detail)
    finally:
        store.close()
    _table(["device", "apikey", "entity", "last seen"], table)


@devices_group.command("deadletters")
@click.option("--tenant", default=None, help="Tenant (default: tenants.default).")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 1000))
@pass_ctx
def dead_letters(ctx: _Ctx, tenant: str | None, limit: int) -> None:
    """The newest messages that could not be ingested, with why."""
    store = ctx.store()
    try:
        rows, total = Registry(store).dead_letters(_tenant(ctx, tenant), limit, 0)
    finally:
        store.close()
    _table(
        ["received", "reason", "topic", "detail"],
        [[r["received_at"], r["reason"], r["topic"], r["detail"]] for r in rows],
    )
    click.echo(f"{total} dead letter(s) in all", err=True)
