"""History of the hub: every change of every attribute instance, kept and queried.

Storage (both backends, see :mod:`sencity.hub.schema`):

* ``hub_tentities`` — one row per entity that has history (it outlives the entity);
* ``hub_tseries`` — one row per (entity, attribute, datasetId): a *series*;
* ``hub_history`` — one row per attribute instance: ``ts`` (epoch µs of ``observedAt``,
  or of the recording time when the instance has none, ``obs`` says which), ``rec``/``mod``
  (createdAt/modifiedAt), ``num`` (the value as a number, for aggregation), ``val`` (the
  value as JSON), ``meta`` (other members: unitCode, sub-attributes…), ``deleted`` (the
  attribute or entity was deleted at that time).  SQLite keeps it clustered by
  (series, time); PostgreSQL partitions it by month of ``ts`` with a BRIN index on ``ts``;
* ``hub_rollup`` — aggregates (count, sum, sum of squares, min, max) of periods whose raw
  instances retention removed; aggregation queries combine them with raw instances.

Changes arrive through the hub's write hook, in the transaction of the change itself.
Aggregation runs in SQL; Python only combines the partial aggregates of a bucket.
"""

from __future__ import annotations

import json
import math
import os
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sencity.errors import NotFound
from sencity.hub.durations import EPOCH, ORIGIN_US, Period, iso_us, to_us, us_iso
from sencity.hub.model import VALUE_KEY, Entity
from sencity.store.base import Store, Tx

CHUNK = 500
WHOLE_US = 2**62  # a period this long is "the whole interval" (no aggrPeriodDuration)
AGGR_METHODS = ("totalCount", "distinctCount", "sum", "avg", "min", "max", "stddev", "sumsq")
NUMERIC_METHODS = {"sum", "avg", "min", "max", "stddev", "sumsq"}
TIME_COLUMNS = {"observedAt": "ts", "createdAt": "rec", "modifiedAt": "mod"}
INSTANCE_PREFIX = "urn:ngsi-ld:Instance:"
_SYSTEM = {"createdAt", "modifiedAt"}
_SKIP = {"type", "observedAt", "datasetId", "createdAt", "modifiedAt", "instanceId"}

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
#: instance ids: unique, not secret — a seeded generator, not a system call per instance
_ids = random.Random(int.from_bytes(os.urandom(16), "big"))
os.register_at_fork(after_in_child=lambda: _ids.seed(int.from_bytes(os.urandom(16), "big")))


def instance_id(iid: int) -> str:
    return f"{INSTANCE_PREFIX}{iid}"


def parse_instance_id(text: str) -> int:
    if text.startswith(INSTANCE_PREFIX):
        tail = text[len(INSTANCE_PREFIX) :]
        if tail.isdigit():
            return int(tail)
    raise NotFound(f"no attribute instance '{text[:100]}'")


def number(value: Any) -> float | None:
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


def instance_row(
    inst: dict[str, Any], series_kind: str, rec: int, mod: int, deleted: bool = False
) -> tuple[int, int, int, int, int, float | None, str | None, str | None]:
    """(ts, obs, rec, mod, deleted, num, val, meta) of one internal-form instance."""
    kind = inst.get("type", series_kind)
    key = VALUE_KEY.get(kind, "value")
    value = inst.get(key)
    obs_at = inst.get("observedAt")
    meta = {k: v for k, v in inst.items() if k not in _SKIP and k != key}
    if kind != series_kind:
        meta["type"] = kind
    ts = iso_us(obs_at) if obs_at else mod
    if deleted:
        return ts, 1 if obs_at else 0, rec, mod, 1, None, None, _meta(meta)
    return ts, 1 if obs_at else 0, rec, mod, 0, number(value), _value(value), _meta(meta)


def _value(value: Any) -> str:
    """JSON text of a value; numbers and booleans without the encoder (the common case)."""
    t = type(value)
    if t is float and math.isfinite(value):
        return repr(value)
    if t is int:
        return str(value)
    if t is bool:
        return "true" if value else "false"
    return _dumps(value)


_meta_texts: dict[tuple[tuple[str, str], ...], str] = {}


def _meta(meta: dict[str, Any]) -> str | None:
    """JSON text of the other members; unitCode-like string members come from a cache."""
    if not meta:
        return None
    if len(meta) <= 3 and all(type(v) is str for v in meta.values()):
        key = tuple(meta.items())
        text = _meta_texts.get(key)
        if text is None:
            text = _dumps(meta)
            if len(_meta_texts) < 10_000:
                _meta_texts[key] = text
        return text
    return _dumps(meta)


