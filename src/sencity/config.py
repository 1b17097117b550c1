"""Configuration: one file (TOML or YAML) plus ``SENCITY_*`` environment variables.

Precedence, highest first: command-line options, environment variables
(``SENCITY_SECTION__KEY``), the configuration file, the defaults below.
Every setting is documented in ``docs/CONFIGURATION.md`` (a test enforces it).
"""

from __future__ import annotations

import difflib
import json
import os
import tomllib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from sencity.errors import ConfigError

ENV_PREFIX = "SENCITY_"
ENV_CONFIG_FILE = "SENCITY_CONFIG"
ROLES = ("admin", "operator", "dispatcher", "analyst", "viewer")
TENANT_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ServerSettings(_Section):
    host: str = Field("127.0.0.1", description="Address the HTTP server listens on.")
    port: int = Field(8080, ge=0, le=65535, description="TCP port (0 picks a free port).")
    public_url: str = Field(
        "", description="URL users reach the server at; used in printed login links."
    )
    workers: int = Field(
        1, ge=1, le=64, description="API worker processes (more than 1 needs PostgreSQL)."
    )
    handler_threads: int = Field(
        -1,
        ge=-1,
        le=256,
        description="Threads for request handlers: -1 auto (SQLite 0, PostgreSQL 8); "
        "0 runs them on the event loop.",
    )
    max_body_bytes: int = Field(
        10_000_000, ge=1024, description="Largest request body accepted (413 above)."
    )


class StoreSettings(_Section):
    url: str = Field(
        "",
        description="Store URL: empty for SQLite under data_dir, sqlite:///PATH or "
        "postgresql://USER@HOST:PORT/DB.",
    )
    pool_size: int = Field(10, ge=1, le=200, description="PostgreSQL connection pool size.")
    connect_timeout: float = Field(
        5.0, gt=0, description="Seconds to wait for the store at start-up."
    )

    @field_validator("url")
    @classmethod
    def _scheme(cls, v: str) -> str:
        if v and not v.startswith(("sqlite://", "postgresql://", "postgres://")):
            raise ValueError("must start with sqlite:// or postgresql://")
        return v


class LogSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level.")
    format: Literal["plain", "json"] = Field(
        "plain", description="plain text lines or one JSON object per line."
    )


class AnonymousSettings(_Section):
    role: Literal["", "admin", "operator", "dispatcher", "analyst", "viewer"] = Field(
        "", description="Role granted to requests without credentials; empty = off."
    )
    tenants: list[str] = Field(
        default_factory=list, description="Tenants the anonymous role applies to."
    )


class AuthSettings(_Section):
    session_ttl_hours: float = Field(12.0, gt=0, description="Lifetime of a login session token.")
    login_link_ttl_minutes: float = Field(
        60.0, gt=0, description="Lifetime of a one-time login link printed by `sencity demo`."
    )
    max_failed_logins: int = Field(
        10, ge=1, description="Failed logins per user and address before 429 for 15 minutes."
    )
    anonymous: AnonymousSettings = Field(default_factory=AnonymousSettings)


class TenantSettings(_Section):
    default: str = Field(
        "danang",
        pattern=TENANT_PATTERN,
        description="Tenant used when a request has no NGSILD-Tenant header.",
    )


class BusSettings(_Section):
    backend: Literal["auto", "memory", "postgresql"] = Field(
        "auto",
        description="Event bus: memory (one process), postgresql (LISTEN/NOTIFY, "
        "several workers); auto follows the store.",
    )


class MetricsSettings(_Section):
    public: bool = Field(
        False, description="Serve /metrics without credentials (for a private scrape network)."
    )


class RetentionRule(_Section):
    """How long one tenant's (or every tenant's) history of one type (or all) is kept."""

    tenant: str = Field("*", description="Tenant name, or * for every tenant.")
    type: str = Field("*", description="Entity type (full IRI or short name), or * for all.")
    raw_days: float = Field(gt=0, description="Days raw instances are kept.")
    rollup: str = Field(
        "", description="Period of the aggregates kept after that (PT1H, P1D…); empty: none."
    )
    rollup_days: float = Field(3650.0, gt=0, description="Days those aggregates are kept.")

    @field_validator("rollup")
    @classmethod
    def _period(cls, v: str) -> str:
        if v:
            from sencity.hub.durations import parse_duration

            try:
                p = parse_duration(v, "rollup")
            except Exception as exc:  # BadRequest: say it as a settings error
                raise ValueError(str(exc)) from None
            if p.calendar:
                raise ValueError("rollup must be a fixed length (PT1H, P1D…), not months")
        return v


