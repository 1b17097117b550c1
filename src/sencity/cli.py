"""The ``sencity`` command line."""

from __future__ import annotations

import inspect
import json
import logging
import os
import secrets
import socket
import sys
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, NoReturn

import click
from rich.console import Console
from rich.table import Table

from sencity import __version__
from sencity.auth.roles import ALL_TENANTS, ROLES
from sencity.auth.service import AuthService, hash_password
from sencity.config import TENANT_PATTERN, Settings, load_settings
from sencity.errors import ConfigError, SenCityError
from sencity.sim.cli import sim_command
from sencity.store import Store, redact_url

if TYPE_CHECKING:
    from sencity.core.platform import Platform
    from sencity.demo.runner import SimProcess
    from sencity.demo.seed import SeedResult

console = Console(stderr=True)
out = Console()
log = logging.getLogger("sencity")
OVERRIDES_ENV = "_SENCITY_SERVE_OVERRIDES"


class _Ctx:
    def __init__(self, config: str | None) -> None:
        self.config = config

    def settings(self, overrides: dict[str, Any] | None = None) -> Settings:
        try:
            return load_settings(self.config, overrides)
        except ConfigError as exc:
            _fail(str(exc))

    def store(self, settings: Settings | None = None) -> Store:
        from sencity.core.platform import prepare_store

        settings = settings or self.settings()
        try:
            return prepare_store(settings)
        except SenCityError as exc:
            _fail(exc.detail)


def _table(headers: list[str], rows: list[list[str]]) -> None:
    """A table on a terminal; tab-separated lines when piped (for scripts)."""
    if out.is_terminal:
        table = Table(*headers)
        for row in rows:
            table.add_row(*row)
        out.print(table)
    else:
        for row in [headers, *rows]:
            click.echo("\t".join(row))


def _fail(message: str, code: int = 1) -> NoReturn:
    for line in message.splitlines():
        click.echo(f"error: {line}", err=True)
    sys.exit(code)


pass_ctx = click.make_pass_decorator(_Ctx)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-c",
    "--config",
    type=click.Path(dir_okay=False),
    envvar="SENCITY_CONFIG",
    help="Configuration file (TOML or YAML). Default: ./sencity.toml if present.",
)
@click.pass_context
def cli(ctx: click.Context, config: str | None) -> None:
    """SenCity: smart-city platform (NGSI-LD context hub and IOC)."""
    ctx.obj = _Ctx(config)


@cli.command()
def version() -> None:
    """Print the version."""
    click.echo(f"sencity {__version__}")


# -- serve / demo ------------------------------------------------------------------------
def _serve_options(f: Callable[..., Any]) -> Callable[..., Any]:
    for opt in reversed(
        [
            click.option("--store", "store_url", help="Store URL (sqlite:///… or postgresql://…)."),
            click.option("--host", help="Listen address."),
            click.option("--port", type=int, help="Listen port (0 = any free port)."),
            click.option("--data-dir", type=click.Path(file_okay=False), help="Data directory."),
            click.option("--workers", type=int, help="API worker processes (PostgreSQL only)."),
        ]
    ):
        f = opt(f)
    return f


def _overrides(
    store_url: str | None,
    host: str | None,
    port: int | None,
    data_dir: str | None,
    workers: int | None,
) -> dict[str, Any]:
    o: dict[str, Any] = {}
    if store_url:
        o.setdefault("store", {})["url"] = store_url
    for key, val in (("host", host), ("port", port), ("workers", workers)):
        if val is not None:
            o.setdefault("server", {})[key] = val
    if data_dir:
        o["data_dir"] = data_dir
    return o


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        _fail(f"cannot listen on {host}:{port}: {exc.strerror}")
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _base_url(settings: Settings, port: int) -> str:
    if settings.server.public_url:
        return settings.server.public_url.rstrip("/")
    host = settings.server.host
    host = "127.0.0.1" if host in ("0.0.0.0", "") else host  # noqa: S104
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{port}"


