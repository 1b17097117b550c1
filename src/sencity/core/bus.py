"""The internal event bus.

Modules publish :class:`Event` objects (``hub.entity.updated``, ``ingest.deadletter``…)
and subscribe with shell-style topic patterns (``hub.*``).  ``publish`` may be called
from any thread; handlers run on the event loop, in publication order.

Two implementations share the interface:

* :class:`MemoryBus` — in-process, for the embedded single-process default;
* :class:`PostgresBus` — PostgreSQL LISTEN/NOTIFY, so several API worker processes
  (and other hosts) see every event.  Payloads above the NOTIFY limit travel through
  a table and the notification carries only their id.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import fnmatch
import inspect
import json
import logging
import threading
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from sencity.store.base import utcnow

log = logging.getLogger("sencity.bus")
EventHandler = Callable[["Event"], Awaitable[None] | None]


@dataclass(frozen=True)
class Event:
    topic: str
    payload: dict[str, Any]
    tenant: str | None = None
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    time: str = field(default_factory=utcnow)
    origin: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), default=str)

    @classmethod
    def from_json(cls, text: str) -> Event:
        return cls(**json.loads(text))


@dataclass
class Subscription:
    pattern: str
    handler: EventHandler
    bus: EventBus

    def cancel(self) -> None:
        with contextlib.suppress(ValueError):
            self.bus._subs.remove(self)


class EventBus(abc.ABC):
    def __init__(self) -> None:
        self._subs: list[Subscription] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[Event] | None = None
        self._pending: deque[Event] = deque()
        self._task: asyncio.Task[None] | None = None
        self._lock = threading.Lock()
        self.published = 0
        self.delivered = 0
        self.handler_errors = 0

    def subscribe(self, pattern: str, handler: EventHandler) -> Subscription:
        sub = Subscription(pattern, handler, self)
        self._subs.append(sub)
        return sub

    @abc.abstractmethod
    def publish(self, event: Event) -> None:
        """Send ``event`` to every subscriber (of every process, for shared buses)."""

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._dispatch(), name="sencity-bus")
        with self._lock:
            while self._pending:
                self._queue.put_nowait(self._pending.popleft())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._task = None
        self._loop = None

    def _deliver_local(self, event: Event) -> None:
        """Queue an event for this process's subscribers; safe from any thread."""
        with self._lock:
            loop, queue = self._loop, self._queue
            if loop is None or queue is None:
                self._pending.append(event)
                return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            queue.put_nowait(event)
        else:
            loop.call_soon_threadsafe(queue.put_nowait, event)

    async def _dispatch(self) -> None:
        assert self._queue is not None
        while True:
            event = await self._queue.get()
            for sub in list(self._subs):
                if not fnmatch.fnmatchcase(event.topic, sub.pattern):
                    continue
                try:
                    result = sub.handler(event)
                    if inspect.isawaitable(result):
                        await result
                    self.delivered += 1
                except Exception:
                    self.handler_errors += 1
                    log.exception("event handler for %s failed on %s", sub.pattern, event.topic)


class MemoryBus(EventBus):
    def publish(self, event: Event) -> None:
        self.published += 1
        self._deliver_local(event)


class PostgresBus(EventBus):
    """LISTEN/NOTIFY on channel ``sencity_bus``; large payloads go through ``bus_payloads``."""

    channel = "sencity_bus"
    notify_limit = 7000  # bytes; PostgreSQL's hard limit is 8000

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url
        self._listener: asyncio.Task[None] | None = None
        self._send_lock = threading.Lock()
        self._send_conn: Any = None
        self._out: list[Event] = []
        self._out_ready = threading.Condition()
        self._sending = False
        self._sender_thread: threading.Thread | None = None
        self._ready = asyncio.Event()

    def _sender(self) -> Any:
        import psycopg

        if self._send_conn is None or self._send_conn.closed:
            self._send_conn = psycopg.connect(self.url, autocommit=True)
            self._send_conn.execute(
                "CREATE TABLE IF NOT EXISTS bus_payloads (id TEXT PRIMARY KEY, "
                "body TEXT NOT NULL, created_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            )
        return self._send_conn

    def publish(self, event: Event) -> None:
        """Queue ``event`` for the sender thread, which sends whatever has queued up in
        one transaction: a transaction that NOTIFYs holds a database-wide lock while it
        commits, so one per event would make every writer wait for every other."""
        self.published += 1
        with self._out_ready:
            self._out.append(event)
            if self._sender_thread is None or not self._sender_thread.is_alive():
                self._sender_thread = threading.Thread(
                    target=self._send_loop, name="sencity-bus-send", daemon=True
                )
                self._sender_thread.start()
            self._out_ready.notify()

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until every queued event has been sent (or ``timeout`` seconds)."""
        with self._out_ready:
            self._out_ready.wait_for(lambda: not self._out and not self._sending, timeout)

    def _send_loop(self) -> None:
        while True:
            with self._out_ready:
                self._out_ready.wait_for(lambda: bool(self._out))
                batch = list(self._out)
                self._out.clear()
                self._sending = True
            try:
                self._send(batch)
            except Exception as exc:
                log.error("event bus could not send %d event(s): %s", len(batch), exc)
            finally:
                with self._out_ready:
                    self._sending = False
                    self._out_ready.notify_all()

    def _send(self, batch: list[Event]) -> None:
        for attempt in (1, 2):  # a dropped connection is opened again once
            try:
                with self._send_lock:
                    conn = self._sender()
                    texts = []
                    with conn.transaction():
                        for event in batch:
                            text = event.to_json()
                            if len(text.encode()) > self.notify_limit:
                                conn.execute(
                                    "INSERT INTO bus_payloads (id, body) VALUES (%s, %s)",
                                    (event.id, text),
                                )
                                text = json.dumps({"ref": event.id})
                            texts.append(text)
                        conn.execute(
                            "SELECT pg_notify(%s, t) FROM unnest(CAST(%s AS text[])) "
                            "WITH ORDINALITY AS n(t, i) ORDER BY i",
                            (self.channel, texts),
                        )
                return
            except Exception:
                if attempt == 2:
                    raise
                with self._send_lock:
                    if self._send_conn is not None:
                        self._send_conn.close()
                        self._send_conn = None

    async def start(self) -> None:
        await super().start()
        self._ready = asyncio.Event()
        self._listener = asyncio.create_task(self._listen(), name="sencity-bus-listen")
        await asyncio.wait_for(self._ready.wait(), timeout=10)

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        await super().stop()
        await asyncio.to_thread(self.flush)
        with self._send_lock:
            if self._send_conn is not None:
                self._send_conn.close()
                self._send_conn = None

    async def _listen(self) -> None:
        import psycopg

        backoff = 0.5
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {self.channel}")
                    self._ready.set()
                    backoff = 0.5
                    async with await psycopg.AsyncConnection.connect(
                        self.url, autocommit=True
                    ) as fetch:  # the listening connection is busy inside notifies()
                        async for note in conn.notifies():
                            await self._received(fetch, note.payload)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("event bus listener lost its connection (%s); reconnecting", exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30)

    async def _received(self, conn: Any, payload: str) -> None:
        data = json.loads(payload)
        if set(data) == {"ref"}:
            cur = await conn.execute("SELECT body FROM bus_payloads WHERE id = %s", (data["ref"],))
            row = await cur.fetchone()
            if row is None:
                log.error("event bus payload %s vanished", data["ref"])
                return
            data = json.loads(row[0])
        self._deliver_local(Event(**data))


def make_bus(backend: str, url: str) -> EventBus:
    if backend == "postgresql":
        return PostgresBus(url)
    return MemoryBus()
