"""``/ngsi-ld/v1/subscriptions``: create, query, retrieve, update and delete.

Request bodies, @context and content negotiation are handled as for entities (the
hub's helpers); names in a subscription are read with the request's @context and
shown with the reader's."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import quote, urlencode

from sencity.auth.roles import READERS, WRITERS
from sencity.core.routing import Request, Response, Route
from sencity.errors import NotFound
from sencity.hub.api import (
    BASE,
    JSON,
    LD,
    MERGE_PATCH,
    _accept,
    _body,
    _paging,
    _read_context,
    _respond,
    _svc,
)
from sencity.hub.ldcontext import ActiveContext
from sencity.hub.model import check_id
from sencity.store.base import utcnow
from sencity.subs.model import (
    Subscription,
    compact_body,
    merge_fragment,
    parse_subscription,
    represent,
)
from sencity.subs.service import SubsService

PATH = f"{BASE}/subscriptions"


def _subs(req: Request) -> SubsService:
    svc: SubsService = req.platform.state["subs"]
    return svc


def _context(ctx: ActiveContext) -> Any:
    """The @context value to keep with a subscription (None: the core context)."""
    return None if ctx.is_core_only else ctx.source


def _load(subs: SubsService, row: dict[str, Any]) -> Subscription:
    sub = subs.matcher.parse_row(row)
    if sub is None:
        raise NotFound(f"subscription {row['id']} cannot be read (its @context is unavailable)")
    return sub


def _shown(subs: SubsService, row: dict[str, Any], ctx: ActiveContext) -> dict[str, Any]:
    return represent(_load(subs, row), ctx, {**row, "now": utcnow()})


def create_subscription(req: Request) -> Response:
    hub, subs = _svc(req), _subs(req)
    body, ctx = _body(req)
    if isinstance(body, dict) and "id" not in body:
        body = {**body, "id": f"urn:ngsi-ld:Subscription:{uuid.uuid4()}"}
    context = _context(ctx)
    sub = parse_subscription(body, context, ctx, hub.hub.store.dialect, now=utcnow())
    tenant = hub.tenant(req, create=True)
    subs.store.insert(tenant, sub.id, sub.body, context, sub.time_interval)
    subs.changed(tenant)
    return Response(status=201, headers={"Location": f"{PATH}/{quote(sub.id, safe=':')}"})


def query_subscriptions(req: Request) -> Response:
    hub, subs = _svc(req), _subs(req)
    ctx = _read_context(req)
    mtype = _accept(req, geojson=False)
    limit, offset = _paging(req, hub)
    count = req.arg("count") == "true"
    rows, total = subs.store.page(hub.tenant(req), limit, offset, count)
    body = [_shown(subs, r, ctx) for r in rows if subs.matcher.parse_row(r) is not None]
    headers: dict[str, str] = {}
    if total is not None:
        headers["NGSILD-Results-Count"] = str(total)
    pages = []
    base = [(k, v) for k, v in req.query if k not in ("offset", "limit")]
    if limit and len(rows) == limit and (total is None or offset + limit < total):
        pages.append(
            f"<{req.path}?{urlencode([*base, ('limit', limit), ('offset', offset + limit)])}>; "
            'rel="next"'
        )
    if offset > 0:
        prev = max(0, offset - limit)
        pages.append(
            f'<{req.path}?{urlencode([*base, ("limit", limit), ("offset", prev)])}>; rel="prev"'
        )
    if pages:
        headers["Link"] = ", ".join(pages)
    return _respond(req, ctx, mtype, body, headers=headers)


def _row(req: Request, subs: SubsService, tenant: str) -> dict[str, Any]:
    sid = check_id(req.path_params["subscription_id"], "subscription id")
    row = subs.store.get(tenant, sid)
    if row is None:
        raise NotFound(f"subscription {sid} not found")
    return row


def retrieve_subscription(req: Request) -> Response:
    hub, subs = _svc(req), _subs(req)
    ctx = _read_context(req)
    mtype = _accept(req, geojson=False)
    row = _row(req, subs, hub.tenant(req))
    return _respond(req, ctx, mtype, _shown(subs, row, ctx))


def update_subscription(req: Request) -> Response:
    hub, subs = _svc(req), _subs(req)
    fragment, ctx = _body(req, (JSON, LD, MERGE_PATCH))
    tenant = hub.tenant(req)
    row = _row(req, subs, tenant)
    old = _load(subs, row)
    # the stored names, shown in the request's @context, then the fragment on top
    merged = merge_fragment(compact_body(old, ctx), fragment)
    context = _context(ctx)
    sub = parse_subscription(merged, context, ctx, hub.hub.store.dialect, now=utcnow())
    if not subs.store.update(tenant, sub.id, sub.body, context, sub.time_interval):
        raise NotFound(f"subscription {sub.id} not found")
    subs.changed(tenant)
    return Response(status=204)


def delete_subscription(req: Request) -> Response:
    hub, subs = _svc(req), _subs(req)
    tenant = hub.tenant(req)
    sid = check_id(req.path_params["subscription_id"], "subscription id")
    if not subs.store.delete(tenant, sid):
        raise NotFound(f"subscription {sid} not found")
    subs.changed(tenant)
    return Response(status=204)


def routes() -> list[Route]:
    one = PATH + "/{subscription_id:path}"
    return [
        Route("POST", PATH, create_subscription, WRITERS, name="ngsi.subs.create"),
        Route("GET", PATH, query_subscriptions, READERS, name="ngsi.subs.query"),
        Route("GET", one, retrieve_subscription, READERS, name="ngsi.subs.get"),
        Route("PATCH", one, update_subscription, WRITERS, name="ngsi.subs.update"),
        Route("DELETE", one, delete_subscription, WRITERS, name="ngsi.subs.delete"),
    ]
