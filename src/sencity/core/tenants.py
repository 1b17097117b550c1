"""Tenants (one per city) as seen through the API.

``GET /api/v1/tenants`` lists the tenants the caller may use; ``GET /api/v1/tenant``
describes the request's tenant (``NGSILD-Tenant`` header); admins of a tenant may
change its display name, time zone and locale.
"""

from __future__ import annotations

from typing import Any

from sencity.auth.roles import ADMIN, ANY_ROLE
from sencity.core.hooks import hookimpl
from sencity.core.routing import Request, Route
from sencity.errors import BadRequest
from sencity.store.base import Row


def _public(row: Row) -> dict[str, Any]:
    return {k: row[k] for k in ("name", "display_name", "timezone", "locale", "created_at")}


def list_tenants(req: Request) -> list[dict[str, Any]]:
    assert req.principal is not None
    rows = req.platform.store.list_tenants()
    allowed = set(req.principal.tenants([r["name"] for r in rows]))
    return [_public(r) for r in rows if r["name"] in allowed]


def get_tenant(req: Request) -> dict[str, Any]:
    return {**_public(req.platform.store.get_tenant(req.tenant)), "your_role": req.role}


def patch_tenant(req: Request) -> dict[str, Any]:
    body = req.json()
    if not isinstance(body, dict):
        raise BadRequest("body must be a JSON object")
    allowed = {"display_name", "timezone", "locale"}
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise BadRequest(f"unknown field(s) {unknown}; allowed: {sorted(allowed)}")
    for key, value in body.items():
        if not isinstance(value, str) or not value:
            raise BadRequest(f"field '{key}' must be a non-empty string")
    req.platform.store.get_tenant(req.tenant)
    return _public(req.platform.store.update_tenant(req.tenant, **body))


@hookimpl
def sencity_routes() -> list[Route]:
    return [
        Route(
            "GET",
            "/api/v1/tenants",
            list_tenants,
            ANY_ROLE,
            scope="user",
            name="tenants.list",
            summary="Tenants the caller may use",
        ),
        Route(
            "GET",
            "/api/v1/tenant",
            get_tenant,
            ANY_ROLE,
            name="tenant.get",
            summary="The request's tenant",
        ),
        Route(
            "PATCH",
            "/api/v1/tenant",
            patch_tenant,
            ADMIN,
            name="tenant.patch",
            summary="Change the request's tenant",
        ),
    ]
