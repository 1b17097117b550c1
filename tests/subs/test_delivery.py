"""Delivery: retries with back-off, failure status, isolation of slow or unreachable
endpoints, and the outbox surviving a restart."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.conftest import Server, stop_server
from tests.hub.conformance.conftest import NGSI, entity, prop
from tests.subs.conftest import (
    SUBS_CONFIG,
    Receiver,
    free_port,
    make_admin,
    status,
    subscribe,
    subscription,
    wait_for,
)

SENSOR = "urn:ngsi-ld:Sensor:1"


def test_failures_are_counted_and_retried_until_delivered(ngsi: NGSI, receiver: Receiver) -> None:
    receiver.status = 503
    sid = subscribe(ngsi, subscription(receiver.url()))
    ngsi.create(entity(SENSOR, temperature=prop(1)))
    st = wait_for(
        lambda: (s := status(ngsi, sid))["notification"]["timesFailed"] >= 2 and s, 10, "failures"
    )
    note = st["notification"]
    assert note["status"] == "failed" and note["lastFailure"] and "lastSuccess" not in note
    receiver.status = 204  # the endpoint recovers: the same notification arrives
    got = receiver.wait(1)[0].body
    assert got["data"][0]["temperature"]["value"] == 1
    st = wait_for(lambda: (s := status(ngsi, sid))["notification"]["status"] == "ok" and s, 5, "ok")
    note = st["notification"]
    assert note["timesSent"] == note["timesFailed"] + 1
    assert note["lastSuccess"] > note["lastFailure"]


def test_last_retry_gives_up(ngsi: NGSI, receiver: Receiver) -> None:
    receiver.status = 500
    sid = subscribe(ngsi, subscription(receiver.url()))
    ngsi.create(entity(SENSOR, temperature=prop(1)))
    # retries = 4 in the test configuration: 5 attempts, then the notification is dropped
    wait_for(lambda: status(ngsi, sid)["notification"]["timesFailed"] == 5, 15, "5 attempts")
    receiver.status = 204
    ngsi.create(entity("urn:ngsi-ld:Sensor:2", temperature=prop(2)))
    got = receiver.wait(1)
    assert [d["id"] for d in got[0].body["data"]] == ["urn:ngsi-ld:Sensor:2"]
    st = wait_for(lambda: (s := status(ngsi, sid))["notification"]["timesSent"] == 6 and s)
    assert st["notification"]["timesFailed"] == 5
    # operators see it in /metrics (the server is shared by the session's tests: at least)
    text = ngsi.http.get(str(ngsi.http.base_url).split("/ngsi-ld")[0] + "/metrics").text
    found = dict(
        line.split(" ", 1) for line in text.splitlines() if line.startswith("sencity_notif")
    )
    assert float(found["sencity_notifications_dropped"]) >= 1
    assert float(found["sencity_notifications_failed"]) >= 5
    assert float(found["sencity_notifications_sent"]) >= 1
    assert float(found["sencity_notifications_pending"]) >= 0


@pytest.fixture
def black_hole() -> Iterator[str]:
    """An endpoint that accepts connections and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(100)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        sock.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(sock.accept()[0])
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/never"
    stop.set()
    t.join()
    for c in held:
        c.close()
    sock.close()


def test_slow_and_unreachable_endpoints_do_not_delay_others(
    ngsi: NGSI, receiver: Receiver, black_hole: str
) -> None:
    refused = f"http://127.0.0.1:{free_port()}/down"
    for uri in (black_hole, refused, black_hole + "2"):
        subscribe(ngsi, subscription(uri))
    subscribe(ngsi, subscription(receiver.url()))
    for i in range(5):
        start = time.monotonic()
        ngsi.create(entity(f"urn:ngsi-ld:Sensor:{i}", temperature=prop(i)))
        receiver.wait(i + 1, timeout=5)
        # the black hole holds each request for http_timeout (2 s): none of that here
        assert time.monotonic() - start < 1.0


def _client(server: Server, token: str, tenant: str) -> NGSI:
    return NGSI(server.url, token, tenant)


@pytest.mark.parametrize("how", ["stopped", "killed"])
def test_outbox_is_delivered_after_a_restart(
    store_url: str, serve: Callable[..., Server], how: str
) -> None:
    token = make_admin(store_url)
    config = SUBS_CONFIG + "lease_seconds = 3\n"
    port = free_port()
    tenant = f"t{uuid.uuid4().hex[:8]}"
    first = serve(store_url, config)
    ngsi = _client(first, token, tenant)
    hang: socket.socket | None = None
    if how == "killed":  # the server dies holding a delivery in flight (its lease)
        hang = socket.socket()
        hang.bind(("127.0.0.1", port))
        hang.listen(10)
    sid = subscribe(ngsi, subscription(f"http://127.0.0.1:{port}/notify"))
    ngsi.create(entity(SENSOR, temperature=prop(42)))
    if how == "stopped":  # endpoint down: the first attempt failed
        wait_for(lambda: status(ngsi, sid)["notification"]["timesFailed"] >= 1, 10, "failure")
        ngsi.http.close()
        stop_server(first)
    else:
        assert hang is not None
        hang.settimeout(10)
        conn, _ = hang.accept()  # the delivery attempt, never answered
        ngsi.http.close()
        first.proc.kill()
        first.proc.wait()
        conn.close()
        hang.close()
    receiver = Receiver(port)
    receiver.start()
    try:
        second = serve(store_url, config)
        got = receiver.wait(1, timeout=20)[0].body
        assert got["subscriptionId"] == sid
        assert got["data"][0]["temperature"]["value"] == 42
        stop_server(second)
    finally:
        receiver.stop()


@pytest.mark.postgres
def test_workers_share_subscriptions(
    pg_url: str, serve: Callable[..., Server], receiver: Receiver
) -> None:
    """With several worker processes, a subscription made through one reaches the others
    (over the event bus) at once, not at the next reload."""
    from tests.conftest import _pg_schema_url

    url = _pg_schema_url(pg_url)
    token = make_admin(url)
    server = serve(url, SUBS_CONFIG + "reload_seconds = 600\n[server]\nworkers = 2\n")
    headers = {"Authorization": f"Bearer {token}", "NGSILD-Tenant": "w"}
    # a new connection per request: the kernel spreads them over both workers
    with httpx.Client(
        base_url=server.url + "/ngsi-ld/v1",
        headers=headers,
        timeout=10,
        limits=httpx.Limits(max_keepalive_connections=0),
    ) as http:

        def create(i: int) -> None:
            r = http.post("/entities", json=entity(f"urn:ngsi-ld:Sensor:{i}", a=prop(i)))
            assert r.status_code == 201, r.text

        for i in range(20):  # both workers now know the tenant has no subscriptions
            create(i)
        r = http.post("/subscriptions", json=subscription(receiver.url()))
        assert r.status_code == 201, r.text
        for i in range(20, 60):
            create(i)
        # every write made once the subscription was known everywhere notifies: only the
        # first few (while the event travels to the other worker) might be missed
        wanted = {f"urn:ngsi-ld:Sensor:{i}" for i in range(30, 60)}
        wait_for(lambda: wanted <= {d["id"] for d in receiver.data()}, 10, "both workers to notify")
