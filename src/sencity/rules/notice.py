"""What a notification channel is handed when an alarm changes.

The rules engine's dispatcher builds one :class:`AlarmNotice` per alarm event it
decides to notify about (after quiet hours and rate limits) and hands it to
``sencity.rules.channels.send(channel, notice)`` for each channel of the rule's
``notify`` list.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

#: the alarm events a notice can be about
NoticeEvent = Literal["raised", "updated", "escalated", "reminder", "cleared", "acknowledged"]
EVENTS: tuple[str, ...] = ("raised", "updated", "escalated", "reminder", "cleared", "acknowledged")


@dataclass(frozen=True)
class AlarmNotice:
    """One alarm event to tell people about.

    ``alarm`` is the Alert entity in keyValues form with compact attribute names
    (``id``, ``type``, ``severity``, ``alarmStatus``, ``alertSource``, ``refRule``,
    ``description``, ``dateIssued``, ...), as the hub renders it after the change.
    """

    tenant: str
    event: str  # one of EVENTS
    alarm: dict[str, Any]
    rule_id: str
    rule_name: str
    at: datetime