@dataclass
class TemporalQuery:
    """Which instances: a time interval [lo, hi) on one time property, and how many."""

    timeprop: str = "observedAt"
    lo: int | None = None  # inclusive, epoch µs
    hi: int | None = None  # exclusive
    lo_strict: bool = False  # ``after``: strictly later than lo
    last_n: int | None = None
    attrs: list[str] | None = None  # expanded names
    limit: int = 1000  # instances per attribute (a page)

    @property
    def column(self) -> str:
        return TIME_COLUMNS[self.timeprop]

    def where(self, alias: str = "") -> tuple[str, list[Any]]:
        col = alias + self.column
        sql, params = [], list[Any]()
        if self.timeprop == "observedAt":
            sql.append(f"{alias}obs = 1")
        if self.lo is not None:
            sql.append(f"{col} {'>' if self.lo_strict else '>='} ?")
            params.append(self.lo)
        if self.hi is not None:
            sql.append(f"{col} < ?")
            params.append(self.hi)
        return " AND ".join(sql) or "1 = 1", params


@dataclass
class Aggregation:
    methods: list[str]
    period: Period
    origin: datetime  # start of bucket 0, in the offset calendar buckets follow


@dataclass
class Series:
    sid: int
    attr: str
    ds: str
    kind: str
    instances: list[dict[str, Any]] = field(default_factory=list)
    aggregates: dict[str, list[list[Any]]] = field(default_factory=dict)
    truncated: bool = False


@dataclass
class TemporalEntity:
    tid: int
    id: str
    types: list[str]
    created_at: str
    deleted_at: str | None
    series: list[Series] = field(default_factory=list)


