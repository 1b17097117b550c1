"""The hub's storage: entities of every tenant on the shared :class:`~sencity.store.Store`.

Every write goes through :meth:`HubStore.modify`: the current rows of the entities
concerned are read (locked on PostgreSQL; SQLite writes are serialised), a plan
function computes each new state in Python, and all changes are written in the same
transaction.  A plan that raises leaves its entity untouched, so batches can report
per-entity errors while never writing part of one entity.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any

from sencity.core.bus import Event, EventBus
from sencity.errors import SenCityError
from sencity.hub import geo
from sencity.hub.model import Entity
from sencity.store.base import Store, Tx, utcnow

LOCATION_IRI = "https://uri.etsi.org/ngsi-ld/location"
CHUNK = 500
RACE_RETRIES = 5

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _regexp(pattern: str, value: Any) -> int:
    if value is None:
        return 0
    return 1 if _compiled(pattern).search(str(value)) else 0


@lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def sqlite_functions(conn: sqlite3.Connection) -> None:
    conn.create_function("regexp", 2, _regexp, deterministic=True)
    geo.register_sqlite_functions(conn)


@dataclass
class GeoFilter:
    """A geo-query on one GeoProperty (expanded IRI); ``indexed`` when it is ``location``."""

    query: geo.GeoQuery
    attr: str
    indexed: bool

    @property
    def near(self) -> bool:
        """A ``near;maxDistance`` query: results ordered by distance, searched outwards."""
        return self.query.georel == "near" and self.query.max_distance is not None

    def within(self, metres: float) -> GeoFilter:
        """This query with ``maxDistance`` lowered to ``metres``."""
        return GeoFilter(replace(self.query, max_distance=metres), self.attr, self.indexed)


@dataclass
class Query:
    """What to select; SQL fragments come from the q and geo compilers."""

    types: list[list[str]] | None = None  # OR of ANDs of expanded types
    ids: list[str] | None = None
    id_pattern: str | None = None
    where: list[tuple[str, list[Any]]] = field(default_factory=list)  # extra SQL conditions
    geo: GeoFilter | None = None
    attrs_any: list[str] | None = None  # entity must have at least one of these
    scopes: list[str] | None = None
    limit: int = 20
    offset: int = 0
    count: bool = False


@dataclass
class Change:
    kind: str  # created | updated | deleted
    before: Entity | None
    after: Entity | None


#: ``hook(tx, tenant, changes, now)``: runs inside every write transaction of the hub,
#: after the entities are written.  It sees every change (created, updated, deleted, with
#: the states before and after) and may write its own tables in the same transaction:
#: what it writes commits with the change or not at all.  Raising rolls the whole write
#: back.  History (:mod:`sencity.hub.temporal`) and the subscriptions' outbox use it.
WriteHook = Callable[[Tx, str, dict[str, "Change"], str], None]


class HubStore:
    def __init__(self, store: Store, bus: EventBus | None = None) -> None:
        self.store = store
        self.bus = bus
        self.pg = store.dialect == "postgresql"
        hook = getattr(store, "add_connection_hook", None)
        if hook is not None:
            hook(sqlite_functions)
        self._j = "CAST(? AS jsonb)" if self.pg else "?"
        self.write_hooks: list[WriteHook] = []
        #: ``hook(tenant, changes)`` after a write committed (e.g. to wake a sender)
        self.commit_hooks: list[Callable[[str, dict[str, Change]], None]] = []

    # -- rows ----------------------------------------------------------------------------
    def _entity(self, row: dict[str, Any]) -> Entity:
        loads = json.loads
        types, attrs, scopes = row["types"], row["attrs"], row["scopes"]
        if not self.pg:
            types, attrs = loads(types), loads(attrs)
            scopes = loads(scopes) if scopes else None
        return Entity(row["id"], types, attrs, scopes, row["created_at"], row["modified_at"])

    def _select(
        self,
        tx: Tx,
        tenant: str,
        ids: Sequence[str],
        lock: bool,
        columns: str = "rid, id, types, attrs, scopes, created_at, modified_at",
    ) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for i in range(0, len(ids), CHUNK):
            chunk = list(ids[i : i + CHUNK])
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT {columns} FROM hub_entities WHERE tenant = ? AND id IN ({marks})"
            if lock and self.pg:
                sql += " ORDER BY id FOR UPDATE"
            for row in tx.execute(sql, [tenant, *chunk]):
                found[row["id"]] = row
        return found

    def exists(self, tenant: str, ids: Sequence[str]) -> set[str]:
        with self.store.transaction(write=False) as tx:
            return set(self._select(tx, tenant, ids, lock=False))

    def get(self, tenant: str, eid: str) -> Entity | None:
        with self.store.transaction(write=False) as tx:
            row = self._select(tx, tenant, [eid], lock=False).get(eid)
        return self._entity(row) if row else None

    # -- writes --------------------------------------------------------------------------
    def modify(
        self,
        tenant: str,
        ids: Sequence[str],
        plan: Callable[[str, Entity | None], Entity | None],
        begin: Callable[[], None] | None = None,
    ) -> tuple[dict[str, Change], dict[str, SenCityError]]:
        """Apply ``plan(id, current) -> new | None (delete)`` to each id in one transaction.

        Returns the changes made and the per-id errors (plans that raised).  A transaction
        that loses a race with another writer (two creates of one new id, a deadlock
        between batches) runs again, plans included, on the rows as they are then;
        ``begin`` (if given) is called before each run, to reset a plan's own state.
        """
        for attempt in range(RACE_RETRIES):
            if begin is not None:
                begin()
            try:
                return self._modify(tenant, ids, plan)
            except Exception as exc:
                if attempt + 1 < RACE_RETRIES and self.store.is_race(exc):
                    continue
                raise
        raise AssertionError("unreachable")

    def _modify(
        self,
        tenant: str,
        ids: Sequence[str],
        plan: Callable[[str, Entity | None], Entity | None],
    ) -> tuple[dict[str, Change], dict[str, SenCityError]]:
        changes: dict[str, Change] = {}
        errors: dict[str, SenCityError] = {}
        now = utcnow()
        with self.store.transaction() as tx:
            keys = sorted(set(ids))
            if self.pg and len(keys) > 1:
                # lock every id of the batch, existing or not, in one order: two batches
                # then never wait for each other in a ring (a deadlock), whatever their
                # entities' order
                tx.execute(
                    "SELECT pg_advisory_xact_lock(k) FROM (SELECT DISTINCT "
                    "hashtextextended(? || i, 0) AS k FROM unnest(CAST(? AS text[])) AS i "
                    "ORDER BY k) AS s",
                    [tenant + "\x1f", keys],
                )
            rows = self._select(tx, tenant, keys, lock=True)
            current = {eid: self._entity(r) for eid, r in rows.items()}
            final: dict[str, Entity | None] = {}
            for eid in ids:
                before = final[eid] if eid in final else current.get(eid)
                try:
                    after = plan(eid, before)
                except SenCityError as exc:
                    errors[eid] = exc
                    continue
                if after is not None:
                    orig = current.get(eid)
                    after.created_at = orig.created_at if orig else now
                    after.modified_at = now
                    _stamp(after, before, now)
                final[eid] = after
            inserts: list[Entity] = []
            updates: list[tuple[int, Entity, Entity]] = []
            deletes: list[int] = []
            for eid, after in final.items():
                orig = current.get(eid)
                if orig is None and after is None:
                    continue
                if orig is None:
                    assert after is not None
                    inserts.append(after)
                    changes[eid] = Change("created", None, after)
                elif after is None:
                    deletes.append(rows[eid]["rid"])
                    changes[eid] = Change("deleted", orig, None)
                else:
                    updates.append((rows[eid]["rid"], orig, after))
                    changes[eid] = Change("updated", orig, after)
            self._write(tx, tenant, inserts, updates, deletes)
            if changes:
                for hook in self.write_hooks:
                    hook(tx, tenant, changes, now)
        if changes:
            for done in self.commit_hooks:
                done(tenant, changes)
        if self.bus is not None:
            for event in self._events(tenant, changes):
                self.bus.publish(event)
        return changes, errors

    def _write(
        self,
        tx: Tx,
        tenant: str,
        inserts: list[Entity],
        updates: list[tuple[int, Entity, Entity]],
        deletes: list[int],
    ) -> None:
        j = self._j
        if deletes:
            for i in range(0, len(deletes), CHUNK):
                chunk = deletes[i : i + CHUNK]
                marks = ",".join("?" * len(chunk))
                if not self.pg:
                    tx.execute(f"DELETE FROM hub_location WHERE rid IN ({marks})", chunk)
                tx.execute(f"DELETE FROM hub_entity_types WHERE rid IN ({marks})", chunk)
                tx.execute(f"DELETE FROM hub_entities WHERE rid IN ({marks})", chunk)
        if inserts:
            loc = ", location" if self.pg else ""
            loc_v = ", ST_SetSRID(ST_GeomFromGeoJSON(?), 4326)" if self.pg else ""
            rows = []
            for e in inserts:
                row = [
                    tenant,
                    e.id,
                    _dumps(e.types),
                    _dumps(e.attrs),
                    _dumps(e.scopes) if e.scopes else None,
                    e.created_at,
                    e.modified_at,
                ]
                if self.pg:
                    row.append(_location_json(e))
                rows.append(row)
            tx.executemany(
                "INSERT INTO hub_entities (tenant, id, types, attrs, scopes, created_at, "
                f"modified_at{loc}) VALUES (?, ?, {j}, {j}, {j}, ?, ?{loc_v})",
                rows,
            )
            rids = {
                eid: r["rid"]
                for eid, r in self._select(
                    tx, tenant, [e.id for e in inserts], lock=False, columns="rid, id"
                ).items()
            }
            tx.executemany(
                "INSERT INTO hub_entity_types (tenant, type, rid) VALUES (?, ?, ?)",
                [(tenant, t, rids[e.id]) for e in inserts for t in e.types],
            )
            if not self.pg:
                located = [(rids[e.id], _location(e)) for e in inserts]
                tx.executemany(
                    "INSERT INTO hub_location (rid, minx, maxx, miny, maxy) VALUES (?, ?, ?, ?, ?)",
                    [(rid, *geo.bbox(g)) for rid, g in located if g is not None],
                )
        if updates:
            loc = ", location = ST_SetSRID(ST_GeomFromGeoJSON(?), 4326)" if self.pg else ""
            urows: list[list[Any]] = []
            for rid, _, e in updates:
                urow: list[Any] = [
                    _dumps(e.types),
                    _dumps(e.attrs),
                    _dumps(e.scopes) if e.scopes else None,
                    e.modified_at,
                ]
                if self.pg:
                    urow.append(_location_json(e))
                urows.append([*urow, rid])
            tx.executemany(
                f"UPDATE hub_entities SET types = {j}, attrs = {j}, scopes = {j}, "
                f"modified_at = ?{loc} WHERE rid = ?",
                urows,
            )
            retyped = [(rid, e) for rid, b, e in updates if b.types != e.types]
            if retyped:
                tx.executemany(
                    "DELETE FROM hub_entity_types WHERE rid = ?", [(rid,) for rid, _ in retyped]
                )
                tx.executemany(
                    "INSERT INTO hub_entity_types (tenant, type, rid) VALUES (?, ?, ?)",
                    [(tenant, t, rid) for rid, e in retyped for t in e.types],
                )
            if not self.pg:
                moved = [
                    (rid, _location(e))
                    for rid, b, e in updates
                    if b.attrs.get(LOCATION_IRI) != e.attrs.get(LOCATION_IRI)
                ]
                if moved:
                    tx.executemany(
                        "DELETE FROM hub_location WHERE rid = ?", [(rid,) for rid, _ in moved]
                    )
                    tx.executemany(
                        "INSERT INTO hub_location (rid, minx, maxx, miny, maxy) "
                        "VALUES (?, ?, ?, ?, ?)",
                        [(rid, *geo.bbox(g)) for rid, g in moved if g is not None],
                    )

    def _events(self, tenant: str, changes: dict[str, Change]) -> list[Event]:
        events = []
        for eid, ch in changes.items():
            ent = ch.after or ch.before
            assert ent is not None
            events.append(
                Event(
                    f"hub.entity.{ch.kind}",
                    {
                        "id": eid,
                        "types": ent.types,
                        "attrs": sorted(ch.after.attrs) if ch.after else [],
                    },
                    tenant=tenant,
                )
            )
        return events

    # -- queries -------------------------------------------------------------------------
    def selector_condition(
        self, tenant: str, q: Query, driving: bool = True
    ) -> tuple[str, list[Any]]:
        """The type, id and idPattern part of ``q`` as one SQL condition.

        ``driving`` writes a type as ``rid IN (…)``, which SQLite walks in rid order (so
        ``ORDER BY rid LIMIT n`` stops early); otherwise a test on each candidate row.
        """
        sql: list[str] = ["1 = 1"]
        params: list[Any] = []
        if q.types:
            ors = []
            for conj in q.types:
                ands = []
                for t in conj:
                    if driving:
                        ands.append(
                            "e.rid IN (SELECT rid FROM hub_entity_types "
                            "WHERE tenant = ? AND type = ?)"
                        )
                        params.extend([tenant, t])
                    elif self.pg:  # on the row itself: no join for the planner to misjudge
                        ands.append("e.types @> CAST(? AS jsonb)")
                        params.append(_dumps([t]))
                    else:
                        ands.append(
                            "EXISTS (SELECT 1 FROM hub_entity_types t WHERE t.rid = e.rid "
                            "AND t.tenant = ? AND t.type = ?)"
                        )
                        params.extend([tenant, t])
                ors.append("(" + " AND ".join(ands) + ")")
            sql.append("(" + " OR ".join(ors) + ")")
        if q.ids:
            sql.append(f"e.id IN ({','.join('?' * len(q.ids))})")
            params.extend(q.ids)
        if q.id_pattern:
            sql.append("e.id ~ ?" if self.pg else "regexp(?, e.id) = 1")
            params.append(q.id_pattern)
        return " AND ".join(sql), params

    def _conditions(
        self, tenant: str, q: Query, gf: GeoFilter | None = None
    ) -> tuple[str, list[Any]]:
        """The WHERE clause of ``q`` (with ``gf`` in place of its geo-query, if given)."""
        gf = gf or q.geo
        sql: list[str] = []
        params: list[Any] = []
        late: list[tuple[str, list[Any]]] = []
        driver = None
        if gf is not None:
            if self.pg:
                late.append(geo.geo_sql(gf.query, "postgresql", gf.attr, gf.indexed))
            else:  # the R*Tree candidates lead; the exact check runs after the other tests
                driver, check = geo.sqlite_split(gf.query, gf.attr, gf.indexed)
                late.append(check)
        if driver is not None:
            sql.append(f"({driver[0]})")
            params.extend(driver[1])
        # a geo-query leads through the spatial index: types are then checked per row
        sel, sel_params = self.selector_condition(tenant, q, driving=gf is None)
        # SQLite: "+" keeps the planner off the tenant index, so the rid lists drive
        sql += ["e.tenant = ?" if self.pg or not (q.types or driver) else "+e.tenant = ?", sel]
        params += [tenant, *sel_params]
        if q.attrs_any:
            if self.pg:
                sql.append("jsonb_exists_any(e.attrs, ?)")
                params.append(q.attrs_any)
            else:
                sql.append(
                    "("
                    + " OR ".join("json_type(e.attrs, ?) IS NOT NULL" for _ in q.attrs_any)
                    + ")"
                )
                params.extend(f'$."{a}"' for a in q.attrs_any)
        for frag, p in [*q.where, *late]:
            sql.append(f"({frag})")
            params.extend(p)
        return " AND ".join(sql), params

    def _page(self, tx: Tx, tenant: str, q: Query, gf: GeoFilter | None) -> list[dict[str, Any]]:
        cond, params = self._conditions(tenant, q, gf)
        order, order_params = "e.rid", list[Any]()
        if gf is not None and gf.near:
            dist, order_params = geo.distance_sql(gf.query, self.store.dialect, gf.attr, gf.indexed)
            order = f"{dist}, e.rid"
        return tx.execute(
            "SELECT e.id, e.types, e.attrs, e.scopes, e.created_at, e.modified_at "
            f"FROM hub_entities e WHERE {cond} ORDER BY {order} LIMIT ? OFFSET ?",
            [*params, *order_params, q.limit, q.offset],
        )

    def _near_page(self, tx: Tx, tenant: str, q: Query, gf: GeoFilter) -> list[dict[str, Any]]:
        """A page of a ``near;maxDistance`` query, ordered by distance then creation.

        Rather than test every entity within ``maxDistance``, search a smaller circle
        first: when it holds the whole page, the page is the same as in the full circle.
        PostgreSQL finds the radius that holds the page by a nearest-neighbour index scan;
        SQLite starts from the radius its R*Tree says should hold several pages and
        doubles it until the page is full."""
        if self.pg:
            return (
                self._knn_page(tx, tenant, q, gf) if gf.indexed else self._page(tx, tenant, q, gf)
            )
        box = geo.search_box(gf.query) if gf.indexed else None
        if box is None:
            return self._page(tx, tenant, q, gf)
        need = q.offset + q.limit
        full = float(gf.query.max_distance or 0.0)
        minx, maxx, miny, maxy = box
        in_box = tx.execute(
            "SELECT count(*) AS n FROM hub_location "
            "WHERE maxx >= ? AND minx <= ? AND maxy >= ? AND miny <= ?",
            [minx, maxx, miny, maxy],
        )[0]["n"]
        radius = full * min(1.0, (8 * need / in_box) ** 0.5) if in_box else full
        while radius < full:
            rows = self._page(tx, tenant, q, gf.within(radius))
            if len(rows) == q.limit:
                return rows
            radius *= 2
        return self._page(tx, tenant, q, gf)

    def _knn_page(self, tx: Tx, tenant: str, q: Query, gf: GeoFilter) -> list[dict[str, Any]]:
        """PostgreSQL: the page from a nearest-neighbour scan of the GiST index, which
        reads matches nearest first and stops after ``offset + limit + 1``."""
        need = q.offset + q.limit
        cond, params = self._conditions(tenant, q, gf)
        dist, dparams = geo.distance_sql(gf.query, "postgresql", gf.attr, True)
        # the planner's guesses for q conditions are poor, and a sort would read every
        # match in the circle: insist on the index order
        tx.execute("SET LOCAL enable_sort = off")
        near = tx.execute(
            f"SELECT e.rid, {dist} AS d FROM hub_entities e WHERE {cond} ORDER BY {dist} LIMIT ?",
            [*dparams, *params, *dparams, need + 1],
        )
        tx.execute("SET LOCAL enable_sort = on")
        if len(near) > need and near[need]["d"] <= near[need - 1]["d"]:
            # equal distances straddle the end of the page: which of them come first
            # (creation order) needs all of them, so read the circle that holds them
            edge = float(near[need - 1]["d"]) * (1 + 1e-9) + 1e-6
            return self._page(tx, tenant, q, gf.within(edge))
        wanted = sorted(near[:need], key=lambda r: (r["d"], r["rid"]))[q.offset :]
        if not wanted:
            return []
        rids = [r["rid"] for r in wanted]
        rows = {
            r["rid"]: r
            for r in tx.execute(
                "SELECT e.rid, e.id, e.types, e.attrs, e.scopes, e.created_at, e.modified_at "
                "FROM hub_entities e WHERE e.rid = ANY(?)",
                [rids],
            )
        }
        return [rows[r] for r in rids]

    def query(self, tenant: str, q: Query) -> tuple[list[Entity], int | None]:
        with self.store.transaction(write=False) as tx:
            rows: list[dict[str, Any]] = []
            if q.limit > 0:
                if q.geo is not None and q.geo.near:
                    rows = self._near_page(tx, tenant, q, q.geo)
                else:
                    rows = self._page(tx, tenant, q, None)
            total = None
            if q.count:
                cond, params = self._conditions(tenant, q)
                total = tx.execute(
                    f"SELECT count(*) AS n FROM hub_entities e WHERE {cond}",
                    params,
                )[0]["n"]
        return [self._entity(r) for r in rows], total

    # -- discovery -----------------------------------------------------------------------
    def type_stats(self, tenant: str) -> dict[str, dict[str, Any]]:
        """{type: {"count": n, "attrs": {attr: {kinds}}}} over the tenant's entities."""
        out: dict[str, dict[str, Any]] = {}
        with self.store.transaction(write=False) as tx:
            rows = tx.execute("SELECT types, attrs FROM hub_entities WHERE tenant = ?", [tenant])
        for row in rows:
            types = row["types"] if self.pg else json.loads(row["types"])
            attrs = row["attrs"] if self.pg else json.loads(row["attrs"])
            for t in types:
                st = out.setdefault(t, {"count": 0, "attrs": {}})
                st["count"] += 1
                for name, insts in attrs.items():
                    st["attrs"].setdefault(name, set()).update(i["type"] for i in insts)
        return out

    def tenants_with_data(self) -> list[str]:
        with self.store.transaction(write=False) as tx:
            return [
                r["tenant"]
                for r in tx.execute("SELECT DISTINCT tenant FROM hub_entities ORDER BY tenant")
            ]


