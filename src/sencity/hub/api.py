"""The NGSI-LD API (``/ngsi-ld/v1``): entities, attributes, batch operations, queries,
discovery and @context management.  Handlers parse and negotiate; the model
validates; :class:`~sencity.hub.store.HubStore` reads and writes."""

from __future__ import annotations

import contextlib
import copy
import json
import uuid
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import quote, urlencode

from sencity.auth.roles import READERS, WRITERS
from sencity.core.routing import Request, Response, Route
from sencity.errors import (
    AlreadyExists,
    BadRequest,
    InvalidRequest,
    NonexistentTenant,
    NotAcceptable,
    NotFound,
    SenCityError,
    TooManyResults,
    UnsupportedMediaType,
)
from sencity.hub import geo, qlang
from sencity.hub.core_context import CORE_CONTEXT_URL
from sencity.hub.ldcontext import ActiveContext, ContextResolver, link_header, link_header_context
from sencity.hub.model import (
    NGSI_LD_NULL,
    Entity,
    check_id,
    check_name,
    expand_types,
    parse_attribute,
    parse_attributes,
    parse_entity,
    parse_instance,
    parse_scope,
)
from sencity.hub.render import FORMATS, Options, feature, render
from sencity.hub.store import LOCATION_IRI, Change, GeoFilter, HubStore, Query

BASE = "/ngsi-ld/v1"
CORE_URL = CORE_CONTEXT_URL
JSON, LD, GEO = "application/json", "application/ld+json", "application/geo+json"
MERGE_PATCH = "application/merge-patch+json"


class HubService:
    """The hub's runtime state, kept in ``platform.state["hub"]``."""

    def __init__(
        self, hub: HubStore, resolver: ContextResolver, default_limit: int, max_limit: int
    ) -> None:
        self.hub = hub
        self.resolver = resolver
        self.default_limit = default_limit
        self.max_limit = max_limit
        self._tenants: set[str] = set()

    def tenant(self, req: Request, create: bool = False) -> str:
        """The request's tenant; created on first write (NGSI-LD), 404 on read when unknown."""
        return self.ensure_tenant(req.tenant, create)

    def ensure_tenant(self, name: str, create: bool = True) -> str:
        """``name`` once it exists (made when ``create``; else NonexistentTenant)."""
        if name in self._tenants:
            return name
        store = self.hub.store
        try:
            store.get_tenant(name)
        except NonexistentTenant:
            if not create:
                raise
            with contextlib.suppress(AlreadyExists):  # created meanwhile by another request
                store.create_tenant(name)
        self._tenants.add(name)
        return name

    def upsert(
        self, tenant: str, entities: Sequence[Entity], update: bool = False
    ) -> tuple[dict[str, Change], dict[str, SenCityError]]:
        """Batch upsert in one transaction: each entity is created, or replaces the current
        one (``update``: its attributes are set on the current one, others kept).  The
        same id may come several times (applied in order).  For ingestion and the batch
        endpoint alike."""
        queue: dict[str, list[Entity]] = {}
        for e in entities:
            queue.setdefault(e.id, []).append(e)
        ids = [e.id for e in entities]
        step: dict[str, int] = {}

        def plan(eid: str, cur: Entity | None) -> Entity:
            n = step.get(eid, 0)
            step[eid] = n + 1
            new = queue[eid][n]
            if cur is None or not update:
                return new
            merged = _clone(cur)
            for t in new.types:
                if t not in merged.types:
                    merged.types.append(t)
            for name, insts in new.attrs.items():
                _set_instances(merged, name, insts)
            return merged

        if not ids:
            return {}, {}
        return self.hub.modify(self.ensure_tenant(tenant), ids, plan, begin=step.clear)


def _svc(req: Request) -> HubService:
    svc: HubService = req.platform.state["hub"]
    return svc


# -- content negotiation ---------------------------------------------------------------------
def _ctype(req: Request) -> str:
    return req.headers.get("content-type", "").split(";")[0].strip().lower()


def _body(req: Request, allowed: tuple[str, ...] = (JSON, LD)) -> tuple[Any, ActiveContext]:
    """The JSON body and the @context in force (body for ld+json, else the Link header)."""
    ctype = _ctype(req)
    if ctype not in allowed:
        raise UnsupportedMediaType(
            f"Content-Type must be one of {', '.join(allowed)}, got '{ctype or 'none'}'"
        )
    try:
        body = json.loads(req.body or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"the body is not valid JSON: {exc}") from exc
    link = req.headers.get("link")
    if ctype == LD:
        if link and "json-ld#context" in link:
            raise BadRequest(
                "with Content-Type application/ld+json the @context goes in the "
                "body, not in a Link header"
            )
        items = body if isinstance(body, list) else [body]
        ctxs = [i.get("@context") for i in items if isinstance(i, dict)]
        if not ctxs or any(c is None for c in ctxs):
            raise BadRequest("an application/ld+json body must carry an @context")
        if any(c != ctxs[0] for c in ctxs):
            raise BadRequest("all entities of a batch must have the same @context")
        return body, _svc(req).resolver.resolve(ctxs[0])
    context = link_header_context(link) if link else None
    return body, _svc(req).resolver.resolve(context)


