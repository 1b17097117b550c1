"""Writing a demo city into its tenant, through the hub's own write path.

:func:`seed` makes the tenant (Vietnamese display name, Asia/Ho_Chi_Minh, ``vi``) and
upserts the wards, roads, places and water bodies in **one** hub transaction (history
and subscriptions see it like any other write).  It is idempotent and careful:

* an entity that does not exist is created;
* an entity that exists with the same attributes is not written at all (its
  ``modifiedAt`` and history stay as they were);
* an entity that exists but differs — real ward boundaries imported over a generated
  cell, a road someone edited — is kept as it is; only attributes it lacks are added.
  ``reseed=True`` (``sencity demo --reseed``) rewrites the differing attributes of
  the entities that are still generated (``boundaryApproximate: true`` for wards,
  ``source: "generated"`` for the rest) and still leaves the others alone;
* generated roads, places and water are only added to a tenant that has no entities
  of that type from elsewhere: once ``sencity import osm`` has brought the real roads
  and the generated ones are deleted, a restart does not bring them back.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sencity.demo.cities import City, load_city
from sencity.demo.pois import poi_entities, water_entities
from sencity.demo.roads import road_entities
from sencity.demo.wards import ward_entities
from sencity.errors import AlreadyExists, NonexistentTenant, SenCityError
from sencity.hub.model import SYSTEM_MEMBERS, Entity
from sencity.hub.store import Query
from sencity.ingest.hubwrite import HubWriter

if TYPE_CHECKING:
    from sencity.core.platform import Platform
    from sencity.store import Store

log = logging.getLogger("sencity.demo")
READ_CHUNK = 200
GENERATED_TYPES = ("RoadSegment", "PointOfInterest", "WaterBody")


@dataclass
class SeedResult:
    city: City
    types: Counter[str] = field(default_factory=Counter)  # entities per type
    created: int = 0
    updated: int = 0  # written because generated data changed (or attributes were missing)
    unchanged: int = 0
    kept: int = 0  # differ from the generated data and were left as they are
    skipped: Counter[str] = field(default_factory=Counter)  # not added: the tenant has its own
    tenant_created: bool = False
    seconds: float = 0.0

    def summary(self) -> str:
        what = ", ".join(f"{n} {t}" for t, n in sorted(self.types.items()))
        kept = f", {self.kept} kept as edited" if self.kept else ""
        if self.skipped:
            own = ", ".join(sorted(self.skipped))
            kept += f", {sum(self.skipped.values())} not added (the tenant has its own {own})"
        return (
            f"demo city '{self.city.slug}' ({self.city.name}): {what}; {self.created} "
            f"created, {self.updated} updated, {self.unchanged} unchanged{kept} "
            f"({self.seconds:.1f} s)"
        )


def demo_bodies(city: City) -> list[dict[str, Any]]:
    """Every entity of the demo city (NGSI-LD normalized bodies, core @context)."""
    return [*ward_entities(city), *road_entities(city), *poi_entities(city), *water_entities(city)]


def ensure_tenant(store: Store, city: City) -> bool:
    """The city's tenant; True when it was created now."""
    try:
        store.get_tenant(city.slug)
        return False
    except NonexistentTenant:
        try:
            store.create_tenant(city.slug, city.name, city.timezone, city.locale)
        except AlreadyExists:  # made meanwhile by another process
            return False
        return True


def _plain(insts: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    if insts is None:
        return None
    return [{k: v for k, v in i.items() if k not in SYSTEM_MEMBERS} for i in insts]


def _value(e: Entity, iri: str) -> Any:
    insts = e.attrs.get(iri) or [{}]
    return insts[0].get("value")


def _current(writer: HubWriter, tenant: str, ids: list[str]) -> dict[str, Entity]:
    found: dict[str, Entity] = {}
    for i in range(0, len(ids), READ_CHUNK):
        chunk = ids[i : i + READ_CHUNK]
        rows, _ = writer.hub.hub.query(tenant, Query(ids=chunk, limit=len(chunk)))
        found.update({e.id: e for e in rows})
    return found


def _foreign_types(
    writer: HubWriter, tenant: str, entities: list[Entity], current: dict[str, Entity]
) -> set[str]:
    """The generated types (roads, places, water) of which the tenant holds entities
    that are not the demo's."""
    out = set()
    for short in GENERATED_TYPES:
        iri = writer.ctx.expand(short)
        ours = sum(1 for e in entities if iri in e.types and e.id in current)
        _, total = writer.hub.hub.query(tenant, Query(types=[[iri]], limit=0, count=True))
        if (total or 0) > ours:
            out.add(iri)
    return out


def seed(platform: Platform, city: City | str, reseed: bool = False) -> SeedResult:
    """Write the demo city into its tenant (see the module's docstring)."""
    started = time.perf_counter()
    city = load_city(city) if isinstance(city, str) else city
    res = SeedResult(city)
    res.tenant_created = ensure_tenant(platform.store, city)
    writer = HubWriter.of(platform)
    log.info("demo: generating %s (%d wards)", city.name, len(city.wards))
    bodies = demo_bodies(city)
    entities = [writer.parse(b) for b in bodies]
    res.types = Counter(str(b["type"]) for b in bodies)
    approx = writer.ctx.expand("boundaryApproximate")
    source = writer.ctx.expand("source")
    current = _current(writer, city.slug, [e.id for e in entities])
    foreign = _foreign_types(writer, city.slug, entities, current)
    writes: list[Entity] = []
    for e, body in zip(entities, bodies, strict=True):
        cur = current.get(e.id)
        if cur is None:
            if foreign.intersection(e.types):
                res.skipped[str(body["type"])] += 1
            else:
                writes.append(e)
                res.created += 1
            continue
        diff = {
            name: insts
            for name, insts in e.attrs.items()
            if _plain(cur.attrs.get(name)) != _plain(insts)
        }
        new_types = [t for t in e.types if t not in cur.types]
        if not diff and not new_types:
            res.unchanged += 1
            continue
        generated = _value(cur, approx) is True or _value(cur, source) == "generated"
        if not (reseed and generated):
            missing = {n: i for n, i in diff.items() if n not in cur.attrs}
            if len(missing) < len(diff):
                res.kept += 1
            diff = missing
            if not diff and not new_types:
                continue
        writes.append(Entity(e.id, list(e.types), diff))
        res.updated += 1
    if writes:
        log.info("demo: writing %d entities into tenant '%s'", len(writes), city.slug)
        _, errors = writer.hub.upsert(city.slug, writes, update=True)
        if errors:
            eid, err = next(iter(errors.items()))
            raise SenCityError(f"demo seed: {len(errors)} entities refused ({eid}: {err.detail})")
    res.seconds = time.perf_counter() - started
    log.info("%s", res.summary())
    return res
