"""The MQTT side of the sensor agent: one client (paho, in its own network thread) with a
persistent session, QoS 1 and manual acknowledgements.

Topics follow the FIWARE IoT agents: ``/{apikey}/{device_id}/attrs`` (a whole payload),
``/{apikey}/{device_id}/attrs/{name}`` (one measure), ``/{apikey}/{device_id}/cmdexe``
(command results), also with a ``/json`` or ``/ul`` prefix that names the payload
format; plus the topic patterns of groups with their own format.

A message is acknowledged (PUBACK) only when the ingestor says it is durable; until then
the broker keeps it in the session and sends it again after a reconnect. A full ingest
queue blocks this client's network thread: the broker holds what follows (back-pressure).
"""

from __future__ import annotations

import logging
import ssl
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from sencity.config import IngestSettings
from sencity.ingest.pipeline import Ingestor, Message
from sencity.ingest.registry import DeadLetter, Registry

log = logging.getLogger("sencity.ingest")

#: seconds; generous, because under a flood the network thread shares the GIL with the
#: writer and may read the broker's PINGRESP late
KEEPALIVE = 60
TOPICS = [
    "/+/+/attrs",
    "/+/+/attrs/+",
    "/+/+/cmdexe",
    "/json/+/+/attrs",
    "/json/+/+/attrs/+",
    "/json/+/+/cmdexe",
    "/ul/+/+/attrs",
    "/ul/+/+/attrs/+",
    "/ul/+/+/cmdexe",
]


def parse_topic(topic: str) -> tuple[str | None, str, str, str, str | None] | None:
    """(protocol, apikey, device id, kind, measure) of an IoT-agent topic, else None."""
    parts = topic.split("/")
    if parts and parts[0] == "":
        parts = parts[1:]
    protocol = None
    if parts and parts[0] in ("json", "ul") and len(parts) >= 4:
        protocol, parts = parts[0], parts[1:]
    if len(parts) == 3 and parts[2] in ("attrs", "cmdexe"):
        return protocol, parts[0], parts[1], parts[2], None
    if len(parts) == 4 and parts[2] == "attrs" and parts[3]:
        return protocol, parts[0], parts[1], "attrs", parts[3]
    return None


class MqttSource:
    """Connects to the broker, subscribes, and feeds messages to the ingestor."""

    def __init__(
        self,
        url: str,
        settings: IngestSettings,
        ingestor: Ingestor,
        registry: Registry,
        on_command_result: Callable[[Message], None] | None = None,
        v5: bool = True,
    ) -> None:
        self.url = url
        self.settings = settings
        self.ingestor = ingestor
        self.registry = registry
        self.on_command_result = on_command_result
        self.connected = threading.Event()
        self.connections = 0
        self._stopping = False
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (8883 if parts.scheme == "mqtts" else 1883)
        self.v5 = v5  # MQTT 5 (Receive Maximum, session expiry) or 3.1.1 (persistent session)
        c = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=settings.client_id,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            clean_session=None if v5 else False,
            manual_ack=True,
        )
        if parts.username:
            c.username_pw_set(unquote(parts.username), unquote(parts.password or ""))
        if parts.scheme == "mqtts":
            c.tls_set_context(ssl.create_default_context())
        c.reconnect_delay_set(min_delay=1, max_delay=30)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_subscribe = self._on_subscribe
        self._lock = threading.Lock()
        self._pending: dict[int, threading.Event] = {}
        self.client = c

    def start(self) -> None:
        if self.v5:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = self.settings.session_expiry
            props.ReceiveMaximum = self.settings.receive_maximum
            self.client.connect_async(
                self.host, self.port, keepalive=KEEPALIVE, clean_start=False, properties=props
            )
        else:
            self.client.connect_async(self.host, self.port, keepalive=KEEPALIVE)
        self.client.loop_start()

    def stop(self) -> None:
        self._stopping = True
        self.client.disconnect()
        self.client.loop_stop()

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        self.client.publish(topic, payload, qos=qos)

    # -- callbacks (paho's network thread) ----------------------------------------------------
    def _on_connect(self, client: mqtt.Client, _u: Any, flags: Any, rc: Any, _p: Any) -> None:
        if rc.is_failure:
            log.warning("MQTT broker %s:%s refused the connection: %s", self.host, self.port, rc)
            return
        self.connections += 1
        topics = [*TOPICS, *self.registry.mapping_topics()]
        client.subscribe([(t, 1) for t in topics])
        log.info(
            "connected to MQTT broker %s:%s (session %s), %d topic filters",
            self.host,
            self.port,
            "resumed" if flags.session_present else "new",
            len(topics),
        )
        self.connected.set()

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        self.connected.clear()
        if not self._stopping:
            log.warning("lost the MQTT broker %s:%s (%s); reconnecting", self.host, self.port, rc)

    def resubscribe(self, wait: float = 5.0) -> None:
        """After a group with its own topic format was added or changed: subscribe, and
        wait for the broker's SUBACK, so messages sent after the group exists arrive."""
        topics = self.registry.mapping_topics()
        if not topics or not self.connected.is_set():
            return
        done = threading.Event()
        with self._lock:
            rc, mid = self.client.subscribe([(t, 1) for t in topics])
            if rc == mqtt.MQTT_ERR_SUCCESS and mid is not None:
                self._pending[mid] = done
        done.wait(wait)

    def _on_subscribe(self, _c: mqtt.Client, _u: Any, mid: int, _rc: Any, _p: Any) -> None:
        with self._lock:
            done = self._pending.pop(mid, None)
        if done is not None:
            done.set()

    def _on_message(self, client: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        mid, qos = msg.mid, msg.qos

        def ack(_dead: DeadLetter | None) -> None:
            if qos > 0:
                client.ack(mid, qos)

        parsed = parse_topic(msg.topic)
        if parsed is None:
            mapped = self.registry.mapped(msg.topic)
            m = Message(
                "mqtt",
                msg.topic,
                bytes(msg.payload),
                mapped[0] if mapped else None,
                mapped[1] if mapped else None,
                mapped=mapped is not None,
                ack=ack,
            )
        else:
            protocol, apikey, device_id, kind, attr = parsed
            m = Message(
                "mqtt",
                msg.topic,
                bytes(msg.payload),
                apikey,
                device_id,
                attr=attr,
                protocol=protocol,
                ack=ack,
            )
            if kind == "cmdexe":
                if self.on_command_result is not None:
                    self.on_command_result(m)
                ack(None)
                return
        self.ingestor.submit(m)  # blocks while the queue is full: back-pressure
