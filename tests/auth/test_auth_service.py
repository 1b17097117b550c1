"""Passwords, tokens, expiry, throttling, anonymous access and role checks."""

from __future__ import annotations

from datetime import timedelta

import pytest

from sencity.auth.service import AuthService, Principal, hash_password, verify_password
from sencity.config import Settings, load_settings
from sencity.errors import Forbidden, TooManyRequests, Unauthorized
from sencity.store import Store


def test_passwords_are_argon2() -> None:
    h = hash_password("s3cret-pass")
    assert h.startswith("$argon2id$") and "s3cret-pass" not in h
    assert verify_password(h, "s3cret-pass")
    assert not verify_password(h, "wrong")
    assert not verify_password(None, "s3cret-pass")
    assert not verify_password("not-a-hash", "s3cret-pass")


def test_token_lifecycle(store: Store, settings: Settings) -> None:
    auth = AuthService(store, settings)
    store.create_user("bot", kind="client", roles={"danang": "operator"})
    token, row = auth.issue_token("bot", "api", "gw")
    assert store.get_token(str(row["id"]))["secret_hash"] not in token  # only a digest kept
    p = auth.authenticate_token(token)
    assert (p.name, p.kind, p.role_on("danang"), p.role_on("hue")) == (
        "bot",
        "client",
        "operator",
        None,
    )
    with pytest.raises(Unauthorized, match="unknown token"):
        auth.authenticate_token(token[:-2] + "xx")
    expired, _ = auth.issue_token("bot", "api", "old", timedelta(seconds=-1))
    with pytest.raises(Unauthorized, match="expired"):
        auth.authenticate_token(expired)
    link = auth.login_link_token("bot")
    with pytest.raises(Unauthorized, match="cannot be used here"):
        auth.authenticate_token(link)  # a login link is not a bearer token
    auth.revoke(str(row["id"]))
    with pytest.raises(Unauthorized, match="revoked"):
        auth.authenticate_token(token)


def test_throttled_logins(store: Store, tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = load_settings(
        None, {"store": {"url": store.url}, "auth": {"max_failed_logins": 2}}, environ={}
    )
    auth = AuthService(store, settings)
    store.create_user("lan", password_hash=hash_password("right-password"))
    for _ in range(2):
        with pytest.raises(Unauthorized):
            auth.login("lan", "wrong", "10.0.0.1")
    with pytest.raises(TooManyRequests):
        auth.login("lan", "right-password", "10.0.0.1")
    token, p = auth.login("lan", "right-password", "10.0.0.2")  # another address
    assert p.name == "lan" and auth.authenticate_token(token).name == "lan"


def test_authorize() -> None:
    p = Principal("lan", "user", {"danang": "viewer", "*": "analyst"})
    assert AuthService.authorize(p, "danang", frozenset({"viewer"})) == "viewer"
    assert AuthService.authorize(p, "hue", frozenset({"analyst"})) == "analyst"  # via '*'
    with pytest.raises(Forbidden, match="needs one of: admin, operator"):
        AuthService.authorize(p, "danang", frozenset({"admin", "operator"}))
    q = Principal("hoa", "user", {"danang": "admin"})
    with pytest.raises(Forbidden, match="no role platform-wide"):
        AuthService.authorize(q, None, frozenset({"admin"}))
    assert q.tenants(["danang", "hue"]) == ["danang"]
    assert p.tenants(["danang", "hue"]) == ["danang", "hue"]


def test_anonymous_only_when_configured(store: Store) -> None:
    off = AuthService(store, load_settings(None, {"store": {"url": store.url}}, environ={}))
    assert off.anonymous("danang") is None
    on = AuthService(
        store,
        load_settings(
            None,
            {
                "store": {"url": store.url},
                "auth": {"anonymous": {"role": "viewer", "tenants": ["danang"]}},
            },
            environ={},
        ),
    )
    anon = on.anonymous("danang")
    assert anon is not None and anon.role_on("danang") == "viewer"
    assert on.anonymous("hue") is None