class HubSettings(_Section):
    default_limit: int = Field(
        20, ge=1, le=10_000, description="Entities per page when a query gives no limit."
    )
    max_limit: int = Field(
        1000, ge=1, le=100_000, description="Largest limit a query may ask (403 above)."
    )
    context_preload: dict[str, str] = Field(
        default_factory=dict,
        description="@context URL -> local file, so user contexts resolve offline.",
    )
    context_fetch: bool = Field(
        True, description="Fetch @context URLs that are not preloaded (once, then cached)."
    )
    context_timeout: float = Field(
        5.0, gt=0, le=60, description="Seconds allowed to fetch one @context URL."
    )
    history: bool = Field(
        True, description="Keep every change of every attribute for the temporal API."
    )
    temporal_page_size: int = Field(
        1000,
        ge=1,
        le=1_000_000,
        description="Instances per attribute in one temporal answer (206 beyond).",
    )
    retention: list[RetentionRule] = Field(
        default_factory=list, description="History retention and downsampling rules."
    )
    retention_interval: float = Field(
        3600.0, gt=0, description="Seconds between two runs of the retention rules."
    )


class SubscriptionSettings(_Section):
    retries: int = Field(
        5, ge=0, le=100, description="Delivery attempts after the first failed one."
    )
    backoff_base: float = Field(
        1.0, gt=0, description="Seconds before the first retry; each further one doubles it."
    )
    backoff_max: float = Field(300.0, gt=0, description="Longest wait between two attempts.")
    http_timeout: float = Field(
        10.0, gt=0, le=300, description="Seconds allowed for one notification to be delivered."
    )
    endpoint_concurrency: int = Field(
        8, ge=1, le=1000, description="Notifications in flight at once to one endpoint."
    )
    endpoint_queue: int = Field(
        10_000,
        ge=10,
        description="Notifications held in memory per endpoint; more wait in the outbox.",
    )
    batch: int = Field(500, ge=1, le=100_000, description="Outbox rows claimed at once.")
    poll_interval: float = Field(
        1.0, gt=0, le=60, description="Seconds between two scans of the outbox for due rows."
    )
    lease_seconds: float = Field(
        60.0, gt=0, description="How long a process owns the outbox rows it is delivering."
    )
    reload_seconds: float = Field(
        30.0, gt=0, description="Seconds between two reloads of the subscriptions from the store."
    )


class IngestSettings(_Section):
    mqtt_url: str = Field(
        "",
        description="External MQTT broker (mqtt://[user:pass@]host:port or mqtts://...); "
        "empty: the embedded broker (when embedded_broker is on).",
    )
    embedded_broker: bool = Field(
        True, description="Start an in-process broker when no external broker is set."
    )
    embedded_port: int = Field(1883, ge=0, le=65535, description="Port of the embedded broker.")
    client_id: str = Field(
        "sencity-ingest",
        min_length=1,
        max_length=64,
        description="MQTT client id (its persistent session holds unacknowledged messages).",
    )
    session_expiry: int = Field(
        7 * 24 * 3600,
        ge=0,
        description="Seconds the broker keeps our session (and queues messages) while away.",
    )
    receive_maximum: int = Field(
        10_000, ge=1, le=65_535, description="Unacknowledged messages the broker may send at once."
    )
    batch_size: int = Field(
        2_000, ge=1, le=100_000, description="Messages written to the store in one transaction."
    )
    batch_wait: float = Field(
        0.02, ge=0, le=5, description="Seconds a batch waits to fill before it is written."
    )
    queue_size: int = Field(
        20_000, ge=1, description="Messages held in memory waiting to be written (back-pressure)."
    )
    max_payload_bytes: int = Field(
        65_536, ge=16, description="Larger payloads are dead letters ('oversized')."
    )
    retry_max: float = Field(
        30.0, gt=0, description="Longest wait between two attempts to write when the store fails."
    )


