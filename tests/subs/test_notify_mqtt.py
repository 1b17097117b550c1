"""Notifications over MQTT, published to the real broker (Mosquitto on 127.0.0.1:1883)."""

from __future__ import annotations

import json
import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.hub.conformance.conftest import NGSI, entity, prop
from tests.subs.conftest import free_port, status, subscribe, subscription, wait_for

BROKER = ("127.0.0.1", 1883)
SENSOR = "urn:ngsi-ld:Sensor:m1"


def _broker_up() -> bool:
    try:
        socket.create_connection(BROKER, timeout=1).close()
    except OSError:
        return False
    return True


@dataclass
class Listener:
    """A subscriber on the broker that keeps every message of its topic."""

    topic: str
    messages: list[tuple[str, Any, int]] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)

    def on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self.cond:
            self.messages.append((msg.topic, json.loads(msg.payload), msg.qos))
            self.cond.notify_all()

    def wait(self, n: int, timeout: float = 10.0) -> list[tuple[str, Any, int]]:
        with self.cond:
            if not self.cond.wait_for(lambda: len(self.messages) >= n, timeout):
                raise AssertionError(f"{len(self.messages)} MQTT message(s) came, {n} expected")
            return list(self.messages[:n])


@pytest.fixture
def listener() -> Iterator[Listener]:
    if not _broker_up():
        pytest.fail("the MQTT broker is not running on 127.0.0.1:1883 (start mosquitto)")
    lst = Listener(f"sencity-test/{uuid.uuid4().hex}/notify")
    subscribed = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"t-{uuid.uuid4().hex[:8]}")
    client.on_message = lst.on_message
    client.on_subscribe = lambda *_a: subscribed.set()
    client.connect(*BROKER)
    client.loop_start()
    client.subscribe(lst.topic, qos=1)
    assert subscribed.wait(10), "the broker did not acknowledge the subscription"
    yield lst
    client.loop_stop()
    client.disconnect()


def test_notifications_are_published_with_metadata_and_body(ngsi: NGSI, listener: Listener) -> None:
    uri = f"mqtt://{BROKER[0]}:{BROKER[1]}/{listener.topic}"
    sid = subscribe(
        ngsi,
        subscription(
            uri,
            notification={
                "endpoint": {
                    "uri": uri,
                    "accept": "application/json",
                    "receiverInfo": [{"key": "X-City", "value": "hue"}],
                    "notifierInfo": [{"key": "MQTT-QoS", "value": "1"}],
                }
            },
        ),
    )
    assert ngsi.create(entity(SENSOR, temperature=prop(30.5))).status_code == 201
    r = ngsi.request("PATCH", f"/entities/{SENSOR}/attrs", {"temperature": prop(31.0)})
    assert r.status_code == 204, r.text
    (topic, first, qos), (_, second, _) = listener.wait(2)
    assert topic == listener.topic and qos == 1
    meta, body = first["metadata"], first["body"]
    assert meta["Content-Type"] == "application/json"
    assert "ngsi-ld-core-context" in meta["Link"]
    assert meta["NGSILD-Tenant"] == ngsi.tenant
    assert meta["X-City"] == "hue"
    assert body["type"] == "Notification" and body["subscriptionId"] == sid
    assert body["data"] == [
        {"id": SENSOR, "type": "Sensor", "temperature": {"type": "Property", "value": 30.5}}
    ]
    assert second["body"]["data"][0]["temperature"]["value"] == 31.0
    note = wait_for(lambda: (s := status(ngsi, sid)["notification"])["timesSent"] == 2 and s)
    assert note["status"] == "ok" and note["timesFailed"] == 0


def test_ld_json_carries_the_context_in_the_body(ngsi: NGSI, listener: Listener) -> None:
    uri = f"mqtt://{BROKER[0]}:{BROKER[1]}/{listener.topic}"
    body = subscription(
        uri, notification={"endpoint": {"uri": uri, "accept": "application/ld+json"}}
    )
    subscribe(ngsi, body)
    assert ngsi.create(entity(SENSOR, temperature=prop(1.0))).status_code == 201
    (_, msg, _) = listener.wait(1)[0]
    assert msg["metadata"]["Content-Type"] == "application/ld+json"
    assert "Link" not in msg["metadata"]
    assert "@context" in msg["body"]


def test_an_unreachable_broker_is_counted_as_failures(ngsi: NGSI, listener: Listener) -> None:
    dead = f"mqtt://127.0.0.1:{free_port()}/nobody/listens"
    live = f"mqtt://{BROKER[0]}:{BROKER[1]}/{listener.topic}"
    bad = subscribe(ngsi, subscription(dead))
    subscribe(ngsi, subscription(live))
    assert ngsi.create(entity(SENSOR, temperature=prop(5.0))).status_code == 201
    listener.wait(1)  # the working broker is not held up by the dead one
    note = wait_for(
        lambda: (s := status(ngsi, bad)["notification"]).get("timesFailed", 0) >= 1 and s
    )
    assert note["status"] == "failed"
    assert "lastFailure" in note and "lastSuccess" not in note
