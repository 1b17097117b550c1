"""What ``sencity sim`` does: provision the fleet through ``/ingest/v1``, write the
history of the last days through the temporal API (``--backfill``), then publish live
readings over MQTT and events through the NGSI-LD API; or, in load mode, publish a fixed
rate of readings from many devices and count what the platform accepted."""

from __future__ import annotations

import heapq
import json
import math
import os
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sencity.sim.city import COUNTS, City, Device, Placer, build_fleet, load_city
from sencity.sim.client import ApiError, Client, SimError
from sencity.sim.events import Event, events_between
from sencity.sim.kinds import KINDS, Kind, device_body, entity_id, group_body, iso, series
from sencity.sim.mqtt import Publisher

CHUNK = 30_000  # attribute instances per temporal request, at most
IN_FLIGHT = int(os.environ.get("SENCITY_SIM_IN_FLIGHT", "3"))  # temporal requests at once
EVENT_BATCH = 500
Say = Callable[[str], None]
Progress = Callable[[str, int, int], None]  # (task, done, total)


@dataclass
class Options:
    url: str = "http://127.0.0.1:8080"
    tenant: str = "danang"
    mqtt_url: str = "mqtt://127.0.0.1:1883"
    seed: int = 1
    speed: float = 1.0
    backfill: float = 0.0  # seconds of history to write at start-up
    duration: float | None = None  # real seconds to run live; None: until interrupted
    token: str | None = None
    scale: float = 1.0  # fleet size relative to the default city
    devices: int | None = None  # load mode
    rate: float | None = None  # load mode: messages per second
    invalid: float = 0.0  # load mode: share of deliberately invalid messages


@dataclass
class Report:
    fleet: Counter[str] = field(default_factory=Counter)  # devices by kind
    provisioned: int = 0  # devices created or changed
    backfilled: int = 0  # attribute instances written through the temporal API
    backfill_entities: int = 0
    backfill_seconds: float = 0.0
    backfill_events: int = 0
    published: Counter[str] = field(default_factory=Counter)  # live messages acked, by kind
    events: Counter[str] = field(default_factory=Counter)  # events created, by type
    event_errors: int = 0
    live_seconds: float = 0.0
    sim_start: float = 0.0
    sim_end: float = 0.0
    city: str = ""

    def lines(self) -> list[str]:
        out = [f"city: {self.city}"]
        out.append(
            "fleet: "
            + ", ".join(f"{n} {KINDS[k].etype}" for k, n in self.fleet.items())
            + f" ({self.provisioned} devices provisioned or updated)"
        )
        if self.backfill_seconds:
            rate = self.backfilled / self.backfill_seconds
            out.append(
                f"backfill: {self.backfilled:,} instances of {self.backfill_entities} entities "
                f"and {self.backfill_events} events in {self.backfill_seconds:.1f} s "
                f"({rate:,.0f} instances/s)"
            )
        if self.live_seconds:
            total = sum(self.published.values())
            out.append(
                f"live: {total:,} readings published and acknowledged in "
                f"{self.live_seconds:.1f} s, simulated {iso(self.sim_start)} → "
                f"{iso(self.sim_end)}"
            )
            if total:
                out.append(
                    "  " + ", ".join(f"{k} {n:,}" for k, n in sorted(self.published.items()))
                )
        if self.events:
            out.append(
                "events created: " + ", ".join(f"{n} {k}" for k, n in sorted(self.events.items()))
            )
        if self.event_errors:
            out.append(f"events refused by the server: {self.event_errors}")
        return out


def apikey(tenant: str, kind: str) -> str:
    return f"sim-{tenant}"[:48] + f"-{kind}"


# -- the city --
def fetch_all(client: Client, etype: str) -> list[dict[str, Any]]:
    """Every entity of a type (keyValues); none when the tenant does not exist yet."""
    try:
        return client.pages("/ngsi-ld/v1/entities", type=etype, options="keyValues")
    except ApiError as exc:
        if exc.status == 404:  # no such tenant: it is made by the first write
            return []
        raise


def city_and_fleet(client: Client, opts: Options) -> tuple[City, list[Device]]:
    city = load_city(lambda t: fetch_all(client, t), opts.tenant)
    return city, build_fleet(city, opts.seed, fleet_counts(opts.scale))


def fleet_counts(scale: float) -> dict[str, int]:
    """Devices of each kind at a ``--scale`` (at least one of each)."""
    return {k: max(1, round(n * scale)) for k, n in COUNTS.items()}


