"""``/ingest/v1``: provisioning (service groups, devices), dead letters, HTTP ingestion
for devices that cannot do MQTT, and the OpenAPI description of all of it."""

from __future__ import annotations

import asyncio
import base64
from typing import TYPE_CHECKING, Any, TypeVar

from sencity.auth.roles import ADMIN, READERS, WRITERS
from sencity.core.routing import Request, Response, Route
from sencity.errors import BadRequest, Forbidden, SenCityError, StoreUnavailable
from sencity.ingest.model import Device, Group, entity_id, validate
from sencity.ingest.pipeline import Message
from sencity.ingest.registry import DeadLetter

if TYPE_CHECKING:
    from sencity.ingest.service import IngestService

BASE = "/ingest/v1"
M = TypeVar("M", Group, Device)
HTTP_WAIT = 30.0  # seconds an HTTP measure may wait to be written


def _svc(req: Request) -> IngestService:
    svc: IngestService = req.platform.state["ingest"]
    return svc


def _tenant(req: Request) -> str:
    hub = req.platform.state["hub"]
    name: str = hub.ensure_tenant(req.tenant, create=req.method != "GET")
    return name


def _page(req: Request) -> tuple[int, int]:
    try:
        limit = int(req.arg("limit") or 100)
        offset = int(req.arg("offset") or 0)
    except ValueError:
        raise BadRequest("'limit' and 'offset' must be integers") from None
    if not 1 <= limit <= 1000 or offset < 0:
        raise BadRequest("'limit' must be 1..1000 and 'offset' at least 0")
    return limit, offset


def _items(body: Any, key: str) -> list[Any]:
    """One object, or ``{key: [objects]}`` (the IoT agents' bulk form)."""
    if isinstance(body, dict) and key in body:
        items = body[key]
        if not isinstance(items, list) or not items:
            raise BadRequest(f"'{key}' must be a non-empty array")
        return items
    return [body]


def _counted(items: list[Any], total: int) -> Response:
    return Response(items, headers={"Total-Count": str(total)})


# -- service groups ------------------------------------------------------------------------
def create_groups(req: Request) -> Response:
    svc, tenant = _svc(req), _tenant(req)
    groups = [validate(Group, b, f"group {n}") for n, b in enumerate(_items(req.json(), "groups"))]
    for g in groups:
        svc.registry.add_group(tenant, g)
    svc.groups_changed()
    return Response(status=201, headers={"Location": f"{BASE}/groups/{groups[0].apikey}"})


def list_groups(req: Request) -> Response:
    svc, tenant = _svc(req), _tenant(req)
    limit, offset = _page(req)
    groups, total = svc.registry.list_groups(tenant, limit, offset)
    return _counted([g.model_dump(exclude_none=True) for g in groups], total)


def get_group(req: Request) -> Response:
    group = _svc(req).registry.get_group(_tenant(req), req.path_params["apikey"])
    return Response(group.model_dump(exclude_none=True))


def _patched(req: Request, model: type[M], old: M, key: str, frozen: str) -> M:
    """``old`` with the request body's members on top; its ``key`` member may not change."""
    patch = req.json()
    if not isinstance(patch, dict):
        raise BadRequest("the body must be a JSON object (the members to change)")
    if patch.get(key, getattr(old, key)) != getattr(old, key):
        raise BadRequest(frozen)
    new: M = validate(model, {**old.model_dump(), **patch}, model.__name__.lower())
    return new


def update_group(req: Request) -> Response:
    svc, tenant = _svc(req), _tenant(req)
    old = svc.registry.get_group(tenant, req.path_params["apikey"])
    new = _patched(
        req, Group, old, "apikey", "the API key of a group cannot change: make a new group"
    )
    svc.registry.replace_group(tenant, new)
    svc.groups_changed()
    return Response(status=204)


def delete_group(req: Request) -> Response:
    svc = _svc(req)
    svc.registry.delete_group(_tenant(req), req.path_params["apikey"])
    return Response(status=204)


