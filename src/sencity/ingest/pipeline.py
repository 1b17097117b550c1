"""The message path: sensor messages (MQTT or HTTP) → validated entity fragments →
batched writes to the hub → acknowledgements.

One writer thread takes messages from a bounded queue (a full queue blocks whoever
submits: the MQTT network thread stops reading, and the broker holds the rest), turns a
batch of them into entity fragments, and writes them in as few transactions as it can
(an entity written twice in one batch — two readings — goes into a second transaction,
so history keeps both). A message is acknowledged (MQTT PUBACK, HTTP answer) only once
what it carried is committed — or, when it cannot be read, once it is stored as a dead
letter. When the store fails, the batch is retried with back-off and nothing is
acknowledged meanwhile.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sencity.config import IngestSettings
from sencity.errors import SenCityError
from sencity.hub.model import Entity
from sencity.ingest.hubwrite import HubWriter
from sencity.ingest.model import Device, Group, entity_id
from sencity.ingest.payloads import PayloadError, decode, decode_mapped, decode_single
from sencity.ingest.registry import DeadLetter, Registry, insert_dead
from sencity.ingest.southbound import AgentWrites
from sencity.ingest.transform import fragments
from sencity.store.base import Store

log = logging.getLogger("sencity.ingest")


@dataclass
class Message:
    """One message from a device; ``ack`` runs once it is durable (or a dead letter)."""

    source: str  # mqtt | http
    topic: str
    payload: bytes
    apikey: str | None
    device_id: str | None
    attr: str | None = None  # a single measure (…/attrs/{attr})
    mapped: bool = False  # in its group's own format
    protocol: str | None = None  # from the topic or the HTTP path (json, ul)
    received: datetime = field(default_factory=lambda: datetime.now(UTC))
    ack: Callable[[DeadLetter | None], None] | None = None


@dataclass
class _Ready:
    msg: Message
    tenant: str
    device: Device
    entities: list[Entity]


class Ingestor:
    """The writer thread and its queue; counters for /metrics."""

    def __init__(
        self, store: Store, writer: HubWriter, registry: Registry, settings: IngestSettings
    ) -> None:
        self.store = store
        self.writer = writer
        self.registry = registry
        self.settings = settings
        self.queue: queue.Queue[Message] = queue.Queue(maxsize=settings.queue_size)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.messages = 0  # messages written (or dead letters)
        self.observations = 0  # attribute values written
        self.dead: Counter[str] = Counter()  # dead letters by reason
        self.store_failures = 0
        self.last_batch_seconds = 0.0

    # -- life -------------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="sencity-ingest", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Write what is queued (within ``timeout``), then stop."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def submit(self, msg: Message, timeout: float | None = None) -> bool:
        """Queue ``msg``; blocks while the queue is full (``timeout``: give up, False)."""
        try:
            self.queue.put(msg, timeout=timeout)
        except queue.Full:
            return False
        return True

    # -- the writer thread ----------------------------------------------------------------------
    def _take(self) -> list[Message]:
        try:
            first = self.queue.get(timeout=0.1)
        except queue.Empty:
            return []
        batch = [first]
        deadline = time.monotonic() + self.settings.batch_wait
        while len(batch) < self.settings.batch_size:
            try:
                batch.append(self.queue.get_nowait())
            except queue.Empty:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    batch.append(self.queue.get(timeout=left))
                except queue.Empty:
                    break
        return batch

    def _run(self) -> None:
        while not (self._stop.is_set() and self.queue.empty()):
            batch = self._take()
            if not batch:
                continue
            delay = 0.2
            while True:
                try:
                    self.process(batch)
                    break
                except Exception as exc:  # the store is down: keep the batch, try again
                    self.store_failures += 1
                    log.warning(
                        "could not write %d ingested message(s), retrying in %.1f s: %s",
                        len(batch),
                        delay,
                        exc,
                    )
                    if self._stop.wait(delay):
                        log.error("stopping with %d message(s) not written", len(batch))
                        return  # not acknowledged: the broker sends them again
                    delay = min(delay * 2, self.settings.retry_max)

    # -- one batch --------------------------------------------------------------------------
    def process(self, batch: list[Message]) -> None:
        """Write ``batch`` and acknowledge it; raises (nothing acknowledged) on store errors."""
        t0 = time.perf_counter()
        ready: list[_Ready] = []
        dead: list[tuple[Message, DeadLetter]] = []
        for msg in batch:
            got = self.prepare(msg)
            if isinstance(got, DeadLetter):
                dead.append((msg, got))
            else:
                ready.append(got)
        written: list[_Ready] = []
        seen: dict[tuple[str, str], str] = {}
        refused: set[int] = set()
        for tenant, rounds in self._rounds(ready).items():
            for items in rounds:
                with AgentWrites():  # measures written back never send commands
                    res = self.writer.write_entities(tenant, [e for _, e in items])
                for r, e in items:
                    problem = res.errors_by_id.get(e.id)
                    if problem is not None and id(r.msg) not in refused:
                        refused.add(id(r.msg))
                        dead.append((r.msg, self._letter(r.msg, "rejected", problem, tenant)))
        for r in ready:
            if id(r.msg) not in refused:
                written.append(r)
                seen[(r.tenant, r.device.device_id)] = r.msg.received.strftime(
                    "%Y-%m-%dT%H:%M:%S.%fZ"
                )
        with self.store.transaction() as tx:
            insert_dead(tx, [d for _, d in dead])
            Registry.touch(tx, seen)
        for r in written:
            self.observations += sum(len(e.attrs) for e in r.entities)
        self.messages += len(batch)
        for _, d in dead:
            self.dead[d.reason] += 1
        self.last_batch_seconds = time.perf_counter() - t0
        for r in written:
            if r.msg.ack:
                r.msg.ack(None)
        for msg, d in dead:
            if msg.ack:
                msg.ack(d)

    @staticmethod
    def _rounds(ready: list[_Ready]) -> dict[str, list[list[tuple[_Ready, Entity]]]]:
        """Per tenant, transactions in which each entity appears once (in arrival order)."""
        out: dict[str, list[list[tuple[_Ready, Entity]]]] = {}
        for tenant in dict.fromkeys(r.tenant for r in ready):
            rounds: list[list[tuple[_Ready, Entity]]] = []
            depth: dict[str, int] = {}
            for r in ready:
                if r.tenant != tenant:
                    continue
                for e in r.entities:
                    n = depth.get(e.id, 0)
                    depth[e.id] = n + 1
                    if n == len(rounds):
                        rounds.append([])
                    rounds[n].append((r, e))
            out[tenant] = rounds
        return out

    def _letter(
        self, msg: Message, reason: str, detail: str, tenant: str | None = None
    ) -> DeadLetter:
        return DeadLetter(
            source=msg.source,
            topic=msg.topic,
            payload=msg.payload,
            reason=reason,
            detail=detail,
            tenant=tenant,
            apikey=msg.apikey,
            device_id=msg.device_id,
            received_at=msg.received.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        )

    def prepare(self, msg: Message) -> _Ready | DeadLetter:
        """The entities a message carries, or the dead letter saying why it has none."""
        if msg.apikey is None or msg.device_id is None:
            return self._letter(msg, "topic", f"the topic '{msg.topic[:200]}' names no device")
        found = self.registry.group(msg.apikey)
        if found is None:
            return self._letter(
                msg, "unknown-apikey", f"no service group has API key '{msg.apikey}'"
            )
        tenant, group = found
        if len(msg.payload) > self.settings.max_payload_bytes:
            return self._letter(
                msg,
                "oversized",
                f"{len(msg.payload)} bytes, more than {self.settings.max_payload_bytes}",
                tenant,
            )
        device = self.registry.device(tenant, msg.device_id)
        if device is None:
            if not group.autoprovision:
                return self._letter(
                    msg, "unknown-device", f"device '{msg.device_id}' is not provisioned", tenant
                )
            device = self._autoprovision(tenant, group, msg.device_id)
        if device.apikey != msg.apikey:
            return self._letter(
                msg,
                "wrong-apikey",
                f"device '{msg.device_id}' belongs to another API key",
                tenant,
            )
        try:
            if msg.attr is not None:
                readings = decode_single(msg.payload, msg.attr)
            elif msg.mapped and group.mapping is not None:
                readings = decode_mapped(msg.payload, group.mapping.paths)
            else:
                readings = decode(msg.payload, msg.protocol or device.protocol or group.protocol)
            bodies = fragments(group, device, readings, msg.received)
            entities = [self.writer.parse(b) for b in bodies]
        except PayloadError as exc:
            return self._letter(msg, exc.reason, exc.detail, tenant)
        except SenCityError as exc:
            return self._letter(msg, "invalid", exc.detail, tenant)
        return _Ready(msg, tenant, device, entities)

    def _autoprovision(self, tenant: str, group: Group, device_id: str) -> Device:
        device = Device(device_id=device_id, apikey=group.apikey)
        with contextlib.suppress(SenCityError):  # or made meanwhile
            self.registry.add_devices(tenant, [device])
        log.info(
            "device %s provisioned on its first message (entity %s)",
            device_id,
            entity_id(device, group),
        )
        return self.registry.device(tenant, device_id) or device

    def stats(self) -> dict[str, Any]:
        return {
            "queued": self.queue.qsize(),
            "messages": self.messages,
            "observations": self.observations,
            "dead_letters": dict(self.dead),
            "store_failures": self.store_failures,
        }
