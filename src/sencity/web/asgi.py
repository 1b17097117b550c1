"""The thin ASGI adapter: core :class:`~sencity.core.routing.Route` objects → Starlette.

Everything HTTP-specific happens here, once: the request id, access logs and
metrics, body limits, authentication (bearer token, ``X-API-Key`` or the session
cookie), the tenant (``NGSILD-Tenant``), role checks, and turning typed errors
into ``application/problem+json``.  Handlers never see a Starlette object.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, cast

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request as StarletteRequest
from starlette.responses import Response as StarletteResponse
from starlette.responses import StreamingResponse
from starlette.routing import Route as StarletteRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sencity.auth.plugin import SESSION_COOKIE
from sencity.auth.service import AuthService, Principal
from sencity.config import TENANT_PATTERN
from sencity.core.platform import Platform
from sencity.core.routing import Request, Response, Route, StreamResponse
from sencity.errors import (
    BadRequest,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    SenCityError,
    Unauthorized,
)
from sencity.ops.logs import request_id

log = logging.getLogger("sencity.http")
PROBLEM = "application/problem+json"
_tenant_re = re.compile(TENANT_PATTERN)


def problem_response(exc: SenCityError, path: str, rid: str) -> StarletteResponse:
    body = exc.problem(instance=path)
    body["request_id"] = rid
    headers = {}
    if exc.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="sencity"'
    return StarletteResponse(
        json.dumps(body, ensure_ascii=False),
        status_code=exc.status,
        media_type=PROBLEM,
        headers=headers,
    )


def _to_starlette(result: Any) -> StarletteResponse:
    if isinstance(result, StreamResponse):
        return StreamingResponse(
            result.iterator, media_type=result.media_type, headers=result.headers
        )
    if not isinstance(result, Response):
        result = Response(result)
    body, media = result.body, result.media_type
    if result.status == 204 or body is None:
        content = b""
    elif isinstance(body, bytes):
        content = body
        media = media or "application/octet-stream"
    elif isinstance(body, str):
        content = body.encode()
        media = media or "text/plain; charset=utf-8"
    else:
        content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        media = media or "application/json"
    resp = StarletteResponse(
        content,
        status_code=result.status,
        headers=result.headers,
        media_type=media if content or result.status != 204 else None,
    )
    for cookie in result.cookies:
        resp.set_cookie(**cookie)
    return resp


def _credential(headers: dict[str, str], cookies: dict[str, str]) -> str | None:
    auth = headers.get("authorization", "")
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise Unauthorized("the Authorization header must be 'Bearer <token>'")
        return value.strip()
    if headers.get("x-api-key"):
        return headers["x-api-key"].strip()
    return cookies.get(SESSION_COOKIE) or None


def resolve(
    auth: AuthService,
    route: Route,
    tenant: str,
    headers: dict[str, str],
    cookies: dict[str, str],
) -> tuple[Principal | None, str | None]:
    """Authenticate and authorise; return the principal and its role for this route."""
    try:
        cred = _credential(headers, cookies)
        principal = auth.authenticate_token(cred) if cred else None
    except Unauthorized:
        if route.public:
            return None, None
        raise
    if route.public:
        role = principal.role_on(tenant) if principal else None
        return principal, role
    if principal is None:
        principal = auth.anonymous(tenant) if route.scope == "tenant" else None
        if principal is None:
            raise Unauthorized("credentials required: send 'Authorization: Bearer <token>'")
    if route.scope == "tenant":
        return principal, auth.authorize(principal, tenant, route.roles)
    if route.scope == "platform":
        return principal, auth.authorize(principal, None, route.roles)
    held = [r for r in principal.roles.values() if r in route.roles]
    if not held:
        auth.authorize(principal, None, route.roles)  # raises a 403 naming the problem
    return principal, held[0]


def _endpoint(platform: Platform, route: Route) -> Callable[[StarletteRequest], Awaitable[Any]]:
    is_async = inspect.iscoroutinefunction(route.handler)
    threads = platform.handler_threads
    limit = platform.settings.server.max_body_bytes
    default_tenant = platform.settings.tenants.default

    async def endpoint(sreq: StarletteRequest) -> StarletteResponse:
        rid = request_id.get()
        sreq.scope["sencity.route"] = route.name or route.path
        try:
            headers = {k.lower(): v for k, v in sreq.headers.items()}
            tenant = headers.get("ngsild-tenant", "").strip() or default_tenant
            if not _tenant_re.match(tenant):
                raise BadRequest(
                    f"invalid tenant name '{tenant[:80]}': use lower-case letters, digits, "
                    "'-' and '_' (at most 63)"
                )
            declared = headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > limit:
                raise PayloadTooLarge(f"body larger than {limit} bytes")
            body = b""
            if sreq.method not in ("GET", "HEAD", "DELETE"):
                chunks = []
                size = 0
                async for chunk in sreq.stream():
                    size += len(chunk)
                    if size > limit:
                        raise PayloadTooLarge(f"body larger than {limit} bytes")
                    chunks.append(chunk)
                body = b"".join(chunks)
            cookies = dict(sreq.cookies)

            def call() -> Any:
                principal, role = resolve(platform.auth, route, tenant, headers, cookies)
                req = Request(
                    method=sreq.method,
                    path=sreq.url.path,
                    path_params=dict(sreq.path_params),
                    query=list(sreq.query_params.multi_items()),
                    headers=headers,
                    body=body,
                    platform=platform,
                    principal=principal,
                    tenant=tenant,
                    role=role,
                    request_id=rid,
                    client=sreq.client.host if sreq.client else "",
                    cookies=cookies,
                )
                return req if is_async else route.handler(req)

            # authentication (store look-ups) and a plain handler run together: on the
            # event loop (SQLite: short queries, no thread hop) or in one worker thread
            if threads > 0:
                result = await anyio.to_thread.run_sync(call)
            else:
                result = call()
            if is_async:
                result = await cast(Awaitable[Any], route.handler(result))
            return _to_starlette(result)
        except SenCityError as exc:
            if exc.status in (401, 403):
                platform.metrics.auth_failures.labels(status=str(exc.status)).inc()
            return problem_response(exc, sreq.url.path, rid)

    return endpoint


class _RequestContext:
    """Pure ASGI middleware: request id, access log, metrics, and a last-resort 500."""

    def __init__(self, app: ASGIApp, platform: Platform) -> None:
        self.app = app
        self.platform = platform

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if len(path) > 1 and path.endswith("/"):  # /entities/ is /entities
            scope = {**scope, "path": path.rstrip("/") or "/"}
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        rid = incoming[:64] if re.fullmatch(r"[\w.-]{1,64}", incoming) else uuid.uuid4().hex[:16]
        token = request_id.set(rid)
        t0 = time.perf_counter()
        status = 500
        started = False

        async def send_wrapped(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapped)
        except Exception:
            log.exception("unhandled error on %s %s", scope["method"], scope["path"])
            if not started:
                err = SenCityError("internal error; quote the request id when reporting it")
                await problem_response(err, scope["path"], rid)(scope, receive, send_wrapped)
        finally:
            elapsed = time.perf_counter() - t0
            route = scope.get("sencity.route", "unmatched")
            m = self.platform.metrics
            m.requests.labels(method=scope["method"], route=route, status=str(status)).inc()
            m.latency.labels(route=route).observe(elapsed)
            log.info(
                "%s %s %s %.1fms",
                scope["method"],
                scope["path"],
                status,
                elapsed * 1000,
                extra={"status": status, "duration_ms": round(elapsed * 1000, 2)},
            )
            request_id.reset(token)


def create_app(platform: Platform, on_ready: Callable[[], None] | None = None) -> ASGIApp:
    """The ASGI application serving ``platform``; ``on_ready`` runs once it has started."""
    routes = [
        StarletteRoute(r.path, _endpoint(platform, r), methods=[r.method], name=r.name or None)
        for r in platform.routes
    ]

    async def http_error(sreq: StarletteRequest, exc: Exception) -> StarletteResponse:
        assert isinstance(exc, HTTPException)
        rid = request_id.get()
        err: SenCityError
        if exc.status_code == 404:
            err = NotFound(f"no endpoint at {sreq.url.path}")
        elif exc.status_code == 405:
            err = MethodNotAllowed(f"{sreq.method} is not allowed on {sreq.url.path}")
        else:
            err = SenCityError(str(exc.detail))
            err.status = exc.status_code  # type: ignore[misc]
        return problem_response(err, sreq.url.path, rid)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if platform.handler_threads > 0:
            limiter = anyio.to_thread.current_default_thread_limiter()
            limiter.total_tokens = platform.handler_threads
        await platform.start()
        if on_ready is not None:
            on_ready()
        try:
            yield
        finally:
            await platform.stop()

    app = Starlette(
        routes=routes, exception_handlers={HTTPException: http_error}, lifespan=lifespan
    )
    app.state.platform = platform
    return _RequestContext(app, platform)


def app_from_env() -> ASGIApp:
    """Factory for multi-worker serving: each worker process builds its own platform."""
    import os

    from sencity.config import load_settings
    from sencity.ops.logs import setup_logging

    overrides = json.loads(os.environ.get("_SENCITY_SERVE_OVERRIDES", "{}"))
    settings = load_settings(None, overrides)
    setup_logging(settings.log.level, settings.log.format)
    return create_app(Platform(settings))