# -- provisioning --
def _same(want: dict[str, Any], have: dict[str, Any]) -> bool:
    return all(have.get(k) == v for k, v in want.items() if k not in ("description",))


def ensure_group(client: Client, body: dict[str, Any]) -> None:
    key = body["apikey"]
    status, _, have = client.request("GET", f"/ingest/v1/groups/{key}", ok=(404,))
    if status == 404:
        try:
            client.request("POST", "/ingest/v1/groups", body)
        except ApiError as exc:
            if exc.status == 409:
                raise SimError(
                    f"the API key {key!r} belongs to another tenant: run the simulator "
                    "with another --tenant, or delete that service group"
                ) from None
            raise
    elif not _same(body, have):
        client.request("PATCH", f"/ingest/v1/groups/{key}", body)


def ensure_devices(client: Client, key: str, bodies: list[dict[str, Any]]) -> int:
    """Create the missing devices, update the changed ones; how many were written."""
    have = {d["device_id"]: d for d in client.pages("/ingest/v1/devices", apikey=key)}
    new = [b for b in bodies if b["device_id"] not in have]
    changed = [b for b in bodies if b["device_id"] in have and not _same(b, have[b["device_id"]])]
    for n in range(0, len(new), 1000):
        client.request("POST", "/ingest/v1/devices", {"devices": new[n : n + 1000]})
    for b in changed:
        client.request("PATCH", f"/ingest/v1/devices/{b['device_id']}", b)
    return len(new) + len(changed)


def provision(client: Client, tenant: str, fleet: list[Device]) -> int:
    by_kind: dict[str, list[Device]] = {}
    for d in fleet:
        by_kind.setdefault(d.kind, []).append(d)
    written = 0
    for kind_name, devs in by_kind.items():
        kind = KINDS[kind_name]
        key = apikey(tenant, kind_name)
        ensure_group(client, group_body(kind, key))
        written += ensure_devices(client, key, [device_body(d, kind, key, tenant) for d in devs])
    return written


# -- backfill --
def history_ends(client: Client, kind: Kind, tenant: str, since: float) -> dict[str, float]:
    """The latest instance time of each of the kind's entities after ``since``."""
    out: dict[str, float] = {}
    for e in client.pages(
        "/ngsi-ld/v1/temporal/entities",
        type=kind.etype,
        attrs=kind.main,
        lastN=1,
        timerel="after",
        timeAt=iso(since),
        options="temporalValues",
    ):  # the tenant exists: the devices were provisioned
        attr = e.get(kind.main)
        items = attr if isinstance(attr, list) else [attr]
        for a in items:
            for pair in (a or {}).get("values", []):
                t = _epoch(pair[1])
                out[e["id"]] = max(out.get(e["id"], 0.0), t)
    return out