def _run(
    ctx: _Ctx,
    overrides: dict[str, Any],
    demo: bool,
    city: str = "danang",
    sim: bool = True,
    reseed: bool = False,
) -> None:
    import uvicorn

    from sencity.core.platform import Platform
    from sencity.ops.logs import setup_logging
    from sencity.web.asgi import create_app

    settings = ctx.settings(overrides)
    setup_logging(settings.log.level, settings.log.format)
    broker = None
    if demo:  # an MQTT broker for the demo even when port 1883 is taken (demo/runner.py)
        from sencity.demo.runner import choose_broker

        broker = choose_broker(settings)
        if broker.overrides:
            overrides = {**overrides, **broker.overrides}
            settings = ctx.settings(overrides)
    if settings.server.workers > 1 and not settings.is_postgresql:
        _fail(
            "server.workers > 1 needs the PostgreSQL store (the embedded SQLite store "
            "and in-memory bus serve one process)"
        )
    try:
        platform = Platform(settings)
    except SenCityError as exc:
        _fail(exc.detail)
    anon = settings.auth.anonymous
    if anon.role:
        log.warning(
            "ANONYMOUS ACCESS IS ON: requests without credentials get role '%s' on "
            "tenant(s) %s (auth.anonymous)",
            anon.role,
            ", ".join(anon.tenants) or "none",
        )
    admin_password, seeded, simulator = None, None, None
    if demo:
        admin_password, seeded, simulator = _prepare_demo(
            platform, city, broker.url if broker and sim else None, sim, reseed
        )
    sock = _bind(settings.server.host, settings.server.port)
    port = sock.getsockname()[1]
    base = _base_url(settings, port)

    def ready() -> None:
        click.echo(
            f"SenCity {__version__} listening on {base} (store: {redact_url(platform.store.url)})"
        )
        if demo:
            if seeded:
                click.echo(seeded.summary())
            if broker:
                click.echo(broker.note)
            if admin_password:
                click.echo(f"Created user 'admin' with password: {admin_password}")
                click.echo("  (shown once; change it with: sencity users set-password admin)")
            link = platform.auth.login_link_token("admin")
            minutes = settings.auth.login_link_ttl_minutes
            click.echo(f"Open this one-time login link (valid {minutes:g} min):")
            click.echo(f"    {base}/login?token={link}")
        sys.stdout.flush()
        if simulator:
            simulator.start(base)

    if settings.server.workers > 1:
        from uvicorn.supervisors import Multiprocess

        platform.close()  # each worker builds its own platform from the same settings
        os.environ[OVERRIDES_ENV] = json.dumps(overrides)
        if ctx.config:
            os.environ["SENCITY_CONFIG"] = ctx.config
        config = uvicorn.Config(
            "sencity.web.asgi:app_from_env",
            factory=True,
            workers=settings.server.workers,
            log_config=None,
            access_log=False,
            lifespan="on",
        )
        ready()  # the socket is listening: connections wait for the first worker
        click.echo(f"({settings.server.workers} worker processes)")
        try:
            if "target" in inspect.signature(Multiprocess).parameters:  # uvicorn before 0.50
                Multiprocess(config, target=uvicorn.Server(config).run, sockets=[sock]).run()  # type: ignore[call-arg]
            else:
                Multiprocess(config, sockets=[sock]).run()
        finally:
            if simulator:
                simulator.stop()
        return
    app = create_app(platform, on_ready=ready)
    server = uvicorn.Server(
        uvicorn.Config(
            app, log_config=None, access_log=False, lifespan="on", timeout_graceful_shutdown=5
        )
    )
    try:
        server.run(sockets=[sock])
    finally:
        if simulator:
            simulator.stop()
        platform.close()
    if not server.started:
        sys.exit(1)


