"""Built-in city indicators: attributes derived from what sensors write, written back to
the same entities through the hub, so history, subscriptions, rules and maps see them.

* ``AirQualityObserved`` → ``airQualityIndex`` (VN_AQI, :mod:`sencity.rules.vnaqi`, from
  the last 12 hours of history), ``airQualityLevel``, ``airQualityColor``;
* ``FloodMonitoring`` → ``floodAlertLevel`` (0–3) and ``floodLevelStatus`` from
  ``currentLevel`` against ``alertLevel1/2/3``;
* ``TrafficFlowObserved`` → ``speedRatio`` (``averageVehicleSpeed`` / ``freeFlowSpeed``,
  else the ``maximumAllowedSpeed`` of its ``refRoadSegment``) and ``congested``
  (``speedRatio`` below ``rules.congestion_ratio``).

The service consumes the hub's change feed (``hub.entity.created|updated``): the bus
handler only notes the entity and wakes the worker, which gathers changes for
``rules.batch_wait`` seconds, reads the entities (and history) in a worker thread,
computes, and writes every entity whose derived values differ in one hub transaction
per tenant.  A derived value is written only when it changes, and the write plan checks
again inside the transaction, so the service's own writes end the loop: the event of a
derived write finds nothing to change.  Derived attributes carry the ``observedAt`` of
the measurement that last changed them.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sencity.core.bus import Event
from sencity.errors import SenCityError
from sencity.hub.durations import to_us
from sencity.hub.model import Entity
from sencity.hub.store import Query
from sencity.hub.temporal import TemporalQuery
from sencity.rules import vnaqi

if TYPE_CHECKING:
    from sencity.core.platform import Platform
    from sencity.hub.api import HubService
    from sencity.hub.temporal import TemporalStore

log = logging.getLogger("sencity.rules.indicators")

VOCAB = "https://uri.etsi.org/ngsi-ld/default-context/"


def iri(term: str) -> str:
    """The expanded name of a data-model term (the hub's default @context)."""
    return VOCAB + term


AQ, FLOOD, TRAFFIC, ROAD = (
    iri("AirQualityObserved"),
    iri("FloodMonitoring"),
    iri("TrafficFlowObserved"),
    iri("RoadSegment"),
)
#: derived attribute names per entity type (short terms)
DERIVED: dict[str, tuple[str, ...]] = {
    AQ: ("airQualityIndex", "airQualityLevel", "airQualityColor"),
    FLOOD: ("floodAlertLevel", "floodLevelStatus"),
    TRAFFIC: ("speedRatio", "congested"),
}
FLOOD_STATUS = ("normal", "alert1", "alert2", "alert3")
HISTORY_LIMIT = 10_000  # instances per pollutant read for one NowCast window
READ_CHUNK = 500  # entities read in one query


class _Unchanged(SenCityError):
    """A write plan found the derived values already in place (nothing to write)."""


@dataclass
class Derived:
    """Values to set on one entity: short name → value, and their observedAt."""

    values: dict[str, Any]
    observed_at: str | None = None


def _value(e: Entity, term: str) -> Any:
    """The value (or object) of the default instance of ``term``, or None."""
    insts = e.attrs.get(iri(term))
    if not insts:
        return None
    inst = next((i for i in insts if "datasetId" not in i), insts[0])
    return inst.get("value", inst.get("object"))


def _observed(e: Entity, term: str) -> str | None:
    insts = e.attrs.get(iri(term))
    if not insts:
        return None
    inst = next((i for i in insts if "datasetId" not in i), insts[0])
    obs = inst.get("observedAt")
    return obs if isinstance(obs, str) else None


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# -- the three indicators (pure) -------------------------------------------------------
def flood(e: Entity) -> Derived | None:
    """Alert level 0–3 of ``currentLevel`` against ``alertLevel1..3`` (m)."""
    level = _number(_value(e, "currentLevel"))
    if level is None:
        return None
    thresholds = [_number(_value(e, f"alertLevel{n}")) for n in (1, 2, 3)]
    if all(t is None for t in thresholds):
        return None
    alert = 0
    for n, t in enumerate(thresholds, start=1):
        if t is not None and level >= t:
            alert = n
    return Derived(
        {"floodAlertLevel": alert, "floodLevelStatus": FLOOD_STATUS[alert]},
        _observed(e, "currentLevel"),
    )


def traffic(e: Entity, segment_speed: float | None, ratio: float) -> Derived | None:
    """``speedRatio`` and ``congested`` of a traffic flow; ``segment_speed`` is the speed
    limit of its road segment, used when the flow has no ``freeFlowSpeed``."""
    speed = _number(_value(e, "averageVehicleSpeed"))
    free = _number(_value(e, "freeFlowSpeed"))
    if free is None or free <= 0:
        free = segment_speed
    if speed is None or free is None or free <= 0:
        return None
    r = round(max(speed, 0.0) / free, 3)
    return Derived({"speedRatio": r, "congested": r < ratio}, _observed(e, "averageVehicleSpeed"))


def air_quality(e: Entity, history: Mapping[str, list[tuple[datetime, float]]]) -> Derived | None:
    """VN_AQI of an air quality station from its pollutants' recent history (the current
    values are added when history lacks them)."""
    series: dict[str, list[tuple[datetime, float]]] = {k: list(v) for k, v in history.items()}
    for name in vnaqi.POLLUTANTS:
        v = _number(_value(e, name))
        obs = _observed(e, name)
        if v is None or obs is None:
            continue
        t = _parse_time(obs)
        pts = series.setdefault(name, [])
        if all(pt != t for pt, _ in pts):
            pts.append((t, v))
    series = {k: v for k, v in series.items() if v}
    result = vnaqi.aqi_from_series(series)
    if result is None:
        return None
    latest = max(t for pts in series.values() for t, _ in pts)
    return Derived(
        {
            "airQualityIndex": result.aqi,
            "airQualityLevel": result.level.key,
            "airQualityColor": result.level.color,
        },
        latest.isoformat().replace("+00:00", "Z"),
    )


# -- the service ---------------------------------------------------------------------------
class IndicatorService:
    """Consumes the change feed and writes the derived attributes back (one per platform)."""

    def __init__(
        self,
        hub: HubService,
        temporal: TemporalStore | None,
        batch_wait: float = 0.05,
        congestion_ratio: float = 0.5,
    ) -> None:
        self.hub = hub
        self.temporal = temporal
        self.batch_wait = batch_wait
        self.congestion_ratio = congestion_ratio
        self._pending: dict[tuple[str, str], str] = {}  # (tenant, id) -> type IRI
        self._wake = asyncio.Event()
        self.writes = 0  # entities written (for tests and metrics)
        self.runs = 0

    @classmethod
    def of(cls, platform: Platform) -> IndicatorService:
        rs = platform.settings.rules
        temporal = platform.state.get("temporal")
        return cls(
            platform.state["hub"],
            temporal.store if temporal is not None else None,
            rs.batch_wait,
            rs.congestion_ratio,
        )

    # the bus handler: never blocks, never reads the store
    async def on_change(self, event: Event) -> None:
        if event.topic == "hub.entity.deleted" or event.tenant is None:
            return
        types = event.payload.get("types") or ()
        kind = next((t for t in types if t in DERIVED), None)
        if kind is None:
            return
        self._pending[(event.tenant, event.payload["id"])] = kind
        self._wake.set()

    async def run(self) -> None:
        """The worker: batches of noted changes → one computation and write each."""
        while True:
            await self._wake.wait()
            if self.batch_wait:
                await asyncio.sleep(self.batch_wait)
            self._wake.clear()
            batch, self._pending = self._pending, {}
            if batch:
                await asyncio.to_thread(self.process, batch)

    def process(self, batch: Mapping[tuple[str, str], str]) -> int:
        """Compute and write the derived attributes of ``batch``; entities written."""
        self.runs += 1
        by_tenant: dict[str, dict[str, str]] = {}
        for (tenant, eid), kind in batch.items():
            by_tenant.setdefault(tenant, {})[eid] = kind
        written = 0
        for tenant, ids in by_tenant.items():
            try:
                written += self._process_tenant(tenant, ids)
            except Exception:
                log.exception("indicators of %d entities of tenant %s failed", len(ids), tenant)
        self.writes += written
        return written

    def _process_tenant(self, tenant: str, ids: Mapping[str, str]) -> int:
        entities = self._read(tenant, list(ids))
        aq = [e for e in entities.values() if AQ in e.types]
        history = self._history(tenant, aq) if aq else {}
        refs = {
            ref
            for e in entities.values()
            if TRAFFIC in e.types
            and not ((_number(_value(e, "freeFlowSpeed")) or 0) > 0)
            and isinstance(ref := _value(e, "refRoadSegment"), str)
        }
        roads = self._read(tenant, sorted(refs)) if refs else {}
        segments = {
            ref: _number(_value(road, "maximumAllowedSpeed")) for ref, road in roads.items()
        }
        wanted: dict[str, Derived] = {}
        for eid, e in entities.items():
            d: Derived | None
            if AQ in e.types:
                d = air_quality(e, history.get(eid, {}))
            elif FLOOD in e.types:
                d = flood(e)
            elif TRAFFIC in e.types:
                ref = _value(e, "refRoadSegment")
                seg = segments.get(ref) if isinstance(ref, str) else None
                d = traffic(e, seg, self.congestion_ratio)
            else:
                d = None
            if d is not None and not _has(e, d):
                wanted[eid] = d
        if not wanted:
            return 0
        changes, _ = self.hub.hub.modify(tenant, list(wanted), _plan(wanted))
        return len(changes)

    def _read(self, tenant: str, ids: list[str]) -> dict[str, Entity]:
        """The current state of ``ids`` (those that exist), a few queries in all."""
        out: dict[str, Entity] = {}
        for i in range(0, len(ids), READ_CHUNK):
            chunk = ids[i : i + READ_CHUNK]
            found, _ = self.hub.hub.query(tenant, Query(ids=chunk, limit=len(chunk)))
            out.update((e.id, e) for e in found)
        return out

    def _history(
        self, tenant: str, entities: Iterable[Entity]
    ) -> dict[str, dict[str, list[tuple[datetime, float]]]]:
        """The last 12 hours of each pollutant of each station, from the hub's history."""
        if self.temporal is None:
            return {}
        ends: dict[str, datetime] = {}
        for e in entities:
            times = [_parse_time(o) for n in vnaqi.POLLUTANTS if (o := _observed(e, n))]
            if times:
                ends[e.id] = max(times)
        if not ends:
            return {}
        span = timedelta(hours=vnaqi.NOWCAST_HOURS)
        tq = TemporalQuery(
            timeprop="observedAt",
            lo=to_us(min(ends.values()) - span),
            attrs=[iri(n) for n in vnaqi.POLLUTANTS],
            limit=HISTORY_LIMIT,
        )
        tents, _ = self.temporal.entities(tenant, ids=sorted(ends), limit=len(ends))
        self.temporal.instances(tents, tq)
        out: dict[str, dict[str, list[tuple[datetime, float]]]] = {}
        for te in tents:
            lo = ends[te.id] - span
            per = out.setdefault(te.id, {})
            for s in te.series:
                if s.ds:
                    continue
                name = s.attr[len(VOCAB) :] if s.attr.startswith(VOCAB) else s.attr
                for inst in s.instances:
                    v = _number(inst.get("value"))
                    obs = inst.get("observedAt")
                    if v is None or not isinstance(obs, str):
                        continue
                    t = _parse_time(obs)
                    if lo < t <= ends[te.id]:
                        per.setdefault(name, []).append((t, v))
        return out


def _has(e: Entity, d: Derived) -> bool:
    """Whether ``e`` already carries every value of ``d``."""
    for name, v in d.values.items():
        cur = _value(e, name)
        if cur != v or type(cur) is not type(v):
            return False
    return True


def _plan(wanted: Mapping[str, Derived]) -> Callable[[str, Entity | None], Entity | None]:
    def plan(eid: str, cur: Entity | None) -> Entity | None:
        if cur is None:
            raise _Unchanged("deleted meanwhile")
        d = wanted[eid]
        if _has(cur, d):
            raise _Unchanged("already there")
        new = Entity(
            cur.id,
            list(cur.types),
            {k: list(v) for k, v in cur.attrs.items()},
            list(cur.scopes) if cur.scopes else None,
            cur.created_at,
            cur.modified_at,
        )
        for name, value in d.values.items():
            inst: dict[str, Any] = {"type": "Property", "value": value}
            if d.observed_at:
                inst["observedAt"] = d.observed_at
            others = [i for i in new.attrs.get(iri(name), []) if "datasetId" in i]
            new.attrs[iri(name)] = [inst, *others]
        return new

    return plan