def _location(e: Entity) -> dict[str, Any] | None:
    insts = e.attrs.get(LOCATION_IRI)
    if not insts:
        return None
    default = next((i for i in insts if "datasetId" not in i), insts[0])
    value = default.get("value")
    return value if isinstance(value, dict) else None


def _location_json(e: Entity) -> str | None:
    g = _location(e)
    return _dumps(g) if g is not None else None


def _stamp(after: Entity, before: Entity | None, now: str) -> None:
    """System times of attribute instances: createdAt kept, modifiedAt when changed."""
    old = before.attrs if before else {}
    for name, insts in after.attrs.items():
        prev = {i.get("datasetId"): i for i in old.get(name, [])}
        for inst in insts:
            p = prev.get(inst.get("datasetId"))
            if p is None:
                inst["createdAt"] = inst["modifiedAt"] = now
            else:
                inst["createdAt"] = p.get("createdAt", now)
                if "modifiedAt" not in inst or _differs(inst, p):
                    inst["modifiedAt"] = now


def _differs(a: dict[str, Any], b: dict[str, Any]) -> bool:
    skip = ("createdAt", "modifiedAt")
    return {k: v for k, v in a.items() if k not in skip} != {
        k: v for k, v in b.items() if k not in skip
    }


def iter_chunks(items: Sequence[Any], n: int) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]