def _read_context(req: Request) -> ActiveContext:
    link = req.headers.get("link")
    return _svc(req).resolver.resolve(link_header_context(link) if link else None)


def _accept(req: Request, geojson: bool = True) -> str:
    header = req.headers.get("accept", "").strip()
    if not header:
        return JSON
    offers = [JSON, LD, GEO] if geojson else [JSON, LD]
    best, best_q = None, 0.0
    for part in header.split(","):
        fields = [f.strip() for f in part.split(";")]
        mtype, q = fields[0].lower(), 1.0
        for f in fields[1:]:
            if f.startswith("q="):
                try:
                    q = float(f[2:])
                except ValueError:
                    q = 0.0
        cands = offers if mtype in ("*/*", "application/*") else [m for m in offers if m == mtype]
        for c in cands:
            if q > best_q or (
                q == best_q and best is not None and offers.index(c) < offers.index(best)
            ):
                best, best_q = c, q
    if best is None or best_q <= 0:
        raise NotAcceptable(f"cannot answer in '{header[:100]}'; offered: {', '.join(offers)}")
    return best


def _context_value(ctx: ActiveContext) -> Any:
    return CORE_URL if ctx.is_core_only else ctx.source


def _respond(
    req: Request,
    ctx: ActiveContext,
    mtype: str,
    body: Any,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    headers = dict(headers or {})
    if mtype == LD:
        value = _context_value(ctx)
        if isinstance(body, list):
            body = [{**b, "@context": value} for b in body]
        elif isinstance(body, dict) and body.get("type") != "FeatureCollection":
            body = {**body, "@context": value}
    else:
        src = ctx.source if not ctx.is_core_only else None
        url = src if isinstance(src, str) else CORE_URL
        headers["Link"] = ", ".join(filter(None, [headers.get("Link"), link_header(url)]))
    return Response(body, status=status, headers=headers, media_type=mtype)


# -- query parameters ------------------------------------------------------------------------
def _csv(value: str | None) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()] if value else []


def _options(req: Request) -> set[str]:
    opts = set(_csv(req.arg("options")))
    known = {
        "keyValues",
        "concise",
        "normalized",
        "sysAttrs",
        "noOverwrite",
        "replace",
        "update",
        "simplified",
    }
    bad = opts - known
    if bad:
        raise BadRequest(f"unknown options {sorted(bad)}; known: {sorted(known)}")
    return opts


def _render_options(req: Request, ctx: ActiveContext) -> Options:
    opts = _options(req)
    fmt = req.arg("format")
    if fmt is None:
        chosen = [f for f in FORMATS if f in opts] + (["keyValues"] if "simplified" in opts else [])
        if len(set(chosen)) > 1:
            raise BadRequest(f"options {chosen} are mutually exclusive")
        fmt = chosen[0] if chosen else "normalized"
    elif fmt == "simplified":
        fmt = "keyValues"
    if fmt not in FORMATS:
        raise BadRequest(f"format must be one of {', '.join(FORMATS)}")
    attrs = _csv(req.arg("attrs"))
    pick, omit = _csv(req.arg("pick")), _csv(req.arg("omit"))
    if pick and omit:
        raise BadRequest("'pick' and 'omit' cannot be used together")
    return Options(
        format=fmt,
        sys_attrs="sysAttrs" in opts,
        attrs=frozenset(ctx.expand(a) for a in attrs) if attrs else None,
        pick=frozenset(pick) if pick else None,
        omit=frozenset(omit) if omit else None,
        lang=req.arg("lang"),
    )


def _int(req: Request, name: str, default: int, minimum: int) -> int:
    raw = req.arg(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"'{name}' must be an integer, got '{raw[:30]}'") from None
    if value < minimum:
        raise BadRequest(f"'{name}' must be at least {minimum}")
    return value


# -- type expressions ------------------------------------------------------------------------
def parse_types(expr: str, ctx: ActiveContext) -> list[list[str]]:
    """A type expression (``A,B``, ``A|B``, ``(A;B)|C``) as OR-of-ANDs of expanded types."""
    pos = 0

    def err(msg: str) -> BadRequest:
        return BadRequest(f"invalid type expression at position {pos + 1}: {msg}")

    def or_expr() -> list[list[str]]:
        nonlocal pos
        terms = and_expr()
        while pos < len(expr) and expr[pos] in ",|":
            pos += 1
            terms = terms + and_expr()
        return terms

    def and_expr() -> list[list[str]]:
        nonlocal pos
        terms = atom()
        while pos < len(expr) and expr[pos] == ";":
            pos += 1
            right = atom()
            terms = [a + b for a in terms for b in right]
            if len(terms) > 64:
                raise err("expression too complex")
        return terms

    def atom() -> list[list[str]]:
        nonlocal pos
        if pos < len(expr) and expr[pos] == "(":
            pos += 1
            inner = or_expr()
            if pos >= len(expr) or expr[pos] != ")":
                raise err("expected ')'")
            pos += 1
            return inner
        start = pos
        while pos < len(expr) and expr[pos] not in ",|;()":
            pos += 1
        name = expr[start:pos].strip()
        if not name:
            raise err("expected a type name")
        check_name(name, "type")
        return [[ctx.expand(name)]]

    result = or_expr()
    if pos != len(expr):
        raise err(f"unexpected '{expr[pos]}'")
    return result


