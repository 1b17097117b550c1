"""``GET /health`` (public liveness and store check) and ``GET /metrics`` (Prometheus)."""

from __future__ import annotations

import time

from sencity import __version__
from sencity.auth.roles import WRITERS
from sencity.core.hooks import hookimpl
from sencity.core.platform import Platform
from sencity.core.routing import Request, Response, Route
from sencity.errors import StoreUnavailable
from sencity.ops.metrics import CONTENT_TYPE_LATEST

_started = time.monotonic()


def health(req: Request) -> Response:
    platform = req.platform
    t0 = time.perf_counter()
    try:
        platform.store.ping()
        store = {
            "status": "ok",
            "backend": platform.store.dialect,
            "latency_ms": round((time.perf_counter() - t0) * 1000, 2),
        }
        platform.metrics.store_up.set(1)
    except StoreUnavailable as exc:
        store = {"status": "unreachable", "backend": platform.store.dialect, "detail": exc.detail}
        platform.metrics.store_up.set(0)
    ok = store["status"] == "ok"
    body = {
        "status": "ok" if ok else "degraded",
        "version": __version__,
        "uptime_s": round(time.monotonic() - _started, 1),
        "store": store,
        "bus": platform.settings.bus_backend,
    }
    return Response(body, status=200 if ok else 503)


def metrics(req: Request) -> Response:
    platform = req.platform
    bus = platform.bus
    platform.metrics.bus_published.set(bus.published)
    platform.metrics.bus_delivered.set(bus.delivered)
    platform.metrics.bus_errors.set(bus.handler_errors)
    return Response(platform.metrics.render(), media_type=CONTENT_TYPE_LATEST)


@hookimpl
def sencity_routes(platform: Platform) -> list[Route]:
    return [
        Route(
            "GET",
            "/health",
            health,
            public=True,
            name="health",
            summary="Liveness and store reachability",
        ),
        Route(
            "GET",
            "/metrics",
            metrics,
            WRITERS,
            public=platform.settings.metrics.public,
            scope="platform",
            name="metrics",
            summary="Prometheus metrics",
        ),
    ]