def _prepare_demo(
    platform: Platform, city: str, mqtt_url: str | None, sim: bool, reseed: bool
) -> tuple[str | None, SeedResult, SimProcess | None]:
    """The demo city (tenant and entities, see demo/seed.py), an admin, and the simulator
    to start once the server is ready: (the admin's new password if just created, what
    the seed did, the simulator or None)."""
    from sencity.demo.rules import seed_rules
    from sencity.demo.runner import SimProcess, sim_token
    from sencity.demo.seed import seed
    from sencity.errors import NotFound

    store = platform.store
    try:
        seeded = seed(platform, city, reseed=reseed)
        seed_rules(platform, seeded.city.slug)
    except SenCityError as exc:
        _fail(exc.detail)
    password = None
    try:
        store.get_user("admin")
    except NotFound:
        password = secrets.token_urlsafe(12)
        store.create_user(
            "admin",
            password_hash=hash_password(password),
            display_name="Administrator",
            roles={ALL_TENANTS: "admin"},
        )
    simulator = None
    if not sim:
        log.info("demo: the simulator is off (--no-sim)")
    elif "sim" not in cli.commands:
        log.warning("demo: 'sencity sim' is not available; the demo runs without simulated sensors")
    elif mqtt_url is None:
        log.warning("demo: no MQTT broker, so no simulated sensors (see ingest.mqtt_url)")
    else:
        token = sim_token(store, platform.auth, seeded.city.slug)
        simulator = SimProcess(seeded.city.slug, mqtt_url, token)
        SimProcess.exit_on_sigterm()
    return password, seeded, simulator


@cli.command()
@_serve_options
@pass_ctx
def serve(ctx: _Ctx, /, **opts: Any) -> None:
    """Start the platform (embedded SQLite store unless --store says otherwise)."""
    _run(ctx, _overrides(**opts), demo=False)


@cli.command()
@_serve_options
@click.option(
    "--city",
    default="danang",
    show_default=True,
    help="Province slug: danang, hanoi, hcmc, hue, haiphong, cantho, … (the tenant name).",
)
@click.option("--no-sim", is_flag=True, help="Do not start the simulated sensors (sencity sim).")
@click.option(
    "--reseed",
    is_flag=True,
    help="Rewrite generated demo entities that differ (edited ones are always kept).",
)
@pass_ctx
def demo(ctx: _Ctx, /, city: str, no_sim: bool, reseed: bool, **opts: Any) -> None:
    """Start the platform with a demo city (wards, roads, places), the simulated sensors
    and a one-time admin login link."""
    from sencity.demo.cities import resolve_slug

    try:
        slug = resolve_slug(city)
    except SenCityError as exc:
        _fail(exc.detail)
    overrides = _overrides(**opts)
    overrides["tenants"] = {"default": slug}
    _run(ctx, overrides, demo=True, city=slug, sim=not no_sim, reseed=reseed)


# -- config ------------------------------------------------------------------------------
@cli.group()
def config() -> None:
    """Check or show the configuration."""


@config.command("check")
@pass_ctx
def config_check(ctx: _Ctx) -> None:
    """Validate the configuration and reach the store; exit non-zero on any problem."""
    settings = ctx.settings()
    store = ctx.store(settings)
    store.close()
    click.echo(f"configuration OK; store {redact_url(settings.store_url)} reachable")


@config.command("show")
@pass_ctx
def config_show(ctx: _Ctx) -> None:
    """Print the effective configuration (passwords redacted) as JSON."""
    data = ctx.settings().model_dump(mode="json")
    data["store"]["url"] = redact_url(data["store"]["url"])
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


# -- tenants -----------------------------------------------------------------------------
@cli.group()
def tenants() -> None:
    """Manage tenants (one per city)."""


