"""Prometheus metrics.  Each platform has its own registry; modules add their metrics to it."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "sencity_http_requests",
            "HTTP requests handled",
            ["method", "route", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "sencity_http_request_duration_seconds",
            "Time to answer an HTTP request",
            ["route"],
            registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.auth_failures = Counter(
            "sencity_auth_failures",
            "Requests refused by authentication or authorisation",
            ["status"],
            registry=r,
        )
        self.task_failures = Counter(
            "sencity_task_failures",
            "Background task crashes",
            ["task"],
            registry=r,
        )
        self.store_up = Gauge(
            "sencity_store_up", "1 when the store answered the last check", registry=r
        )
        self.bus_published = Gauge(
            "sencity_bus_events_published",
            "Events published on the bus by this process",
            registry=r,
        )
        self.bus_delivered = Gauge(
            "sencity_bus_events_delivered",
            "Event deliveries to subscribers in this process",
            registry=r,
        )
        self.bus_errors = Gauge(
            "sencity_bus_handler_errors", "Event handlers that raised", registry=r
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
