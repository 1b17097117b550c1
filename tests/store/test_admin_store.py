"""The storage contract for tenants, users and tokens, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import pytest

from sencity.errors import AlreadyExists, NonexistentTenant, NotFound
from sencity.store import Migration, Store


def test_backend_matches_url(store: Store, store_url: str) -> None:
    assert store.dialect == ("sqlite" if store_url.startswith("sqlite") else "postgresql")
    store.ping()


def test_migrations_apply_once(store: Store) -> None:
    m = Migration(
        "example",
        1,
        sqlite=["CREATE TABLE ex (a INTEGER)"],
        postgresql=["CREATE TABLE ex (a INTEGER)"],
    )
    assert store.migrate([m]) == [("example", 1)]
    assert store.migrate([m]) == []  # second run: nothing to do
    with store.transaction() as tx:
        tx.execute("INSERT INTO ex (a) VALUES (?)", (7,))
        assert tx.execute("SELECT a FROM ex") == [{"a": 7}]


def test_failed_transaction_writes_nothing(store: Store) -> None:
    with pytest.raises(AlreadyExists), store._unique("tenant"), store.transaction() as tx:
        tx.execute(
            "INSERT INTO tenants (name, display_name, timezone, locale, created_at) "
            "VALUES ('a', 'A', 'UTC', 'en', 'now')"
        )
        tx.execute(
            "INSERT INTO tenants (name, display_name, timezone, locale, created_at) "
            "VALUES ('a', 'A', 'UTC', 'en', 'now')"
        )
    assert store.list_tenants() == []


def test_tenants(store: Store) -> None:
    store.create_tenant("hue", "Thành phố Huế")
    with pytest.raises(AlreadyExists, match="tenant 'hue' already exists"):
        store.create_tenant("hue")
    with pytest.raises(NonexistentTenant):
        store.get_tenant("nowhere")
    t = store.update_tenant("hue", locale="en", timezone="Asia/Bangkok")
    assert (t["display_name"], t["locale"], t["timezone"]) == (
        "Thành phố Huế",
        "en",
        "Asia/Bangkok",
    )
    assert [x["name"] for x in store.list_tenants()] == ["hue"]


def test_users_and_roles(store: Store) -> None:
    store.create_user("lan", password_hash="h", roles={"danang": "operator", "hue": "viewer"})
    with pytest.raises(AlreadyExists):
        store.create_user("lan")
    assert store.get_user("lan")["roles"] == {"danang": "operator", "hue": "viewer"}
    store.set_role("lan", "danang", "admin")
    store.set_role("lan", "hue", None)
    assert store.user_roles("lan") == {"danang": "admin"}
    store.update_user("lan", disabled=True)
    assert store.get_user("lan")["disabled"] is True
    with pytest.raises(NotFound):
        store.set_role("nobody", "danang", "viewer")
    assert [u["username"] for u in store.list_users()] == ["lan"]


def test_tokens_revoke_and_consume_once(store: Store) -> None:
    store.create_user("bot", kind="client")
    store.create_token("abc", "bot", "hash", "api", "gateway", None)
    store.create_token("once", "bot", "hash2", "login-once", "link", None)
    assert store.get_token("abc")["revoked_at"] is None
    assert store.revoke_token("abc")["revoked_at"] is not None
    assert store.consume_token("once") is True
    assert store.consume_token("once") is False
    assert [t["id"] for t in store.list_tokens("bot")] == ["abc", "once"]
    with pytest.raises(NotFound):
        store.get_token("missing")


def test_token_and_user_in_one_read(store: Store) -> None:
    store.create_user("minh", roles={"danang": "operator", "hue": "viewer"})
    store.create_user("bot", kind="client")
    store.create_token("t1", "minh", "hash", "api", "laptop", None)
    store.create_token("t2", "bot", "hash2", "api", "gateway", None)
    token, user = store.token_and_user("t1")
    assert token == store.get_token("t1")
    assert user == {
        "username": "minh",
        "kind": "user",
        "disabled": False,
        "roles": {"danang": "operator", "hue": "viewer"},
    }
    store.update_user("bot", disabled=True)
    token, user = store.token_and_user("t2")
    assert token["username"] == "bot" and user["roles"] == {} and user["disabled"] is True
    assert user["kind"] == "client"
    with pytest.raises(NotFound):
        store.token_and_user("missing")
