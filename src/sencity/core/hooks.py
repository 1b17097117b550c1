"""Hook points that modules (built-in or third-party) implement to plug in.

A plugin is a module or object with functions named like the specs below and
marked ``@hookimpl``.  Built-in modules are listed in
:data:`sencity.core.platform.BUILTIN_PLUGINS`; third-party packages declare an
entry point in the ``sencity`` group.  ``plugins.disabled`` turns any of them off.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import click

    from sencity.core.bus import EventHandler
    from sencity.core.platform import Platform
    from sencity.core.routing import Route
    from sencity.store.base import Migration

hookspec = pluggy.HookspecMarker("sencity")
hookimpl = pluggy.HookimplMarker("sencity")


@dataclass(frozen=True)
class Task:
    """A background task: ``run`` is awaited while the server runs and restarted if it fails."""

    name: str
    run: Callable[[], Coroutine[Any, Any, None]]


@hookspec
def sencity_migrations() -> list[Migration]:  # type: ignore[empty-body]
    """Schema steps of this module's tables (both dialects)."""


@hookspec
def sencity_routes(platform: Platform) -> list[Route]:  # type: ignore[empty-body]
    """HTTP endpoints of this module."""


@hookspec
def sencity_tasks(platform: Platform) -> list[Task]:  # type: ignore[empty-body]
    """Background tasks to run while the server runs."""


@hookspec
def sencity_subscriptions(  # type: ignore[empty-body]
    platform: Platform,
) -> list[tuple[str, EventHandler]]:
    """(topic pattern, handler) pairs to subscribe on the event bus."""


@hookspec
def sencity_startup(platform: Platform) -> None:
    """Called once the store is migrated, before the server accepts requests."""


@hookspec
def sencity_cli(cli: click.Group) -> None:
    """Add commands to the ``sencity`` command line."""
