"""Shared fixtures: isolated SQLite and PostgreSQL stores, and a real server.

PostgreSQL: one database per test session (created here, dropped at the end), and a
schema of its own per test.  The server fixture starts ``sencity serve`` in a
subprocess on a free port and waits for its "listening on" line.
"""

from __future__ import annotations

import os
import queue
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import psycopg
import pytest

from sencity.auth.service import AuthService, hash_password
from sencity.config import Settings, load_settings
from sencity.core.platform import prepare_store
from sencity.store import Store

PG_ADMIN_URL = os.environ.get("SC_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
BACKENDS = ["sqlite", "postgresql"]


def clean_env() -> dict[str, str]:
    """The environment without SENCITY_* variables, so tests are not steered from outside."""
    return {k: v for k, v in os.environ.items() if not k.upper().startswith("SENCITY_")}


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A PostgreSQL database for this test session (with PostGIS when installed)."""
    name = f"sencity_test_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL is needed for the store tests ({PG_ADMIN_URL}): {exc}")
    admin.execute(f'CREATE DATABASE "{name}"')
    # commits need not wait for the WAL to reach the disk: a crash of the machine is not
    # what these tests test, and a killed process still loses nothing it committed
    admin.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
    url = re.sub(r"/[^/?]*(\?.*)?$", f"/{name}", PG_ADMIN_URL)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")
    except psycopg.Error as exc:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        pytest.fail(f"PostGIS is needed (apt-get install postgresql-15-postgis-3): {exc}")
    try:
        yield url
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def _pg_schema_url(pg_url: str) -> str:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    return f"{pg_url}?options={quote(f'-csearch_path={schema},public')}"


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty store URL of each backend (the test's own file or schema)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return _pg_schema_url(request.getfixturevalue("pg_url"))


@pytest.fixture
def settings(store_url: str, tmp_path: Path) -> Settings:
    return load_settings(
        None,
        {
            "store": {"url": store_url},
            "data_dir": str(tmp_path),
            "ingest": {"embedded_broker": False},
        },
        environ={},
    )


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    s = prepare_store(settings)
    yield s
    s.close()


@dataclass
class Server:
    url: str
    proc: subprocess.Popen[str]
    output: list[str] = field(default_factory=list)
    store_url: str = ""
    reader: threading.Thread | None = None
    lines: queue.Queue[str | None] | None = None

    def wait_for(self, pattern: str, timeout: float = 20) -> re.Match[str]:
        """The next output line matching ``pattern`` (waits for the process to print it)."""
        assert self.lines is not None
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(
                    f"no line matching {pattern!r}:\n" + "".join(self.output)
                ) from None
            if line is None:
                raise AssertionError("server exited:\n" + "".join(self.output))
            m = re.search(pattern, line)
            if m:
                return m

    def client(self, token: str | None = None, **kw: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        headers.update(kw.pop("headers", {}))
        return httpx.Client(base_url=self.url, headers=headers, timeout=10, **kw)


def start_server(
    args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 30
) -> Server:
    """Run ``sencity ARGS`` and wait for its "listening on" line; return the server."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "sencity", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # no embedded MQTT broker unless a test asks for one (the real one is on 1883)
        env={**clean_env(), "SENCITY_INGEST__EMBEDDED_BROKER": "false", **(env or {})},
    )
    lines: queue.Queue[str | None] = queue.Queue()
    output: list[str] = []

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            output.append(line)
            lines.put(line)
        lines.put(None)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    deadline = time.monotonic() + timeout
    while True:
        try:
            line = lines.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            stop_server(Server("", proc, output, reader=reader))
            raise AssertionError("server did not start in time:\n" + "".join(output)) from None
        if line is None:
            stop_server(Server("", proc, output, reader=reader))
            raise AssertionError("server exited:\n" + "".join(output))
        m = re.search(r"listening on (http://\S+)", line)
        if m:
            return Server(m.group(1), proc, output, reader=reader, lines=lines)


def stop_server(server: Server) -> None:
    server.proc.terminate()
    try:
        server.proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait()
    if server.reader is not None:
        server.reader.join(timeout=10)
    if server.proc.stdout is not None:
        server.proc.stdout.close()


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Start real servers: ``serve(store_url, config_toml="", env={})``."""
    started: list[Server] = []

    def _serve(
        store_url: str,
        config_toml: str = "",
        env: dict[str, str] | None = None,
        command: str = "serve",
    ) -> Server:
        cfg = tmp_path / f"sencity-{len(started)}.toml"
        cfg.write_text(config_toml)
        args = ["--config", str(cfg), command, "--port", "0", "--store", store_url]
        server = start_server(args, tmp_path, env)
        server.store_url = store_url
        started.append(server)
        return server

    yield _serve
    for s in started:
        stop_server(s)


@dataclass
class People:
    """Users of a test store and their tokens."""

    tokens: dict[str, str]


def add_user(
    store: Store,
    settings: Settings,
    name: str,
    roles: dict[str, str],
    password: str = "correct horse battery",
) -> str:
    """Create a user and return an API token for them."""
    store.create_user(name, password_hash=hash_password(password), roles=roles)
    token, _ = AuthService(store, settings).issue_token(name, "api", "test")
    return token


@pytest.fixture
def city(store: Store, settings: Settings) -> People:
    """Two tenants and one user per role; tokens by user name."""
    store.create_tenant("danang", "Thành phố Đà Nẵng")
    store.create_tenant("hanoi", "Thủ đô Hà Nội")
    tokens = {
        "root": add_user(store, settings, "root", {"*": "admin"}),
        "dn_admin": add_user(store, settings, "dn_admin", {"danang": "admin"}),
        "dn_operator": add_user(store, settings, "dn_operator", {"danang": "operator"}),
        "dn_viewer": add_user(store, settings, "dn_viewer", {"danang": "viewer"}),
        "hn_viewer": add_user(store, settings, "hn_viewer", {"hanoi": "viewer"}),
    }
    return People(tokens)
