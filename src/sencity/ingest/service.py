"""The sensor agent's runtime, kept in ``platform.state["ingest"]``: the registry, the
ingestor (writer thread) and the MQTT connection (an external broker, or the embedded
one when none is configured)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import zlib
from typing import TYPE_CHECKING, Any

from sencity.ingest.hubwrite import HubWriter
from sencity.ingest.pipeline import Ingestor
from sencity.ingest.registry import Registry
from sencity.ingest.southbound import Southbound

if TYPE_CHECKING:
    from sencity.core.platform import Platform
    from sencity.ingest.mqtt import MqttSource

log = logging.getLogger("sencity.ingest")
LEASE_CHECK = 5.0  # seconds between two checks of the ingestion lock


class Leadership:
    """A PostgreSQL advisory lock per MQTT client id, held on its own connection: the
    process holding it runs the MQTT session; it is released when that process (or its
    connection) goes away."""

    def __init__(self, url: str, client_id: str, name: str = "sencity-ingest") -> None:
        self.url = url
        self.name = f"{name}:{client_id}"
        self.key: int | None = None  # from the name and the schema, once connected
        self._conn: Any = None

    def try_acquire(self) -> bool:
        import psycopg

        try:
            if self._conn is None or self._conn.closed:
                self._conn = psycopg.connect(self.url, autocommit=True, connect_timeout=5)
            if self.key is None:
                # advisory locks are per database: two platforms in one database (each in
                # its own schema, store.url's search_path) must not share a lock
                schema = self._conn.execute("SELECT current_schema()").fetchone()[0]
                self.key = zlib.crc32(f"{self.name}:{schema}".encode())
            row = self._conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()
        except psycopg.Error as exc:
            log.warning("cannot take the ingestion lock: %s", str(exc).strip()[:200])
            self.release()
            return False
        return bool(row and row[0])

    def alive(self) -> bool:
        import psycopg

        try:
            self._conn.execute("SELECT 1")
        except (psycopg.Error, AttributeError):
            self.release()
            return False
        return True

    def release(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None


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
        """Task: the writer thread, then the broker connection; both stop on cancel.

        With PostgreSQL, several processes (workers, hosts) share the store: one of them
        holds the MQTT session (an advisory lock decides); the others stand by and take
        over when it goes away. HTTP ingestion works in all of them."""
        self.ingestor.start()
        self.running = True
        lead = (
            Leadership(self.platform.settings.store_url, self.settings.client_id)
            if self.platform.store.dialect == "postgresql"
            else None
        )
        try:
            while True:
                if lead is not None:
                    await self._lead(lead)
                await self._connect()
                if lead is None:
                    await asyncio.Event().wait()  # until cancelled
                while await asyncio.to_thread(lead.alive):  # type: ignore[union-attr]
                    await asyncio.sleep(LEASE_CHECK)
                log.warning("lost the ingestion lock (store connection); leaving the broker")
                await self._disconnect()
        finally:
            self.running = False
            await self._disconnect()
            await asyncio.to_thread(self.ingestor.stop)
            if lead is not None:
                await asyncio.to_thread(lead.release)

    async def _lead(self, lead: Leadership) -> None:
        told = False
        while not await asyncio.to_thread(lead.try_acquire):
            if not told:
                log.info(
                    "another SenCity process holds the MQTT session '%s'; standing by",
                    self.settings.client_id,
                )
                told = True
            await asyncio.sleep(LEASE_CHECK)
        if told:
            log.info("taking over the MQTT session '%s'", self.settings.client_id)

    async def _connect(self) -> None:
        url = self.settings.mqtt_url
        if not url and self.settings.embedded_broker:
            url = await self._embedded_broker()
        if not url:
            return
        from sencity.ingest.mqtt import MqttSource

        self.broker_url = url
        self.mqtt = MqttSource(
            url,
            self.settings,
            self.ingestor,
            self.registry,
            on_command_result=self.southbound.result,
            v5=self.broker is None,  # amqtt speaks MQTT 3.1.1 only
        )
        self.mqtt.start()

    async def _disconnect(self) -> None:
        if self.mqtt is not None:
            await asyncio.to_thread(self.mqtt.stop)
            self.mqtt = None
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
