"""Fixtures of the sensor agent tests: a server per backend connected to the real
Mosquitto (127.0.0.1:1883), a publisher, and a provisioning client."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.conftest import Server, start_server, stop_server
from tests.subs.conftest import make_admin, store_url_for, wait_for

BROKER = ("127.0.0.1", 1883)

__all__ = ["BROKER", "Agent", "Publisher", "wait_for"]


def broker_config(client_id: str, url: str = "mqtt://127.0.0.1:1883") -> str:
    return f"""[hub]
context_fetch = false
[ingest]
mqtt_url = "{url}"
client_id = "{client_id}"
session_expiry = 120
batch_wait = 0.005
"""


class Agent:
    """A client of one server's /ingest/v1 and /ngsi-ld/v1 in one tenant."""

    def __init__(self, url: str, token: str, tenant: str) -> None:
        self.url = url
        self.tenant = tenant
        self.apikey = f"k{uuid.uuid4().hex[:10]}"
        self.http = httpx.Client(
            base_url=url,
            headers={"Authorization": f"Bearer {token}", "NGSILD-Tenant": tenant},
            timeout=30,
        )

    def group(self, **members: Any) -> httpx.Response:
        body = {"apikey": self.apikey, "entity_type": "AirQualityObserved", **members}
        return self.http.post("/ingest/v1/groups", json=body)

    def device(self, device_id: str, **members: Any) -> httpx.Response:
        return self.http.post(
            "/ingest/v1/devices", json={"device_id": device_id, "apikey": self.apikey, **members}
        )

    def entity(self, eid: str) -> dict[str, Any] | None:
        r = self.http.get(f"/ngsi-ld/v1/entities/{eid}", params={"options": "keyValues"})
        if r.status_code == 404:
            return None
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    def dead(self) -> list[dict[str, Any]]:
        r = self.http.get("/ingest/v1/deadletters")
        assert r.status_code == 200, r.text
        items: list[dict[str, Any]] = r.json()
        return items


class Publisher:
    """A plain paho publisher (QoS 1: ``send`` returns once the broker has the message)."""

    def __init__(
        self,
        host: str = BROKER[0],
        port: int = BROKER[1],
        client_id: str | None = None,
        persistent: bool = False,
    ) -> None:
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"pub-{uuid.uuid4().hex}",
            clean_session=not persistent,
        )
        self.client.reconnect_delay_set(0.2, 2)
        self.client.connect(host, port)
        self.client.loop_start()

    def send(self, topic: str, payload: bytes | str, qos: int = 1, wait: float = 10) -> None:
        # while the broker is away paho keeps the message and sends it on reconnection
        info = self.client.publish(topic, payload, qos=qos)
        if info.rc == mqtt.MQTT_ERR_NO_CONN and qos > 0:
            info.rc = mqtt.MQTT_ERR_SUCCESS  # queued by paho: sent once connected again
        deadline = time.monotonic() + wait
        while not info.is_published():
            assert time.monotonic() < deadline, f"the broker did not take {topic}"
            time.sleep(0.005)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _broker_up(host: str = BROKER[0], port: int = BROKER[1]) -> bool:
    try:
        socket.create_connection((host, port), timeout=1).close()
    except OSError:
        return False
    return True


@contextmanager
def broker_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, name: str
) -> Iterator[tuple[Server, str, str]]:
    """A server of the requested backend connected to Mosquitto, with its own client id:
    (server, store URL, admin token)."""
    if not _broker_up():
        pytest.fail("the MQTT broker is not running on 127.0.0.1:1883 (start mosquitto)")
    tmp = tmp_path_factory.mktemp(f"{name}-{request.param}")
    url = store_url_for(request.param, tmp, request)
    token = make_admin(url)
    cfg = tmp / "sencity.toml"
    cfg.write_text(broker_config(f"sencity-{name}-test-{uuid.uuid4().hex[:12]}"))
    server = start_server(["--config", str(cfg), "serve", "--port", "0", "--store", url], tmp)
    try:
        server.wait_for("connected to MQTT broker")
        yield server, url, token
    finally:
        stop_server(server)


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def ingest_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    """A server per backend connected to Mosquitto: (URL, admin token)."""
    with broker_server(request, tmp_path_factory, "ingest") as (server, _, token):
        yield server.url, token


@pytest.fixture
def agent(ingest_server: tuple[str, str]) -> Iterator[Agent]:
    url, token = ingest_server
    a = Agent(url, token, f"t{uuid.uuid4().hex[:10]}")
    yield a
    a.http.close()


@pytest.fixture
def publisher() -> Iterator[Publisher]:
    p = Publisher()
    yield p
    p.close()
