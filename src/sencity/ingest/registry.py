"""Tables of the sensor agent: service groups, devices (with their last-seen time) and
dead letters; and the in-memory index the message path reads (reloaded on change)."""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sencity.errors import AlreadyExists, BadRequest, NotFound
from sencity.hub.durations import parse_duration
from sencity.ingest.model import Device, Group, entity_id
from sencity.store.base import Migration, Store, Tx, utcnow

_TABLES = [
    """CREATE TABLE ingest_groups (
        apikey TEXT PRIMARY KEY, tenant TEXT NOT NULL, body TEXT NOT NULL,
        created_at TEXT NOT NULL, modified_at TEXT NOT NULL)""",
    """CREATE TABLE ingest_devices (
        tenant TEXT NOT NULL, device_id TEXT NOT NULL, apikey TEXT NOT NULL,
        body TEXT NOT NULL, created_at TEXT NOT NULL, modified_at TEXT NOT NULL,
        last_seen TEXT, PRIMARY KEY (tenant, device_id))""",
    "CREATE INDEX ingest_devices_key ON ingest_devices (apikey, device_id)",
    "CREATE INDEX ingest_groups_tenant ON ingest_groups (tenant, created_at)",
]
_DEAD = """CREATE TABLE ingest_deadletters (
    id TEXT PRIMARY KEY, tenant TEXT, source TEXT NOT NULL, topic TEXT NOT NULL,
    payload {blob} NOT NULL, reason TEXT NOT NULL, detail TEXT NOT NULL,
    apikey TEXT, device_id TEXT, received_at TEXT NOT NULL)"""
_DEAD_INDEX = "CREATE INDEX ingest_deadletters_time ON ingest_deadletters (received_at)"

MIGRATIONS = [
    Migration(
        "ingest",
        1,
        sqlite=[*_TABLES, _DEAD.format(blob="BLOB"), _DEAD_INDEX],
        postgresql=[*_TABLES, _DEAD.format(blob="BYTEA"), _DEAD_INDEX],
    )
]

RELOAD_EVERY = 1.0  # seconds: how stale "unknown" may be when another process provisions
MAX_AGE = 30.0  # seconds: how stale a group or device may be after another process changed it


@dataclass
class DeadLetter:
    source: str  # mqtt | http
    topic: str
    payload: bytes
    reason: str  # short code: parse, value, unknown-device, wrong-apikey, oversized...
    detail: str
    tenant: str | None = None
    apikey: str | None = None
    device_id: str | None = None
    received_at: str = ""

    def row(self) -> tuple[Any, ...]:
        return (
            uuid.uuid4().hex,
            self.tenant,
            self.source,
            self.topic,
            self.payload,
            self.reason,
            self.detail,
            self.apikey,
            self.device_id,
            self.received_at or utcnow(),
        )


def insert_dead(tx: Tx, letters: Sequence[DeadLetter]) -> None:
    if letters:
        tx.executemany(
            "INSERT INTO ingest_deadletters (id, tenant, source, topic, payload, reason, "
            "detail, apikey, device_id, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [d.row() for d in letters],
        )


def mapping_regex(topic: str) -> re.Pattern[str]:
    """A mapping's topic pattern as a regular expression with a ``device_id`` group."""
    head, tail = topic.split("{device_id}")
    return re.compile("^" + re.escape(head) + r"(?P<device_id>[^/]+)" + re.escape(tail) + "$")


