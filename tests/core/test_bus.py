"""The event bus: in-process, and PostgreSQL LISTEN/NOTIFY between two "processes"."""

from __future__ import annotations

import asyncio
import threading

import pytest

from sencity.core.bus import Event, EventBus, MemoryBus, PostgresBus


async def _collect(bus: EventBus, pattern: str, n: int) -> tuple[list[Event], asyncio.Event]:
    got: list[Event] = []
    done = asyncio.Event()

    def handler(e: Event) -> None:
        got.append(e)
        if len(got) == n:
            done.set()

    bus.subscribe(pattern, handler)
    return got, done


def test_memory_bus_delivers_in_order_by_pattern() -> None:
    async def main() -> None:
        bus = MemoryBus()
        bus.publish(Event("hub.entity.created", {"n": 0}))  # before start: kept, not dropped
        got, done = await _collect(bus, "hub.*", 4)
        other, _ = await _collect(bus, "rules.*", 1)
        await bus.start()
        for i in range(1, 3):
            bus.publish(Event("hub.entity.updated", {"n": i}))
        bus.publish(Event("ingest.deadletter", {"n": 99}))
        t = threading.Thread(target=bus.publish, args=(Event("hub.x", {"n": 3}),))
        t.start()
        t.join()
        await asyncio.wait_for(done.wait(), 5)
        await bus.stop()
        assert [e.payload["n"] for e in got] == [0, 1, 2, 3]
        assert other == []

    asyncio.run(main())


def test_failing_handler_does_not_stop_others() -> None:
    async def main() -> None:
        bus = MemoryBus()

        def boom(e: Event) -> None:
            raise RuntimeError("bad handler")

        bus.subscribe("*", boom)
        got, done = await _collect(bus, "*", 1)
        await bus.start()
        bus.publish(Event("a", {}))
        await asyncio.wait_for(done.wait(), 5)
        await bus.stop()
        assert bus.handler_errors == 1 and len(got) == 1

    asyncio.run(main())


@pytest.mark.postgres
def test_postgres_bus_crosses_processes(pg_url: str) -> None:
    """Two buses on one database stand for two API workers: each sees the other's events."""

    async def main() -> None:
        a, b = PostgresBus(pg_url), PostgresBus(pg_url)
        got_b, done_b = await _collect(b, "hub.*", 2)
        got_a, done_a = await _collect(a, "hub.*", 2)
        await a.start()
        await b.start()
        big = {"blob": "x" * 20_000}  # above NOTIFY's 8000-byte limit
        await asyncio.to_thread(a.publish, Event("hub.small", {"v": 1}, tenant="danang"))
        await asyncio.to_thread(a.publish, Event("hub.big", big))
        await asyncio.wait_for(done_b.wait(), 10)
        await asyncio.wait_for(done_a.wait(), 10)
        await a.stop()
        await b.stop()
        assert [e.topic for e in got_b] == ["hub.small", "hub.big"]
        assert got_b[0].tenant == "danang" and got_b[1].payload == big
        assert [e.id for e in got_a] == [e.id for e in got_b]

    asyncio.run(main())


@pytest.mark.postgres
def test_postgres_bus_many_writers_lose_nothing(pg_url: str) -> None:
    """Events from many threads at once (sent in batches) all arrive, each thread's in
    the order it published them, and stop() sends what is still queued."""
    threads, per_thread = 8, 50

    async def main() -> None:
        a, b = PostgresBus(pg_url), PostgresBus(pg_url)
        got, done = await _collect(b, "load.*", threads * per_thread)
        await a.start()
        await b.start()

        def writer(t: int) -> None:
            for i in range(per_thread):
                a.publish(Event("load.tick", {"t": t, "i": i}))

        await asyncio.gather(*(asyncio.to_thread(writer, t) for t in range(threads)))
        await a.stop()  # flushes
        await asyncio.wait_for(done.wait(), 20)
        await b.stop()
        for t in range(threads):
            assert [e.payload["i"] for e in got if e.payload["t"] == t] == list(range(per_thread))

    asyncio.run(main())
