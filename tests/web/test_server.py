"""The real server (``sencity serve`` in a subprocess) on SQLite and PostgreSQL.

Covers start-up on a free port, health, metrics, 401/403 problem bodies, tenant
isolation, token revocation, logins, anonymous opt-in and bad input.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

import pytest

from sencity.config import Settings
from sencity.store import Store
from tests.conftest import People, Server, clean_env

PROBLEM = "application/problem+json"
Serve = Callable[..., Server]


def _problem(resp, status: int) -> dict:  # type: ignore[no-untyped-def]
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == PROBLEM
    body = resp.json()
    assert body["status"] == status and body["detail"] and body["type"]
    assert "Traceback" not in resp.text
    return body


def test_health_and_request_id(serve: Serve, store: Store, store_url: str) -> None:
    server = serve(store_url)
    with server.client() as c:
        r = c.get("/health", headers={"X-Request-ID": "probe-42"})
        assert r.status_code == 200
        assert r.headers["x-request-id"] == "probe-42"
        body = r.json()
        assert body["status"] == "ok" and body["store"]["status"] == "ok"
        assert body["store"]["backend"] == store.dialect
        assert len(c.get("/health").headers["x-request-id"]) >= 8


def test_metrics_need_a_role_and_count_requests(
    serve: Serve, store: Store, city: People, store_url: str
) -> None:
    server = serve(store_url)
    with server.client() as c:
        _problem(c.get("/metrics"), 401)
    with server.client(city.tokens["dn_viewer"]) as c:
        _problem(c.get("/metrics"), 403)  # not platform-wide
    with server.client(city.tokens["root"]) as c:
        c.get("/health")
        r = c.get("/metrics")
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/plain")
        assert 'sencity_http_requests_total{method="GET",route="health",status="200"}' in r.text
        assert 'sencity_auth_failures_total{status="401"} 1.0' in r.text


def test_public_metrics_setting(serve: Serve, store: Store, store_url: str) -> None:
    server = serve(store_url, "[metrics]\npublic = true\n")
    with server.client() as c:
        assert c.get("/metrics").status_code == 200


def test_401_and_403_are_problem_json(
    serve: Serve, store: Store, city: People, store_url: str
) -> None:
    server = serve(store_url)
    with server.client() as c:
        body = _problem(c.get("/api/v1/tenant"), 401)
        assert "Bearer" in c.get("/api/v1/tenant").headers["www-authenticate"]
        assert body["instance"] == "/api/v1/tenant"
    for bad in ("sct_nope.nope", "garbage", "sct_x"):
        with server.client(headers={"Authorization": f"Bearer {bad}"}) as c:
            _problem(c.get("/api/v1/tenant"), 401)
    with server.client(headers={"Authorization": "Basic dXNlcjpwYXNz"}) as c:
        _problem(c.get("/api/v1/tenant"), 401)
    with server.client(city.tokens["dn_viewer"]) as c:
        assert c.get("/api/v1/tenant").json()["your_role"] == "viewer"
        body = _problem(c.patch("/api/v1/tenant", json={"locale": "en"}), 403)
        assert "viewer" in body["detail"]
    with server.client(city.tokens["dn_operator"]) as c:
        _problem(c.patch("/api/v1/tenant", json={"locale": "en"}), 403)
    with server.client(city.tokens["dn_admin"]) as c:
        r = c.patch("/api/v1/tenant", json={"locale": "en"})
        assert r.status_code == 200 and r.json()["locale"] == "en"


def test_tenant_isolation(serve: Serve, store: Store, city: People, store_url: str) -> None:
    server = serve(store_url)
    hanoi = {"NGSILD-Tenant": "hanoi"}
    with server.client(city.tokens["dn_viewer"]) as c:
        assert c.get("/api/v1/tenant").json()["name"] == "danang"  # the default tenant
        body = _problem(c.get("/api/v1/tenant", headers=hanoi), 403)
        assert "hanoi" in body["detail"]
        assert [t["name"] for t in c.get("/api/v1/tenants").json()] == ["danang"]
    with server.client(city.tokens["hn_viewer"]) as c:
        assert c.get("/api/v1/tenant", headers=hanoi).json()["display_name"] == "Thủ đô Hà Nội"
        _problem(c.get("/api/v1/tenant"), 403)
        assert [t["name"] for t in c.get("/api/v1/tenants").json()] == ["hanoi"]
    with server.client(city.tokens["dn_admin"]) as c:  # admin of one city only
        _problem(c.patch("/api/v1/tenant", headers=hanoi, json={"locale": "en"}), 403)
    assert store.get_tenant("hanoi")["locale"] == "vi"
    with server.client(city.tokens["root"]) as c:
        assert [t["name"] for t in c.get("/api/v1/tenants").json()] == ["danang", "hanoi"]
        _problem(c.get("/api/v1/tenant", headers={"NGSILD-Tenant": "atlantis"}), 404)
        _problem(c.get("/api/v1/tenant", headers={"NGSILD-Tenant": "Bad Name!"}), 400)


def test_token_revocation(
    serve: Serve, store: Store, city: People, store_url: str, settings: Settings
) -> None:
    server = serve(store_url)
    token = city.tokens["dn_viewer"]
    token_id = token[4:].split(".")[0]
    with server.client(token) as c:
        assert c.get("/api/v1/tenant").status_code == 200
        # revoke from the command line, as an administrator would
        cfg = server.url  # noqa: F841 - the CLI talks to the store, not the server
        res = subprocess.run(
            [sys.executable, "-m", "sencity", "tokens", "revoke", token_id],
            env={**clean_env(), "SENCITY_STORE__URL": store_url},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert res.returncode == 0, res.stderr
        assert "revoked" in _problem(c.get("/api/v1/tenant"), 401)["detail"]
    # revoking one's own token through the API
    with server.client(city.tokens["dn_operator"]) as c:
        created = c.post("/auth/tokens", json={"name": "gateway-1", "expires_in_days": 30})
        assert created.status_code == 201
        new = created.json()
        assert new["token"].startswith("sct_") and new["name"] == "gateway-1"
        assert [t["name"] for t in c.get("/auth/tokens").json()] == ["test", "gateway-1"]
    with server.client(new["token"]) as c2:
        assert c2.get("/auth/me").json()["username"] == "dn_operator"
    with server.client(city.tokens["dn_viewer"].replace("a", "b")) as other:
        _problem(other.delete(f"/auth/tokens/{new['id']}"), 401)
    with server.client(city.tokens["hn_viewer"]) as other:
        _problem(other.delete(f"/auth/tokens/{new['id']}"), 403)
    with server.client(city.tokens["dn_operator"]) as c:
        assert c.delete(f"/auth/tokens/{new['id']}").status_code == 204
    with server.client(new["token"]) as c2:
        _problem(c2.get("/auth/me"), 401)


def test_disabled_user_is_locked_out(
    serve: Serve, store: Store, city: People, store_url: str
) -> None:
    server = serve(store_url)
    store.update_user("dn_viewer", disabled=True)
    with server.client(city.tokens["dn_viewer"]) as c:
        assert "disabled" in _problem(c.get("/api/v1/tenant"), 401)["detail"]


def test_password_login_logout(serve: Serve, store: Store, city: People, store_url: str) -> None:
    server = serve(store_url)
    with server.client() as c:
        _problem(c.post("/auth/login", json={"username": "dn_viewer", "password": "wrong"}), 401)
        _problem(c.post("/auth/login", json={"username": "ghost", "password": "x"}), 401)
        _problem(c.post("/auth/login", json={"username": "dn_viewer"}), 400)
        _problem(
            c.post(
                "/auth/login", content=b"{not json", headers={"content-type": "application/json"}
            ),
            400,
        )
        _problem(
            c.post("/auth/login", content=b"<xml/>", headers={"content-type": "application/xml"}),
            415,
        )
        r = c.post(
            "/auth/login", json={"username": "dn_viewer", "password": "correct horse battery"}
        )
        assert r.status_code == 200
        token = r.json()["access_token"]
        assert r.json()["user"]["roles"] == {"danang": "viewer"}
        assert "sencity_session" in r.cookies
    with server.client(token) as c:
        me = c.get("/auth/me").json()
        assert me == {
            "username": "dn_viewer",
            "kind": "user",
            "roles": {"danang": "viewer"},
            "tenants": ["danang"],
        }
        assert c.post("/auth/logout").status_code == 204
        _problem(c.get("/auth/me"), 401)


def test_login_is_throttled(serve: Serve, store: Store, city: People, store_url: str) -> None:
    server = serve(store_url, "[auth]\nmax_failed_logins = 3\n")
    with server.client() as c:
        for _ in range(3):
            _problem(c.post("/auth/login", json={"username": "dn_viewer", "password": "x"}), 401)
        good = {"username": "dn_viewer", "password": "correct horse battery"}
        _problem(c.post("/auth/login", json=good), 429)


def test_anonymous_role_is_opt_in(serve: Serve, store: Store, city: People, store_url: str) -> None:
    server = serve(store_url, '[auth.anonymous]\nrole = "viewer"\ntenants = ["danang"]\n')
    assert any("ANONYMOUS ACCESS IS ON" in line for line in server.output)
    with server.client() as c:
        assert c.get("/api/v1/tenant").json()["your_role"] == "viewer"
        _problem(c.patch("/api/v1/tenant", json={"locale": "en"}), 403)
        _problem(c.get("/api/v1/tenant", headers={"NGSILD-Tenant": "hanoi"}), 401)
        _problem(c.get("/metrics"), 401)  # platform-wide routes stay closed
        _problem(c.get("/auth/me"), 401)


def test_bad_requests_never_500(serve: Serve, store: Store, city: People, store_url: str) -> None:
    server = serve(store_url, "[server]\nmax_body_bytes = 2048\n")
    with server.client(city.tokens["dn_admin"]) as c:
        _problem(c.get("/no/such/endpoint"), 404)
        _problem(c.delete("/health"), 405)
        _problem(
            c.patch(
                "/api/v1/tenant", content=b"x" * 5000, headers={"content-type": "application/json"}
            ),
            413,
        )
        _problem(c.patch("/api/v1/tenant", json=["not", "an", "object"]), 400)
        _problem(c.patch("/api/v1/tenant", json={"name": "renamed"}), 400)
        _problem(c.patch("/api/v1/tenant", json={"locale": 5}), 400)
    assert store.get_tenant("danang")["locale"] == "vi"


@pytest.mark.postgres
def test_several_workers_on_postgresql(serve: Serve, pg_url: str) -> None:
    from tests.conftest import _pg_schema_url

    server = serve(_pg_schema_url(pg_url), "[server]\nworkers = 2\n")
    server.wait_for(r"\(2 worker processes\)")
    with server.client() as c:
        r = c.get("/health")
        assert r.status_code == 200 and r.json()["bus"] == "postgresql"


def test_workers_need_postgresql(tmp_path) -> None:  # type: ignore[no-untyped-def]
    res = subprocess.run(
        [sys.executable, "-m", "sencity", "serve", "--workers", "2"],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert res.returncode == 1
    assert "needs the PostgreSQL store" in res.stderr
