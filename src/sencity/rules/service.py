"""The rules module's runtime, kept in ``platform.state["rules"]``: its store, the alarm
service, the notification dispatcher and the engine."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sencity.core.bus import Event
from sencity.errors import NotFound
from sencity.rules.alarms import AlarmService
from sencity.rules.dispatch import Dispatcher
from sencity.rules.engine import CHANGED, Engine
from sencity.rules.model import Rule
from sencity.rules.store import RulesStore

if TYPE_CHECKING:
    from sencity.core.platform import Platform
    from sencity.hub.api import HubService


class RulesService:
    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.settings = platform.settings.rules
        self.hub: HubService = platform.state["hub"]
        self.rstore = RulesStore(platform.store)
        self.alarms = AlarmService(self.hub, self.rstore)
        self.engine = Engine(self)
        self.dispatcher = Dispatcher(platform.bus, self.settings, self.engine.tz)

    def changed(self, tenant: str) -> None:
        """After rules of ``tenant`` were created, replaced or deleted (any process)."""
        # this process's engine keeps the tenant's changes from now on, for the new rules
        # (the bus event may come after the first writes that follow)
        self.engine.stale.add(tenant)
        self.platform.bus.publish(Event(CHANGED, {}, tenant=tenant))

    def rule(self, tenant: str, rid: str) -> Rule | None:
        ev = self.engine.evaluators.get(tenant, {}).get(rid)
        if ev is not None:
            return ev.rule
        try:
            return self.rstore.get_rule(tenant, rid)
        except NotFound:
            return None
