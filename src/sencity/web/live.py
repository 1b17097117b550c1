"""The dashboard's live stream: the hub's change feed, coalesced and pushed to browsers.

Every ``hub.entity.*`` event marks its entity as changed in its tenant.  Every
``web.live_interval`` seconds the entities changed since the last push are read once
(current state, keyValues, core @context) and sent as one server-sent event to every
browser connected to that tenant; ``rules.alarm.*`` events are forwarded as they come.
A browser only ever receives its own tenant's changes: the stream route checks the
caller's role on the ``NGSILD-Tenant`` of the request, and the credential is checked
again every ``RECHECK_SECONDS`` (a revoked session ends the stream).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sencity.auth.plugin import SESSION_COOKIE
from sencity.core.bus import Event
from sencity.core.routing import Request, StreamResponse
from sencity.errors import SenCityError
from sencity.hub.render import Options, render
from sencity.hub.store import Query

if TYPE_CHECKING:
    from sencity.core.platform import Platform

log = logging.getLogger("sencity.web.live")

#: seconds between two checks that a stream's credential is still valid
RECHECK_SECONDS = 30.0
#: seconds between two keep-alive comments on an idle stream
KEEPALIVE_SECONDS = 15.0
#: messages a slow browser may have waiting before it is told to reload everything
CLIENT_QUEUE = 64
#: window of the change rate (seconds)
RATE_WINDOW = 10
READ_CHUNK = 500


@dataclass(eq=False)
class Client:
    tenant: str
    queue: asyncio.Queue[bytes] = field(default_factory=lambda: asyncio.Queue(CLIENT_QUEUE))
    overflowed: bool = False

    def put(self, message: bytes) -> None:
        if self.overflowed:
            return
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            # the browser cannot keep up: drop what waits, ask it to reload its layers
            self.overflowed = True
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(sse("resync", {}))


def sse(event: str, data: Any) -> bytes:
    body = json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=str)
    return f"event: {event}\ndata: {body}\n\n".encode()


class LiveFeed:
    """Per-process hub of live browsers (each worker process sees every bus event)."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.interval = platform.settings.web.live_interval
        self.clients: dict[str, set[Client]] = {}
        self.pending: dict[str, dict[str, bool]] = {}  # tenant -> id -> deleted
        self._counts: dict[str, deque[list[int]]] = {}  # tenant -> [second, changes]
        self._wake = asyncio.Event()

    # -- bus handlers (on the event loop) ---------------------------------------------
    def on_change(self, event: Event) -> None:
        tenant = event.tenant or ""
        self._count(tenant)
        if tenant not in self.clients:
            return
        eid = event.payload.get("id")
        if isinstance(eid, str):
            self.pending.setdefault(tenant, {})[eid] = event.topic == "hub.entity.deleted"

    def on_alarm(self, event: Event) -> None:
        tenant = event.tenant or ""
        message = sse("alarm", {"topic": event.topic, "time": event.time, **event.payload})
        for client in self.clients.get(tenant, ()):
            client.put(message)

    def _count(self, tenant: str) -> None:
        now = int(time.time())
        buckets = self._counts.setdefault(tenant, deque(maxlen=RATE_WINDOW + 2))
        if buckets and buckets[-1][0] == now:
            buckets[-1][1] += 1
        else:
            buckets.append([now, 1])

    def rate(self, tenant: str) -> float:
        """Entity changes per second in ``tenant`` over the last complete seconds."""
        now = int(time.time())
        buckets = self._counts.get(tenant, ())
        total = sum(n for sec, n in buckets if now - RATE_WINDOW <= sec < now)
        return total / RATE_WINDOW

    # -- clients ----------------------------------------------------------------------
    def connect(self, tenant: str) -> Client:
        client = Client(tenant)
        self.clients.setdefault(tenant, set()).add(client)
        return client

    def disconnect(self, client: Client) -> None:
        group = self.clients.get(client.tenant)
        if group is not None:
            group.discard(client)
            if not group:
                del self.clients[client.tenant]
                self.pending.pop(client.tenant, None)

    # -- the pusher task ----------------------------------------------------------------
    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            if not self.pending:
                continue
            batches, self.pending = self.pending, {}
            for tenant, changed in batches.items():
                if tenant not in self.clients:
                    continue
                try:
                    message = await asyncio.to_thread(self._message, tenant, changed)
                except Exception:
                    log.exception("live feed could not read the changes of tenant %s", tenant)
                    continue
                for client in list(self.clients.get(tenant, ())):
                    client.put(message)

    def _message(self, tenant: str, changed: dict[str, bool]) -> bytes:
        svc = self.platform.state["hub"]
        ctx = svc.resolver.resolve(None)
        opts = Options(format="keyValues")
        live = [eid for eid, deleted in changed.items() if not deleted]
        entities: list[dict[str, Any]] = []
        for i in range(0, len(live), READ_CHUNK):
            chunk = live[i : i + READ_CHUNK]
            found, _ = svc.hub.query(tenant, Query(ids=chunk, limit=len(chunk)))
            entities.extend(render(e, ctx, opts) for e in found)
        present = {e["id"] for e in entities}
        gone = [eid for eid in changed if eid not in present]
        return sse("changes", {"sent": time.time(), "entities": entities, "deleted": gone})

    # -- the route ----------------------------------------------------------------------
    async def stream(self, req: Request) -> StreamResponse:
        credential = _credential(req)
        client = self.connect(req.tenant)
        auth = self.platform.auth

        async def events() -> AsyncIterator[bytes]:
            try:
                yield sse("hello", {"tenant": req.tenant, "interval": self.interval})
                checked = time.monotonic()
                while True:
                    try:
                        message = await asyncio.wait_for(client.queue.get(), KEEPALIVE_SECONDS)
                    except TimeoutError:
                        message = b": keep-alive\n\n"
                    if credential and time.monotonic() - checked > RECHECK_SECONDS:
                        checked = time.monotonic()
                        try:
                            await asyncio.to_thread(auth.authenticate_token, credential)
                        except SenCityError:
                            yield sse("end", {"reason": "signed out"})
                            return
                    yield message
                    if client.overflowed and client.queue.empty():
                        client.overflowed = False
            finally:
                self.disconnect(client)

        return StreamResponse(
            events(),
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )


def _credential(req: Request) -> str | None:
    auth = req.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    if req.headers.get("x-api-key"):
        return req.headers["x-api-key"].strip()
    return req.cookies.get(SESSION_COOKIE)
