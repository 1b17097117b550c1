"""The command line: users, roles, tokens, tenants, version and the demo's login link."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx

from sencity import __version__
from tests.conftest import Server, clean_env


def run(
    args: list[str],
    cwd: Path,
    stdin: str | None = None,
    store_url: str | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    env = clean_env()
    if store_url:
        env["SENCITY_STORE__URL"] = store_url
    return subprocess.run(
        [sys.executable, "-m", "sencity", *args],
        cwd=cwd,
        input=stdin,
        text=True,
        capture_output=True,
        env=env,
        timeout=timeout,
        check=False,
    )


def ok(res: subprocess.CompletedProcess[str]) -> str:
    assert res.returncode == 0, res.stderr
    return res.stdout


def test_version(tmp_path: Path) -> None:
    assert ok(run(["version"], tmp_path)).strip() == f"sencity {__version__}"


def test_users_roles_and_tokens(
    tmp_path: Path, store_url: str, serve: Callable[..., Server]
) -> None:
    u = store_url
    ok(run(["tenants", "add", "hue", "--display-name", "Thành phố Huế"], tmp_path, store_url=u))
    assert "Thành phố Huế" in ok(run(["tenants", "list"], tmp_path, store_url=u))
    res = run(
        ["users", "add", "lan", "--role", "operator", "--tenant", "danang"], tmp_path, store_url=u
    )
    assert res.returncode == 1
    assert "tenant 'danang' does not exist" in res.stderr
    ok(
        run(
            ["users", "add", "lan", "--role", "operator", "--tenant", "hue", "--password-stdin"],
            tmp_path,
            stdin="mật khẩu dài\n",
            store_url=u,
        )
    )
    res = run(
        ["users", "add", "lan", "--role", "viewer", "--tenant", "hue", "--password-stdin"],
        tmp_path,
        stdin="another password\n",
        store_url=u,
    )
    assert res.returncode == 1 and "already exists" in res.stderr
    res = run(["users", "add", "bad", "--role", "king", "--tenant", "hue"], tmp_path, store_url=u)
    assert res.returncode == 2 and "king" in res.stderr
    ok(
        run(
            ["users", "add", "gw", "--client", "--role", "operator", "--tenant", "hue"],
            tmp_path,
            store_url=u,
        )
    )
    ok(run(["users", "set-role", "lan", "viewer", "--tenant", "hue"], tmp_path, store_url=u))
    listing = ok(run(["users", "list"], tmp_path, store_url=u))
    assert "viewer@hue" in listing and "client" in listing

    res = run(["tokens", "create", "gw", "--name", "gateway-1"], tmp_path, store_url=u)
    token = ok(res).strip()
    assert token.startswith("sct_") and "shown once" in res.stderr
    server = serve(store_url)
    hue = {"NGSILD-Tenant": "hue"}
    with server.client(token, headers=hue) as c:
        assert c.get("/api/v1/tenant").json()["your_role"] == "operator"
    with server.client(headers=hue) as c:
        r = c.post("/auth/login", json={"username": "lan", "password": "mật khẩu dài"})
        assert r.status_code == 200 and r.json()["user"]["roles"] == {"hue": "viewer"}
        ok(run(["users", "disable", "lan"], tmp_path, store_url=u))
        r = c.post("/auth/login", json={"username": "lan", "password": "mật khẩu dài"})
        assert r.status_code == 401
    assert "gateway-1" in ok(run(["tokens", "list", "--user", "gw"], tmp_path, store_url=u))
    token_id = token[4:].split(".")[0]
    ok(run(["tokens", "revoke", token_id], tmp_path, store_url=u))
    with server.client(token, headers=hue) as c:
        assert c.get("/api/v1/tenant").status_code == 401
    res = run(["tokens", "revoke", "nosuchtoken"], tmp_path, store_url=u)
    assert res.returncode == 1 and "does not exist" in res.stderr


def test_demo_prints_a_one_time_login_link(tmp_path: Path, serve: Callable[..., Server]) -> None:
    store_url = f"sqlite:///{tmp_path / 'demo.db'}"
    server = serve(store_url, command="demo")
    password = server.wait_for(r"Created user 'admin' with password: (\S+)").group(1)
    link = server.wait_for(r"(http://\S+/login\?token=\S+)").group(1)
    with httpx.Client(timeout=10) as c:
        r = c.get(link)  # the link signs in once and sets the session cookie
        assert r.status_code == 303 and r.headers["location"] == "/"
        home = c.get(server.url + "/")
        assert home.status_code == 200 and ">admin<" in home.text
        assert "Thành phố Đà Nẵng" in home.text
    with httpx.Client(timeout=10) as c:
        again = c.get(link)
        assert again.status_code == 401  # used up
        assert c.get(server.url + "/").headers["location"] == "/login"
        r = c.post(server.url + "/auth/login", json={"username": "admin", "password": password})
        assert r.status_code == 200 and r.json()["user"]["roles"] == {"*": "admin"}
