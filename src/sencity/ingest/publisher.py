"""Publishing readings to a broker as a device would: a paho client at QoS 1 with a
window of unacknowledged messages, so thousands of messages per second flow while each
is counted when the broker acknowledges it.  Used by ``sencity replay`` and
``sencity sim``."""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urlsplit

WINDOW = 2_000  # messages published and not yet acknowledged, at most
ACK_TIMEOUT = 60.0  # seconds without any PUBACK before giving up


class Publisher:
    """``error`` is the exception raised (with a message naming the problem) and
    ``option`` the command-line option the URL came from."""

    def __init__(
        self,
        url: str,
        client_id: str,
        window: int = WINDOW,
        *,
        error: type[Exception] = RuntimeError,
        option: str = "--mqtt-url",
    ) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.error = error
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise error(f"{option} {url!r}: expected mqtt://host:port or mqtts://host:port")
        self.host = parts.hostname
        self.port = parts.port or (8883 if parts.scheme == "mqtts" else 1883)
        # MQTT 3.1.1: every broker speaks it (the embedded amqtt one too)
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
        if parts.username:
            c.username_pw_set(unquote(parts.username), unquote(parts.password or ""))
        if parts.scheme == "mqtts":
            c.tls_set_context(ssl.create_default_context())
        # no limit in paho (its queue is rescanned on every PUBACK: O(window) each); the
        # window is kept by send() instead
        c.max_inflight_messages_set(0)
        c.max_queued_messages_set(0)
        c.on_publish = self._on_publish
        c.on_connect = self._on_connect
        self.client = c
        self.window = window
        self.cond = threading.Condition()
        self.published = 0
        self.acked = 0
        self.connected = threading.Event()
        self.refused: str | None = None

    def _on_connect(self, _c: Any, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        if rc.is_failure:
            self.refused = str(rc)
        self.connected.set()

    def _on_publish(self, _c: Any, _u: Any, _mid: int, _rc: Any, _p: Any) -> None:
        with self.cond:
            self.acked += 1
            self.cond.notify_all()

    def connect(self, timeout: float = 10.0) -> None:
        try:
            self.client.connect(self.host, self.port, keepalive=60)
        except OSError as exc:
            raise self.error(
                f"cannot reach the MQTT broker {self.host}:{self.port}: {exc}"
            ) from None
        self.client.loop_start()
        if not self.connected.wait(timeout) or self.refused:
            self.close()
            raise self.error(
                f"the MQTT broker {self.host}:{self.port} refused the connection: "
                f"{self.refused or 'no answer'}"
            )

    def send(self, topic: str, payload: bytes) -> None:
        """Publish at QoS 1; blocks while ``window`` messages wait for their PUBACK."""
        if self.published - self.acked >= self.window:
            self.wait(self.window - 1)
        info = self.client.publish(topic, payload, qos=1)
        if info.rc not in (0, 4):  # 4: not connected (paho sends it on reconnection)
            raise self.error(f"could not publish to {topic}: error {info.rc}")
        with self.cond:
            self.published += 1

    def wait(
        self,
        pending: int = 0,
        tick: Callable[[], None] | None = None,
        timeout: float = ACK_TIMEOUT,
    ) -> None:
        """Until at most ``pending`` messages are unacknowledged, calling ``tick`` about
        five times a second (the error after ``timeout`` s without progress)."""
        with self.cond:
            last, since = self.acked, time.monotonic()
            while self.published - self.acked > pending:
                self.cond.wait(0.2)
                if tick is not None:
                    tick()
                if self.acked != last:
                    last, since = self.acked, time.monotonic()
                elif time.monotonic() - since > timeout:
                    raise self.error(
                        f"the MQTT broker acknowledged nothing for {timeout:.0f} s "
                        f"({self.published - self.acked} messages unacknowledged)"
                    )

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