# -- entities --------------------------------------------------------------------------------
def create_entity(req: Request) -> Response:
    svc = _svc(req)
    body, ctx = _body(req)
    entity = parse_entity(body, ctx)
    tenant = svc.tenant(req, create=True)

    def plan(eid: str, cur: Entity | None) -> Entity:
        if cur is not None:
            raise AlreadyExists(f"entity {eid} already exists")
        return entity

    _, errors = svc.hub.modify(tenant, [entity.id], plan)
    if errors:
        raise errors[entity.id]
    return Response(
        status=201, headers={"Location": f"{BASE}/entities/{quote(entity.id, safe=':')}"}
    )


def _get_or_404(svc: HubService, tenant: str, eid: str) -> Entity:
    e = svc.hub.get(tenant, eid)
    if e is None:
        raise NotFound(f"entity {eid} not found")
    return e


def retrieve_entity(req: Request) -> Response:
    svc = _svc(req)
    ctx = _read_context(req)
    mtype = _accept(req)
    eid = check_id(req.path_params["entity_id"], "entity id")
    o = _render_options(req, ctx)
    e = _get_or_404(svc, svc.tenant(req), eid)
    if o.attrs is not None and not (o.attrs & set(e.attrs)):
        raise NotFound(f"entity {eid} has none of the attributes asked for")
    out = render(e, ctx, o)
    if mtype == GEO:
        gp = ctx.expand(req.arg("geometryProperty") or "location")
        out = feature(out, e, gp)
    return _respond(req, ctx, mtype, out)


def delete_entity(req: Request) -> Response:
    svc = _svc(req)
    eid = check_id(req.path_params["entity_id"], "entity id")

    def plan(i: str, cur: Entity | None) -> None:
        if cur is None:
            raise NotFound(f"entity {i} not found")
        return None

    _, errors = svc.hub.modify(svc.tenant(req), [eid], plan)
    if errors:
        raise errors[eid]
    return Response(status=204)


def replace_entity(req: Request) -> Response:
    svc = _svc(req)
    body, ctx = _body(req)
    eid = check_id(req.path_params["entity_id"], "entity id")
    if not isinstance(body, dict):
        raise BadRequest("the body must be an entity object")
    if body.get("id", eid) != eid:
        raise BadRequest("the body's id differs from the id in the path")
    entity = parse_entity({**body, "id": eid}, ctx)

    def plan(i: str, cur: Entity | None) -> Entity:
        if cur is None:
            raise NotFound(f"entity {i} not found")
        return entity

    _, errors = svc.hub.modify(svc.tenant(req), [eid], plan)
    if errors:
        raise errors[eid]
    return Response(status=204)


def _merge_instance(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any] | None:
    """Merge-patch of one instance; None when it is deleted."""
    out = copy.deepcopy(old)
    for k, v in new.items():
        if isinstance(v, dict) and "type" in v and k not in ("value", "json", "languageMap"):
            if v.get("value") == NGSI_LD_NULL or v.get("object") == NGSI_LD_NULL:
                out.pop(k, None)
            elif isinstance(out.get(k), dict):
                merged = _merge_instance(out[k], v)
                if merged is None:
                    out.pop(k, None)
                else:
                    out[k] = merged
            else:
                out[k] = v
        elif v == NGSI_LD_NULL:
            return None
        else:
            out[k] = v
    if out.get("type") != old.get("type"):
        for key in ("value", "object", "languageMap", "json", "vocab", "valueList", "objectList"):
            if key in old and key not in new:
                out.pop(key, None)
    out.pop("modifiedAt", None)
    return out


def _clone(e: Entity) -> Entity:
    """A copy to plan changes on: new lists, shared instance dicts (plans replace
    instances, never edit them in place), far cheaper than a deep copy."""
    return Entity(
        e.id,
        list(e.types),
        {k: list(v) for k, v in e.attrs.items()},
        list(e.scopes) if e.scopes else None,
        e.created_at,
        e.modified_at,
    )


def _merge(cur: Entity, frag: Entity) -> Entity:
    new = _clone(cur)
    for t in frag.types:
        if t not in new.types:
            new.types.append(t)
    if frag.scopes is not None:
        new.scopes = frag.scopes
    for name, insts in frag.attrs.items():
        for inst in insts:
            ds = inst.get("datasetId")
            existing = new.attrs.get(name, [])
            idx = next((n for n, i in enumerate(existing) if i.get("datasetId") == ds), None)
            if idx is None:
                if NGSI_LD_NULL in (inst.get("value"), inst.get("object")):
                    continue
                new.attrs.setdefault(name, []).append(inst)
                continue
            merged = _merge_instance(existing[idx], inst)
            if merged is None:
                existing.pop(idx)
                if not existing:
                    new.attrs.pop(name, None)
            else:
                existing[idx] = merged
    return new


def _fragment(body: Any, ctx: ActiveContext, eid: str, allow_null: bool) -> Entity:
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    if "id" in body and body["id"] != eid:
        raise BadRequest("the body's id differs from the id in the path")
    types = expand_types(body["type"], ctx) if "type" in body else []
    return Entity(
        eid,
        types,
        parse_attributes(body, ctx, f"entity {eid}", allow_null=allow_null),
        parse_scope(body.get("scope"), f"entity {eid}"),
    )