class RulesSettings(_Section):
    """Rules, alarms and notifications (``docs/RULES.md``)."""

    # -- the engine --
    batch_wait: float = Field(
        0.05,
        ge=0,
        le=5,
        description="Seconds the engine gathers changes before it reads them in one batch.",
    )
    tick_seconds: float = Field(
        1.0,
        gt=0,
        le=60,
        description="Seconds between two runs of the timers (durations, no data, escalation).",
    )
    reload_seconds: float = Field(
        30.0, gt=0, description="Seconds between two reloads of the rules from the store."
    )
    # -- notifications --
    rate_limit: int = Field(
        20, ge=1, description="Notifications one channel of a rule may send per rate_window."
    )
    rate_window: float = Field(
        600.0, gt=0, description="Seconds over which rate_limit counts (sliding window)."
    )
    # -- backtest --
    backtest_max_instances: int = Field(
        500_000,
        ge=1,
        description="Most history instances one backtest reads (400 beyond: narrow it).",
    )
    # -- built-in indicators (docs/INDICATORS.md) --
    indicators: bool = Field(
        True,
        description="Derive airQualityIndex/Level/Color, floodAlertLevel/floodLevelStatus, "
        "speedRatio/congested from what sensors write.",
    )
    congestion_ratio: float = Field(
        0.5,
        gt=0,
        le=1,
        description="A traffic flow is congested when speedRatio is below this.",
    )
    # -- notification channels (docs/RULES.md "Channels") --
    notify_retries: int = Field(
        3, ge=0, le=20, description="Retries of a failed webhook, MQTT or e-mail notification."
    )
    notify_backoff: float = Field(
        1.0, gt=0, le=60, description="Seconds before the first retry; doubled for each next one."
    )
    notify_timeout: float = Field(
        10.0, gt=0, le=120, description="Seconds one attempt to deliver a notification may take."
    )
    smtp_host: str = Field("", description="SMTP server for e-mail channels (empty: e-mail off).")
    smtp_port: int = Field(587, ge=1, le=65535, description="Port of the SMTP server.")
    smtp_user: str = Field("", description="SMTP user name (empty: no authentication).")
    smtp_password: str = Field("", description="SMTP password.")
    smtp_starttls: bool = Field(
        True, description="Upgrade the SMTP connection with STARTTLS before authenticating."
    )
    smtp_ssl: bool = Field(False, description="Connect with TLS from the start (port 465).")
    smtp_from: str = Field(
        "SenCity <sencity@localhost>", description="From address of notification e-mails."
    )
    # -- CAP feed (docs/CAP.md) --
    cap_sender: str = Field(
        "",
        description="CAP <sender> of the public warnings (e.g. canhbao@danang.gov.vn); "
        "empty: sencity@<tenant>.",
    )


class SectorSettings(_Section):
    """One sector view of the IOC dashboard (a page with its map layers and charts)."""

    id: str = Field(pattern=r"^[a-z][a-z0-9-]{0,31}$", description="Path segment: /sector/<id>.")
    name: dict[str, str] = Field(description="Title per language code (vi, en).")
    layers: list[str] = Field(min_length=1, description="Map layers shown (see docs/WEB.md).")
    charts: list[str] = Field(
        default_factory=list, description="City-wide charts, as Type.attribute (24 h average)."
    )


def _default_sectors() -> list[SectorSettings]:
    def s(sid: str, vi: str, en: str, layers: list[str], charts: list[str]) -> SectorSettings:
        return SectorSettings(id=sid, name={"vi": vi, "en": en}, layers=layers, charts=charts)

    return [
        s(
            "environment",
            "Môi trường",
            "Environment",
            ["air", "noise", "weather", "reports"],
            ["AirQualityObserved.pm25", "NoiseLevelObserved.LAeq"],
        ),
        s(
            "transport",
            "Giao thông",
            "Transport",
            ["traffic", "buses", "parking", "incidents"],
            ["TrafficFlowObserved.averageVehicleSpeed", "OffStreetParking.occupancy"],
        ),
        s(
            "flood",
            "Ngập lụt và thời tiết",
            "Flood and weather",
            ["flood", "weather", "alarms"],
            ["FloodMonitoring.currentLevel", "WeatherObserved.precipitation"],
        ),
        s(
            "lighting",
            "Chiếu sáng và bãi đỗ xe",
            "Lighting and parking",
            ["streetlights", "parking"],
            ["Streetlight.illuminanceLevel", "OffStreetParking.occupancy"],
        ),
    ]


class WebSettings(_Section):
    sectors: list[SectorSettings] = Field(
        default_factory=_default_sectors,
        description="Sector views of the IOC dashboard: id, name per language, layers, charts.",
    )
    live_interval: float = Field(
        0.2,
        gt=0,
        le=5,
        description="Seconds over which live map changes are coalesced before being pushed.",
    )


class PluginSettings(_Section):
    disabled: list[str] = Field(default_factory=list, description="Names of plugins not to load.")


