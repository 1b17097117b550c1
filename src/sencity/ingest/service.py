"""The sensor agent's runtime, kept in ``platform.state["ingest"]``: the registry, the
ingestor (writer thread) and the MQTT connection (an external broker, or the embedded
one when none is configured)."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from sencity.ingest.hubwrite import HubWriter
from sencity.ingest.pipeline import Ingestor
from sencity.ingest.registry import Registry
from sencity.ingest.southbound import Southbound

if TYPE_CHECKING:
    from sencity.core.platform import Platform
    from sencity.ingest.mqtt import MqttSource

log = logging.getLogger("sencity.ingest")


class IngestService:
    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.settings = platform.settings.ingest
        self.registry = Registry(platform.store)
        self.writer = HubWriter.of(platform)
        self.ingestor = Ingestor(platform.store, self.writer, self.registry, self.settings)
        self.southbound = Southbound(self)
        self.writer.hub.hub.commit_hooks.append(self.southbound.committed)
        self.mqtt: MqttSource | None = None
        self.broker: Any = None  # the embedded broker, when running
        self.broker_url = ""
        self.running = False

    def groups_changed(self) -> None:
        self.registry.invalidate()
        if self.mqtt is not None:
            self.mqtt.resubscribe()

    async def run(self) -> None:
        """Task: the writer thread, then the broker connection; both stop on cancel."""
        self.ingestor.start()
        self.running = True
        try:
            url = self.settings.mqtt_url
            if not url and self.settings.embedded_broker:
                url = await self._embedded_broker()
            if url:
                from sencity.ingest.mqtt import MqttSource

                self.broker_url = url
                # amqtt speaks MQTT 3.1.1 only
                self.mqtt = MqttSource(
                    url,
                    self.settings,
                    self.ingestor,
                    self.registry,
                    on_command_result=self.southbound.result,
                    v5=self.broker is None,
                )
                self.mqtt.start()
            await asyncio.Event().wait()  # until cancelled
        finally:
            self.running = False
            if self.mqtt is not None:
                await asyncio.to_thread(self.mqtt.stop)
            await asyncio.to_thread(self.ingestor.stop)
            if self.broker is not None:
                await self.broker.shutdown()
                self.broker = None

    async def _embedded_broker(self) -> str:
        """Start the in-process broker; its URL, or "" when it cannot start."""
        from sencity.ingest.broker import start_broker

        port = self.settings.embedded_port
        try:
            self.broker = await start_broker("127.0.0.1", port)
        except Exception as exc:
            log.error(
                "the embedded MQTT broker cannot listen on port %d (%s): set "
                "ingest.mqtt_url to use the broker there, or ingest.embedded_port; "
                "MQTT ingestion is off",
                port,
                exc,
            )
            return ""
        log.info("embedded MQTT broker on 127.0.0.1:%d", port)
        return f"mqtt://127.0.0.1:{port}"

    def status(self) -> dict[str, Any]:
        return {
            "running": self.running,
            "broker": self.broker_url or None,
            "embedded_broker": self.broker is not None,
            "connected": bool(self.mqtt and self.mqtt.connected.is_set()),
            **self.ingestor.stats(),
        }