def merge_entity(req: Request) -> Response:
    svc = _svc(req)
    body, ctx = _body(req, (JSON, LD, MERGE_PATCH))
    eid = check_id(req.path_params["entity_id"], "entity id")
    frag = _fragment(body, ctx, eid, allow_null=True)

    def plan(i: str, cur: Entity | None) -> Entity:
        if cur is None:
            raise NotFound(f"entity {i} not found")
        return _merge(cur, frag)

    _, errors = svc.hub.modify(svc.tenant(req), [eid], plan)
    if errors:
        raise errors[eid]
    return Response(status=204)


# -- attributes ------------------------------------------------------------------------------
def _set_instances(new: Entity, name: str, insts: list[dict[str, Any]]) -> None:
    existing = new.attrs.setdefault(name, [])
    for inst in insts:
        ds = inst.get("datasetId")
        idx = next((n for n, i in enumerate(existing) if i.get("datasetId") == ds), None)
        if idx is None:
            existing.append(inst)
        else:
            existing[idx] = inst


def _update_result(updated: list[str], not_updated: list[dict[str, str]]) -> Response:
    if not not_updated:
        return Response(status=204)
    return Response({"updated": updated, "notUpdated": not_updated}, status=207)


def append_attrs(req: Request) -> Response:
    svc = _svc(req)
    body, ctx = _body(req)
    eid = check_id(req.path_params["entity_id"], "entity id")
    frag = _fragment(body, ctx, eid, allow_null=False)
    no_overwrite = "noOverwrite" in _options(req)
    updated: list[str] = []
    skipped: list[dict[str, str]] = []

    def plan(i: str, cur: Entity | None) -> Entity:
        if cur is None:
            raise NotFound(f"entity {i} not found")
        new = _clone(cur)
        for t in frag.types:
            if t not in new.types:
                new.types.append(t)
        for name, insts in frag.attrs.items():
            short = ctx.compact(name)
            if no_overwrite and name in new.attrs:
                have = {x.get("datasetId") for x in new.attrs[name]}
                fresh = [x for x in insts if x.get("datasetId") not in have]
                if len(fresh) < len(insts):
                    skipped.append(
                        {
                            "attributeName": short,
                            "reason": "attribute exists and noOverwrite was asked",
                        }
                    )
                if not fresh:
                    continue
                insts = fresh
            _set_instances(new, name, insts)
            updated.append(short)
        return new

    _, errors = svc.hub.modify(svc.tenant(req), [eid], plan)
    if errors:
        raise errors[eid]
    return _update_result(updated, skipped)


def update_attrs(req: Request) -> Response:
    svc = _svc(req)
    body, ctx = _body(req)
    eid = check_id(req.path_params["entity_id"], "entity id")
    frag = _fragment(body, ctx, eid, allow_null=False)
    updated: list[str] = []
    skipped: list[dict[str, str]] = []

    def plan(i: str, cur: Entity | None) -> Entity:
        if cur is None:
            raise NotFound(f"entity {i} not found")
        new = _clone(cur)
        for name, insts in frag.attrs.items():
            short = ctx.compact(name)
            have = {x.get("datasetId") for x in new.attrs.get(name, [])}
            if not all(x.get("datasetId") in have for x in insts):
                skipped.append(
                    {
                        "attributeName": short,
                        "reason": "attribute (or its datasetId) does not exist",
                    }
                )
                continue
            _set_instances(new, name, insts)
            updated.append(short)
        return new

    _, errors = svc.hub.modify(svc.tenant(req), [eid], plan)
    if errors:
        raise errors[eid]
    return _update_result(updated, skipped)


def _attr_path(req: Request, ctx: ActiveContext) -> tuple[str, str, str]:
    eid = check_id(req.path_params["entity_id"], "entity id")
    short = check_name(req.path_params["attr"], "attribute")
    return eid, short, ctx.expand(short)


def partial_update_attr(req: Request) -> Response:
    svc = _svc(req)
    body, ctx = _body(req)
    eid, short, name = _attr_path(req, ctx)
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object (the attribute fragment)")
    ds = body.get("datasetId")

    def plan(i: str, cur: Entity | None) -> Entity:
        if cur is None:
            raise NotFound(f"entity {i} not found")
        insts = cur.attrs.get(name, [])
        idx = next((n for n, x in enumerate(insts) if x.get("datasetId") == ds), None)
        if idx is None:
            raise NotFound(
                f"entity {i} has no attribute '{short}'" + (f" with datasetId {ds}" if ds else "")
            )
        old = insts[idx]
        patch = dict(body)
        patch.setdefault("type", old["type"])
        if (
            "value" not in patch
            and "object" not in patch
            and old.get("type") in ("Property", "GeoProperty", "Relationship")
        ):
            patch[("object" if old["type"] == "Relationship" else "value")] = old.get(
                "object" if old["type"] == "Relationship" else "value"
            )
        parsed = parse_instance(short, patch, ctx, f"attribute '{short}'", allow_null=True)
        merged = _merge_instance(old, parsed)
        new = _clone(cur)
        if merged is None:
            new.attrs[name].pop(idx)
            if not new.attrs[name]:
                new.attrs.pop(name)
        else:
            new.attrs[name][idx] = merged
        return new

    _, errors = svc.hub.modify(svc.tenant(req), [eid], plan)
    if errors:
        raise errors[eid]
    return Response(status=204)


