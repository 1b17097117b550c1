"""The public CAP feed of a city (no sign-in, as warnings to the public are meant to be):

* ``GET /cap/v1/{tenant}/feed.atom`` — Atom feed of the tenant's public warnings: active
  alarms with ``publicWarning: true``, and those cleared in the last 24 hours (their
  cancellation), newest first, each entry linking to its CAP document;
* ``GET /cap/v1/{tenant}/alerts/{alert_id}.xml`` — the CAP 1.2 message of one public
  warning (``alert_id``: the local part of the Alert id, ``alm-…``, or the whole id).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from sencity.core.routing import Request, Response, Route
from sencity.errors import NonexistentTenant, NotFound
from sencity.hub.model import Entity
from sencity.hub.store import Query
from sencity.rules.cap import (
    ATOM_MEDIA,
    CAP_MEDIA,
    AlertView,
    FeedEntry,
    alert_xml,
    atom_feed,
    parse_time,
    sender_of,
)

if TYPE_CHECKING:
    from sencity.hub.api import HubService

BASE = "/cap/v1"
VOCAB = "https://uri.etsi.org/ngsi-ld/default-context/"
ALERT = VOCAB + "Alert"
PUBLIC = VOCAB + "publicWarning"
FEED_CLEARED = timedelta(hours=24)  # how long a cancellation stays in the feed
FEED_MAX = 500
CACHE = {"Cache-Control": "public, max-age=60"}


def _hub(req: Request) -> HubService:
    hub: HubService | None = req.platform.state.get("hub")
    if hub is None:
        raise NotFound("the CAP feed needs the context hub")
    return hub


def _tenant(req: Request) -> tuple[str, str]:
    """The path's tenant and its display name (404 when unknown or disabled)."""
    name = req.path_params["tenant"]
    try:
        row = req.platform.store.get_tenant(name)
    except NonexistentTenant:
        raise NotFound(f"no city '{name[:63]}'") from None
    if row.get("disabled"):
        raise NotFound(f"no city '{name[:63]}'")
    return name, str(row.get("display_name") or name)


def _base_url(req: Request) -> str:
    public = req.platform.settings.server.public_url
    if public:
        return public.rstrip("/")
    proto = req.headers.get("x-forwarded-proto", "http").split(",")[0].strip() or "http"
    host = req.headers.get("x-forwarded-host") or req.headers.get("host") or "localhost"
    return f"{proto}://{host.split(',')[0].strip()}"


def view_of(hub: HubService, tenant: str, e: Entity) -> AlertView:
    ctx = hub.resolver.resolve(None)
    values: dict[str, Any] = {}
    changed: dict[str, str] = {}
    for name, insts in e.attrs.items():
        if not insts:
            continue
        inst = next((i for i in insts if "datasetId" not in i), insts[0])
        short = ctx.compact(name)
        for key in ("value", "object", "json", "languageMap", "vocab"):
            if key in inst:
                values[short] = inst[key]
                break
        if inst.get("modifiedAt") and inst.get("modifiedAt") != inst.get("createdAt"):
            changed[short] = inst["modifiedAt"]
    return AlertView(e.id, tenant, values, changed)


def _alert_url(base: str, tenant: str, view: AlertView) -> str:
    prefix = f"urn:ngsi-ld:Alert:{tenant}:"
    local = view.id[len(prefix) :] if view.id.startswith(prefix) else view.id
    return f"{base}{BASE}/{quote(tenant)}/alerts/{quote(local, safe='')}.xml"


def _sender(req: Request, tenant: str) -> str:
    return sender_of(tenant, req.platform.settings.rules.cap_sender)


def get_alert(req: Request) -> Response:
    tenant, display = _tenant(req)
    hub = _hub(req)
    aid = req.path_params["alert_id"]
    eid = aid if aid.startswith("urn:") else f"urn:ngsi-ld:Alert:{tenant}:{aid}"
    e = hub.hub.get(tenant, eid)
    if e is None or ALERT not in e.types:
        raise NotFound(f"no public warning '{aid[:200]}'")
    view = view_of(hub, tenant, e)
    if view.values.get("publicWarning") is not True:
        raise NotFound(f"no public warning '{aid[:200]}'")
    base = _base_url(req)
    body = alert_xml(view, _sender(req, tenant), display, _alert_url(base, tenant, view))
    return Response(body, media_type=f"{CAP_MEDIA}; charset=utf-8", headers=dict(CACHE))


def get_feed(req: Request) -> Response:
    tenant, display = _tenant(req)
    hub = _hub(req)
    found, _ = hub.hub.query(tenant, Query(types=[[ALERT]], attrs_any=[PUBLIC], limit=FEED_MAX))
    base = _base_url(req)
    now = datetime.now(UTC)
    entries = []
    for e in found:
        view = view_of(hub, tenant, e)
        if view.values.get("publicWarning") is not True:
            continue
        if view.cleared:
            ended = parse_time(view.values.get("validTo"))
            if ended is not None and now - ended > FEED_CLEARED:
                continue
        entries.append(FeedEntry(view, _alert_url(base, tenant, view)))
    feed_url = f"{base}{BASE}/{quote(tenant)}/feed.atom"
    body = atom_feed(
        entries,
        feed_url,
        f"Cảnh báo công cộng — {display} / Public warnings — {display}",
        display,
        now,
    )
    return Response(body, media_type=f"{ATOM_MEDIA}; charset=utf-8", headers=dict(CACHE))


def routes() -> list[Route]:
    return [
        Route(
            "GET",
            BASE + "/{tenant}/feed.atom",
            get_feed,
            public=True,
            summary="Atom feed of a city's public warnings (CAP 1.2)",
        ),
        Route(
            "GET",
            BASE + "/{tenant}/alerts/{alert_id}.xml",
            get_alert,
            public=True,
            summary="One public warning as a CAP 1.2 message",
        ),
    ]
