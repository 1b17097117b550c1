"""Who is calling, and may they do this on that tenant?

Tokens look like ``sct_<id>.<secret>``.  Only a SHA-256 of the secret is stored
(the secret has 256 bits of entropy, so a slow hash adds nothing); passwords are
hashed with Argon2id.  Kinds of token: ``session`` (from a login), ``api`` (API
keys for devices and machine clients, created by an admin), ``login-once`` (a
one-time login link).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from sencity.auth.roles import ALL_TENANTS, check_role
from sencity.config import Settings
from sencity.errors import Forbidden, NotFound, TooManyRequests, Unauthorized
from sencity.store.base import Store, utcnow

TOKEN_PREFIX = "sct_"  # noqa: S105 - a prefix, not a secret
_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    if not password_hash:
        return False
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Principal:
    """The caller: a user, a machine client, or the anonymous role when opted in."""

    name: str
    kind: str  # user | client | anonymous
    roles: dict[str, str] = field(default_factory=dict)
    token_id: str | None = None

    def role_on(self, tenant: str) -> str | None:
        return self.roles.get(tenant) or self.roles.get(ALL_TENANTS)

    @property
    def is_global_admin(self) -> bool:
        return self.roles.get(ALL_TENANTS) == "admin"

    def tenants(self, known: list[str]) -> list[str]:
        """The tenants among ``known`` this principal may use."""
        if ALL_TENANTS in self.roles:
            return known
        return [t for t in known if t in self.roles]


class _FailedLogins:
    """Failed logins per (user, address) in a 15-minute window, in memory."""

    window = 15 * 60

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._fails: dict[tuple[str, str], list[float]] = {}
        self._lock = threading.Lock()

    def check(self, key: tuple[str, str]) -> None:
        now = time.monotonic()
        with self._lock:
            recent = [t for t in self._fails.get(key, []) if now - t < self.window]
            self._fails[key] = recent
            if len(recent) >= self.limit:
                raise TooManyRequests(
                    "too many failed logins for this user from this address; "
                    "try again in 15 minutes"
                )

    def fail(self, key: tuple[str, str]) -> None:
        with self._lock:
            self._fails.setdefault(key, []).append(time.monotonic())

    def clear(self, key: tuple[str, str]) -> None:
        with self._lock:
            self._fails.pop(key, None)


def _split(token: str) -> tuple[str, str]:
    """(token id, secret) of a ``sct_<id>.<secret>`` token."""
    if not token.startswith(TOKEN_PREFIX) or "." not in token:
        raise Unauthorized("malformed token")
    token_id, _, secret = token[len(TOKEN_PREFIX) :].partition(".")
    return token_id, secret


def _check(row: dict[str, object], secret: str, kinds: tuple[str, ...]) -> None:
    if not hmac.compare_digest(str(row["secret_hash"]), _digest(secret)):
        raise Unauthorized("unknown token")
    if row["kind"] not in kinds:
        raise Unauthorized("this token cannot be used here")
    if row["revoked_at"] is not None:
        raise Unauthorized("token revoked")
    if row["expires_at"] is not None and str(row["expires_at"]) <= utcnow():
        raise Unauthorized("token expired")


class AuthService:
    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self._failed = _FailedLogins(settings.auth.max_failed_logins)

    # -- tokens --------------------------------------------------------------------------
    def issue_token(
        self, username: str, kind: str = "api", name: str = "", ttl: timedelta | None = None
    ) -> tuple[str, dict[str, object]]:
        """Create a token; return the secret string (shown once) and its stored row."""
        token_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        expires = _iso(datetime.now(UTC) + ttl) if ttl else None
        row = self.store.create_token(
            token_id, username, _digest(secret), kind, name or kind, expires
        )
        return f"{TOKEN_PREFIX}{token_id}.{secret}", row

    def _lookup(self, token: str, kinds: tuple[str, ...]) -> dict[str, object]:
        token_id, secret = _split(token)
        try:
            row = self.store.get_token(token_id)
        except NotFound:
            raise Unauthorized("unknown token") from None
        _check(row, secret, kinds)
        return row

    def _principal(self, username: str, token_id: str | None) -> Principal:
        try:
            user = self.store.get_user(username)
        except NotFound:
            raise Unauthorized("unknown user") from None
        if user["disabled"]:
            raise Unauthorized("account disabled")
        return Principal(username, user["kind"], dict(user["roles"]), token_id)

    def authenticate_token(self, token: str) -> Principal:
        token_id, secret = _split(token)
        try:
            row, user = self.store.token_and_user(token_id)
        except NotFound:
            raise Unauthorized("unknown token") from None
        _check(row, secret, ("session", "api"))
        if user["disabled"]:
            raise Unauthorized("account disabled")
        return Principal(str(row["username"]), user["kind"], dict(user["roles"]), token_id)

    def revoke(self, token_id: str) -> None:
        self.store.revoke_token(token_id)

    # -- logins --------------------------------------------------------------------------
    def login(self, username: str, password: str, address: str = "") -> tuple[str, Principal]:
        """Check a password; return a new session token and the principal."""
        key = (username, address)
        self._failed.check(key)
        try:
            user = self.store.get_user(username)
        except NotFound:
            user = None
        ok = user is not None and verify_password(user["password_hash"], password)
        if not ok or user is None:
            self._failed.fail(key)
            raise Unauthorized("wrong username or password")
        if user["disabled"]:
            raise Unauthorized("account disabled")
        self._failed.clear(key)
        ttl = timedelta(hours=self.settings.auth.session_ttl_hours)
        token, row = self.issue_token(username, "session", "login", ttl)
        return token, self._principal(username, str(row["id"]))

    def login_link_token(self, username: str) -> str:
        ttl = timedelta(minutes=self.settings.auth.login_link_ttl_minutes)
        token, _ = self.issue_token(username, "login-once", "login link", ttl)
        return token

    def login_with_link(self, token: str) -> tuple[str, Principal]:
        """Exchange a one-time login token for a session (the link then stops working)."""
        row = self._lookup(token, ("login-once",))
        if not self.store.consume_token(str(row["id"])):
            raise Unauthorized("login link already used")
        username = str(row["username"])
        ttl = timedelta(hours=self.settings.auth.session_ttl_hours)
        session, srow = self.issue_token(username, "session", "login link", ttl)
        return session, self._principal(username, str(srow["id"]))

    # -- authorisation -------------------------------------------------------------------
    def anonymous(self, tenant: str) -> Principal | None:
        anon = self.settings.auth.anonymous
        if anon.role and (tenant in anon.tenants or ALL_TENANTS in anon.tenants):
            return Principal("anonymous", "anonymous", {tenant: check_role(anon.role)})
        return None

    @staticmethod
    def authorize(principal: Principal, tenant: str | None, roles: frozenset[str]) -> str:
        """Return the principal's role if it is in ``roles`` on ``tenant``; else 403.

        ``tenant`` None means a platform-wide route: only roles on every tenant count.
        """
        role = principal.roles.get(ALL_TENANTS) if tenant is None else principal.role_on(tenant)
        if role is None:
            where = "platform-wide" if tenant is None else f"on tenant '{tenant}'"
            raise Forbidden(f"'{principal.name}' has no role {where}")
        if role not in roles:
            raise Forbidden(
                f"role '{role}' of '{principal.name}' may not do this "
                f"(needs one of: {', '.join(sorted(roles))})"
            )
        return role