def replace_attr(req: Request) -> Response:
    svc = _svc(req)
    body, ctx = _body(req)
    eid, short, name = _attr_path(req, ctx)
    insts = parse_attribute(short, body, ctx, f"attribute '{short}'")

    def plan(i: str, cur: Entity | None) -> Entity:
        if cur is None:
            raise NotFound(f"entity {i} not found")
        if name not in cur.attrs:
            raise NotFound(f"entity {i} has no attribute '{short}'")
        new = _clone(cur)
        _set_instances(new, name, insts)
        return new

    _, errors = svc.hub.modify(svc.tenant(req), [eid], plan)
    if errors:
        raise errors[eid]
    return Response(status=204)


def delete_attr(req: Request) -> Response:
    svc = _svc(req)
    ctx = _read_context(req)
    eid, short, name = _attr_path(req, ctx)
    ds = req.arg("datasetId")
    if ds is not None:
        check_id(ds, "datasetId")
    delete_all = req.arg("deleteAll") == "true"

    def plan(i: str, cur: Entity | None) -> Entity:
        if cur is None:
            raise NotFound(f"entity {i} not found")
        insts = cur.attrs.get(name)
        if not insts:
            raise NotFound(f"entity {i} has no attribute '{short}'")
        new = _clone(cur)
        if delete_all:
            keep: list[dict[str, Any]] = []
        else:
            keep = [x for x in insts if x.get("datasetId") != ds]
            if len(keep) == len(insts):
                raise NotFound(
                    f"attribute '{short}' has no instance with datasetId {ds}"
                    if ds
                    else f"attribute '{short}' has no default instance"
                )
        if keep:
            new.attrs[name] = keep
        else:
            new.attrs.pop(name)
        return new

    _, errors = svc.hub.modify(svc.tenant(req), [eid], plan)
    if errors:
        raise errors[eid]
    return Response(status=204)


# -- queries ---------------------------------------------------------------------------------
def _paging(req: Request, svc: HubService) -> tuple[int, int]:
    limit = _int(req, "limit", svc.default_limit, 0)
    if limit > svc.max_limit:
        raise TooManyResults(
            f"limit {limit} is above the maximum {svc.max_limit}", maxLimit=svc.max_limit
        )
    return limit, _int(req, "offset", 0, 0)


def _build_query(
    req: Request,
    svc: HubService,
    ctx: ActiveContext,
    *,
    types: str | None,
    ids: list[str],
    id_pattern: str | None,
    q: str | None,
    geoq: Any,
    attrs: list[str],
) -> Query:
    dialect = svc.hub.store.dialect
    query = Query()
    if types:
        query.types = parse_types(types, ctx)
    if ids:
        query.ids = [check_id(i, "id") for i in ids]
    if id_pattern:
        try:
            import re

            re.compile(id_pattern)
        except re.error as exc:
            raise BadRequest(f"idPattern is not a valid regular expression: {exc}") from None
        query.id_pattern = id_pattern
    if q:
        node = qlang.parse(q)
        query.where.append(qlang.compile_q(node, dialect, ctx.expand))
    if geoq is not None:
        iri = ctx.expand(geoq.geoproperty)
        query.geo = GeoFilter(geoq, iri, indexed=iri == LOCATION_IRI)
    if attrs:
        query.attrs_any = [ctx.expand(a) for a in attrs]
    return query


def _query_response(
    req: Request, svc: HubService, ctx: ActiveContext, query: Query, links: dict[str, str]
) -> Response:
    mtype = _accept(req)
    o = _render_options(req, ctx)
    query.limit, query.offset = _paging(req, svc)
    query.count = req.arg("count") == "true"
    tenant = svc.tenant(req)
    entities, total = svc.hub.query(tenant, query)
    body: Any = [render(e, ctx, o) for e in entities]
    if mtype == GEO:
        gp = ctx.expand(req.arg("geometryProperty") or "location")
        body = {
            "type": "FeatureCollection",
            "features": [feature(b, e, gp) for b, e in zip(body, entities, strict=True)],
        }
    headers: dict[str, str] = {}
    if total is not None:
        headers["NGSILD-Results-Count"] = str(total)
    pages = []
    base = {k: v for k, v in req.query if k not in ("offset", "limit")}
    if (
        query.limit
        and (len(entities) == query.limit)
        and (total is None or query.offset + query.limit < total)
    ):
        nxt = urlencode(
            [*base.items(), ("limit", query.limit), ("offset", query.offset + query.limit)]
        )
        pages.append(f'<{req.path}?{nxt}>; rel="next"')
    if query.offset > 0:
        prev = urlencode(
            [*base.items(), ("limit", query.limit), ("offset", max(0, query.offset - query.limit))]
        )
        pages.append(f'<{req.path}?{prev}>; rel="prev"')
    if pages:
        headers["Link"] = ", ".join(pages)
    headers.update(links)
    return _respond(req, ctx, mtype, body, headers=headers)


