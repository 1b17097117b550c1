"""The platform object: settings, store, bus, auth, metrics and the loaded plugins.

It knows nothing of HTTP frameworks; :mod:`sencity.web.asgi` serves it.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
from collections.abc import Iterable
from typing import Any

import pluggy

from sencity.auth.service import AuthService
from sencity.config import Settings
from sencity.core import hooks
from sencity.core.bus import EventBus, make_bus
from sencity.core.hooks import Task
from sencity.core.routing import Route
from sencity.ops.metrics import Metrics
from sencity.store import Store, open_store

log = logging.getLogger("sencity")

#: built-in modules, loaded as plugins in this order
BUILTIN_PLUGINS = (
    "sencity.ops.plugin",
    "sencity.auth.plugin",
    "sencity.core.tenants",
    "sencity.hub.plugin",
    "sencity.subs.plugin",
    "sencity.ingest.plugin",
    "sencity.rules.plugin",
    "sencity.rules.indicators_plugin",
    "sencity.web.plugin",
)


def plugin_manager(
    disabled: Iterable[str] = (), extra: Iterable[object] = ()
) -> pluggy.PluginManager:
    """Built-in plugins, then ``extra`` ones, then entry points of the ``sencity`` group."""
    pm = pluggy.PluginManager("sencity")
    pm.add_hookspecs(hooks)
    skip = set(disabled)
    for name in BUILTIN_PLUGINS:
        if name not in skip:
            pm.register(importlib.import_module(name), name=name)
    for plugin in extra:
        pm.register(plugin)
    for plugin_name in skip:
        pm.set_blocked(plugin_name)
    pm.load_setuptools_entrypoints("sencity")
    return pm


class Platform:
    def __init__(
        self, settings: Settings, store: Store | None = None, plugins: Iterable[object] = ()
    ) -> None:
        self.settings = settings
        self.pm = plugin_manager(settings.plugins.disabled, plugins)
        self.store = store or open_store(
            settings.store_url,
            pool_size=settings.store.pool_size,
            connect_timeout=settings.store.connect_timeout,
        )
        self.store.ping()
        migrations = [m for ms in self.pm.hook.sencity_migrations() for m in ms]
        self.store.migrate(migrations)
        self.bus: EventBus = make_bus(settings.bus_backend, settings.store_url)
        self.auth = AuthService(self.store, settings)
        self.metrics = Metrics()
        self.routes: list[Route] = [
            r for rs in self.pm.hook.sencity_routes(platform=self) for r in rs
        ]
        self._tasks: list[asyncio.Task[None]] = []
        self.state: dict[str, Any] = {}  # per-module runtime state, keyed by module name
        self.pm.hook.sencity_startup(platform=self)

    @property
    def handler_threads(self) -> int:
        """Threads for plain handlers; 0 runs them on the event loop."""
        n = self.settings.server.handler_threads
        if n >= 0:
            return n
        return 0 if self.store.dialect == "sqlite" else 8

    @property
    def plugin_names(self) -> list[str]:
        return sorted(name for name, _ in self.pm.list_name_plugin())

    async def start(self) -> None:
        await self.bus.start()
        for subs in self.pm.hook.sencity_subscriptions(platform=self):
            for pattern, handler in subs:
                self.bus.subscribe(pattern, handler)
        for tasks in self.pm.hook.sencity_tasks(platform=self):
            for task in tasks:
                self._tasks.append(asyncio.create_task(self._supervise(task), name=task.name))

    async def _supervise(self, task: Task) -> None:
        backoff = 1.0
        while True:
            try:
                await task.run()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                self.metrics.task_failures.labels(task=task.name).inc()
                log.exception("background task %s failed; restarting in %.0f s", task.name, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 60)

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self._tasks.clear()
        await self.bus.stop()

    def close(self) -> None:
        flush = getattr(self.bus, "flush", None)
        if flush is not None:  # events of a command's writes reach the servers first
            flush()
        self.store.close()


def prepare_store(settings: Settings) -> Store:
    """Open and migrate the store without starting anything (for admin commands)."""
    pm = plugin_manager(settings.plugins.disabled)
    store = open_store(
        settings.store_url,
        pool_size=min(settings.store.pool_size, 2),
        connect_timeout=settings.store.connect_timeout,
    )
    store.ping()
    store.migrate([m for ms in pm.hook.sencity_migrations() for m in ms])
    return store