# -- devices ---------------------------------------------------------------------------------
def _device_out(svc: IngestService, tenant: str, d: Device, last_seen: str | None) -> Any:
    out = d.model_dump(exclude_none=True)
    found = svc.registry.group(d.apikey)
    if found is not None:
        out["entity_id"] = entity_id(d, found[1])
        out.setdefault("entity_type", d.entity_type or found[1].entity_type)
    out["lastSeen"] = last_seen
    return out


def create_devices(req: Request) -> Response:
    svc, tenant = _svc(req), _tenant(req)
    devices = [
        validate(Device, b, f"device {n}") for n, b in enumerate(_items(req.json(), "devices"))
    ]
    svc.registry.add_devices(tenant, devices)
    return Response(status=201, headers={"Location": f"{BASE}/devices/{devices[0].device_id}"})


def list_devices(req: Request) -> Response:
    svc, tenant = _svc(req), _tenant(req)
    limit, offset = _page(req)
    silent = req.arg("silentFor")
    since = svc.registry.silent_since(silent) if silent else None
    rows, total = svc.registry.list_devices(tenant, limit, offset, req.arg("apikey"), since)
    return _counted([_device_out(svc, tenant, d, seen) for d, seen in rows], total)


def get_device(req: Request) -> Response:
    svc, tenant = _svc(req), _tenant(req)
    d, seen = svc.registry.get_device(tenant, req.path_params["device_id"])
    return Response(_device_out(svc, tenant, d, seen))


def update_device(req: Request) -> Response:
    svc, tenant = _svc(req), _tenant(req)
    old, _ = svc.registry.get_device(tenant, req.path_params["device_id"])
    new = _patched(req, Device, old, "device_id", "the id of a device cannot change")
    svc.registry.replace_device(tenant, new)
    return Response(status=204)


def delete_device(req: Request) -> Response:
    _svc(req).registry.delete_device(_tenant(req), req.path_params["device_id"])
    return Response(status=204)


# -- dead letters ----------------------------------------------------------------------------
def _letter_out(row: dict[str, Any]) -> dict[str, Any]:
    raw = bytes(row["payload"])
    try:
        payload: dict[str, str] = {"text": raw.decode("utf-8")}
    except UnicodeDecodeError:
        payload = {"base64": base64.b64encode(raw).decode()}
    return {
        "id": row["id"],
        "receivedAt": row["received_at"],
        "source": row["source"],
        "topic": row["topic"],
        "reason": row["reason"],
        "detail": row["detail"],
        "apikey": row["apikey"],
        "device_id": row["device_id"],
        "payload": payload,
    }


def _dead(req: Request, tenant: str | None) -> Response:
    limit, offset = _page(req)
    rows, total = _svc(req).registry.dead_letters(tenant, limit, offset, req.arg("reason"))
    return _counted([_letter_out(r) for r in rows], total)


def list_dead(req: Request) -> Response:
    return _dead(req, _tenant(req))


def list_unattributed(req: Request) -> Response:
    return _dead(req, None)


def purge_dead(req: Request) -> Response:
    before = req.arg("before")
    n = _svc(req).registry.purge_dead(_tenant(req), before)
    return Response({"deleted": n})


# -- HTTP ingestion ---------------------------------------------------------------------------
async def http_measures(req: Request) -> Response:
    """``POST /ingest/v1/iot/json|d?k={apikey}&i={device_id}``: answered once written."""
    svc = _svc(req)
    key, device = req.arg("k"), req.arg("i")
    if not key or not device:
        raise BadRequest("the query needs k (the API key) and i (the device id)")
    protocol = "json" if req.path.endswith("/json") else "ul"
    loop = asyncio.get_running_loop()
    done: asyncio.Future[DeadLetter | None] = loop.create_future()

    def settle(dead: DeadLetter | None) -> None:
        if not done.done():
            done.set_result(dead)

    def ack(dead: DeadLetter | None) -> None:
        loop.call_soon_threadsafe(settle, dead)

    msg = Message("http", req.path, req.body, key, device, protocol=protocol, ack=ack)
    if not svc.running:
        raise StoreUnavailable("ingestion is not running")
    if not await asyncio.to_thread(svc.ingestor.submit, msg, HTTP_WAIT):
        raise StoreUnavailable("ingestion is overloaded: try again later")
    try:
        dead = await asyncio.wait_for(done, HTTP_WAIT)
    except TimeoutError:
        raise StoreUnavailable("the measures were not written in time; send them again") from None
    if dead is not None:
        err: SenCityError = BadRequest(f"{dead.reason}: {dead.detail}")
        if dead.reason in ("unknown-apikey", "wrong-apikey"):
            err = Forbidden(f"{dead.reason}: {dead.detail}")
        raise err
    return Response(status=204)