class TemporalStore:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.pg = store.dialect == "postgresql"
        self._parts: set[int] = set()  # months (µs of their start) with a partition

    # -- recording (the hub's write hook) ------------------------------------------------
    def record(self, tx: Tx, tenant: str, changes: dict[str, Any], now: str) -> None:
        """Keep every instance the write created or changed, and every deletion."""
        now_us = iso_us(now)
        entities: dict[str, Entity] = {}
        deleted: set[str] = set()
        for eid, ch in changes.items():
            if ch.after is not None:
                entities[eid] = ch.after
            else:
                entities[eid] = ch.before
                deleted.add(eid)
        tids = self._tids(tx, tenant, entities, deleted, now)
        wanted: dict[tuple[int, str, str], str] = {}
        pending: list[tuple[tuple[int, str, str], dict[str, Any], bool]] = []
        for eid, ch in changes.items():
            tid = tids[eid]
            old = ch.before.attrs if ch.before is not None else {}
            new = ch.after.attrs if ch.after is not None else {}
            for name, insts in new.items():
                prev = {i.get("datasetId"): i for i in old.get(name, ())}
                for inst in insts:
                    p = prev.get(inst.get("datasetId"))
                    if p is None or (p is not inst and _differs(inst, p)):
                        key = (tid, name, inst.get("datasetId", ""))
                        wanted.setdefault(key, inst["type"])
                        pending.append((key, inst, False))
            for name, insts in old.items():
                kept = {i.get("datasetId") for i in new.get(name, [])}
                for inst in insts:
                    if inst.get("datasetId") not in kept:
                        key = (tid, name, inst.get("datasetId", ""))
                        wanted.setdefault(key, inst["type"])
                        pending.append((key, {"type": inst["type"]}, True))
        if not pending:
            return
        sids = self._sids(tx, wanted)
        rows = []
        for key, inst, is_del in pending:
            row = instance_row(inst, wanted[key], now_us, now_us, is_del)
            rows.append((sids[key], row[0], _ids.getrandbits(62), *row[1:]))
        self.insert(tx, rows)

    def _tids(
        self,
        tx: Tx,
        tenant: str,
        entities: dict[str, Entity],
        deleted: set[str],
        now: str,
    ) -> dict[str, int]:
        ids = sorted(entities)
        found: dict[str, dict[str, Any]] = {}
        for chunk in _chunks(ids):
            for r in tx.execute(
                "SELECT tid, id, types, deleted_at FROM hub_tentities WHERE tenant = ? AND id IN "
                f"({','.join('?' * len(chunk))})",
                [tenant, *chunk],
            ):
                found[r["id"]] = r
        j = "CAST(? AS jsonb)" if self.pg else "?"
        missing = [e for e in ids if e not in found]
        if missing:
            tx.executemany(
                "INSERT INTO hub_tentities (tenant, id, types, created_at, deleted_at) "
                f"VALUES (?, ?, {j}, ?, ?)",
                [
                    (tenant, e, _dumps(entities[e].types), now, now if e in deleted else None)
                    for e in missing
                ],
            )
            for chunk in _chunks(missing):
                for r in tx.execute(
                    "SELECT tid, id, types, deleted_at FROM hub_tentities WHERE tenant = ? "
                    f"AND id IN ({','.join('?' * len(chunk))})",
                    [tenant, *chunk],
                ):
                    found[r["id"]] = {**r, "fresh": True}
        changed = []
        for eid, r in found.items():
            if r.get("fresh"):
                continue
            types = r["types"] if self.pg else json.loads(r["types"])
            gone = now if eid in deleted else None
            if types != entities[eid].types or (r["deleted_at"] is None) != (gone is None):
                changed.append((_dumps(entities[eid].types), gone, r["tid"]))
        if changed:
            tx.executemany(
                f"UPDATE hub_tentities SET types = {j}, deleted_at = ? WHERE tid = ?", changed
            )
        return {eid: r["tid"] for eid, r in found.items()}

    def _sids(
        self, tx: Tx, wanted: dict[tuple[int, str, str], str]
    ) -> dict[tuple[int, str, str], int]:
        tids = sorted({k[0] for k in wanted})
        found: dict[tuple[int, str, str], int] = {}

        def load() -> None:
            for chunk in _chunks(tids):
                for r in tx.execute(
                    "SELECT sid, tid, attr, ds FROM hub_tseries WHERE tid IN "
                    f"({','.join('?' * len(chunk))})",
                    chunk,
                ):
                    found[(r["tid"], r["attr"], r["ds"])] = r["sid"]

        load()
        missing = [k for k in wanted if k not in found]
        if missing:
            tx.executemany(
                "INSERT INTO hub_tseries (tid, attr, ds, kind) VALUES (?, ?, ?, ?)",
                [(*k, wanted[k]) for k in missing],
            )
            load()
        return found

    def insert(self, tx: Tx, rows: Sequence[Sequence[Any]]) -> None:
        """Insert history rows ``(sid, ts, iid, obs, rec, mod, deleted, num, val, meta)``."""
        if self.pg:
            self._ensure_partitions(tx, {r[1] for r in rows})
        tx.executemany(
            "INSERT INTO hub_history (sid, ts, iid, obs, rec, mod, deleted, num, val, meta) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )

    # -- PostgreSQL partitions -------------------------------------------------------------
    def _ensure_partitions(self, tx: Tx, stamps: Iterable[int]) -> None:
        months = {_month_start(ts) for ts in stamps} - self._parts
        if not months:
            return
        # one creator at a time; the others then see the partition exists
        tx.execute("SELECT pg_advisory_xact_lock(hashtextextended('sencity.hub_history', 0))")
        existing = {
            r["relname"]
            for r in tx.execute(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = CAST('hub_history' AS regclass)"
            )
        }
        for start in sorted(months):
            name = _partition_name(start)
            if name not in existing:
                end = _month_start(_add_month_us(start))
                tx.execute(
                    f"CREATE TABLE {name} PARTITION OF hub_history "
                    f"FOR VALUES FROM ({start}) TO ({end})"
                )
            self._parts.add(start)

    # -- temporal provision (POST /temporal/…) ----------------------------------------------
    def provide(
        self,
        tenant: str,
        eid: str,
        types: list[str] | None,
        attrs: dict[str, list[dict[str, Any]]],
        now: str,
        must_exist: bool = False,
    ) -> bool:
        """Add instances to an entity's history; True when the temporal entity is new."""
        now_us = iso_us(now)
        with self.store.transaction() as tx:
            row = tx.one(
                "SELECT tid, types FROM hub_tentities WHERE tenant = ? AND id = ?", [tenant, eid]
            )
            created = row is None
            if row is None:
                if must_exist or not types:
                    raise NotFound(f"entity '{eid}' has no temporal evolution")
                j = "CAST(? AS jsonb)" if self.pg else "?"
                tx.execute(
                    "INSERT INTO hub_tentities (tenant, id, types, created_at) "
                    f"VALUES (?, ?, {j}, ?)",
                    [tenant, eid, _dumps(types), now],
                )
                row = tx.one(
                    "SELECT tid, types FROM hub_tentities WHERE tenant = ? AND id = ?",
                    [tenant, eid],
                )
                assert row is not None
            elif types:
                old = row["types"] if self.pg else json.loads(row["types"])
                merged = list(dict.fromkeys([*old, *types]))
                if merged != old:
                    j = "CAST(? AS jsonb)" if self.pg else "?"
                    tx.execute(
                        f"UPDATE hub_tentities SET types = {j} WHERE tid = ?",
                        [_dumps(merged), row["tid"]],
                    )
            tid = row["tid"]
            wanted = {
                (tid, name, inst.get("datasetId", "")): inst["type"]
                for name, insts in attrs.items()
                for inst in insts
            }
            sids = self._sids(tx, wanted)
            rows = []
            for name, insts in attrs.items():
                for inst in insts:
                    key = (tid, name, inst.get("datasetId", ""))
                    r = instance_row(inst, wanted[key], now_us, now_us)
                    rows.append((sids[key], r[0], _ids.getrandbits(62), *r[1:]))
            if rows:
                self.insert(tx, rows)
        return created

    def delete_entity(self, tenant: str, eid: str) -> None:
        with self.store.transaction() as tx:
            row = tx.one("SELECT tid FROM hub_tentities WHERE tenant = ? AND id = ?", [tenant, eid])
            if row is None:
                raise NotFound(f"entity '{eid}' has no temporal evolution")
            sids = [
                r["sid"]
                for r in tx.execute("SELECT sid FROM hub_tseries WHERE tid = ?", [row["tid"]])
            ]
            self._drop_series(tx, sids)
            tx.execute("DELETE FROM hub_tentities WHERE tid = ?", [row["tid"]])

    def _drop_series(self, tx: Tx, sids: list[int]) -> None:
        for chunk in _chunks(sids):
            marks = ",".join("?" * len(chunk))
            tx.execute(f"DELETE FROM hub_history WHERE sid IN ({marks})", chunk)
            tx.execute(f"DELETE FROM hub_rollup WHERE sid IN ({marks})", chunk)
            tx.execute(f"DELETE FROM hub_tseries WHERE sid IN ({marks})", chunk)

    def _series_of(
        self, tx: Tx, tenant: str, eid: str, attr: str, ds: str | None
    ) -> list[dict[str, Any]]:
        sql = (
            "SELECT s.sid, s.kind, s.ds FROM hub_tseries s JOIN hub_tentities t ON t.tid = s.tid "
            "WHERE t.tenant = ? AND t.id = ? AND s.attr = ?"
        )
        params: list[Any] = [tenant, eid, attr]
        if ds is not None:
            sql += " AND s.ds = ?"
            params.append(ds)
        return tx.execute(sql, params)

    def delete_attribute(
        self, tenant: str, eid: str, attr: str, ds: str | None, delete_all: bool
    ) -> None:
        with self.store.transaction() as tx:
            series = self._series_of(tx, tenant, eid, attr, None if delete_all else (ds or ""))
            if not series:
                raise NotFound(f"entity '{eid}' has no temporal evolution of '{attr}'")
            self._drop_series(tx, [s["sid"] for s in series])

    def _find_instance(
        self, tx: Tx, tenant: str, eid: str, attr: str, iid: int
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        for s in self._series_of(tx, tenant, eid, attr, None):
            row = tx.one(
                "SELECT sid, ts, iid, rec FROM hub_history WHERE sid = ? AND iid = ?",
                [s["sid"], iid],
            )
            if row is not None:
                return s, row
        raise NotFound(f"entity '{eid}' has no instance {instance_id(iid)} of '{attr}'")

    def delete_instance(self, tenant: str, eid: str, attr: str, iid: int) -> None:
        with self.store.transaction() as tx:
            _, row = self._find_instance(tx, tenant, eid, attr, iid)
            tx.execute(
                "DELETE FROM hub_history WHERE sid = ? AND ts = ? AND iid = ?",
                [row["sid"], row["ts"], iid],
            )

    def modify_instance(
        self, tenant: str, eid: str, attr: str, iid: int, inst: dict[str, Any], now: str
    ) -> None:
        with self.store.transaction() as tx:
            s, row = self._find_instance(tx, tenant, eid, attr, iid)
            r = instance_row(inst, s["kind"], row["rec"], iso_us(now))
            if self.pg:
                self._ensure_partitions(tx, [r[0]])
            tx.execute(
                "DELETE FROM hub_history WHERE sid = ? AND ts = ? AND iid = ?",
                [row["sid"], row["ts"], iid],
            )
            tx.execute(
                "INSERT INTO hub_history (sid, ts, iid, obs, rec, mod, deleted, num, val, meta) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [row["sid"], r[0], iid, *r[1:]],
            )

    # -- queries ---------------------------------------------------------------------------
    def entities(
        self,
        tenant: str,
        *,
        ids: list[str] | None = None,
        id_pattern: str | None = None,
        types: list[list[str]] | None = None,
        current: tuple[str, list[Any]] | None = None,
        attrs: list[str] | None = None,
        limit: int = 20,
        offset: int = 0,
        count: bool = False,
    ) -> tuple[list[TemporalEntity], int | None]:
        """Entities with history, selected by id, idPattern and types; ``current`` is a
        condition on the entity's present state (``hub_entities e``: q and geo-queries)."""
        sql = ["t.tenant = ?"]
        params: list[Any] = [tenant]
        if ids:
            sql.append(f"t.id IN ({','.join('?' * len(ids))})")
            params.extend(ids)
        if id_pattern:
            sql.append("t.id ~ ?" if self.pg else "regexp(?, t.id) = 1")
            params.append(id_pattern)
        if types:
            ors = []
            for conj in types:
                ands = []
                for t in conj:
                    if self.pg:
                        ands.append("t.types @> CAST(? AS jsonb)")
                        params.append(_dumps([t]))
                    else:
                        ands.append("EXISTS (SELECT 1 FROM json_each(t.types) WHERE value = ?)")
                        params.append(t)
                ors.append("(" + " AND ".join(ands) + ")")
            sql.append("(" + " OR ".join(ors) + ")")
        if attrs:
            sql.append(
                "EXISTS (SELECT 1 FROM hub_tseries s WHERE s.tid = t.tid AND s.attr IN "
                f"({','.join('?' * len(attrs))}))"
            )
            params.extend(attrs)
        if current is not None:
            sql.append(
                "EXISTS (SELECT 1 FROM hub_entities e WHERE e.tenant = t.tenant AND e.id = t.id "
                f"AND ({current[0]}))"
            )
            params.extend(current[1])
        where = " AND ".join(sql)
        with self.store.transaction(write=False) as tx:
            rows = tx.execute(
                "SELECT t.tid, t.id, t.types, t.created_at, t.deleted_at FROM hub_tentities t "
                f"WHERE {where} ORDER BY t.tid LIMIT ? OFFSET ?",
                [*params, limit, offset],
            )
            total = None
            if count:
                total = tx.execute(
                    f"SELECT count(*) AS n FROM hub_tentities t WHERE {where}", params
                )[0]["n"]
        out = [
            TemporalEntity(
                r["tid"],
                r["id"],
                r["types"] if self.pg else json.loads(r["types"]),
                r["created_at"],
                r["deleted_at"],
            )
            for r in rows
        ]
        return out, total

    def entity(self, tenant: str, eid: str) -> TemporalEntity:
        found, _ = self.entities(tenant, ids=[eid], limit=1)
        if not found:
            raise NotFound(f"entity '{eid}' has no temporal evolution")
        return found[0]

    def _load_series(self, tx: Tx, ents: list[TemporalEntity], attrs: list[str] | None) -> None:
        by_tid = {e.tid: e for e in ents}
        for chunk in _chunks(list(by_tid)):
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT sid, tid, attr, ds, kind FROM hub_tseries WHERE tid IN ({marks})"
            params: list[Any] = list(chunk)
            if attrs:
                sql += f" AND attr IN ({','.join('?' * len(attrs))})"
                params.extend(attrs)
            for r in tx.execute(sql + " ORDER BY sid", params):
                by_tid[r["tid"]].series.append(Series(r["sid"], r["attr"], r["ds"], r["kind"]))

    def instances(self, ents: list[TemporalEntity], tq: TemporalQuery) -> tuple[int, int] | None:
        """Fill each entity's series with its instances (oldest first).

        A series holds at most ``tq.limit`` instances (``lastN`` ones when given, counted
        from the end); when one is cut short, every series is cut at the same time so the
        page covers one interval.  Returns that interval (µs) when the page is partial."""
        desc = tq.last_n is not None
        n = min(tq.last_n or tq.limit, tq.limit)
        col = tq.column
        cond, cparams = tq.where()
        with self.store.transaction(write=False) as tx:
            self._load_series(tx, ents, tq.attrs)
            for e in ents:
                for s in e.series:
                    rows = tx.execute(
                        f"SELECT ts, iid, obs, rec, mod, deleted, val, meta FROM hub_history "
                        f"WHERE sid = ? AND {cond} ORDER BY {col} {'DESC' if desc else 'ASC'}, "
                        "iid LIMIT ?",
                        [s.sid, *cparams, n + 1],
                    )
                    # lastN itself is no cut: only the page size is
                    s.truncated = len(rows) > n and (tq.last_n is None or tq.last_n > n)
                    rows = rows[:n]
                    if desc:
                        rows.reverse()
                    s.instances = rows
        cut: int | None = None
        for e in ents:
            for s in e.series:
                if s.truncated and s.instances:
                    edge = s.instances[0 if desc else -1][col]
                    cut = edge if cut is None else (max(cut, edge) if desc else min(cut, edge))
        span = None
        if cut is not None:
            for e in ents:
                for s in e.series:
                    s.instances = [
                        r for r in s.instances if (r[col] >= cut if desc else r[col] <= cut)
                    ]
            times = [r[col] for e in ents for s in e.series for r in s.instances]
            lo = min(times) if times else cut
            hi = max(times) if times else cut
            span = (lo, hi)
        for e in ents:
            for s in e.series:
                s.instances = [self._instance(s, r) for r in s.instances]
            e.series = [s for s in e.series if s.instances]
        return span

    def _instance(self, s: Series, r: dict[str, Any]) -> dict[str, Any]:
        meta = json.loads(r["meta"]) if r["meta"] else {}
        kind = meta.pop("type", s.kind)
        key = VALUE_KEY.get(kind, "value")
        inst: dict[str, Any] = {"type": kind}
        if r["deleted"]:
            inst[key] = "urn:ngsi-ld:null"
            inst["deletedAt"] = us_iso(r["mod"])
        else:
            inst[key] = json.loads(r["val"]) if r["val"] is not None else None
        if r["obs"]:
            inst["observedAt"] = us_iso(r["ts"])
        if s.ds:
            inst["datasetId"] = s.ds
        inst.update(meta)
        inst["instanceId"] = instance_id(r["iid"])
        inst["createdAt"] = us_iso(r["rec"])
        inst["modifiedAt"] = us_iso(r["mod"])
        return inst

    def aggregate(self, ents: list[TemporalEntity], tq: TemporalQuery, ag: Aggregation) -> None:
        """Fill each series' ``aggregates``: ``{method: [[value, start, end], ...]}``."""
        col = tq.column
        origin_us = to_us(ag.origin)
        cond, cparams = tq.where()
        cond += f" AND {col} >= ?"
        cparams.append(origin_us)
        distinct = "distinctCount" in ag.methods
        with self.store.transaction(write=False) as tx:
            if self.pg:  # one long analysis: parallel workers pay here
                tx.execute("SET LOCAL max_parallel_workers_per_gather = 2")
            self._load_series(tx, ents, tq.attrs)
            series = {s.sid: s for e in ents for s in e.series}
            partials: dict[int, dict[int, Sequence[Any]]] = {sid: {} for sid in series}
            ms = set(ag.methods)
            # only the partial sums the asked methods need (the others stay NULL)
            s_ = "sum(num)" if ms & {"sum", "avg", "stddev"} else "NULL"
            ss_ = "sum(num * num)" if ms & {"sumsq", "stddev"} else "NULL"
            mn_ = "min(num)" if "min" in ms else "NULL"
            mx_ = "max(num)" if "max" in ms else "NULL"
            dc_ = "count(DISTINCT val)" if distinct else "0"
            bucket, bparams = self._bucket_sql(col, ag, origin_us)
            # SQLite sorts rows to group them: one series at a time sorts far less
            # (rows already come in time order); PostgreSQL hashes all series at once
            for chunk in _chunks(list(series)) if self.pg else ([sid] for sid in series):
                marks = ",".join("?" * len(chunk))
                rows = tx.tuples(
                    f"SELECT sid, b, count(*) AS n, count(num) AS nn, {s_} AS s, "
                    f"{ss_} AS ss, {mn_} AS mn, {mx_} AS mx, {dc_} AS dc FROM "
                    f"(SELECT sid, {bucket} AS b, num{', val' if distinct else ''} "
                    f"FROM hub_history WHERE sid IN ({marks}) AND deleted = 0 AND {cond}) AS h "
                    + ("GROUP BY sid, b" if self.pg else "GROUP BY b"),  # SQLite: one sid
                    [*bparams, *chunk, *cparams],
                )
                for sid, b, *vals in rows:
                    partials[sid][int(b)] = vals
            if col == "ts":  # periods already rolled up by retention
                rcond, rparams = TemporalQuery(
                    timeprop="createdAt", lo=tq.lo, hi=tq.hi, lo_strict=tq.lo_strict
                ).where()
                rcond = rcond.replace("rec", "ts")
                rbucket, rbparams = self._bucket_sql("ts", ag, origin_us)
                for chunk in _chunks(list(series)):
                    marks = ",".join("?" * len(chunk))
                    for sid, b, *vals in tx.tuples(
                        "SELECT sid, b, CAST(sum(n) AS BIGINT) AS n, "
                        "CAST(sum(nn) AS BIGINT) AS nn, sum(s) AS s, "
                        "sum(ss) AS ss, min(mn) AS mn, max(mx) AS mx, NULL AS dc FROM "
                        f"(SELECT sid, {rbucket} AS b, n, nn, s, ss, mn, mx FROM hub_rollup "
                        f"WHERE sid IN ({marks}) AND {rcond} AND ts >= ?) AS r "
                        "GROUP BY sid, b",
                        [*rbparams, *chunk, *rparams, origin_us],
                    ):
                        cur = partials[sid].get(int(b))
                        partials[sid][int(b)] = vals if cur is None else _combine(cur, vals)
        bounds: dict[int, str] = {}

        def bound(b: int) -> str:
            text = bounds.get(b)
            if text is None:
                if ag.period.calendar:
                    text = bounds[b] = _iso(ag.period.start(ag.origin, b))
                else:
                    text = bounds[b] = us_iso(origin_us + b * ag.period.us)
            return text

        whole = ag.period.us >= WHOLE_US  # one bucket: the caller knows where it ends
        for sid, s in series.items():
            out: dict[str, list[list[Any]]] = {m: [] for m in ag.methods}
            for b in sorted(partials[sid]):
                n, nn, total, sq, mn, mx, dc = partials[sid][b]
                span = [bound(b), bound(b if whole else b + 1)]
                for m in ag.methods:
                    value = _method(m, n, nn, total, sq, mn, mx, dc)
                    if value is not None:
                        out[m].append([value, *span])
            s.aggregates = {m: v for m, v in out.items()}
        for e in ents:
            e.series = [s for s in e.series if any(s.aggregates.values())]

    def _bucket_sql(self, col: str, ag: Aggregation, origin_us: int) -> tuple[str, list[Any]]:
        p = ag.period
        if not p.calendar:
            return f"(({col} - CAST(? AS BIGINT)) / CAST(? AS BIGINT))", [origin_us, p.us]
        off = ag.origin.utcoffset() or timedelta(0)
        o = ag.origin
        month0 = o.year * 12 + o.month - 1
        rest = o.strftime("%d %H:%M:%S.") + f"{o.microsecond // 1000:03d}"
        if self.pg:
            local = (
                "to_char(to_timestamp(" + col + " / 1000000.0 + ?) AT TIME ZONE 'UTC', "
                "'YYYY-MM-DD HH24:MI:SS.MS')"
            )
            expr = (
                "((CAST(substr(lt, 1, 4) AS INTEGER) * 12 + CAST(substr(lt, 6, 2) AS INTEGER) "
                "- 1 - ? - CAST(substr(lt, 9) < ? AS INTEGER)) / ?)"
            )
        else:
            local = f"strftime('%Y-%m-%d %H:%M:%f', {col} / 1000000.0 + ?, 'unixepoch')"
            expr = (
                "((CAST(substr(lt, 1, 4) AS INTEGER) * 12 + CAST(substr(lt, 6, 2) AS INTEGER) "
                "- 1 - ? - (substr(lt, 9) < ?)) / ?)"
            )
        # lt is computed once per row through a one-row lateral select
        sql = expr.replace("lt", f"({local})")
        secs = off.total_seconds()
        return sql, [secs, secs, month0, secs, rest, p.months]

    # -- retention -------------------------------------------------------------------------
    def prune(
        self,
        tenant: str | None,
        type_match: str | None,
        raw_before_us: int,
        rollup_period_us: int | None,
        rollup_before_us: int | None,
    ) -> tuple[int, int]:
        """Roll raw instances older than ``raw_before_us`` up into periods of
        ``rollup_period_us`` (when given) and delete them; delete rollups older than
        ``rollup_before_us``.  Returns (raw instances removed, rollup rows removed)."""
        removed = dropped = 0
        with self.store.transaction() as tx:
            sids = self._matching_series(tx, tenant, type_match)
            for chunk in _chunks(sids):
                marks = ",".join("?" * len(chunk))
                if rollup_period_us:
                    self._roll_up(tx, chunk, raw_before_us, rollup_period_us)
                n = tx.execute(
                    f"SELECT count(*) AS n FROM hub_history WHERE sid IN ({marks}) AND ts < ?",
                    [*chunk, raw_before_us],
                )[0]["n"]
                tx.execute(
                    f"DELETE FROM hub_history WHERE sid IN ({marks}) AND ts < ?",
                    [*chunk, raw_before_us],
                )
                removed += int(n)
                if rollup_before_us is not None:
                    m = tx.execute(
                        f"SELECT count(*) AS n FROM hub_rollup WHERE sid IN ({marks}) AND ts < ?",
                        [*chunk, rollup_before_us],
                    )[0]["n"]
                    tx.execute(
                        f"DELETE FROM hub_rollup WHERE sid IN ({marks}) AND ts < ?",
                        [*chunk, rollup_before_us],
                    )
                    dropped += int(m)
        return removed, dropped

    def _matching_series(self, tx: Tx, tenant: str | None, type_match: str | None) -> list[int]:
        rows = tx.execute(
            "SELECT s.sid, t.tenant, t.types FROM hub_tseries s "
            "JOIN hub_tentities t ON t.tid = s.tid" + (" WHERE t.tenant = ?" if tenant else ""),
            [tenant] if tenant else [],
        )
        out = []
        for r in rows:
            types = r["types"] if self.pg else json.loads(r["types"])
            if type_match is None or any(type_matches(t, type_match) for t in types):
                out.append(r["sid"])
        return out

    def _roll_up(self, tx: Tx, sids: Sequence[int], before: int, period: int) -> None:
        marks = ",".join("?" * len(sids))
        bucket = f"({ORIGIN_US} + ((ts - {ORIGIN_US}) / {period}) * {period})"
        new = tx.execute(
            f"SELECT sid, {bucket} AS b, count(*) AS n, count(num) AS nn, sum(num) AS s, "
            "sum(num * num) AS ss, min(num) AS mn, max(num) AS mx FROM hub_history "
            f"WHERE sid IN ({marks}) AND ts < ? AND ts >= {ORIGIN_US} AND deleted = 0 "
            "AND obs = 1 GROUP BY sid, b",
            [*sids, before],
        )
        if not new:
            return
        tx.executemany(
            "INSERT INTO hub_rollup (sid, ts, period, n, nn, s, ss, mn, mx) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (sid, ts) DO UPDATE SET "
            "n = hub_rollup.n + excluded.n, nn = hub_rollup.nn + excluded.nn, "
            "s = coalesce(hub_rollup.s, 0) + coalesce(excluded.s, 0), "
            "ss = coalesce(hub_rollup.ss, 0) + coalesce(excluded.ss, 0), "
            "mn = CASE WHEN hub_rollup.mn IS NULL OR excluded.mn < hub_rollup.mn "
            "THEN excluded.mn ELSE hub_rollup.mn END, "
            "mx = CASE WHEN hub_rollup.mx IS NULL OR excluded.mx > hub_rollup.mx "
            "THEN excluded.mx ELSE hub_rollup.mx END",
            [
                (r["sid"], int(r["b"]), period, r["n"], r["nn"], r["s"], r["ss"], r["mn"], r["mx"])
                for r in new
            ],
        )


def _differs(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Two instances differ by more than their system times."""
    if a.get("value") != b.get("value") or a.get("observedAt") != b.get("observedAt"):
        return True  # the usual case, decided at once
    if len(a.keys() - _SYSTEM) != len(b.keys() - _SYSTEM):
        return True
    return any(a.get(k) != b.get(k) for k in a if k not in _SYSTEM)


def type_matches(iri: str, wanted: str) -> bool:
    """A retention rule's type matches the full IRI or its last segment."""
    if iri == wanted:
        return True
    tail = iri.rsplit("/", 1)[-1].rsplit("#", 1)[-1]
    return tail == wanted


def _combine(a: Sequence[Any], b: Sequence[Any]) -> list[Any]:
    def lo(x: Any, y: Any) -> Any:
        return y if x is None else x if y is None else min(x, y)

    def hi(x: Any, y: Any) -> Any:
        return y if x is None else x if y is None else max(x, y)

    def add(x: Any, y: Any) -> Any:
        return y if x is None else x if y is None else x + y

    dc = None if a[6] is None or b[6] is None else a[6] + b[6]
    return [
        a[0] + b[0],
        a[1] + b[1],
        add(a[2], b[2]),
        add(a[3], b[3]),
        lo(a[4], b[4]),
        hi(a[5], b[5]),
        dc,
    ]


def _method(m: str, n: int, nn: int, total: Any, sq: Any, mn: Any, mx: Any, dc: Any) -> Any:
    if m == "totalCount":
        return int(n)
    if m == "distinctCount":
        return None if dc is None else int(dc)
    if not nn:
        return None
    if m == "sum":
        return float(total)
    if m == "avg":
        return float(total) / nn
    if m == "min":
        return float(mn)
    if m == "max":
        return float(mx)
    if m == "sumsq":
        return float(sq)
    if m == "stddev":  # sample standard deviation; 0 for a single value
        if nn < 2:
            return 0.0
        var = (float(sq) - float(total) ** 2 / nn) / (nn - 1)
        return math.sqrt(max(var, 0.0))
    raise AssertionError(m)


def _iso(dt: datetime) -> str:
    return us_iso(to_us(dt))


def _month_start(ts: int) -> int:
    dt = EPOCH + timedelta(microseconds=ts)
    start = datetime(dt.year, dt.month, 1, tzinfo=UTC)
    return to_us(start)


def _add_month_us(start: int) -> int:
    dt = EPOCH + timedelta(microseconds=start)
    nxt = datetime(dt.year + (dt.month == 12), dt.month % 12 + 1, 1, tzinfo=UTC)
    return to_us(nxt)


def _partition_name(start: int) -> str:
    dt = EPOCH + timedelta(microseconds=start)
    return f"hub_history_{dt.year:04d}{dt.month:02d}" if dt.year >= 0 else f"hub_history_n{start}"


def _chunks(items: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), CHUNK):
        yield items[i : i + CHUNK]
