"""Tables of the subscriptions module: the subscriptions with their delivery status, and
the outbox of notifications still to deliver.

Outbox rows are written in the hub's write transaction (so a notification exists exactly
when its change committed) and deleted once delivered, or once their last retry failed.
A process owns the rows it is delivering for ``lease_seconds`` (``owner``,
``lease_until``); rows without a live lease whose ``next_at`` has come are claimed by
any process (PostgreSQL: ``FOR UPDATE SKIP LOCKED``, so processes never wait for each
other's rows).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sencity.errors import AlreadyExists
from sencity.store.base import Migration, Store, Tx, utcnow

_SUBS = """CREATE TABLE subs_subscriptions (
    tenant TEXT NOT NULL, id TEXT NOT NULL, body TEXT NOT NULL, context TEXT,
    created_at TEXT NOT NULL, modified_at TEXT NOT NULL,
    time_interval DOUBLE PRECISION, next_periodic TEXT, throttle_until TEXT,
    times_sent BIGINT NOT NULL DEFAULT 0, times_failed BIGINT NOT NULL DEFAULT 0,
    last_notification TEXT, last_success TEXT, last_failure TEXT, last_status TEXT,
    PRIMARY KEY (tenant, id))"""
_OUTBOX = """CREATE TABLE subs_outbox (
    id TEXT PRIMARY KEY, tenant TEXT NOT NULL, sub_id TEXT NOT NULL, uri TEXT NOT NULL,
    headers TEXT NOT NULL, body TEXT NOT NULL, opts TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, next_at TEXT NOT NULL, lease_until TEXT,
    owner TEXT, created_at TEXT NOT NULL)"""
_INDEXES = [
    "CREATE INDEX subs_subscriptions_order ON subs_subscriptions (tenant, created_at, id)",
    "CREATE INDEX subs_subscriptions_periodic ON subs_subscriptions (next_periodic)",
    "CREATE INDEX subs_outbox_due ON subs_outbox (next_at)",
    "CREATE INDEX subs_outbox_sub ON subs_outbox (tenant, sub_id)",
]

MIGRATIONS = [
    Migration(
        "subs",
        1,
        sqlite=[
            _SUBS.replace("DOUBLE PRECISION", "REAL").replace("BIGINT", "INTEGER"),
            _OUTBOX,
            *_INDEXES,
        ],
        postgresql=[_SUBS, _OUTBOX, *_INDEXES],
    )
]

CHUNK = 500
_FMT = "%Y-%m-%dT%H:%M:%S.%fZ"


def later(seconds: float, base: str | None = None) -> str:
    """``base`` (default now) plus ``seconds``, as store time text."""
    start = datetime.strptime(base, _FMT).replace(tzinfo=UTC) if base else datetime.now(UTC)
    return (start + timedelta(seconds=seconds)).strftime(_FMT)


@dataclass
class Job:
    """One notification to deliver: an outbox row."""

    id: str
    tenant: str
    sub_id: str
    uri: str
    headers: dict[str, str]
    body: bytes
    opts: dict[str, Any]
    attempts: int = 0
    lease_until: str | None = None

    def row(self, now: str, owner: str | None) -> tuple[Any, ...]:
        return (
            self.id,
            self.tenant,
            self.sub_id,
            self.uri,
            json.dumps(self.headers, ensure_ascii=False),
            self.body.decode(),
            json.dumps(self.opts),
            self.attempts,
            now,
            self.lease_until,
            owner,
            now,
        )


@dataclass
class Status:
    """Delivery results of one subscription not yet written to the store."""

    sent: int = 0
    failed: int = 0
    last_notification: str | None = None
    last_success: str | None = None
    last_failure: str | None = None
    last_status: str | None = None


@dataclass
class Flush:
    """What the delivery task writes back in one transaction."""

    done: list[str] = field(default_factory=list)  # delivered or given up: deleted
    retry: list[tuple[int, str, str]] = field(default_factory=list)  # attempts, next_at, id
    release: list[str] = field(default_factory=list)  # leases given back
    status: dict[tuple[str, str], Status] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.done or self.retry or self.release or self.status)


class SubsStore:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.pg = store.dialect == "postgresql"

    # -- subscriptions -------------------------------------------------------------------
    def insert(
        self, tenant: str, sid: str, body: dict[str, Any], context: Any, interval: float | None
    ) -> None:
        now = utcnow()
        try:
            self._insert(tenant, sid, body, context, interval, now)
        except Exception as exc:
            if self.store.is_race(exc):  # the primary key is taken
                raise AlreadyExists(f"subscription {sid} already exists") from exc
            raise

    def _insert(
        self,
        tenant: str,
        sid: str,
        body: dict[str, Any],
        context: Any,
        interval: float | None,
        now: str,
    ) -> None:
        with self.store.transaction() as tx:
            tx.execute(
                "INSERT INTO subs_subscriptions (tenant, id, body, context, created_at, "
                "modified_at, time_interval, next_periodic) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    tenant,
                    sid,
                    json.dumps(body, ensure_ascii=False),
                    json.dumps(context, ensure_ascii=False),
                    now,
                    now,
                    interval,
                    now if interval else None,
                ),
            )

    def update(
        self, tenant: str, sid: str, body: dict[str, Any], context: Any, interval: float | None
    ) -> bool:
        now = utcnow()
        with self.store.transaction() as tx:
            rows = tx.execute(
                "UPDATE subs_subscriptions SET body = ?, context = ?, modified_at = ?, "
                "time_interval = ?, next_periodic = CASE WHEN CAST(? AS TEXT) IS NULL THEN NULL "
                "ELSE COALESCE(next_periodic, ?) END WHERE tenant = ? AND id = ? RETURNING id",
                (
                    json.dumps(body, ensure_ascii=False),
                    json.dumps(context, ensure_ascii=False),
                    now,
                    interval,
                    interval,
                    now,
                    tenant,
                    sid,
                ),
            )
        return bool(rows)

    def delete(self, tenant: str, sid: str) -> bool:
        with self.store.transaction() as tx:
            rows = tx.execute(
                "DELETE FROM subs_subscriptions WHERE tenant = ? AND id = ? RETURNING id",
                (tenant, sid),
            )
            tx.execute("DELETE FROM subs_outbox WHERE tenant = ? AND sub_id = ?", (tenant, sid))
        return bool(rows)

    def get(self, tenant: str, sid: str) -> dict[str, Any] | None:
        with self.store.transaction(write=False) as tx:
            return tx.one(
                "SELECT * FROM subs_subscriptions WHERE tenant = ? AND id = ?", (tenant, sid)
            )

    def page(
        self, tenant: str, limit: int, offset: int, count: bool
    ) -> tuple[list[dict[str, Any]], int | None]:
        with self.store.transaction(write=False) as tx:
            rows = tx.execute(
                "SELECT * FROM subs_subscriptions WHERE tenant = ? ORDER BY created_at, id "
                "LIMIT ? OFFSET ?",
                (tenant, limit, offset),
            )
            total = None
            if count:
                one = tx.one(
                    "SELECT count(*) AS n FROM subs_subscriptions WHERE tenant = ?", (tenant,)
                )
                total = int(one["n"]) if one else 0
        return rows, total

    @staticmethod
    def load(tx: Tx, tenant: str) -> list[dict[str, Any]]:
        return tx.execute(
            "SELECT id, body, context FROM subs_subscriptions WHERE tenant = ? "
            "ORDER BY created_at, id",
            (tenant,),
        )

    @staticmethod
    def throttle(tx: Tx, tenant: str, sid: str, now: str, seconds: float) -> bool:
        """Take the subscription's throttling slot: False while the last one lasts."""
        return bool(
            tx.execute(
                "UPDATE subs_subscriptions SET throttle_until = ? WHERE tenant = ? AND id = ? "
                "AND (throttle_until IS NULL OR throttle_until <= ?) RETURNING id",
                (later(seconds, now), tenant, sid, now),
            )
        )

    def due_periodic(self, now: str) -> list[dict[str, Any]]:
        with self.store.transaction(write=False) as tx:
            return tx.execute(
                "SELECT tenant, id, next_periodic, time_interval FROM subs_subscriptions "
                "WHERE next_periodic <= ? ORDER BY next_periodic",
                (now,),
            )

    @staticmethod
    def take_period(tx: Tx, tenant: str, sid: str, seen: str, following: str) -> bool:
        """Move the next periodic notification on, unless another process did."""
        return bool(
            tx.execute(
                "UPDATE subs_subscriptions SET next_periodic = ? WHERE tenant = ? AND id = ? "
                "AND next_periodic = ? RETURNING id",
                (following, tenant, sid, seen),
            )
        )

    # -- outbox --------------------------------------------------------------------------
    @staticmethod
    def enqueue(tx: Tx, jobs: Sequence[Job], owner: str | None, now: str) -> None:
        tx.executemany(
            "INSERT INTO subs_outbox (id, tenant, sub_id, uri, headers, body, opts, attempts, "
            "next_at, lease_until, owner, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [j.row(now, owner) for j in jobs],
        )

    def claim(
        self, owner: str, lease_until: str, limit: int, skip_uris: Sequence[str] = ()
    ) -> list[Job]:
        """Lease up to ``limit`` due rows that nobody holds (oldest due first)."""
        now = utcnow()
        skip = ""
        if skip_uris:
            skip = f" AND uri NOT IN ({','.join('?' * len(skip_uris))})"
        lock = " FOR UPDATE SKIP LOCKED" if self.pg else ""
        with self.store.transaction() as tx:
            rows = tx.execute(
                "UPDATE subs_outbox SET owner = ?, lease_until = ? WHERE id IN ("
                "SELECT id FROM subs_outbox WHERE next_at <= ? AND (lease_until IS NULL OR "
                f"lease_until < ?){skip} ORDER BY next_at LIMIT ?{lock}) "
                "RETURNING id, tenant, sub_id, uri, headers, body, opts, attempts, next_at",
                (owner, lease_until, now, now, *skip_uris, limit),
            )
        rows.sort(key=lambda r: str(r["next_at"]))
        return [
            Job(
                r["id"],
                r["tenant"],
                r["sub_id"],
                r["uri"],
                json.loads(r["headers"]),
                r["body"].encode(),
                json.loads(r["opts"]),
                int(r["attempts"]),
                lease_until,
            )
            for r in rows
        ]

    def release(self, owner: str | None) -> None:
        """Give back the leases of ``owner`` (None: every lease, when one process runs)."""
        with self.store.transaction() as tx:
            if owner is None:
                tx.execute("UPDATE subs_outbox SET owner = NULL, lease_until = NULL")
            else:
                tx.execute(
                    "UPDATE subs_outbox SET owner = NULL, lease_until = NULL WHERE owner = ?",
                    (owner,),
                )

    def backlog(self) -> int:
        """Notifications in the outbox (waiting, being sent or to be retried)."""
        with self.store.transaction(write=False) as tx:
            return int(tx.execute("SELECT count(*) AS n FROM subs_outbox")[0]["n"])

    def pending(self, tenant: str, sid: str) -> int:
        with self.store.transaction(write=False) as tx:
            one = tx.one(
                "SELECT count(*) AS n FROM subs_outbox WHERE tenant = ? AND sub_id = ?",
                (tenant, sid),
            )
        return int(one["n"]) if one else 0

    def flush(self, f: Flush) -> None:
        with self.store.transaction() as tx:
            for i in range(0, len(f.done), CHUNK):
                chunk = f.done[i : i + CHUNK]
                tx.execute(
                    f"DELETE FROM subs_outbox WHERE id IN ({','.join('?' * len(chunk))})", chunk
                )
            if f.retry:
                tx.executemany(
                    "UPDATE subs_outbox SET attempts = ?, next_at = ?, owner = NULL, "
                    "lease_until = NULL WHERE id = ?",
                    f.retry,
                )
            if f.release:
                tx.executemany(
                    "UPDATE subs_outbox SET owner = NULL, lease_until = NULL WHERE id = ?",
                    [(i,) for i in f.release],
                )
            if f.status:
                tx.executemany(
                    "UPDATE subs_subscriptions SET times_sent = times_sent + ?, "
                    "times_failed = times_failed + ?, "
                    "last_status = CASE WHEN last_notification IS NULL OR "
                    "last_notification <= ? THEN ? ELSE last_status END, "
                    "last_notification = CASE WHEN last_notification IS NULL OR "
                    "last_notification < ? THEN ? ELSE last_notification END, "
                    "last_success = CASE WHEN CAST(? AS TEXT) IS NOT NULL AND "
                    "(last_success IS NULL OR last_success < ?) THEN ? ELSE last_success END, "
                    "last_failure = CASE WHEN CAST(? AS TEXT) IS NOT NULL AND "
                    "(last_failure IS NULL OR last_failure < ?) THEN ? ELSE last_failure END "
                    "WHERE tenant = ? AND id = ?",
                    [
                        (
                            s.sent,
                            s.failed,
                            s.last_notification,
                            s.last_status,
                            s.last_notification,
                            s.last_notification,
                            s.last_success,
                            s.last_success,
                            s.last_success,
                            s.last_failure,
                            s.last_failure,
                            s.last_failure,
                            tenant,
                            sid,
                        )
                        for (tenant, sid), s in f.status.items()
                    ],
                )
