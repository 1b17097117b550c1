"""Delivery of notifications: HTTP(S) POST and MQTT publish, at least once.

The delivery task gets the outbox rows of this process's writes straight from the
commit hook, and claims due rows nobody holds (retries, rows of stopped processes) every
``poll_interval`` seconds.  Each endpoint has its own queue and at most
``endpoint_concurrency`` notifications in flight, so a slow or unreachable endpoint only
ever delays itself.  Results are written back in batches: delivered rows deleted,
failed ones rescheduled with exponential back-off (or deleted after the last retry),
the subscriptions' counters and times updated.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import aiohttp

from sencity.config import SubscriptionSettings
from sencity.store.base import utcnow
from sencity.subs.store import Flush, Job, Status, SubsStore, later

log = logging.getLogger("sencity.subs")
FLUSH_EVERY = 0.05  # seconds between two write-backs of results
RETRYABLE_4XX = {408, 425, 429}


class DeliveryError(Exception):
    """A failed attempt; ``retry`` False when trying again cannot help (a 4xx answer)."""

    def __init__(self, message: str, retry: bool = True) -> None:
        super().__init__(message)
        self.retry = retry


@dataclass
class _Endpoint:
    queue: deque[Job] = field(default_factory=deque)
    active: int = 0


class MqttLinks:
    """One connection per broker (and credentials), opened when first needed."""

    def __init__(self, timeout: float, name: str) -> None:
        self.timeout = timeout
        self.name = name
        self._clients: dict[tuple[Any, ...], Any] = {}
        self._locks: dict[tuple[Any, ...], asyncio.Lock] = {}
        self._n = 0

    async def publish(self, job: Job, payload: bytes, timeout: float) -> None:
        parts = urlsplit(job.uri)
        version = job.opts.get("version", "mqtt3.1.1")
        key = (
            parts.scheme,
            parts.hostname,
            parts.port,
            parts.username,
            parts.password,
            version,
        )
        client = await self._client(key)
        topic = unquote(parts.path).lstrip("/")
        try:
            await client.publish(topic, payload, qos=int(job.opts.get("qos", 0)), timeout=timeout)
        except Exception:
            await self._drop(key)
            raise

    async def _client(self, key: tuple[Any, ...]) -> Any:
        import aiomqtt

        found = self._clients.get(key)
        if found is not None:
            return found
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            found = self._clients.get(key)
            if found is not None:
                return found
            scheme, host, port, user, password, version = key
            self._n += 1
            client = aiomqtt.Client(
                host,
                port or (8883 if scheme == "mqtts" else 1883),
                username=unquote(user) if user else None,
                password=unquote(password) if password else None,
                identifier=f"{self.name}-{self._n}",
                protocol=(
                    aiomqtt.ProtocolVersion.V5
                    if version == "mqtt5.0"
                    else aiomqtt.ProtocolVersion.V311
                ),
                tls_context=ssl.create_default_context() if scheme == "mqtts" else None,
                timeout=self.timeout,
            )
            await client.__aenter__()
            self._clients[key] = client
            return client

    async def _drop(self, key: tuple[Any, ...]) -> None:
        client = self._clients.pop(key, None)
        if client is not None:
            with contextlib.suppress(Exception):
                await client.__aexit__(None, None, None)

    async def close(self) -> None:
        for key in list(self._clients):
            await self._drop(key)


def mqtt_payload(job: Job) -> bytes:
    """The NGSI-LD MQTT binding: ``{"metadata": {headers}, "body": notification}``."""
    body = job.body.decode()
    meta = json.dumps(job.headers, ensure_ascii=False, separators=(",", ":"))
    return f'{{"metadata":{meta},"body":{body}}}'.encode()


class Deliverer:
    def __init__(self, store: SubsStore, settings: SubscriptionSettings, owner: str) -> None:
        self.store = store
        self.settings = settings
        self.owner = owner
        self.running = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._inbox: list[Job] = []
        self._inbox_lock = threading.Lock()
        self._endpoints: dict[str, _Endpoint] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._flush = Flush()
        self._retry_at: float | None = None
        self._http: aiohttp.ClientSession | None = None
        self._mqtt: MqttLinks | None = None
        self.delivered = 0  # notifications delivered by this process
        self.failed = 0  # failed attempts
        self.dropped = 0  # notifications given up after their last attempt

    # -- called from the hub's hooks (any thread) ----------------------------------------
    def lease(self) -> tuple[str, str] | None:
        """(owner, lease end) for rows this process will deliver itself, or None."""
        if not self.running:
            return None
        return self.owner, later(self.lease_seconds)

    @property
    def lease_seconds(self) -> float:
        """Long enough to send a row once claimed: the timeout and some."""
        return max(self.settings.lease_seconds, self.settings.http_timeout + 5.0)

    def submit(self, jobs: list[Job]) -> None:
        loop = self._loop
        with self._inbox_lock:
            self._inbox.extend(jobs)
        if loop is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._poke()
        else:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self._poke)

    def _poke(self) -> None:
        if self._wake is not None:
            self._wake.set()

    # -- the task --------------------------------------------------------------------------
    async def run(self) -> None:
        s = self.settings
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        # aiohttp, not httpx: its connection pool stays cheap with thousands of endpoints
        self._http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=30),
            timeout=aiohttp.ClientTimeout(total=s.http_timeout),
            skip_auto_headers=("User-Agent",),
        )
        self._mqtt = MqttLinks(s.http_timeout, f"sencity-{self.owner[:8]}")
        next_sweep = 0.0
        next_flush = time.monotonic() + FLUSH_EVERY
        try:  # from here on, the session is closed however the task ends
            if self.store.store.dialect == "sqlite":
                # one process owns an SQLite store: leases left behind are of a stopped one
                await asyncio.to_thread(self.store.release, None)
            self.running = True
            while True:
                self._take_inbox()
                now = time.monotonic()
                if self._retry_at is not None and now >= self._retry_at:
                    self._retry_at = None
                    next_sweep = now
                if now >= next_sweep:
                    claimed = await self._sweep()
                    next_sweep = now + (0 if claimed >= s.batch else s.poll_interval)
                if now >= next_flush:
                    await self._write_back()
                    next_flush = now + FLUSH_EVERY
                deadline = min(next_sweep, next_flush if self._flush else next_sweep)
                if self._retry_at is not None:
                    deadline = min(deadline, self._retry_at)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), max(0.0, deadline - time.monotonic()))
                self._wake.clear()
        finally:
            self.running = False
            await self._shutdown()

    async def _shutdown(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._endpoints.clear()
        with self._inbox_lock:
            self._inbox.clear()
        try:
            await asyncio.to_thread(self._final_write_back)
        except Exception:
            log.exception("could not write back the last delivery results")
        if self._http is not None:
            await self._http.close()
        if self._mqtt is not None:
            await self._mqtt.close()
        self._loop = None

    def _final_write_back(self) -> None:
        f, self._flush = self._flush, Flush()
        if f:
            self.store.flush(f)
        self.store.release(self.owner)  # what was not delivered: for whoever comes next

    def _take_inbox(self) -> None:
        with self._inbox_lock:
            jobs, self._inbox = self._inbox, []
        for job in jobs:
            self._dispatch(job)

    async def _sweep(self) -> int:
        full = [u for u, ep in self._endpoints.items() if len(ep.queue) >= self._cap // 2]
        try:
            jobs = await asyncio.to_thread(
                self.store.claim,
                self.owner,
                later(self.lease_seconds),
                self.settings.batch,
                full[:200],
            )
        except Exception as exc:
            log.warning("could not read the notification outbox: %s", exc)
            return 0
        for job in jobs:
            self._dispatch(job)
        return len(jobs)

    async def _write_back(self) -> None:
        if not self._flush:
            return
        f, self._flush = self._flush, Flush()
        try:
            await asyncio.to_thread(self.store.flush, f)
        except Exception as exc:
            # the rows stay leased; they are delivered again once the lease ends
            log.warning("could not write back delivery results: %s", exc)

    @property
    def _cap(self) -> int:
        return self.settings.endpoint_queue

    # -- endpoints -------------------------------------------------------------------------
    def _dispatch(self, job: Job) -> None:
        ep = self._endpoints.get(job.uri)
        if ep is None:
            ep = self._endpoints[job.uri] = _Endpoint()
        if len(ep.queue) >= self._cap:
            self._flush.release.append(job.id)  # later, from the outbox
            return
        ep.queue.append(job)
        if ep.active < self.settings.endpoint_concurrency:
            ep.active += 1
            task = asyncio.create_task(self._work(job.uri, ep), name="subs-endpoint")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _work(self, uri: str, ep: _Endpoint) -> None:
        try:
            while ep.queue:
                job = ep.queue.popleft()
                timeout = min(self.settings.http_timeout, job.opts.get("timeout") or 1e9)
                # a lease about to end may be taken over by another process: leave it
                if job.lease_until is None or job.lease_until < later(timeout + 1.0):
                    continue
                try:
                    await self._send(job, timeout)
                except DeliveryError as exc:
                    self._failed(job, str(exc), exc.retry)
                except Exception as exc:  # connection refused, timeout, broker gone...
                    self._failed(job, f"{type(exc).__name__}: {exc}", True)
                else:
                    self._succeeded(job)
        finally:
            ep.active -= 1
            if ep.active == 0 and not ep.queue and self._endpoints.get(uri) is ep:
                del self._endpoints[uri]

    async def _send(self, job: Job, timeout: float) -> None:
        if job.uri.startswith(("mqtt://", "mqtts://")):
            assert self._mqtt is not None
            await self._mqtt.publish(job, mqtt_payload(job), timeout)
            return
        assert self._http is not None
        async with self._http.post(
            job.uri,
            data=job.body,
            headers=job.headers,
            timeout=aiohttp.ClientTimeout(total=timeout),
            allow_redirects=False,
        ) as resp:
            await resp.read()
            code = resp.status
        if not 200 <= code < 300:
            raise DeliveryError(
                f"HTTP {code}", retry=not (400 <= code < 500) or code in RETRYABLE_4XX
            )

    # -- results ---------------------------------------------------------------------------
    def _status(self, job: Job) -> Status:
        key = (job.tenant, job.sub_id)
        st = self._flush.status.get(key)
        if st is None:
            st = self._flush.status[key] = Status()
        return st

    def _succeeded(self, job: Job) -> None:
        if not self._flush:
            self._poke()  # results to write back
        now = utcnow()
        st = self._status(job)
        st.sent += 1
        st.last_notification = st.last_success = now
        st.last_status = "ok"
        self._flush.done.append(job.id)
        self.delivered += 1

    def _failed(self, job: Job, reason: str, retry: bool) -> None:
        self._poke()
        now = utcnow()
        st = self._status(job)
        st.sent += 1
        st.failed += 1
        st.last_notification = st.last_failure = now
        st.last_status = "failed"
        self.failed += 1
        attempts = job.attempts + 1
        s = self.settings
        if not retry or attempts > s.retries:
            log.warning(
                "notification of subscription %s to %s failed (%s); given up after %d attempt(s)",
                job.sub_id,
                job.uri,
                reason,
                attempts,
            )
            self._flush.done.append(job.id)
            self.dropped += 1
            return
        delay = min(s.backoff_base * 2 ** (attempts - 1), s.backoff_max)
        self._flush.retry.append((attempts, later(delay), job.id))
        due = time.monotonic() + delay
        self._retry_at = due if self._retry_at is None else min(self._retry_at, due)
        log.info(
            "notification of subscription %s to %s failed (%s); retry %d in %.1f s",
            job.sub_id,
            job.uri,
            reason,
            attempts,
            delay,
        )
