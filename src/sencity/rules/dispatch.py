"""Notification dispatch: which channels hear of an alarm change, and when not.

Every alarm change is published on the bus as ``rules.alarm.<event>`` (payload: the
Alert entity, keyValues) for the dashboard's live stream.  Each channel of the rule's
``notify`` list (and of the escalation levels reached) then gets an
:class:`~sencity.rules.notice.AlarmNotice`, unless

* the channel's ``on`` list leaves the event out;
* the rule's ``quiet_hours`` hold in the tenant's time zone and the alarm's severity is
  not in their ``allow`` list (the notice is dropped; reminders go on afterwards);
* the channel sent ``rate_limit`` notices within ``rules.rate_window`` seconds already
  (a flapping sensor cannot flood anyone).

Channels themselves (webhook, MQTT, e-mail) live in :mod:`sencity.rules.channels`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, tzinfo
from typing import TYPE_CHECKING, Any

from sencity.core.bus import Event, EventBus
from sencity.rules.conditions import in_quiet_hours
from sencity.rules.model import DAYS, Channel, Rule
from sencity.rules.notice import AlarmNotice

if TYPE_CHECKING:
    from sencity.config import RulesSettings
    from sencity.rules.alarms import Outcome

log = logging.getLogger("sencity.rules")
DASHBOARD_EVENTS = ("raised", "updated", "cleared", "acknowledged", "escalated")


def _sender() -> Callable[..., Any] | None:
    try:
        from sencity.rules.channels import send  # type: ignore[attr-defined,unused-ignore]
    except ImportError:
        return None
    return send  # type: ignore[no-any-return,unused-ignore]


class Dispatcher:
    def __init__(
        self, bus: EventBus, settings: RulesSettings, tz_of: Callable[[str], tzinfo]
    ) -> None:
        self.bus = bus
        self.settings = settings
        self.tz_of = tz_of
        self.loop: asyncio.AbstractEventLoop | None = None
        self.windows: dict[str, deque[float]] = {}
        self.sent = self.failed = self.limited = self.quiet = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._warned = False

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def submit(self, out: Outcome, rule: Rule | None) -> None:
        """Tell about ``out`` (from any thread): the bus event now, channels on the loop."""
        self.publish(out)
        if rule is None or self.loop is None:
            return
        loop = self.loop

        def start() -> None:
            task = loop.create_task(self.notify(out, rule))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            start()
        else:
            loop.call_soon_threadsafe(start)

    def publish(self, out: Outcome) -> None:
        if out.event in DASHBOARD_EVENTS:
            self.bus.publish(Event(f"rules.alarm.{out.event}", out.alarm, tenant=out.tenant))

    def channels(self, rule: Rule, level: int) -> list[Channel]:
        chans = list(rule.notify)
        for step in rule.escalation[:level]:
            chans += step.notify
        seen: set[str] = set()
        out = []
        for ch in chans:
            key = json.dumps(ch.model_dump(mode="json"), sort_keys=True)
            if key not in seen:
                seen.add(key)
                out.append(ch)
        return out

    def quiet_now(self, rule: Rule, tenant: str, severity: str, now: float) -> bool:
        q = rule.quiet_hours
        if q is None or severity in q.allow:
            return False
        local = datetime.fromtimestamp(now, self.tz_of(tenant))
        days = frozenset(DAYS.index(d[:3].lower()) for d in q.days) if q.days else None
        return in_quiet_hours(q.from_, q.to, days, local)

    def allowed(self, key: str, limit: int, now: float) -> bool:
        win = self.windows.setdefault(key, deque())
        horizon = now - self.settings.rate_window
        while win and win[0] <= horizon:
            win.popleft()
        if len(win) >= limit:
            return False
        win.append(now)
        return True

    async def notify(self, out: Outcome, rule: Rule, only: Sequence[Channel] | None = None) -> None:
        now = time.time()
        severity = str(out.alarm.get("severity", ""))
        notice = AlarmNotice(
            tenant=out.tenant,
            event=out.event,
            alarm=out.alarm,
            rule_id=rule.id,
            rule_name=rule.name,
            at=datetime.fromtimestamp(now, UTC),
        )
        for n, ch in enumerate(only if only is not None else self.channels(rule, out.level)):
            if ch.type == "dashboard" or (ch.on is not None and out.event not in ch.on):
                continue
            if self.quiet_now(rule, out.tenant, severity, now):
                self.quiet += 1
                log.info("rule %s: %s notice held back (quiet hours)", rule.id, ch.type)
                continue
            doc = ch.model_dump(mode="json", exclude_none=True)
            key = f"{out.tenant}\x1f{rule.id}\x1f{json.dumps(doc, sort_keys=True)}"
            if not self.allowed(key, ch.rate_limit or self.settings.rate_limit, now):
                self.limited += 1
                log.warning(
                    "rule %s: %s channel over its rate limit; notice dropped", rule.id, ch.type
                )
                continue
            send = _sender()
            if send is None:
                if not self._warned:
                    log.warning("notification channels are not available in this build")
                    self._warned = True
                continue
            try:
                await send(doc, notice)
                self.sent += 1
            except Exception as exc:
                self.failed += 1
                log.warning("rule %s: %s notice %d failed: %s", rule.id, ch.type, n, exc)
