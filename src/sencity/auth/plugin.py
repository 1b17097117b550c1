"""HTTP endpoints of authentication: log in and out, who am I, personal API tokens."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl

from sencity.auth.roles import ANY_ROLE
from sencity.core.hooks import hookimpl
from sencity.core.platform import Platform
from sencity.core.routing import Request, Response, Route
from sencity.errors import BadRequest, Forbidden, NotFound, SenCityError

SESSION_COOKIE = "sencity_session"


def session_cookie(resp: Response, platform: Platform, token: str) -> None:
    resp.set_cookie(
        SESSION_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        path="/",
        max_age=int(platform.settings.auth.session_ttl_hours * 3600),
        secure=platform.settings.server.public_url.startswith("https://"),
    )


def safe_next(value: str | None) -> str:
    """Only local paths: never redirect a user to another site after login."""
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/"


def _form(req: Request) -> dict[str, str] | None:
    ctype = req.headers.get("content-type", "").split(";")[0].strip()
    if ctype == "application/x-www-form-urlencoded":
        return dict(parse_qsl(req.body.decode("utf-8", "replace")))
    return None


def login(req: Request) -> Response:
    form = _form(req)
    data: Any = form if form is not None else req.json()
    if not isinstance(data, dict):
        raise BadRequest("body must be an object with 'username' and 'password'")
    username, password = data.get("username"), data.get("password")
    if not isinstance(username, str) or not isinstance(password, str) or not username:
        raise BadRequest("'username' and 'password' are required strings")
    try:
        token, principal = req.platform.auth.login(username, password, req.client)
    except SenCityError as exc:
        if form is None:
            raise
        code = "throttled" if exc.status == 429 else "invalid"
        nxt = safe_next(form.get("next"))
        return Response(status=303, headers={"Location": f"/login?error={code}&next={nxt}"})
    if form is not None:
        resp = Response(status=303, headers={"Location": safe_next(form.get("next"))})
    else:
        ttl = int(req.platform.settings.auth.session_ttl_hours * 3600)
        resp = Response(
            {
                "access_token": token,
                "token_type": "bearer",
                "expires_in": ttl,
                "user": _me(principal, req),
            }
        )
    session_cookie(resp, req.platform, token)
    return resp


def logout(req: Request) -> Response:
    assert req.principal is not None and req.principal.token_id is not None
    req.platform.auth.revoke(req.principal.token_id)
    form = _form(req)
    resp = (
        Response(status=303, headers={"Location": "/login"})
        if form is not None
        else Response(status=204)
    )
    resp.set_cookie(SESSION_COOKIE, "", max_age=0, path="/", httponly=True, samesite="strict")
    return resp


def _me(principal: Any, req: Request) -> dict[str, Any]:
    tenants = [t["name"] for t in req.platform.store.list_tenants()]
    return {
        "username": principal.name,
        "kind": principal.kind,
        "roles": principal.roles,
        "tenants": principal.tenants(tenants),
    }


def me(req: Request) -> dict[str, Any]:
    return _me(req.principal, req)


def _token_view(row: dict[str, Any]) -> dict[str, Any]:
    return {
        k: row.get(k)
        for k in (
            "id",
            "username",
            "kind",
            "name",
            "created_at",
            "expires_at",
            "revoked_at",
            "last_used_at",
        )
    }


def list_tokens(req: Request) -> list[dict[str, Any]]:
    assert req.principal is not None
    return [
        _token_view(t)
        for t in req.platform.store.list_tokens(req.principal.name)
        if t["kind"] != "login-once"
    ]


def create_token(req: Request) -> Response:
    assert req.principal is not None
    data = req.json() if req.body else {}
    if not isinstance(data, dict):
        raise BadRequest("body must be an object")
    name = data.get("name", "api")
    days = data.get("expires_in_days")
    if not isinstance(name, str) or not name:
        raise BadRequest("'name' must be a non-empty string")
    if days is not None and (not isinstance(days, int | float) or days <= 0):
        raise BadRequest("'expires_in_days' must be a positive number")
    ttl = timedelta(days=days) if days else None
    token, row = req.platform.auth.issue_token(req.principal.name, "api", name, ttl)
    return Response({**_token_view(row), "token": token}, status=201)


def revoke_token(req: Request) -> Response:
    assert req.principal is not None
    try:
        row = req.platform.store.get_token(req.path_params["token_id"])
    except NotFound:
        raise NotFound("no such token") from None
    if row["username"] != req.principal.name and not req.principal.is_global_admin:
        raise Forbidden("only the token's owner or a platform admin may revoke it")
    req.platform.auth.revoke(str(row["id"]))
    return Response(status=204)


@hookimpl
def sencity_routes() -> list[Route]:
    return [
        Route(
            "POST",
            "/auth/login",
            login,
            public=True,
            name="auth.login",
            summary="Log in with a password; returns a bearer token and sets a cookie",
        ),
        Route("POST", "/auth/logout", logout, roles=ANY_ROLE, scope="user", name="auth.logout"),
        Route("GET", "/auth/me", me, roles=ANY_ROLE, scope="user", name="auth.me"),
        Route(
            "GET",
            "/auth/tokens",
            list_tokens,
            roles=ANY_ROLE,
            scope="user",
            name="auth.tokens.list",
        ),
        Route(
            "POST",
            "/auth/tokens",
            create_token,
            roles=ANY_ROLE,
            scope="user",
            name="auth.tokens.create",
        ),
        Route(
            "DELETE",
            "/auth/tokens/{token_id}",
            revoke_token,
            name="auth.tokens.revoke",
            roles=ANY_ROLE,
            scope="user",
        ),
    ]