class Registry:
    """Groups and devices in the store, with an index for the message path."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._groups: dict[str, tuple[str, Group]] | None = None  # apikey -> (tenant, group)
        self._devices: dict[tuple[str, str], Device | None] = {}  # (tenant, id) -> device
        self._mapped: list[tuple[re.Pattern[str], str]] = []  # (topic regex, apikey)
        self._commands: dict[str, dict[str, tuple[Device, Group]]] = {}  # tenant -> entity
        self._missing: dict[tuple[str, str], float] = {}  # unknown devices: when looked up
        self._reloaded = 0.0
        self._loaded_at = 0.0

    # -- the message path's index -----------------------------------------------------------
    def invalidate(self) -> None:
        with self._lock:
            self._groups = None
            self._devices = {}
            self._mapped = []
            self._commands = {}
            self._missing = {}

    def command_devices(self, tenant: str) -> dict[str, tuple[Device, Group]]:
        """The tenant's devices that take commands, by entity id."""
        found = self._commands.get(tenant)
        if found is None:
            groups = self._load()
            with self.store.transaction(write=False) as tx:
                rows = tx.execute(
                    "SELECT body FROM ingest_devices WHERE tenant = ? AND body LIKE ?",
                    (tenant, '%"commands":[{%'),
                )
            found = {}
            for r in rows:
                d = Device.model_validate_json(r["body"])
                g = groups.get(d.apikey)
                if d.commands and g is not None:
                    found[entity_id(d, g[1])] = (d, g[1])
            with self._lock:
                self._commands[tenant] = found
        return found

    def _load(self) -> dict[str, tuple[str, Group]]:
        if time.monotonic() - self._loaded_at > MAX_AGE:
            self.invalidate()  # changes made by other processes show within MAX_AGE
        groups = self._groups
        if groups is None:
            with self.store.transaction(write=False) as tx:
                rows = tx.execute("SELECT apikey, tenant, body FROM ingest_groups")
            groups = {
                r["apikey"]: (r["tenant"], Group.model_validate_json(r["body"])) for r in rows
            }
            mapped = [
                (mapping_regex(g.mapping.topic), key)
                for key, (_, g) in groups.items()
                if g.mapping is not None
            ]
            with self._lock:
                self._groups, self._mapped = groups, mapped
                self._loaded_at = time.monotonic()
        return groups

    def group(self, apikey: str) -> tuple[str, Group] | None:
        found = self._load().get(apikey)
        if found is None and self._may_reload():
            # made by another process (another worker, `sencity devices import`)?
            with self._lock:
                self._groups = None
            found = self._load().get(apikey)
        return found

    def _may_reload(self) -> bool:
        """At most one reload a second for unknown keys (a flood of them costs nothing)."""
        now = time.monotonic()
        if now - self._reloaded < RELOAD_EVERY:
            return False
        self._reloaded = now
        return True

    def mapped(self, topic: str) -> tuple[str, str] | None:
        """(apikey, device id) of a topic in a group's own format, if any."""
        self._load()
        for regex, key in self._mapped:
            m = regex.match(topic)
            if m:
                return key, m.group("device_id")
        return None

    def mapping_topics(self) -> list[str]:
        """MQTT subscriptions for the groups' own formats."""
        return sorted(
            g.mapping.topic.replace("{device_id}", "+")
            for _, g in self._load().values()
            if g.mapping is not None
        )

    def device(self, tenant: str, device_id: str) -> Device | None:
        key = (tenant, device_id)
        if key in self._devices:
            dev = self._devices[key]
            if dev is not None:
                return dev
            # unknown a moment ago: look again now and then (provisioned elsewhere?)
            if time.monotonic() - self._missing.get(key, 0.0) < RELOAD_EVERY:
                return None
        with self.store.transaction(write=False) as tx:
            row = tx.one("SELECT body FROM ingest_devices WHERE tenant = ? AND device_id = ?", key)
        dev = Device.model_validate_json(row["body"]) if row else None
        with self._lock:
            if len(self._devices) > 100_000:
                self._devices.clear()
                self._missing.clear()
            self._devices[key] = dev
            if dev is None:
                self._missing[key] = time.monotonic()
        return dev

    # -- groups -----------------------------------------------------------------------------
    def add_group(self, tenant: str, group: Group) -> None:
        now = utcnow()
        with self.store.transaction() as tx:
            if tx.one("SELECT 1 AS x FROM ingest_groups WHERE apikey = ?", (group.apikey,)):
                raise AlreadyExists(f"a service group with API key '{group.apikey}' exists")
            tx.execute(
                "INSERT INTO ingest_groups (apikey, tenant, body, created_at, modified_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (group.apikey, tenant, group.model_dump_json(exclude_none=True), now, now),
            )
        self.invalidate()

    def get_group(self, tenant: str, apikey: str) -> Group:
        with self.store.transaction(write=False) as tx:
            row = tx.one(
                "SELECT body FROM ingest_groups WHERE tenant = ? AND apikey = ?", (tenant, apikey)
            )
        if row is None:
            raise NotFound(f"no service group with API key '{apikey}'")
        return Group.model_validate_json(row["body"])

    def _page(
        self,
        select: str,
        where: list[str],
        params: list[Any],
        order: str,
        limit: int,
        offset: int,
    ) -> tuple[list[dict[str, Any]], int]:
        """One page of ``select … WHERE where ORDER BY order`` and the count of all."""
        table = select.rsplit(" FROM ", 1)[1]
        cond = " AND ".join(where)
        with self.store.transaction(write=False) as tx:
            rows = tx.execute(
                f"{select} WHERE {cond} ORDER BY {order} LIMIT ? OFFSET ?",
                [*params, limit, offset],
            )
            n = tx.execute(f"SELECT count(*) AS n FROM {table} WHERE {cond}", params)
        return rows, int(n[0]["n"])

    def list_groups(self, tenant: str, limit: int, offset: int) -> tuple[list[Group], int]:
        rows, total = self._page(
            "SELECT body FROM ingest_groups",
            ["tenant = ?"],
            [tenant],
            "created_at, apikey",
            limit,
            offset,
        )
        return [Group.model_validate_json(r["body"]) for r in rows], total

    def replace_group(self, tenant: str, group: Group) -> None:
        with self.store.transaction() as tx:
            done = tx.execute(
                "UPDATE ingest_groups SET body = ?, modified_at = ? WHERE tenant = ? "
                "AND apikey = ? RETURNING apikey",
                (group.model_dump_json(exclude_none=True), utcnow(), tenant, group.apikey),
            )
        if not done:
            raise NotFound(f"no service group with API key '{group.apikey}'")
        self.invalidate()

    def delete_group(self, tenant: str, apikey: str) -> None:
        with self.store.transaction() as tx:
            if tx.one(
                "SELECT 1 AS x FROM ingest_devices WHERE tenant = ? AND apikey = ?",
                (tenant, apikey),
            ):
                raise AlreadyExists(
                    f"service group '{apikey}' still has devices: delete them first"
                )
            done = tx.execute(
                "DELETE FROM ingest_groups WHERE tenant = ? AND apikey = ? RETURNING apikey",
                (tenant, apikey),
            )
        if not done:
            raise NotFound(f"no service group with API key '{apikey}'")
        self.invalidate()

    # -- devices ----------------------------------------------------------------------------
    def add_devices(self, tenant: str, devices: Sequence[Device]) -> None:
        """All or none: an unknown API key or an existing id refuses the whole list."""
        now = utcnow()
        with self.store.transaction() as tx:
            keys = {
                r["apikey"]
                for r in tx.execute("SELECT apikey FROM ingest_groups WHERE tenant = ?", (tenant,))
            }
            seen: set[str] = set()
            for d in devices:
                if d.apikey not in keys:
                    raise NotFound(
                        f"device '{d.device_id}': no service group with API key '{d.apikey}'"
                    )
                if d.device_id in seen or tx.one(
                    "SELECT 1 AS x FROM ingest_devices WHERE tenant = ? AND device_id = ?",
                    (tenant, d.device_id),
                ):
                    raise AlreadyExists(f"device '{d.device_id}' exists")
                seen.add(d.device_id)
            tx.executemany(
                "INSERT INTO ingest_devices (tenant, device_id, apikey, body, created_at, "
                "modified_at) VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (tenant, d.device_id, d.apikey, d.model_dump_json(exclude_none=True), now, now)
                    for d in devices
                ],
            )
        self.invalidate()

    def get_device(self, tenant: str, device_id: str) -> tuple[Device, str | None]:
        with self.store.transaction(write=False) as tx:
            row = tx.one(
                "SELECT body, last_seen FROM ingest_devices WHERE tenant = ? AND device_id = ?",
                (tenant, device_id),
            )
        if row is None:
            raise NotFound(f"no device '{device_id}'")
        return Device.model_validate_json(row["body"]), row["last_seen"]

    @staticmethod
    def silent_since(duration: str, name: str = "silentFor") -> str:
        """The store time before which a device silent for ``duration`` last reported."""
        period = parse_duration(duration, name)
        if period.calendar:
            raise BadRequest(f"'{name}' must be a duration in days or less, e.g. PT1H or P2D")
        return (datetime.now(UTC) - timedelta(microseconds=period.us)).strftime(
            "%Y-%m-%dT%H:%M:%S.%fZ"
        )

    def list_devices(
        self,
        tenant: str,
        limit: int,
        offset: int,
        apikey: str | None = None,
        silent_since: str | None = None,
    ) -> tuple[list[tuple[Device, str | None]], int]:
        where = ["tenant = ?"]
        params: list[Any] = [tenant]
        if apikey:
            where.append("apikey = ?")
            params.append(apikey)
        if silent_since:
            where.append("(last_seen IS NULL OR last_seen < ?)")
            params.append(silent_since)
        rows, total = self._page(
            "SELECT body, last_seen FROM ingest_devices",
            where,
            params,
            "created_at, device_id",
            limit,
            offset,
        )
        return [(Device.model_validate_json(r["body"]), r["last_seen"]) for r in rows], total

    def replace_device(self, tenant: str, device: Device) -> None:
        with self.store.transaction() as tx:
            if not tx.one(
                "SELECT 1 AS x FROM ingest_groups WHERE tenant = ? AND apikey = ?",
                (tenant, device.apikey),
            ):
                raise NotFound(f"no service group with API key '{device.apikey}'")
            done = tx.execute(
                "UPDATE ingest_devices SET body = ?, apikey = ?, modified_at = ? "
                "WHERE tenant = ? AND device_id = ? RETURNING device_id",
                (
                    device.model_dump_json(exclude_none=True),
                    device.apikey,
                    utcnow(),
                    tenant,
                    device.device_id,
                ),
            )
        if not done:
            raise NotFound(f"no device '{device.device_id}'")
        self.invalidate()

    def delete_device(self, tenant: str, device_id: str) -> None:
        with self.store.transaction() as tx:
            done = tx.execute(
                "DELETE FROM ingest_devices WHERE tenant = ? AND device_id = ? RETURNING device_id",
                (tenant, device_id),
            )
        if not done:
            raise NotFound(f"no device '{device_id}'")
        self.invalidate()

    @staticmethod
    def touch(tx: Tx, seen: dict[tuple[str, str], str]) -> None:
        """Record when devices last reported (in the write's transaction)."""
        if seen:
            tx.executemany(
                "UPDATE ingest_devices SET last_seen = ? WHERE tenant = ? AND device_id = ?",
                [(t, tenant, dev) for (tenant, dev), t in seen.items()],
            )

    # -- dead letters ---------------------------------------------------------------------------
    def dead_letters(
        self, tenant: str | None, limit: int, offset: int, reason: str | None = None
    ) -> tuple[list[dict[str, Any]], int]:
        """A tenant's dead letters, newest first (``None``: those of no known tenant —
        unknown API keys, unreadable topics)."""
        where: list[str] = ["tenant IS NULL" if tenant is None else "tenant = ?"]
        params: list[Any] = [] if tenant is None else [tenant]
        if reason:
            where.append("reason = ?")
            params.append(reason)
        return self._page(
            "SELECT * FROM ingest_deadletters",
            where,
            params,
            "received_at DESC, id",
            limit,
            offset,
        )

    def purge_dead(self, tenant: str | None, before: str | None) -> int:
        where: list[str] = ["tenant IS NULL" if tenant is None else "tenant = ?"]
        params: list[Any] = [] if tenant is None else [tenant]
        if before:
            where.append("received_at < ?")
            params.append(before)
        with self.store.transaction() as tx:
            rows = tx.execute(
                f"DELETE FROM ingest_deadletters WHERE {' AND '.join(where)} RETURNING id", params
            )
        return len(rows)