def query_entities(req: Request) -> Response:
    svc = _svc(req)
    ctx = _read_context(req)
    geoq = geo.parse_geoquery(
        req.arg("georel"), req.arg("geometry"), req.arg("coordinates"), req.arg("geoproperty")
    )
    types, ids, pattern = req.arg("type"), _csv(req.arg("id")), req.arg("idPattern")
    q, attrs = req.arg("q"), _csv(req.arg("attrs"))
    if not (types or ids or pattern or q or geoq or attrs):
        raise BadRequest(
            "a query needs at least one of type, id, idPattern, attrs, q or a geo-query"
        )
    query = _build_query(
        req, svc, ctx, types=types, ids=ids, id_pattern=pattern, q=q, geoq=geoq, attrs=attrs
    )
    return _query_response(req, svc, ctx, query, {})


def post_query(req: Request) -> Response:
    svc = _svc(req)
    body, ctx = _body(req)
    if not isinstance(body, dict) or body.get("type") != "Query":
        raise BadRequest('the body must be a Query object ({"type": "Query", ...})')
    selectors = body.get("entities") or [{}]
    if not isinstance(selectors, list) or not all(isinstance(s, dict) for s in selectors):
        raise BadRequest("'entities' must be a list of entity selectors")
    geoq = geo.GeoQuery.from_geoq(body["geoQ"]) if body.get("geoQ") is not None else None
    attrs = body.get("attrs") or []
    if not isinstance(attrs, list) or not all(isinstance(a, str) for a in attrs):
        raise BadRequest("'attrs' must be a list of attribute names")
    q = body.get("q")
    if q is not None and not isinstance(q, str):
        raise BadRequest("'q' must be a string")
    if selectors == [{}] and not (q or geoq or attrs):
        raise BadRequest("a query needs entities, attrs, q or geoQ")
    parts: list[Query] = []
    for s in selectors:
        t = s.get("type")
        if t is not None and not isinstance(t, str):
            raise BadRequest("an entity selector's 'type' must be a string")
        sid = s.get("id")
        parts.append(
            _build_query(
                req,
                svc,
                ctx,
                types=t,
                ids=[sid] if sid else [],
                id_pattern=s.get("idPattern"),
                q=None,
                geoq=None,
                attrs=[],
            )
        )
    query = _build_query(
        req, svc, ctx, types=None, ids=[], id_pattern=None, q=q, geoq=geoq, attrs=attrs
    )
    if selectors != [{}]:
        tenant = req.tenant
        ors = [svc.hub.selector_condition(tenant, p) for p in parts]
        query.where.insert(
            0, (" OR ".join(f"({s})" for s, _ in ors), [p for _, ps in ors for p in ps])
        )
    return _query_response(req, svc, ctx, query, {})


# -- batch operations ------------------------------------------------------------------------
def _batch_body(req: Request) -> tuple[list[Any], ActiveContext]:
    body, ctx = _body(req)
    if not isinstance(body, list):
        raise BadRequest("a batch body must be a JSON array")
    if not body:
        raise BadRequest("the batch is empty")
    return body, ctx


def _problem(exc: SenCityError) -> dict[str, Any]:
    return exc.problem()


def _batch_result(
    ok: list[str], errors: list[dict[str, Any]], all_ok_status: int, body_when_ok: bool
) -> Response:
    if errors:
        return Response({"success": ok, "errors": errors}, status=207)
    if body_when_ok and ok:
        return Response(ok, status=all_ok_status)
    return Response(status=204)


def _parse_batch(
    items: list[Any], ctx: ActiveContext, parse: Callable[[Any], Entity]
) -> tuple[list[Entity], list[dict[str, Any]]]:
    entities, errors = [], []
    for n, item in enumerate(items):
        try:
            entities.append(parse(item))
        except SenCityError as exc:
            eid = item.get("id") if isinstance(item, dict) else None
            errors.append(
                {"entityId": eid if isinstance(eid, str) else f"#{n}", "error": _problem(exc)}
            )
    return entities, errors


def batch_create(req: Request) -> Response:
    svc = _svc(req)
    items, ctx = _batch_body(req)
    entities, errors = _parse_batch(items, ctx, lambda b: parse_entity(b, ctx))
    by_id = {e.id: e for e in entities}
    dup = len(by_id) != len(entities)

    def plan(eid: str, cur: Entity | None) -> Entity:
        if cur is not None:
            raise AlreadyExists(f"entity {eid} already exists")
        return by_id[eid]

    changes, errs = (
        svc.hub.modify(svc.tenant(req, create=True), list(by_id), plan) if by_id else ({}, {})
    )
    errors += [{"entityId": i, "error": _problem(e)} for i, e in errs.items()]
    if dup:
        errors.append(
            {
                "entityId": "(batch)",
                "error": _problem(
                    BadRequest("the same id appears more than once; only its last entity counted")
                ),
            }
        )
    return _batch_result([i for i in by_id if i in changes], errors, 201, True)