class Settings(_Section):
    """All settings; sections are TOML tables, or SECTION__KEY in environment names."""

    data_dir: Path = Field(
        Path("./sencity-data"), description="Directory for the embedded SQLite store."
    )
    server: ServerSettings = Field(default_factory=ServerSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    tenants: TenantSettings = Field(default_factory=TenantSettings)
    bus: BusSettings = Field(default_factory=BusSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    hub: HubSettings = Field(default_factory=HubSettings)
    subscriptions: SubscriptionSettings = Field(default_factory=SubscriptionSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    rules: RulesSettings = Field(default_factory=RulesSettings)
    web: WebSettings = Field(default_factory=WebSettings)
    plugins: PluginSettings = Field(default_factory=PluginSettings)

    @property
    def store_url(self) -> str:
        if self.store.url:
            return self.store.url
        return f"sqlite:///{self.data_dir / 'sencity.db'}"

    @property
    def is_postgresql(self) -> bool:
        return self.store_url.startswith(("postgresql://", "postgres://"))

    @property
    def bus_backend(self) -> str:
        if self.bus.backend == "auto":
            return "postgresql" if self.is_postgresql else "memory"
        return self.bus.backend


def setting_keys(model: type[BaseModel] = Settings, prefix: str = "") -> list[str]:
    """Every setting as a dotted key (``server.port``), for docs and checks."""
    keys: list[str] = []
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            keys.extend(setting_keys(ann, f"{prefix}{name}."))
        else:
            keys.append(prefix + name)
    return keys


def _read_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read configuration file: {exc.strerror}") from exc
    try:
        if path.suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text) or {}
        else:
            data = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        first = str(exc).splitlines()[0]
        raise ConfigError(
            f"{path}: not valid {path.suffix.lstrip('.') or 'TOML'}: {first}"
        ) from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a table of settings")
    return data


def _field_for(key: str) -> Any:
    model: Any = Settings
    field = None
    for part in key.split("."):
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return None
        field = model.model_fields.get(part)
        if field is None:
            return None
        model = field.annotation
    return field


def _env_values(environ: dict[str, str]) -> tuple[dict[str, Any], dict[str, str], list[str]]:
    """Settings given as SENCITY_SECTION__KEY variables, their variable names, problems."""
    known = set(setting_keys())
    data: dict[str, Any] = {}
    names: dict[str, str] = {}
    problems = []
    for name in sorted(environ):
        upper = name.upper()
        if (
            not upper.startswith(ENV_PREFIX)
            or upper == ENV_CONFIG_FILE
            or upper.startswith(ENV_PREFIX + "TEST_")
        ):
            continue
        key = upper[len(ENV_PREFIX) :].lower().replace("__", ".")
        if key not in known:
            guess = difflib.get_close_matches(key, known, n=1)
            hint = (
                f" (did you mean SENCITY_{guess[0].upper().replace('.', '__')}?)" if guess else ""
            )
            problems.append(f"environment variable {name}: unknown setting{hint}")
            continue
        raw = environ[name]
        value: Any = raw
        field = _field_for(key)
        if field is not None and str(field.annotation).startswith("dict"):
            try:
                value = json.loads(raw)
            except json.JSONDecodeError:
                problems.append(f"environment variable {name}: not a valid JSON object")
                continue
        elif field is not None and "list" in str(field.annotation):
            try:
                value = (
                    json.loads(raw)
                    if raw.strip().startswith("[")
                    else [v.strip() for v in raw.split(",") if v.strip()]
                )
            except json.JSONDecodeError:
                problems.append(f"environment variable {name}: not a valid JSON list")
                continue
        dst = data
        parts = key.split(".")
        for p in parts[:-1]:
            dst = dst.setdefault(p, {})
        dst[parts[-1]] = value
        names[key] = name
    return data, names, problems


def _format_error(err: Any, source: str, env_names: dict[str, str] | None = None) -> str:
    key = ".".join(str(p) for p in err["loc"])
    if env_names and key in env_names:
        source = f"environment variable {env_names[key]}"
    if err["type"] == "extra_forbidden":
        guess = difflib.get_close_matches(key, setting_keys(), n=1)
        hint = f" (did you mean '{guess[0]}'?)" if guess else ""
        return f"{source}: unknown setting '{key}'{hint}"
    value = err.get("input")
    shown = f" (got {value!r})" if not isinstance(value, dict | list) else ""
    return f"{source}: setting '{key}': {err['msg']}{shown}"


def load_settings(
    path: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
) -> Settings:
    """Load and validate settings; raise ConfigError with one line per problem.

    ``path`` defaults to $SENCITY_CONFIG, then ./sencity.toml when it exists.
    ``overrides`` (from command-line options) beat the environment, which beats the file.
    """
    environ = dict(os.environ if environ is None else environ)
    file_path = Path(path) if path else None
    if file_path is None and environ.get(ENV_CONFIG_FILE):
        file_path = Path(environ[ENV_CONFIG_FILE])
    if file_path is None and Path("sencity.toml").exists():
        file_path = Path("sencity.toml")
    file_data = _read_file(file_path) if file_path else {}
    source = str(file_path) if file_path else "configuration"
    try:
        Settings.model_validate(file_data)
    except ValidationError as exc:
        raise ConfigError("\n".join(_format_error(e, source) for e in exc.errors())) from exc
    env_data, env_names, problems = _env_values(environ)
    if problems:
        raise ConfigError("\n".join(problems))
    merged = _deep_merge(_deep_merge(file_data, env_data), overrides or {})
    try:
        return Settings.model_validate(merged)
    except ValidationError as exc:
        lines = (_format_error(e, source, env_names) for e in exc.errors())
        raise ConfigError("\n".join(lines)) from exc


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in top.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out