def _epoch(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _instance_chunks(
    kind: Kind, t: np.ndarray, mask: np.ndarray, vals: dict[str, list[Any]]
) -> list[tuple[dict[str, list[dict[str, Any]]], int]]:
    per = max(1, CHUNK // len(kind.attrs))
    stamps = [iso(float(x)) for x in t]
    out = []
    prev = 0
    for lo in range(0, len(t), per):
        attrs: dict[str, list[dict[str, Any]]] = {}
        count = 0
        for a in kind.attrs:
            col = vals[a.name]
            items: list[dict[str, Any]] = []
            # states (on/off, ok/defective) and parked buses: only their changes
            changes_only = a.datatype == "text" or kind.name == "bus"
            for n in range(lo, min(lo + per, len(t))):
                if not mask[n]:
                    continue
                if changes_only and items and col[n] == col[prev]:
                    continue
                prev = n
                if a.kind == "GeoProperty":
                    inst: dict[str, Any] = {
                        "type": "GeoProperty",
                        "value": {"type": "Point", "coordinates": col[n]},
                        "observedAt": stamps[n],
                    }
                else:
                    inst = {"type": "Property", "value": col[n], "observedAt": stamps[n]}
                    if a.unit:
                        inst["unitCode"] = a.unit
                items.append(inst)
            if items:
                attrs[a.name] = items
                count += len(items)
        if count:
            out.append((attrs, count))
    return out


def backfill(
    client: Client,
    opts: Options,
    fleet: list[Device],
    placer: Placer,
    start: float,
    end: float,
    report: Report,
    progress: Progress,
    stop: Stop,
) -> None:
    """Write the history of [start, end) through POST /ngsi-ld/v1/temporal/entities,
    continuing each entity's history where it stops (a second run adds nothing)."""
    t_begin = time.monotonic()
    by_kind: dict[str, list[Device]] = {}
    for d in fleet:
        by_kind.setdefault(d.kind, []).append(d)
    plan: list[tuple[Device, np.ndarray]] = []
    for kind_name, devs in by_kind.items():
        kind = KINDS[kind_name]
        ends = history_ends(client, kind, opts.tenant, start)
        for d in devs:
            eid = entity_id(kind, opts.tenant, d.local)
            lo = max(start, ends.get(eid, 0.0) + 1)
            first = math.ceil(lo / kind.step) * kind.step
            t = np.arange(first, end, kind.step, dtype=np.float64)
            if len(t):
                plan.append((d, t))
    total = sum(len(t) * len(KINDS[d.kind].attrs) for d, t in plan)
    progress("history", 0, total)
    done = 0
    pool = ThreadPoolExecutor(max_workers=IN_FLIGHT, thread_name_prefix="sim-backfill")
    pending: list[Future[int]] = []

    def post(body: dict[str, Any], count: int) -> int:
        client.request("POST", "/ngsi-ld/v1/temporal/entities", body)
        return count

    try:
        for d, t in plan:
            if stop:
                break  # Ctrl-C: what is written stays; the next run continues from it
            kind = KINDS[d.kind]
            mask, vals = series(opts.seed, d, t)
            eid = entity_id(kind, opts.tenant, d.local)
            for attrs, count in _instance_chunks(kind, t, mask, vals):
                pending.append(pool.submit(post, {"id": eid, "type": kind.etype, **attrs}, count))
                while len(pending) >= 2 * IN_FLIGHT:
                    done += pending.pop(0).result()
                    progress("history", done, total)
            report.backfill_entities += 1
        for f in pending:
            done += f.result()
            progress("history", done, total)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    report.backfilled = done
    if not stop:
        lights = [d for d in fleet if d.kind == "light"]
        evs = events_between(opts.seed, start, end, placer, lights)
        report.backfill_events = create_events(client, opts.tenant, evs, end, report)
    report.backfill_seconds = time.monotonic() - t_begin


def create_events(client: Client, tenant: str, evs: list[Event], now: float, report: Report) -> int:
    """Create the events (batch create; ones that exist already are left as they are)."""
    made = 0
    for n in range(0, len(evs), EVENT_BATCH):
        chunk = evs[n : n + EVENT_BATCH]
        status, _, doc = client.request(
            "POST", "/ngsi-ld/v1/entityOperations/create", [e.entity(tenant, now) for e in chunk]
        )
        ok_ids = doc if status == 201 else (doc or {}).get("success", []) if status == 207 else []
        made += len(ok_ids)
        by_id = {f"urn:ngsi-ld:{e.etype}:{tenant}:{e.local}": e for e in chunk}
        for i in ok_ids:
            report.events[by_id[i].etype] += 1
        if status == 207:
            for err in doc.get("errors", []):
                if (err.get("error") or {}).get("status") != 409:
                    report.event_errors += 1
    return made


# -- live --
def live_origin(kind: Kind, now: float) -> float:
    """The first live reading's time: the last 5-minute (or cadence) mark before now, so
    every device reports at start-up (parked buses report every 5 minutes)."""
    unit = max(kind.cadence, 300.0)
    return math.floor(now / unit) * unit


class Stop:
    """Set by Ctrl-C (or SIGTERM) to end the live loop cleanly."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def __bool__(self) -> bool:
        return self.event.is_set()


def live(
    client: Client,
    opts: Options,
    fleet: list[Device],
    placer: Placer,
    report: Report,
    stop: Stop,
    progress: Progress,
    pub: Publisher,
    sim_start: float | None = None,
) -> None:
    """Publish readings as simulated time passes (``speed`` × real time), from the grid
    point of each kind's cadence at or before now, until ``duration`` or ``stop``."""
    real0 = time.monotonic()
    sim0 = sim_start if sim_start is not None else time.time()
    report.sim_start = sim0
    by_kind: dict[str, list[Device]] = {}
    for d in fleet:
        by_kind.setdefault(d.kind, []).append(d)
    # per kind: the end of what is already computed
    block_end = {k: live_origin(KINDS[k], sim0) for k in by_kind}
    event_end = sim0
    heap: list[tuple[float, int, str, str, bytes]] = []  # (time, seq, kind, topic, payload)
    events: list[Event] = []
    seq = 0
    lights = by_kind.get("light", [])
    acked_by_kind: Counter[str] = Counter()
    sent_kinds: deque[str] = deque()  # kinds of the messages not yet acknowledged, in order
    seen = 0  # acknowledgements counted so far

    def count_acks() -> int:
        nonlocal seen
        with pub.cond:
            acked = pub.acked
        for _ in range(min(acked - seen, len(sent_kinds))):
            acked_by_kind[sent_kinds.popleft()] += 1
        seen = acked
        return acked

    def sim_now() -> float:
        return sim0 + (time.monotonic() - real0) * opts.speed

    try:
        while not stop:
            now = sim_now()
            horizon = now + max(60.0, 5 * opts.speed)
            for k, devs in by_kind.items():
                kind = KINDS[k]
                while block_end[k] <= horizon:
                    span = max(kind.cadence, 3600.0 if kind.cadence >= 60 else 600.0)
                    t = np.arange(block_end[k], block_end[k] + span, kind.cadence)
                    key = apikey(opts.tenant, k)
                    for d in devs:
                        mask, vals = series(opts.seed, d, t)
                        for n, when in enumerate(t):
                            if not mask[n]:
                                continue
                            body = {"ts": iso(float(when)), **{a: v[n] for a, v in vals.items()}}
                            seq += 1
                            heapq.heappush(
                                heap,
                                (
                                    float(when),
                                    seq,
                                    k,
                                    f"/json/{key}/{d.local}/attrs",
                                    json.dumps(body, separators=(",", ":")).encode(),
                                ),
                            )
                    block_end[k] += span
            if event_end <= horizon:
                nxt = (math.floor(event_end / 3600) + 1) * 3600.0
                events.extend(events_between(opts.seed, event_end, nxt, placer, lights))
                event_end = nxt
            while heap and heap[0][0] <= now:
                _, _, k, topic, payload = heapq.heappop(heap)
                pub.send(topic, payload)
                sent_kinds.append(k)
            due = [e for e in events if e.time <= now]
            if due:
                events = [e for e in events if e.time > now]
                try:
                    create_events(client, opts.tenant, due, now, report)
                except ApiError as exc:
                    if exc.status < 500:
                        raise
                    report.event_errors += len(due)  # the server is unwell: go on
                except SimError:
                    report.event_errors += len(due)  # unreachable for a moment: go on
            progress("live", count_acks(), 0)
            if opts.duration is not None and time.monotonic() - real0 >= opts.duration:
                break
            wait = (heap[0][0] - now) / opts.speed if heap else 0.5
            stop.event.wait(min(0.5, max(0.01, wait)))
        pub.wait(0, timeout=30)
    finally:
        count_acks()
        report.published = acked_by_kind
        report.live_seconds = time.monotonic() - real0
        report.sim_end = sim_now()


# -- the whole run --
def run(opts: Options, say: Say, progress: Progress, stop: Stop) -> Report:
    client = Client(opts.url, opts.tenant, opts.token)
    report = Report()
    # the broker first: nothing is provisioned when readings could not be sent
    pub = Publisher(opts.mqtt_url, f"sencity-sim-{opts.tenant}-{uuid.uuid4().hex[:8]}")
    pub.connect()
    try:
        city, fleet = city_and_fleet(client, opts)
        report.city = (
            f"{len(city.wards)} wards (from {city.source}), {len(city.roads)} road segments "
            f"({city.roads_source})"
        )
        say(report.city)
        report.fleet = Counter(d.kind for d in fleet)
        report.provisioned = provision(client, opts.tenant, fleet)
        say(
            f"provisioned {len(fleet)} devices through /ingest/v1 "
            f"({report.provisioned} created or updated)"
        )
        placer = Placer(city, opts.seed)
        now = time.time()
        if opts.backfill > 0:
            first_live = {k: math.floor(now / KINDS[k].cadence) * KINDS[k].cadence for k in KINDS}
            end = min(first_live.values())
            backfill(client, opts, fleet, placer, now - opts.backfill, end, report, progress, stop)
            say(next(line for line in report.lines() if line.startswith("backfill")))
        if not stop:
            live(client, opts, fleet, placer, report, stop, progress, pub, now)
    finally:
        pub.close()
        client.close()
    return report