def batch_upsert(req: Request) -> Response:
    svc = _svc(req)
    items, ctx = _batch_body(req)
    opts = _options(req)
    update_mode = "update" in opts
    entities, errors = _parse_batch(items, ctx, lambda b: parse_entity(b, ctx))
    ids = [e.id for e in entities]
    changes, errs = svc.upsert(svc.tenant(req, create=True), entities, update_mode)
    errors += [{"entityId": i, "error": _problem(e)} for i, e in errs.items()]
    if errors:
        return Response(
            {"success": [i for i in dict.fromkeys(ids) if i in changes], "errors": errors},
            status=207,
        )
    created = [i for i, c in changes.items() if c.kind == "created"]
    return Response(created, status=201) if created else Response(status=204)


def batch_update(req: Request) -> Response:
    svc = _svc(req)
    items, ctx = _batch_body(req)
    no_overwrite = "noOverwrite" in _options(req)
    entities, errors = _parse_batch(items, ctx, lambda b: parse_entity(b, ctx, require_type=False))
    by_id = {e.id: e for e in entities}

    def plan(eid: str, cur: Entity | None) -> Entity:
        if cur is None:
            raise NotFound(f"entity {eid} not found")
        frag = by_id[eid]
        new = _clone(cur)
        for t in frag.types:
            if t not in new.types:
                new.types.append(t)
        for name, insts in frag.attrs.items():
            if no_overwrite and name in new.attrs:
                continue
            _set_instances(new, name, insts)
        return new

    changes, errs = svc.hub.modify(svc.tenant(req), list(by_id), plan) if by_id else ({}, {})
    errors += [{"entityId": i, "error": _problem(e)} for i, e in errs.items()]
    return _batch_result([i for i in by_id if i in changes], errors, 204, False)


def batch_merge(req: Request) -> Response:
    svc = _svc(req)
    items, ctx = _batch_body(req)
    entities, errors = _parse_batch(
        items, ctx, lambda b: parse_entity(b, ctx, require_type=False, allow_null=True)
    )
    by_id = {e.id: e for e in entities}

    def plan(eid: str, cur: Entity | None) -> Entity:
        if cur is None:
            raise NotFound(f"entity {eid} not found")
        return _merge(cur, by_id[eid])

    changes, errs = svc.hub.modify(svc.tenant(req), list(by_id), plan) if by_id else ({}, {})
    errors += [{"entityId": i, "error": _problem(e)} for i, e in errs.items()]
    return _batch_result([i for i in by_id if i in changes], errors, 204, False)


def batch_delete(req: Request) -> Response:
    svc = _svc(req)
    items, _ = _batch_body(req)
    ids, errors = [], []
    for n, item in enumerate(items):
        try:
            ids.append(check_id(item, "id"))
        except SenCityError as exc:
            errors.append(
                {"entityId": item if isinstance(item, str) else f"#{n}", "error": _problem(exc)}
            )

    def plan(eid: str, cur: Entity | None) -> None:
        if cur is None:
            raise NotFound(f"entity {eid} not found")
        return None

    uniq = list(dict.fromkeys(ids))
    changes, errs = svc.hub.modify(svc.tenant(req), uniq, plan) if uniq else ({}, {})
    errors += [{"entityId": i, "error": _problem(e)} for i, e in errs.items()]
    return _batch_result([i for i in uniq if i in changes], errors, 204, False)


# -- discovery -------------------------------------------------------------------------------
def _kinds(kinds: set[str]) -> list[str]:
    return sorted(kinds)


def list_types(req: Request) -> Response:
    svc = _svc(req)
    ctx = _read_context(req)
    mtype = _accept(req, geojson=False)
    stats = svc.hub.type_stats(svc.tenant(req))
    if req.arg("details") == "true":
        body: Any = [
            {
                "id": t,
                "type": "EntityType",
                "typeName": ctx.compact(t),
                "attributeNames": sorted(ctx.compact(a) for a in st["attrs"]),
            }
            for t, st in sorted(stats.items())
        ]
    else:
        body = {
            "id": f"urn:ngsi-ld:EntityTypeList:{uuid.uuid4()}",
            "type": "EntityTypeList",
            "typeList": sorted(ctx.compact(t) for t in stats),
        }
    return _respond(req, ctx, mtype, body)


def get_type(req: Request) -> Response:
    svc = _svc(req)
    ctx = _read_context(req)
    mtype = _accept(req, geojson=False)
    iri = ctx.expand(req.path_params["type_name"])
    st = svc.hub.type_stats(svc.tenant(req)).get(iri)
    if st is None:
        raise NotFound(f"no entity of type {req.path_params['type_name']}")
    body = {
        "id": iri,
        "type": "EntityTypeInfo",
        "typeName": ctx.compact(iri),
        "entityCount": st["count"],
        "attributeDetails": [
            {
                "id": a,
                "type": "Attribute",
                "attributeName": ctx.compact(a),
                "attributeTypes": _kinds(k),
            }
            for a, k in sorted(st["attrs"].items())
        ],
    }
    return _respond(req, ctx, mtype, body)