@tenants.command("add")
@click.argument("name")
@click.option("--display-name", default="", help="Human name, e.g. 'Thành phố Huế'.")
@click.option("--timezone", default="Asia/Ho_Chi_Minh", show_default=True)
@click.option("--locale", type=click.Choice(["vi", "en"]), default="vi", show_default=True)
@pass_ctx
def tenants_add(ctx: _Ctx, name: str, display_name: str, timezone: str, locale: str) -> None:
    """Create a tenant."""
    import re
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if not re.match(TENANT_PATTERN, name):
        _fail(f"invalid tenant name '{name}': lower-case letters, digits, '-' and '_'")
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        _fail(f"unknown time zone '{timezone}'")
    store = ctx.store()
    try:
        store.create_tenant(name, display_name, timezone, locale)
    except SenCityError as exc:
        _fail(exc.detail)
    click.echo(f"tenant '{name}' created")


@tenants.command("list")
@pass_ctx
def tenants_list(ctx: _Ctx) -> None:
    """List tenants."""
    rows = [
        [t["name"], t["display_name"], t["timezone"], t["locale"]]
        for t in ctx.store().list_tenants()
    ]
    _table(["name", "display name", "time zone", "locale"], rows)


# -- users -------------------------------------------------------------------------------
@cli.group()
def users() -> None:
    """Manage users and machine clients."""


def _read_password(stdin: bool, username: str) -> tuple[str, bool]:
    """A password from stdin, a prompt, or (non-interactive) a generated one."""
    if stdin:
        pw = sys.stdin.readline().rstrip("\n")
        if len(pw) < 8:
            _fail("the password must have at least 8 characters")
        return pw, False
    if sys.stdin.isatty():
        pw = click.prompt(f"Password for {username}", hide_input=True, confirmation_prompt=True)
        if len(pw) < 8:
            _fail("the password must have at least 8 characters")
        return pw, False
    return secrets.token_urlsafe(12), True


def _tenant_arg(ctx: _Ctx, store: Store, tenant: str) -> str:
    if tenant == ALL_TENANTS:
        return tenant
    try:
        store.get_tenant(tenant)
    except SenCityError:
        _fail(f"tenant '{tenant}' does not exist (create it with: sencity tenants add {tenant})")
    return tenant


@users.command("add")
@click.argument("username")
@click.option("--role", type=click.Choice(ROLES), required=True)
@click.option(
    "--tenant",
    default=None,
    help="Tenant of the role; '*' = every tenant. Default: the default tenant.",
)
@click.option("--client", is_flag=True, help="A machine client (no password; use tokens).")
@click.option("--display-name", default="")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@pass_ctx
def users_add(
    ctx: _Ctx,
    username: str,
    role: str,
    tenant: str | None,
    client: bool,
    display_name: str,
    password_stdin: bool,
) -> None:
    """Add a user (or, with --client, a machine client) with a role on a tenant."""
    settings = ctx.settings()
    store = ctx.store(settings)
    tenant = _tenant_arg(ctx, store, tenant or settings.tenants.default)
    password_hash, generated = None, None
    if not client:
        pw, was_generated = _read_password(password_stdin, username)
        password_hash = hash_password(pw)
        generated = pw if was_generated else None
    try:
        store.create_user(
            username,
            kind="client" if client else "user",
            password_hash=password_hash,
            display_name=display_name,
            roles={tenant: role},
        )
    except SenCityError as exc:
        _fail(exc.detail)
    click.echo(f"{'client' if client else 'user'} '{username}' added: {role} on {tenant}")
    if generated:
        click.echo(f"generated password (shown once): {generated}")


@users.command("list")
@pass_ctx
def users_list(ctx: _Ctx) -> None:
    """List users, their kind and roles."""
    rows = [
        [
            u["username"],
            u["kind"],
            ", ".join(f"{r}@{t}" for t, r in u["roles"].items()),
            "yes" if u["disabled"] else "",
        ]
        for u in ctx.store().list_users()
    ]
    _table(["username", "kind", "roles", "disabled"], rows)


