"""The NGSI-LD temporal API (``/ngsi-ld/v1/temporal``): history of entities, queried
in the normalized, simplified (``temporalValues``) or aggregated (``aggregatedValues``)
representation, and temporal provision (create, append, modify and delete instances).

Entities are selected by id, idPattern and type over everything that has history
(deleted entities included); ``q`` and geo-queries test the entity's present state.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from sencity.auth.roles import READERS, WRITERS
from sencity.core.routing import Request, Response, Route
from sencity.errors import BadRequest
from sencity.hub import geo, qlang
from sencity.hub.api import (
    BASE,
    HubService,
    _accept,
    _body,
    _csv,
    _paging,
    _read_context,
    _respond,
    _svc,
    parse_types,
)
from sencity.hub.durations import (
    EPOCH,
    ORIGIN_US,
    Period,
    offset_of,
    parse_duration,
    parse_time,
    us_iso,
)
from sencity.hub.ldcontext import ActiveContext
from sencity.hub.model import VALUE_KEY, check_id, check_name, expand_types, parse_instance
from sencity.hub.render import Options, _instance
from sencity.hub.store import LOCATION_IRI
from sencity.hub.temporal import (
    AGGR_METHODS,
    TIME_COLUMNS,
    WHOLE_US,
    Aggregation,
    Series,
    TemporalEntity,
    TemporalQuery,
    TemporalStore,
    parse_instance_id,
)
from sencity.store.base import utcnow

T = f"{BASE}/temporal"
#: key of each attribute kind's list in the simplified (temporalValues) representation
VALUES_KEY = {
    "Property": "values",
    "GeoProperty": "values",
    "Relationship": "objects",
    "LanguageProperty": "languageMaps",
    "JsonProperty": "jsons",
    "VocabProperty": "vocabs",
    "ListProperty": "valueLists",
    "ListRelationship": "objectLists",
}
TEMPORAL_OPTIONS = {"temporalValues", "aggregatedValues", "sysAttrs", "normalized"}
ARGS = (
    "options",
    "format",
    "timeproperty",
    "timerel",
    "timeAt",
    "endTimeAt",
    "lastN",
    "attrs",
    "aggrMethods",
    "aggrPeriodDuration",
)
WHOLE = Period("P0D", us=WHOLE_US)  # no aggrPeriodDuration: one bucket for the interval


class TemporalService:
    def __init__(self, store: TemporalStore, page_size: int) -> None:
        self.store = store
        self.page_size = page_size


def _tsvc(req: Request) -> TemporalService:
    svc: TemporalService = req.platform.state["temporal"]
    return svc


# -- parameters -----------------------------------------------------------------------------
def temporal_query(
    args: dict[str, str | None], ctx: ActiveContext, page_size: int
) -> tuple[TemporalQuery, Aggregation | None, set[str]]:
    """timerel/timeAt/endTimeAt/timeproperty/lastN/attrs/options/aggr*: 400 when wrong."""
    opts = set(_csv(args.get("options")))
    bad = opts - TEMPORAL_OPTIONS - {"keyValues", "simplified", "concise"}
    if bad:
        raise BadRequest(f"unknown options {sorted(bad)}; known: {sorted(TEMPORAL_OPTIONS)}")
    fmt = args.get("format")
    if fmt in ("temporalValues", "simplified", "keyValues"):
        opts.add("temporalValues")
    elif fmt == "aggregatedValues":
        opts.add("aggregatedValues")
    elif fmt not in (None, "normalized"):
        raise BadRequest("format must be normalized, temporalValues or aggregatedValues")
    if {"simplified", "keyValues"} & opts:
        opts.add("temporalValues")
    if {"temporalValues", "aggregatedValues"} <= opts:
        raise BadRequest("temporalValues and aggregatedValues cannot be asked together")
    tq = TemporalQuery(limit=page_size)
    prop = args.get("timeproperty") or "observedAt"
    if prop not in TIME_COLUMNS:
        raise BadRequest(f"timeproperty must be one of {', '.join(TIME_COLUMNS)}, got '{prop}'")
    tq.timeprop = prop
    timerel = args.get("timerel")
    at, end = args.get("timeAt"), args.get("endTimeAt")
    if timerel is None:
        if at or end:
            raise BadRequest("timeAt and endTimeAt need timerel (before, after or between)")
    elif timerel == "before":
        tq.hi = parse_time(at, "timeAt")
    elif timerel == "after":
        tq.lo, tq.lo_strict = parse_time(at, "timeAt"), True
    elif timerel == "between":
        tq.lo = parse_time(at, "timeAt")
        if not end:
            raise BadRequest("timerel=between needs endTimeAt")
        tq.hi = parse_time(end, "endTimeAt")
        if tq.hi <= tq.lo:
            raise BadRequest("endTimeAt must be later than timeAt")
    else:
        raise BadRequest(f"timerel must be before, after or between, got '{timerel[:30]}'")
    last_n = args.get("lastN")
    if last_n is not None:
        if not last_n.isdigit() or int(last_n) < 1:
            raise BadRequest(f"lastN must be a positive integer, got '{last_n[:30]}'")
        tq.last_n = int(last_n)
    attrs = _csv(args.get("attrs"))
    if attrs:
        tq.attrs = [ctx.expand(check_name(a, "attrs")) for a in attrs]
    ag = None
    methods = _csv(args.get("aggrMethods"))
    if "aggregatedValues" in opts:
        if not methods:
            raise BadRequest(
                f"aggregatedValues needs aggrMethods (any of {', '.join(AGGR_METHODS)})"
            )
        unknown = [m for m in methods if m not in AGGR_METHODS]
        if unknown:
            raise BadRequest(f"unknown aggrMethods {unknown}; known: {', '.join(AGGR_METHODS)}")
        text = args.get("aggrPeriodDuration")
        period = WHOLE if text in (None, "P0D", "PT0S") else parse_duration(text)
        if tq.lo is not None:
            origin = (EPOCH + timedelta(microseconds=tq.lo)).astimezone(offset_of(at))
        else:
            origin = EPOCH + timedelta(microseconds=ORIGIN_US)
        ag = Aggregation(list(dict.fromkeys(methods)), period, origin)
    elif methods or args.get("aggrPeriodDuration"):
        raise BadRequest("aggrMethods and aggrPeriodDuration need options=aggregatedValues")
    return tq, ag, opts


def _args(req: Request) -> dict[str, str | None]:
    return {n: req.arg(n) for n in ARGS}


# -- rendering ------------------------------------------------------------------------------
def _render(
    e: TemporalEntity,
    ctx: ActiveContext,
    opts: set[str],
    tq: TemporalQuery,
    ag: Aggregation | None,
    span_end: str | None,
) -> dict[str, Any]:
    types = [ctx.compact(t) for t in e.types]
    out: dict[str, Any] = {"id": e.id, "type": types[0] if len(types) == 1 else types}
    sys_attrs = "sysAttrs" in opts
    o = Options(format="normalized", sys_attrs=sys_attrs)
    by_attr: dict[str, list[Series]] = {}
    for s in e.series:
        by_attr.setdefault(s.attr, []).append(s)
    for attr, series in by_attr.items():
        short = ctx.compact(attr)
        if ag is not None:
            items = []
            for s in series:
                item: dict[str, Any] = {"type": s.kind}
                if s.ds:
                    item["datasetId"] = s.ds
                for m, values in s.aggregates.items():
                    if ag.period is WHOLE and span_end:
                        values = [[v[0], v[1], span_end] for v in values]
                    item[m] = values
                items.append(item)
            out[short] = items[0] if len(items) == 1 else items
        elif "temporalValues" in opts:
            items = []
            for s in series:
                key = VALUES_KEY.get(s.kind, "values")
                vk = VALUE_KEY.get(s.kind, "value")
                item = {"type": s.kind}
                if s.ds:
                    item["datasetId"] = s.ds
                item[key] = [
                    [i.get(vk), i.get(tq.timeprop) or i.get("modifiedAt")] for i in s.instances
                ]
                items.append(item)
            out[short] = items[0] if len(items) == 1 else items
        else:
            insts = []
            for s in series:
                for i in s.instances:
                    deleted_at = i.pop("deletedAt", None)
                    r = _instance(i, ctx, o)
                    if deleted_at:
                        r["deletedAt"] = deleted_at
                    insts.append(r)
            out[short] = insts
    if sys_attrs:
        out["createdAt"] = e.created_at
    if e.deleted_at:
        out["deletedAt"] = e.deleted_at
    return out


def _answer(
    req: Request,
    ctx: ActiveContext,
    ents: list[TemporalEntity],
    tq: TemporalQuery,
    ag: Aggregation | None,
    opts: set[str],
    headers: dict[str, str],
    single: bool,
) -> Response:
    mtype = _accept(req, geojson=False)
    store = _tsvc(req).store
    status = 200
    span_end = None
    if ag is not None:
        store.aggregate(ents, tq, ag)
        span_end = us_iso(tq.hi) if tq.hi is not None else utcnow()
    else:
        span = store.instances(ents, tq)
        if span is not None:
            status = 206
            size = str(tq.last_n) if tq.last_n is not None else "*"
            headers["Content-Range"] = f"date-time {us_iso(span[0])}-{us_iso(span[1])}/{size}"
    body: Any = [_render(e, ctx, opts, tq, ag, span_end) for e in ents]
    if single:
        body = body[0]
    return _respond(req, ctx, mtype, body, status=status, headers=headers)


# -- handlers -------------------------------------------------------------------------------
def retrieve_temporal(req: Request) -> Response:
    svc, tsvc = _svc(req), _tsvc(req)
    ctx = _read_context(req)
    tenant = svc.tenant(req)
    eid = check_id(req.path_params["entity_id"], "entity id")
    tq, ag, opts = temporal_query(_args(req), ctx, tsvc.page_size)
    ent = tsvc.store.entity(tenant, eid)
    return _answer(req, ctx, [ent], tq, ag, opts, {}, single=True)


def query_temporal(req: Request) -> Response:
    svc, tsvc = _svc(req), _tsvc(req)
    ctx = _read_context(req)
    tq, ag, opts = temporal_query(_args(req), ctx, tsvc.page_size)
    return _query(req, svc, tsvc, ctx, tq, ag, opts, _selection(req, ctx))


def _selection(req: Request, ctx: ActiveContext) -> dict[str, Any]:
    return {
        "type": req.arg("type"),
        "id": _csv(req.arg("id")),
        "idPattern": req.arg("idPattern"),
        "q": req.arg("q"),
        "geoq": geo.parse_geoquery(
            req.arg("georel"), req.arg("geometry"), req.arg("coordinates"), req.arg("geoproperty")
        ),
    }


def _query(
    req: Request,
    svc: HubService,
    tsvc: TemporalService,
    ctx: ActiveContext,
    tq: TemporalQuery,
    ag: Aggregation | None,
    opts: set[str],
    sel: dict[str, Any],
) -> Response:
    tenant = svc.tenant(req)
    dialect = svc.hub.store.dialect
    types = parse_types(sel["type"], ctx) if sel["type"] else None
    ids = [check_id(i, "id") for i in sel["id"]] or None
    pattern = sel["idPattern"]
    if pattern:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise BadRequest(f"idPattern is not a valid regular expression: {exc}") from None
    conds: list[tuple[str, list[Any]]] = []
    if sel["q"]:
        conds.append(qlang.compile_q(qlang.parse(sel["q"]), dialect, ctx.expand))
    gq = sel["geoq"]
    if gq is not None:
        iri = ctx.expand(gq.geoproperty)
        conds.append(geo.geo_sql(gq, dialect, iri, iri == LOCATION_IRI))
    current = None
    if conds:
        current = (" AND ".join(f"({c})" for c, _ in conds), [p for _, ps in conds for p in ps])
    limit, offset = _paging(req, svc)
    count = req.arg("count") == "true"
    ents, total = tsvc.store.entities(
        tenant,
        ids=ids,
        id_pattern=pattern,
        types=types,
        current=current,
        attrs=tq.attrs,
        limit=limit,
        offset=offset,
        count=count,
    )
    headers: dict[str, str] = {}
    if total is not None:
        headers["NGSILD-Results-Count"] = str(total)
    return _answer(req, ctx, ents, tq, ag, opts, headers, single=False)


def post_temporal_query(req: Request) -> Response:
    """``POST /temporal/entityOperations/query``: the query in a body (temporalQ)."""
    svc, tsvc = _svc(req), _tsvc(req)
    body, ctx = _body(req)
    if not isinstance(body, dict) or body.get("type") != "Query":
        raise BadRequest('the body must be a Query object ({"type": "Query", ...})')
    tq_body = body.get("temporalQ") or {}
    if not isinstance(tq_body, dict):
        raise BadRequest("'temporalQ' must be an object")
    args: dict[str, str | None] = {
        k: (str(v) if v is not None else None) for k, v in tq_body.items() if isinstance(k, str)
    }
    attrs = body.get("attrs")
    if attrs is not None:
        if not isinstance(attrs, list) or not all(isinstance(a, str) for a in attrs):
            raise BadRequest("'attrs' must be a list of attribute names")
        args["attrs"] = ",".join(attrs)
    args["options"] = req.arg("options")
    args["aggrMethods"] = req.arg("aggrMethods") or ",".join(tq_body.get("aggrMethods") or [])
    args["aggrPeriodDuration"] = req.arg("aggrPeriodDuration") or tq_body.get("aggrPeriodDuration")
    tq, ag, opts = temporal_query(args, ctx, tsvc.page_size)
    selectors = body.get("entities") or [{}]
    if not isinstance(selectors, list) or len(selectors) != 1 or not isinstance(selectors[0], dict):
        raise BadRequest("'entities' must be a list of one entity selector here")
    s = selectors[0]
    sel = {
        "type": s.get("type"),
        "id": [s["id"]] if s.get("id") else [],
        "idPattern": s.get("idPattern"),
        "q": body.get("q"),
        "geoq": geo.GeoQuery.from_geoq(body["geoQ"]) if body.get("geoQ") is not None else None,
    }
    return _query(req, svc, tsvc, ctx, tq, ag, opts, sel)


def _instances(
    body: dict[str, Any], ctx: ActiveContext, where: str
) -> dict[str, list[dict[str, Any]]]:
    attrs: dict[str, list[dict[str, Any]]] = {}
    for name, raw in body.items():
        if name in ("id", "type", "@context", "scope", "createdAt", "modifiedAt"):
            continue
        check_name(name, where)
        items = raw if isinstance(raw, list) else [raw]
        if not items:
            raise BadRequest(f"{where}: attribute '{name}' has no instances")
        attrs[ctx.expand(name)] = [
            parse_instance(name, i, ctx, f"{where}: attribute '{name}'[{n}]")
            for n, i in enumerate(items)
        ]
    return attrs


def create_temporal(req: Request) -> Response:
    svc, tsvc = _svc(req), _tsvc(req)
    body, ctx = _body(req)
    if not isinstance(body, dict):
        raise BadRequest("a temporal entity must be a JSON object")
    eid = check_id(body.get("id"), "id")
    if "type" not in body:
        raise BadRequest(f"entity {eid}: 'type' is required")
    types = expand_types(body["type"], ctx)
    attrs = _instances(body, ctx, f"entity {eid}")
    tenant = svc.tenant(req, create=True)
    created = tsvc.store.provide(tenant, eid, types, attrs, utcnow())
    if created:
        return Response(status=201, headers={"Location": f"{T}/entities/{eid}"})
    return Response(status=204)


def append_temporal(req: Request) -> Response:
    svc, tsvc = _svc(req), _tsvc(req)
    body, ctx = _body(req)
    eid = check_id(req.path_params["entity_id"], "entity id")
    if not isinstance(body, dict) or not body:
        raise BadRequest("the body must be an object of attributes with their instances")
    attrs = _instances(body, ctx, f"entity {eid}")
    tsvc.store.provide(svc.tenant(req), eid, None, attrs, utcnow(), must_exist=True)
    return Response(status=204)


def delete_temporal(req: Request) -> Response:
    svc, tsvc = _svc(req), _tsvc(req)
    eid = check_id(req.path_params["entity_id"], "entity id")
    tsvc.store.delete_entity(svc.tenant(req), eid)
    return Response(status=204)


def delete_temporal_attr(req: Request) -> Response:
    svc, tsvc = _svc(req), _tsvc(req)
    ctx = _read_context(req)
    eid = check_id(req.path_params["entity_id"], "entity id")
    attr = ctx.expand(check_name(req.path_params["attr"], "attribute"))
    tsvc.store.delete_attribute(
        svc.tenant(req), eid, attr, req.arg("datasetId"), req.arg("deleteAll") == "true"
    )
    return Response(status=204)


def modify_instance(req: Request) -> Response:
    svc, tsvc = _svc(req), _tsvc(req)
    body, ctx = _body(req)
    eid = check_id(req.path_params["entity_id"], "entity id")
    name = check_name(req.path_params["attr"], "attribute")
    iid = parse_instance_id(req.path_params["instance_id"])
    if not isinstance(body, dict):
        raise BadRequest("the body must be an attribute instance object")
    if name in body and len(body) == 1:
        body = body[name]
        if isinstance(body, list) and len(body) == 1:
            body = body[0]
    inst = parse_instance(name, body, ctx, f"entity {eid}: attribute '{name}'")
    tsvc.store.modify_instance(svc.tenant(req), eid, ctx.expand(name), iid, inst, utcnow())
    return Response(status=204)


def delete_instance(req: Request) -> Response:
    svc, tsvc = _svc(req), _tsvc(req)
    ctx = _read_context(req)
    eid = check_id(req.path_params["entity_id"], "entity id")
    attr = ctx.expand(check_name(req.path_params["attr"], "attribute"))
    iid = parse_instance_id(req.path_params["instance_id"])
    tsvc.store.delete_instance(svc.tenant(req), eid, attr, iid)
    return Response(status=204)


def routes() -> list[Route]:
    e = f"{T}/entities"
    one = e + "/{entity_id:path}"
    inst = one + "/attrs/{attr}/{instance_id}"
    return [
        Route("PATCH", inst, modify_instance, WRITERS, name="ngsi.temporal.instance.patch"),
        Route("DELETE", inst, delete_instance, WRITERS, name="ngsi.temporal.instance.delete"),
        Route(
            "DELETE",
            one + "/attrs/{attr}",
            delete_temporal_attr,
            WRITERS,
            name="ngsi.temporal.attr.delete",
        ),
        Route("POST", one + "/attrs", append_temporal, WRITERS, name="ngsi.temporal.append"),
        Route("POST", e, create_temporal, WRITERS, name="ngsi.temporal.create"),
        Route("GET", e, query_temporal, READERS, name="ngsi.temporal.query"),
        Route("GET", one, retrieve_temporal, READERS, name="ngsi.temporal.get"),
        Route("DELETE", one, delete_temporal, WRITERS, name="ngsi.temporal.delete"),
        Route(
            "POST",
            f"{T}/entityOperations/query",
            post_temporal_query,
            READERS,
            name="ngsi.temporal.query.post",
        ),
    ]
