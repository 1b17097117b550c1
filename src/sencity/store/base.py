"""The storage contract shared by every backend.

A backend supplies connections and a few dialect details; everything else (the
admin tables for tenants, users and tokens, migrations, transactions) lives here
once.  SQL is written with ``?`` placeholders; the PostgreSQL backend rewrites
them.  Backend failures surface as the typed errors of :mod:`sencity.errors`.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sencity.errors import AlreadyExists, NonexistentTenant, NotFound, StoreUnavailable

Row = dict[str, Any]


def utcnow() -> str:
    """Timestamps are ISO 8601 UTC text with microseconds: they sort as text."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Migration:
    """One schema step of one module; ``sqlite`` and ``postgresql`` hold its statements."""

    module: str
    version: int
    sqlite: Sequence[str]
    postgresql: Sequence[str]


class Tx(abc.ABC):
    """A transaction: statements run in it commit together or not at all."""

    @abc.abstractmethod
    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...

    @abc.abstractmethod
    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...

    @abc.abstractmethod
    def tuples(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Like :meth:`execute`, rows as tuples in column order (cheaper for bulk reads)."""

    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        rows = self.execute(sql, params)
        return rows[0] if rows else None


CORE_MIGRATIONS = [
    Migration(
        "core",
        1,
        sqlite=[
            """CREATE TABLE tenants (
                name TEXT PRIMARY KEY, display_name TEXT NOT NULL,
                timezone TEXT NOT NULL, locale TEXT NOT NULL, created_at TEXT NOT NULL)""",
            """CREATE TABLE users (
                username TEXT PRIMARY KEY, kind TEXT NOT NULL, password_hash TEXT,
                display_name TEXT NOT NULL, disabled INTEGER NOT NULL DEFAULT 0,
                created_at TEXT NOT NULL)""",
            """CREATE TABLE user_roles (
                username TEXT NOT NULL REFERENCES users(username) ON DELETE CASCADE,
                tenant TEXT NOT NULL, role TEXT NOT NULL, PRIMARY KEY (username, tenant))""",
            """CREATE TABLE tokens (
                id TEXT PRIMARY KEY,
                username TEXT NOT NULL REFERENCES users(username) ON DELETE CASCADE,
                secret_hash TEXT NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL,
                created_at TEXT NOT NULL, expires_at TEXT, revoked_at TEXT,
                last_used_at TEXT)""",
            "CREATE INDEX tokens_user ON tokens(username)",
        ],
        postgresql=[
            """CREATE TABLE tenants (
                name TEXT PRIMARY KEY, display_name TEXT NOT NULL,
                timezone TEXT NOT NULL, locale TEXT NOT NULL, created_at TEXT NOT NULL)""",
            """CREATE TABLE users (
                username TEXT PRIMARY KEY, kind TEXT NOT NULL, password_hash TEXT,
                display_name TEXT NOT NULL, disabled INTEGER NOT NULL DEFAULT 0,
                created_at TEXT NOT NULL)""",
            """CREATE TABLE user_roles (
                username TEXT NOT NULL REFERENCES users(username) ON DELETE CASCADE,
                tenant TEXT NOT NULL, role TEXT NOT NULL, PRIMARY KEY (username, tenant))""",
            """CREATE TABLE tokens (
                id TEXT PRIMARY KEY,
                username TEXT NOT NULL REFERENCES users(username) ON DELETE CASCADE,
                secret_hash TEXT NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL,
                created_at TEXT NOT NULL, expires_at TEXT, revoked_at TEXT,
                last_used_at TEXT)""",
            "CREATE INDEX tokens_user ON tokens(username)",
        ],
    )
]


_JOINED = ("user_kind", "user_disabled", "tenant", "role")


class Store(abc.ABC):
    """Base class of every backend.  Subclasses implement the connection layer."""

    dialect: str = ""

    def __init__(self, url: str) -> None:
        self.url = url

    # -- connection layer (backend-specific) -------------------------------------------
    @abc.abstractmethod
    def transaction(self, write: bool = True) -> contextlib.AbstractContextManager[Tx]:
        """A transaction; commits on success, rolls back on error.

        ``write=False`` promises only reads, which lets SQLite readers run side by side.
        """

    @abc.abstractmethod
    def close(self) -> None: ...

    @abc.abstractmethod
    def _is_unique_violation(self, exc: BaseException) -> bool: ...

    def is_race(self, exc: BaseException) -> bool:
        """True when ``exc`` means a transaction lost a race with another writer (a unique
        key taken meanwhile, a deadlock): running the whole transaction again is safe."""
        return self._is_unique_violation(exc)

    def ping(self) -> None:
        """Raise StoreUnavailable unless the store answers a trivial query."""
        try:
            with self.transaction() as tx:
                tx.execute("SELECT 1 AS ok")
        except StoreUnavailable:
            raise
        except Exception as exc:  # any driver error means "not reachable"
            raise StoreUnavailable(f"store not reachable: {exc}") from exc

    # -- migrations --------------------------------------------------------------------
    def migrate(self, migrations: Sequence[Migration] = ()) -> list[tuple[str, int]]:
        """Apply core and given migrations not yet applied; return those applied."""
        applied: list[tuple[str, int]] = []
        with self.transaction() as tx:
            tx.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                "module TEXT NOT NULL, version INTEGER NOT NULL, applied_at TEXT NOT NULL, "
                "PRIMARY KEY (module, version))"
            )
        done = {
            (r["module"], r["version"])
            for r in self._read("SELECT module, version FROM schema_migrations")
        }
        ordered = sorted(
            [*CORE_MIGRATIONS, *migrations], key=lambda m: (m.module != "core", m.module, m.version)
        )
        for m in ordered:
            if (m.module, m.version) in done:
                continue
            with self.transaction() as tx:
                for stmt in getattr(m, self.dialect):
                    tx.execute(stmt)
                tx.execute(
                    "INSERT INTO schema_migrations (module, version, applied_at) VALUES (?, ?, ?)",
                    (m.module, m.version, utcnow()),
                )
            applied.append((m.module, m.version))
        return applied

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        with self.transaction(write=False) as tx:
            return tx.execute(sql, params)

    @contextlib.contextmanager
    def _unique(self, what: str) -> Iterator[None]:
        try:
            yield
        except Exception as exc:
            if self._is_unique_violation(exc):
                raise AlreadyExists(f"{what} already exists") from exc
            raise

    # -- tenants -----------------------------------------------------------------------
    def create_tenant(
        self,
        name: str,
        display_name: str = "",
        timezone: str = "Asia/Ho_Chi_Minh",
        locale: str = "vi",
    ) -> Row:
        row = {
            "name": name,
            "display_name": display_name or name,
            "timezone": timezone,
            "locale": locale,
            "created_at": utcnow(),
        }
        with self._unique(f"tenant '{name}'"), self.transaction() as tx:
            tx.execute(
                "INSERT INTO tenants (name, display_name, timezone, locale, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                tuple(row.values()),
            )
        return row

    def get_tenant(self, name: str) -> Row:
        rows = self._read("SELECT * FROM tenants WHERE name = ?", (name,))
        if not rows:
            raise NonexistentTenant(f"tenant '{name}' does not exist")
        return rows[0]

    def list_tenants(self) -> list[Row]:
        return self._read("SELECT * FROM tenants ORDER BY name")

    def update_tenant(self, name: str, **fields: str) -> Row:
        allowed = {"display_name", "timezone", "locale"}
        bad = set(fields) - allowed
        if bad:
            raise ValueError(f"cannot update tenant fields {sorted(bad)}")
        with self.transaction() as tx:
            for key, value in fields.items():
                tx.execute(f"UPDATE tenants SET {key} = ? WHERE name = ?", (value, name))
        return self.get_tenant(name)

    # -- users -------------------------------------------------------------------------
    def create_user(
        self,
        username: str,
        *,
        kind: str = "user",
        password_hash: str | None = None,
        display_name: str = "",
        roles: dict[str, str] | None = None,
    ) -> Row:
        with self._unique(f"user '{username}'"), self.transaction() as tx:
            tx.execute(
                "INSERT INTO users (username, kind, password_hash, display_name, disabled, "
                "created_at) VALUES (?, ?, ?, ?, 0, ?)",
                (username, kind, password_hash, display_name or username, utcnow()),
            )
            for tenant, role in (roles or {}).items():
                tx.execute(
                    "INSERT INTO user_roles (username, tenant, role) VALUES (?, ?, ?)",
                    (username, tenant, role),
                )
        return self.get_user(username)

    def get_user(self, username: str) -> Row:
        rows = self._read("SELECT * FROM users WHERE username = ?", (username,))
        if not rows:
            raise NotFound(f"user '{username}' does not exist")
        user = rows[0]
        user["disabled"] = bool(user["disabled"])
        user["roles"] = self.user_roles(username)
        return user

    def user_roles(self, username: str) -> dict[str, str]:
        rows = self._read(
            "SELECT tenant, role FROM user_roles WHERE username = ? ORDER BY tenant", (username,)
        )
        return {r["tenant"]: r["role"] for r in rows}

    def list_users(self) -> list[Row]:
        users = self._read("SELECT * FROM users ORDER BY username")
        roles = self._read("SELECT username, tenant, role FROM user_roles ORDER BY tenant")
        for u in users:
            u["disabled"] = bool(u["disabled"])
            u["roles"] = {r["tenant"]: r["role"] for r in roles if r["username"] == u["username"]}
        return users

    def set_role(self, username: str, tenant: str, role: str | None) -> None:
        """Give ``username`` ``role`` on ``tenant`` ('*' = every tenant); None removes it."""
        self.get_user(username)
        with self.transaction() as tx:
            tx.execute(
                "DELETE FROM user_roles WHERE username = ? AND tenant = ?", (username, tenant)
            )
            if role is not None:
                tx.execute(
                    "INSERT INTO user_roles (username, tenant, role) VALUES (?, ?, ?)",
                    (username, tenant, role),
                )

    def update_user(
        self, username: str, *, password_hash: str | None = None, disabled: bool | None = None
    ) -> None:
        self.get_user(username)
        with self.transaction() as tx:
            if password_hash is not None:
                tx.execute(
                    "UPDATE users SET password_hash = ? WHERE username = ?",
                    (password_hash, username),
                )
            if disabled is not None:
                tx.execute(
                    "UPDATE users SET disabled = ? WHERE username = ?", (int(disabled), username)
                )

    # -- tokens ------------------------------------------------------------------------
    def create_token(
        self,
        token_id: str,
        username: str,
        secret_hash: str,
        kind: str,
        name: str,
        expires_at: str | None,
    ) -> Row:
        self.get_user(username)
        row = {
            "id": token_id,
            "username": username,
            "secret_hash": secret_hash,
            "kind": kind,
            "name": name,
            "created_at": utcnow(),
            "expires_at": expires_at,
        }
        with self._unique(f"token '{token_id}'"), self.transaction() as tx:
            tx.execute(
                "INSERT INTO tokens (id, username, secret_hash, kind, name, created_at, "
                "expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                tuple(row.values()),
            )
        return row

    def get_token(self, token_id: str) -> Row:
        rows = self._read("SELECT * FROM tokens WHERE id = ?", (token_id,))
        if not rows:
            raise NotFound(f"token '{token_id}' does not exist")
        return rows[0]

    def token_and_user(self, token_id: str) -> tuple[Row, Row]:
        """A token and its user (with ``roles``) in one query: every API request asks."""
        rows = self._read(
            "SELECT t.*, u.kind AS user_kind, u.disabled AS user_disabled, r.tenant, r.role "
            "FROM tokens t JOIN users u ON u.username = t.username "
            "LEFT JOIN user_roles r ON r.username = t.username WHERE t.id = ?",
            (token_id,),
        )
        if not rows:
            raise NotFound(f"token '{token_id}' does not exist")
        first = rows[0]
        token = {k: v for k, v in first.items() if k not in _JOINED}
        user = {
            "username": first["username"],
            "kind": first["user_kind"],
            "disabled": bool(first["user_disabled"]),
            "roles": {r["tenant"]: r["role"] for r in rows if r["tenant"] is not None},
        }
        return token, user

    def list_tokens(self, username: str | None = None) -> list[Row]:
        if username is None:
            return self._read("SELECT * FROM tokens ORDER BY created_at")
        return self._read(
            "SELECT * FROM tokens WHERE username = ? ORDER BY created_at", (username,)
        )

    def revoke_token(self, token_id: str) -> Row:
        token = self.get_token(token_id)
        if token["revoked_at"] is None:
            with self.transaction() as tx:
                tx.execute(
                    "UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                    (utcnow(), token_id),
                )
        return self.get_token(token_id)

    def consume_token(self, token_id: str) -> bool:
        """Revoke a one-time token atomically; False when it was already used."""
        with self.transaction() as tx:
            rows = tx.execute(
                "UPDATE tokens SET revoked_at = ?, last_used_at = ? "
                "WHERE id = ? AND revoked_at IS NULL RETURNING id",
                (utcnow(), utcnow(), token_id),
            )
        return bool(rows)

    def touch_token(self, token_id: str) -> None:
        with self.transaction() as tx:
            tx.execute("UPDATE tokens SET last_used_at = ? WHERE id = ?", (utcnow(), token_id))