@users.command("set-role")
@click.argument("username")
@click.argument("role", type=click.Choice([*ROLES, "none"]))
@click.option("--tenant", default=None, help="'*' = every tenant. Default: the default tenant.")
@pass_ctx
def users_set_role(ctx: _Ctx, username: str, role: str, tenant: str | None) -> None:
    """Give USERNAME the ROLE on a tenant ('none' removes their role there)."""
    settings = ctx.settings()
    store = ctx.store(settings)
    tenant = _tenant_arg(ctx, store, tenant or settings.tenants.default)
    try:
        store.set_role(username, tenant, None if role == "none" else role)
    except SenCityError as exc:
        _fail(exc.detail)
    click.echo(f"'{username}': {role} on {tenant}")


@users.command("set-password")
@click.argument("username")
@click.option("--password-stdin", is_flag=True)
@pass_ctx
def users_set_password(ctx: _Ctx, username: str, password_stdin: bool) -> None:
    """Set a user's password."""
    store = ctx.store()
    pw, generated = _read_password(password_stdin, username)
    try:
        store.update_user(username, password_hash=hash_password(pw))
    except SenCityError as exc:
        _fail(exc.detail)
    click.echo(f"password of '{username}' changed")
    if generated:
        click.echo(f"generated password (shown once): {pw}")


@users.command("disable")
@click.argument("username")
@click.option("--enable", is_flag=True, help="Enable the account again.")
@pass_ctx
def users_disable(ctx: _Ctx, username: str, enable: bool) -> None:
    """Disable (or --enable) an account; its tokens stop working at once."""
    try:
        ctx.store().update_user(username, disabled=not enable)
    except SenCityError as exc:
        _fail(exc.detail)
    click.echo(f"'{username}' {'enabled' if enable else 'disabled'}")


# -- tokens ------------------------------------------------------------------------------
@cli.group()
def tokens() -> None:
    """Create, list and revoke API tokens (API keys)."""


@tokens.command("create")
@click.argument("username")
@click.option("--name", default="api", help="What the token is for, e.g. 'gateway-3'.")
@click.option("--expires-days", type=float, default=None, help="Default: never expires.")
@pass_ctx
def tokens_create(ctx: _Ctx, username: str, name: str, expires_days: float | None) -> None:
    """Create an API token for USERNAME; the token is printed once, on standard output."""
    settings = ctx.settings()
    store = ctx.store(settings)
    auth = AuthService(store, settings)
    if expires_days is not None and expires_days <= 0:
        _fail("--expires-days must be positive")
    try:
        token, row = auth.issue_token(
            username, "api", name, timedelta(days=expires_days) if expires_days else None
        )
    except SenCityError as exc:
        _fail(exc.detail)
    click.echo(f"token id {row['id']} for '{username}' (store it now; it is shown once):", err=True)
    click.echo(token)


@tokens.command("list")
@click.option("--user", "username", default=None)
@pass_ctx
def tokens_list(ctx: _Ctx, username: str | None) -> None:
    """List tokens (never their secrets)."""
    rows = [
        [
            t["id"],
            t["username"],
            t["kind"],
            t["name"],
            t["created_at"][:19],
            (t["expires_at"] or "")[:19],
            (t["revoked_at"] or "")[:19],
        ]
        for t in ctx.store().list_tokens(username)
    ]
    _table(["id", "user", "kind", "name", "created", "expires", "revoked"], rows)


@tokens.command("revoke")
@click.argument("token_id")
@pass_ctx
def tokens_revoke(ctx: _Ctx, token_id: str) -> None:
    """Revoke a token by its id; requests with it get 401 at once."""
    try:
        ctx.store().revoke_token(token_id)
    except SenCityError as exc:
        _fail(exc.detail)
    click.echo(f"token {token_id} revoked")


cli.add_command(sim_command)  # a client of the platform: nothing of it runs in the server


def main() -> None:
    from sencity.core.platform import plugin_manager

    try:
        disabled = load_settings().plugins.disabled
    except ConfigError:
        disabled = []  # the command itself reports configuration errors
    plugin_manager(disabled).hook.sencity_cli(cli=cli)
    cli(prog_name="sencity")