def status(req: Request) -> Response:
    return Response(_svc(req).status())


def openapi(req: Request) -> Response:
    from sencity.ingest.openapi import document

    return Response(document(req.platform.routes, BASE))


def routes() -> list[Route]:
    g, d = f"{BASE}/groups", f"{BASE}/devices"
    return [
        Route(
            "POST",
            g,
            create_groups,
            WRITERS,
            name="ingest.groups.create",
            summary="provision service groups (one object or {groups: [...]})",
        ),
        Route(
            "GET",
            g,
            list_groups,
            READERS,
            name="ingest.groups.list",
            summary="service groups (limit, offset; Total-Count header)",
        ),
        Route(
            "GET",
            g + "/{apikey}",
            get_group,
            READERS,
            name="ingest.groups.get",
            summary="one service group",
        ),
        Route(
            "PATCH",
            g + "/{apikey}",
            update_group,
            WRITERS,
            name="ingest.groups.update",
            summary="change members of a service group",
        ),
        Route(
            "DELETE",
            g + "/{apikey}",
            delete_group,
            WRITERS,
            name="ingest.groups.delete",
            summary="delete a service group without devices",
        ),
        Route(
            "POST",
            d,
            create_devices,
            WRITERS,
            name="ingest.devices.create",
            summary="provision devices (one object or {devices: [...]}), all or none",
        ),
        Route(
            "GET",
            d,
            list_devices,
            READERS,
            name="ingest.devices.list",
            summary="devices with lastSeen (apikey, silentFor=PT1H, limit, offset)",
        ),
        Route(
            "GET",
            d + "/{device_id}",
            get_device,
            READERS,
            name="ingest.devices.get",
            summary="one device with its entity id and lastSeen",
        ),
        Route(
            "PATCH",
            d + "/{device_id}",
            update_device,
            WRITERS,
            name="ingest.devices.update",
            summary="change members of a device",
        ),
        Route(
            "DELETE",
            d + "/{device_id}",
            delete_device,
            WRITERS,
            name="ingest.devices.delete",
            summary="delete a device (its entity stays)",
        ),
        Route(
            "GET",
            f"{BASE}/deadletters",
            list_dead,
            READERS,
            name="ingest.dead.list",
            summary="messages that could not be ingested, newest first (reason, limit, offset)",
        ),
        Route(
            "DELETE",
            f"{BASE}/deadletters",
            purge_dead,
            WRITERS,
            name="ingest.dead.purge",
            summary="delete dead letters (before=ISO time)",
        ),
        Route(
            "GET",
            f"{BASE}/deadletters/unattributed",
            list_unattributed,
            ADMIN,
            scope="platform",
            name="ingest.dead.unattributed",
            summary="dead letters of no known tenant (unknown API keys, bad topics)",
        ),
        Route(
            "POST",
            f"{BASE}/iot/json",
            http_measures,
            public=True,
            name="ingest.http.json",
            summary="measures of device i, API key k, as JSON",
        ),
        Route(
            "POST",
            f"{BASE}/iot/d",
            http_measures,
            public=True,
            name="ingest.http.ul",
            summary="measures of device i, API key k, as UltraLight 2.0",
        ),
        Route(
            "GET",
            f"{BASE}/openapi.json",
            openapi,
            public=True,
            name="ingest.openapi",
            summary="this API's OpenAPI 3.1 description",
        ),
        Route(
            "GET",
            f"{BASE}/status",
            status,
            READERS,
            name="ingest.status",
            summary="broker connection, queue and counters",
        ),
    ]
