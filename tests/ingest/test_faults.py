"""Faults during a stream of QoS 1 sensor messages: the broker restarts, the store goes
away for a while, SenCity is killed with SIGKILL. Every message the broker accepted
must end up in the store (history keeps each reading), none twice as a dead letter.

Each test runs its own Mosquitto (persistent, no queue limit: the system one drops
QoS 1 messages beyond 1,000 queued for a client that is away) and its own server.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Server, _pg_schema_url, start_server, stop_server
from tests.ingest.conftest import Agent, Publisher, broker_config
from tests.subs.conftest import free_port, make_admin, wait_for

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
N = 600
EID = "urn:ngsi-ld:AirQualityObserved:f-1"


class Broker:
    """A Mosquitto of the test's own, restartable, keeping sessions on disk."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.dir = tmp / "mosquitto"
        self.dir.mkdir()
        self.conf = self.dir / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
            f"persistence true\npersistence_location {self.dir}/\n"
            "max_queued_messages 0\nmax_inflight_messages 0\n"
            # as root it would switch to its own user, who cannot write the test's directory
            + ("user root\n" if os.geteuid() == 0 else "")
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(self._up, 10, "mosquitto to listen")

    def _up(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
        except OSError:
            return False
        return True

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()  # saves its sessions and queued messages
            self.proc.wait(10)
            self.proc = None


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    if not os.path.exists(MOSQUITTO):
        pytest.fail("the mosquitto binary is needed (apt-get install mosquitto)")
    b = Broker(tmp_path)
    b.start()
    yield b
    b.stop()


class Proxy:
    """A TCP relay to PostgreSQL that the test can cut (connections dropped, new ones
    refused) and restore on the same port: the store going away, as the server sees it."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self.restore()

    def restore(self) -> None:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        s.listen(64)
        self._listener = s
        threading.Thread(target=self._accept, args=(s,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._lock:
            conns, self._conns = self._conns, []
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
            c.close()


def serve(tmp: Path, store_url: str, broker: Broker, name: str) -> Server:
    cfg = tmp / f"{name}.toml"
    cfg.write_text(broker_config(f"sencity-faults-{name}", broker.url) + "retry_max = 1.0\n")
    server = start_server(["--config", str(cfg), "serve", "--port", "0", "--store", store_url], tmp)
    server.wait_for("connected to MQTT broker")
    return server


def provision(agent: Agent) -> None:
    r = agent.group(timestamp="ts", attributes=[{"object_id": "s", "name": "seq"}])
    assert r.status_code == 201, r.text
    assert agent.device("f-1").status_code == 201


def stream(
    broker: Broker, key: str, rate: float, stop_at: int = N
) -> tuple[threading.Thread, list[int]]:
    """Publish readings 0..N-1 (QoS 1) in a thread; the list holds those the broker took."""
    took: list[int] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            publish()
        except BaseException as exc:  # the test reports it
            errors.append(exc)
            import traceback

            traceback.print_exc()

    def publish() -> None:
        pub = Publisher(port=broker.port, client_id=f"pub-{uuid.uuid4().hex[:8]}", persistent=True)
        t0 = time.monotonic()
        for i in range(stop_at):
            delay = t0 + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)  # pacing the stream, not synchronising the test
            ts = 1_764_547_200 + i  # one reading a second
            pub.send(f"/{key}/f-1/attrs", f"s|{i}|ts|{ts}".encode(), wait=120)
            took.append(i)
        pub.close()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, took


def seq_values(agent: Agent) -> list[int]:
    r = agent.http.get(
        f"/ngsi-ld/v1/temporal/entities/{EID}",
        params={"attrs": "seq", "options": "temporalValues", "lastN": 2 * N},
    )
    if r.status_code == 404:
        return []
    assert r.status_code in (200, 206), r.text
    return [int(v[0]) for v in r.json().get("seq", {}).get("values", [])]


def all_arrived(agent: Agent, timeout: float = 40) -> list[int]:
    try:
        got = wait_for(
            lambda: len(set(v := seq_values(agent))) == N and v, timeout, f"{N} readings"
        )
    except AssertionError:
        have = set(seq_values(agent))
        missing = sorted(set(range(N)) - have)
        raise AssertionError(
            f"{len(have)} of {N} readings in history; missing {missing[:20]}..., "
            f"dead letters {agent.dead()[:3]}"
        ) from None
    assert sorted(set(got)) == list(range(N))
    assert agent.dead() == []
    return list(got)


@pytest.mark.timeout(120)
def test_broker_restart_mid_stream_loses_nothing(tmp_path: Path, broker: Broker) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    token = make_admin(url)
    server = serve(tmp_path, url, broker, "restart")
    agent = Agent(server.url, token, "hue")
    try:
        provision(agent)
        t, took = stream(broker, agent.apikey, rate=200)
        wait_for(lambda: len(set(seq_values(agent))) >= N // 3, 30, "a third of the stream")
        broker.stop()
        broker.start()
        server.wait_for("connected to MQTT broker", 30)
        t.join(120)
        assert len(took) == N
        all_arrived(agent)
    finally:
        agent.http.close()
        stop_server(server)


@pytest.mark.timeout(120)
def test_sigkill_during_ingestion_loses_nothing_acknowledged(
    tmp_path: Path, broker: Broker
) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    token = make_admin(url)
    server = serve(tmp_path, url, broker, "kill")
    agent = Agent(server.url, token, "hue")
    try:
        provision(agent)
        t, took = stream(broker, agent.apikey, rate=300)
        wait_for(lambda: len(set(seq_values(agent))) >= N // 3, 30, "a third of the stream")
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait(10)
        stop_server(server)  # (only collects what is left of it)
        before = set(seq_values_direct(url))
        t.join(120)  # the broker keeps taking messages for the session meanwhile
        assert len(took) == N
        server = serve(tmp_path, url, broker, "kill")  # same client id: the session resumes
        agent.http.close()
        agent = Agent(server.url, token, "hue")
        got = all_arrived(agent)
        assert before <= set(got)
    finally:
        agent.http.close()
        stop_server(server)


def seq_values_direct(store_url: str) -> list[int]:
    """The readings in the store, read with SQLite itself (no server running)."""
    import sqlite3

    conn = sqlite3.connect(store_url.removeprefix("sqlite:///"))
    try:
        rows = conn.execute("SELECT val FROM hub_history").fetchall()
    finally:
        conn.close()
    return [int(json.loads(r[0])) for r in rows if r[0] is not None]


@pytest.mark.timeout(150)
def test_store_unavailable_for_a_while_loses_nothing(
    tmp_path: Path, broker: Broker, pg_url: str
) -> None:
    direct = _pg_schema_url(pg_url)
    token = make_admin(direct)
    host, port = "127.0.0.1", int(direct.split("@", 1)[1].split("/", 1)[0].split(":")[1])
    proxy = Proxy((host, port))
    via = direct.replace(f"{host}:{port}", f"127.0.0.1:{proxy.port}", 1)
    server = serve(tmp_path, via, broker, "store")
    agent = Agent(server.url, token, "hue")
    try:
        provision(agent)
        t, took = stream(broker, agent.apikey, rate=200)
        wait_for(lambda: len(set(seq_values(agent))) >= N // 3, 30, "a third of the stream")
        proxy.cut()
        server.wait_for("could not write", 30)  # it noticed, and keeps the batch
        assert agent.http.get("/health").status_code == 503
        time.sleep(3)  # the outage itself: the store stays away for a while
        proxy.restore()
        t.join(120)
        assert len(took) == N
        # the connection pool retries with back-off (1, 2, 4, 8… s): up to ~30 s more
        all_arrived(agent, timeout=90)
    finally:
        agent.http.close()
        stop_server(server)
        proxy.cut()


@pytest.mark.timeout(120)
def test_one_process_holds_the_session_another_takes_over(
    tmp_path: Path, broker: Broker, pg_url: str
) -> None:
    url = _pg_schema_url(pg_url)
    token = make_admin(url)
    first = serve(tmp_path, url, broker, "lead")
    cfg = tmp_path / "second.toml"
    cfg.write_text(broker_config("sencity-faults-lead", broker.url))
    second = start_server(["--config", str(cfg), "serve", "--port", "0", "--store", url], tmp_path)
    agent = Agent(first.url, token, "hue")
    try:
        second.wait_for("standing by")
        provision(agent)
        pub = Publisher(port=broker.port)
        pub.send(f"/{agent.apikey}/f-1/attrs", b"s|1|ts|1764547200")
        wait_for(lambda: seq_values(agent) == [1], 20, "the first reading")
        stop_server(first)
        second.wait_for("taking over the MQTT session", 30)
        second.wait_for("connected to MQTT broker", 30)
        pub.send(f"/{agent.apikey}/f-1/attrs", b"s|2|ts|1764547201")
        agent.http.close()
        agent = Agent(second.url, token, "hue")
        wait_for(lambda: seq_values(agent) == [1, 2], 20, "the second reading")
        pub.close()
    finally:
        agent.http.close()
        stop_server(first)
        stop_server(second)