def _attr_stats(stats: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for t, st in stats.items():
        for a, kinds in st["attrs"].items():
            s = out.setdefault(a, {"types": set(), "kinds": set(), "count": 0})
            s["types"].add(t)
            s["kinds"] |= kinds
            s["count"] += st["count"]
    return out


def list_attributes(req: Request) -> Response:
    svc = _svc(req)
    ctx = _read_context(req)
    mtype = _accept(req, geojson=False)
    stats = _attr_stats(svc.hub.type_stats(svc.tenant(req)))
    if req.arg("details") == "true":
        body: Any = [
            {
                "id": a,
                "type": "Attribute",
                "attributeName": ctx.compact(a),
                "typeNames": sorted(ctx.compact(t) for t in s["types"]),
            }
            for a, s in sorted(stats.items())
        ]
    else:
        body = {
            "id": f"urn:ngsi-ld:AttributeList:{uuid.uuid4()}",
            "type": "AttributeList",
            "attributeList": sorted(ctx.compact(a) for a in stats),
        }
    return _respond(req, ctx, mtype, body)


def get_attribute(req: Request) -> Response:
    svc = _svc(req)
    ctx = _read_context(req)
    mtype = _accept(req, geojson=False)
    iri = ctx.expand(req.path_params["attr"])
    s = _attr_stats(svc.hub.type_stats(svc.tenant(req))).get(iri)
    if s is None:
        raise NotFound(f"no attribute {req.path_params['attr']}")
    body = {
        "id": iri,
        "type": "Attribute",
        "attributeName": ctx.compact(iri),
        "attributeCount": s["count"],
        "attributeTypes": _kinds(s["kinds"]),
        "typeNames": sorted(ctx.compact(t) for t in s["types"]),
    }
    return _respond(req, ctx, mtype, body)


# -- @contexts -------------------------------------------------------------------------------
def list_contexts(req: Request) -> Response:
    items = _svc(req).resolver.cached()
    if req.arg("details") == "true":
        return Response(items)
    return Response([i.get("url") or i.get("id") for i in items])


def add_context(req: Request) -> Response:
    body, _ = _body(req, (JSON, LD))
    if not isinstance(body, dict) or "@context" not in body:
        raise BadRequest("the body must be an object with an @context member")
    cid = _svc(req).resolver.add_hosted(body)
    return Response(
        status=201, headers={"Location": f"{BASE}/jsonldContexts/{quote(cid, safe=':')}"}
    )


def get_context(req: Request) -> Response:
    return Response(_svc(req).resolver.get_hosted(req.path_params["context_id"]), media_type=LD)


def delete_context(req: Request) -> Response:
    _svc(req).resolver.delete(req.path_params["context_id"])
    return Response(status=204)


def routes() -> list[Route]:
    e = f"{BASE}/entities"
    one = e + "/{entity_id:path}"  # ids may be http URLs with slashes
    ops = f"{BASE}/entityOperations"
    return [
        # the most specific paths first: an entity id may itself contain slashes
        Route("PATCH", one + "/attrs/{attr}", partial_update_attr, WRITERS, name="ngsi.attr.patch"),
        Route("PUT", one + "/attrs/{attr}", replace_attr, WRITERS, name="ngsi.attr.replace"),
        Route("DELETE", one + "/attrs/{attr}", delete_attr, WRITERS, name="ngsi.attr.delete"),
        Route("POST", one + "/attrs", append_attrs, WRITERS, name="ngsi.attrs.append"),
        Route("PATCH", one + "/attrs", update_attrs, WRITERS, name="ngsi.attrs.update"),
        Route("POST", e, create_entity, WRITERS, name="ngsi.entities.create"),
        Route("GET", e, query_entities, READERS, name="ngsi.entities.query"),
        Route("GET", one, retrieve_entity, READERS, name="ngsi.entity.get"),
        Route("PUT", one, replace_entity, WRITERS, name="ngsi.entity.replace"),
        Route("PATCH", one, merge_entity, WRITERS, name="ngsi.entity.merge"),
        Route("DELETE", one, delete_entity, WRITERS, name="ngsi.entity.delete"),
        Route("POST", ops + "/create", batch_create, WRITERS, name="ngsi.batch.create"),
        Route("POST", ops + "/upsert", batch_upsert, WRITERS, name="ngsi.batch.upsert"),
        Route("POST", ops + "/update", batch_update, WRITERS, name="ngsi.batch.update"),
        Route("POST", ops + "/delete", batch_delete, WRITERS, name="ngsi.batch.delete"),
        Route("POST", ops + "/merge", batch_merge, WRITERS, name="ngsi.batch.merge"),
        Route("POST", ops + "/query", post_query, READERS, name="ngsi.query"),
        Route("GET", f"{BASE}/types", list_types, READERS, name="ngsi.types"),
        Route("GET", f"{BASE}/types/{{type_name:path}}", get_type, READERS, name="ngsi.type"),
        Route("GET", f"{BASE}/attributes", list_attributes, READERS, name="ngsi.attributes"),
        Route(
            "GET", f"{BASE}/attributes/{{attr:path}}", get_attribute, READERS, name="ngsi.attribute"
        ),
        Route("GET", f"{BASE}/jsonldContexts", list_contexts, READERS, name="ngsi.contexts"),
        Route("POST", f"{BASE}/jsonldContexts", add_context, WRITERS, name="ngsi.context.add"),
        Route(
            "GET",
            f"{BASE}/jsonldContexts/{{context_id:path}}",
            get_context,
            public=True,
            name="ngsi.context.get",
        ),
        Route(
            "DELETE",
            f"{BASE}/jsonldContexts/{{context_id:path}}",
            delete_context,
            WRITERS,
            name="ngsi.context.delete",
        ),
    ]
