"""Alarms: ``Alert`` entities in the hub, written through the hub's own write path (so
history, subscriptions and the change feed see them), with their bookkeeping rows
(``rules_alarms``, ``rules_timeline``) written by a hub write hook in the same
transaction."""

from __future__ import annotations

import contextvars
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sencity.errors import Conflict, NotFound
from sencity.hub.model import Entity, parse_attributes, parse_entity
from sencity.hub.render import Options, render
from sencity.rules.model import SEVERITY_RANK, Rule
from sencity.rules.store import RulesStore
from sencity.store.base import Tx

if TYPE_CHECKING:
    from sencity.hub.api import HubService

ACTIVE_UNACK = "active-unacknowledged"
ACTIVE_ACK = "active-acknowledged"
CLEARED_UNACK = "cleared-unacknowledged"
CLEARED_ACK = "cleared-acknowledged"
STATUSES = (ACTIVE_UNACK, ACTIVE_ACK, CLEARED_UNACK, CLEARED_ACK)
_FMT = "%Y-%m-%dT%H:%M:%S.%fZ"
_FIELD = re.compile(r"\{(\w+)\}")


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime(_FMT)


def epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def fill(template: str, values: dict[str, Any]) -> str:
    """``{name}`` fields of ``template`` from ``values`` (unknown ones left as they are)."""

    def one(m: re.Match[str]) -> str:
        v = values.get(m.group(1))
        if v is None:
            return m.group(0)
        if isinstance(v, float):
            return f"{v:g}"
        return str(v)

    return _FIELD.sub(one, template)


@dataclass
class Pending:
    """What the write hook adds for one alarm in the hub's transaction."""

    row: dict[str, Any]
    timeline: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)


@dataclass
class Change:
    """A rule transition for :meth:`AlarmService.apply`."""

    kind: str  # raise | clear
    rule: Rule
    originator: str
    source_type: str
    at: float  # when it happened, in the data's time (the Alert's dates)
    values: dict[str, Any] = field(default_factory=dict)
    location: dict[str, Any] | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    #: when the engine made it (wall clock): escalations and reminders count from there,
    #: so a replay of old data does not escalate at once (None: ``at``)
    noted: float | None = None


@dataclass
class Outcome:
    """An alarm change to tell about: ``event`` is a notice event."""

    tenant: str
    event: str
    alarm: dict[str, Any]  # keyValues, compact names
    rule_id: str
    level: int = 0


def next_due(rule: Rule | None, raised: float, level: int, now: float) -> float | None:
    """When an unacknowledged alarm's next escalation or reminder is due."""
    if rule is None:
        return None
    cands = []
    if level < len(rule.escalation):
        cands.append(raised + rule.escalation[level].after)
    if rule.reminder:
        cands.append(now + rule.reminder)
    return min(cands) if cands else None


class AlarmService:
    def __init__(self, hub: HubService, rstore: RulesStore) -> None:
        self.hub = hub
        self.rstore = rstore
        self.ctx = hub.resolver.resolve(None)
        self._pending: contextvars.ContextVar[dict[str, Pending] | None] = contextvars.ContextVar(
            "rules_pending", default=None
        )
        hub.hub.write_hooks.append(self.write_hook)

    # -- the write hook -----------------------------------------------------------------
    def write_hook(self, tx: Tx, tenant: str, changes: dict[str, Any], now: str) -> None:
        pending = self._pending.get()
        if not pending:
            return
        for aid, p in pending.items():
            if aid not in changes:
                continue
            RulesStore.upsert_alarm(tx, tenant, {**p.row, "id": aid, "updated_at": now})
            for actor, action, detail in p.timeline:
                RulesStore.add_timeline(tx, tenant, aid, now, actor, action, detail)

    def _write(self, tenant: str, aid: str, build: Any, pending: Pending) -> dict[str, Any]:
        token = self._pending.set({aid: pending})
        try:
            changes, errors = self.hub.hub.modify(self.hub.ensure_tenant(tenant), [aid], build)
        finally:
            self._pending.reset(token)
        if aid in errors:
            raise errors[aid]
        after = changes[aid].after if aid in changes else None
        if after is None:
            raise NotFound(f"alarm '{aid}' does not exist")
        return self.render(after)

    def render(self, entity: Entity) -> dict[str, Any]:
        return render(entity, self.ctx, Options(format="keyValues"))

    def _attrs(self, eid: str, body: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
        return parse_attributes(body, self.ctx, f"alarm {eid}")

    def _update(self, eid: str, body: dict[str, Any]) -> Any:
        attrs = self._attrs(eid, body)

        def plan(i: str, cur: Entity | None) -> Entity:
            if cur is None:
                raise NotFound(f"alarm '{eid}' does not exist")
            new = Entity(
                cur.id,
                list(cur.types),
                {k: list(v) for k, v in cur.attrs.items()},
                list(cur.scopes) if cur.scopes else None,
                cur.created_at,
                cur.modified_at,
            )
            new.attrs.update(attrs)
            return new

        return plan

    # -- raise and clear (the engine) ---------------------------------------------------
    def new_alert(
        self,
        tenant: str,
        rule: Rule,
        originator: str,
        values: dict[str, Any],
        location: dict[str, Any] | None,
        now: float,
        text: str,
    ) -> Entity:
        aid = f"urn:ngsi-ld:Alert:{tenant}:alm-{uuid.uuid4().hex[:16]}"
        stamp = iso(now)
        body: dict[str, Any] = {
            "id": aid,
            "type": "Alert",
            "name": {"type": "Property", "value": rule.name},
            "severity": {"type": "Property", "value": rule.alarm.severity},
            "alarmStatus": {"type": "Property", "value": ACTIVE_UNACK},
            "alertSource": {"type": "Relationship", "object": originator},
            "refRule": {"type": "Property", "value": rule.id},
            "dateIssued": {"type": "Property", "value": stamp},
            "validFrom": {"type": "Property", "value": stamp},
            "description": {"type": "Property", "value": text},
        }
        if rule.alarm.category:
            body["category"] = {"type": "Property", "value": rule.alarm.category}
        if rule.alarm.sub_category:
            body["subCategory"] = {"type": "Property", "value": rule.alarm.sub_category}
        if location:
            body["location"] = {"type": "GeoProperty", "value": location}
        for name in ("wardCode", "areaServed"):
            if isinstance(values.get(name), str | int) and not isinstance(values[name], bool):
                body[name] = {"type": "Property", "value": values[name]}
        if rule.cap is not None:
            body["publicWarning"] = {"type": "Property", "value": True}
            body["capInfo"] = {"type": "JsonProperty", "json": rule.cap.model_dump(mode="json")}
        return parse_entity(body, self.ctx)

    def apply(self, tenant: str, changes: list[Change]) -> list[Outcome]:
        """Raise and clear alarms for a batch of rule transitions, in order, in one hub
        transaction: a raise while the (rule, source) alarm is active updates it; a
        clear without an active alarm does nothing."""
        if not changes:
            return []
        origins = sorted({c.originator for c in changes})
        active: dict[tuple[str, str], dict[str, Any]] = {}
        with self.rstore.store.transaction(write=False) as tx:
            for i in range(0, len(origins), 500):
                chunk = origins[i : i + 500]
                for found in tx.execute(
                    "SELECT * FROM rules_alarms WHERE tenant = ? AND active = 1 AND originator "
                    f"IN ({','.join('?' * len(chunk))})",
                    [tenant, *chunk],
                ):
                    active[(found["rule_id"], found["originator"])] = found
        created: dict[str, Entity] = {}
        updates: dict[str, list[dict[str, list[dict[str, Any]]]]] = {}
        pending: dict[str, Pending] = {}
        events: list[tuple[str, str, str, int]] = []  # alarm id, event, rule id, level
        for ch in changes:
            rule = ch.rule
            key = (rule.id, ch.originator)
            row: dict[str, Any] | None = active.get(key)
            actor = "rule:" + rule.id
            if ch.kind == "raise":
                text = fill(
                    rule.alarm.description or rule.name,
                    {**ch.values, "id": ch.originator, "rule": rule.id, "name": rule.name},
                )
                if row is not None:
                    aid = row["id"]
                    p = pending.setdefault(aid, Pending(self._keep(row)))
                    p.timeline.append((actor, "retriggered", {"description": text, **ch.detail}))
                    updates.setdefault(aid, []).append(self._attrs(aid, {"description": text}))
                    events.append((aid, "updated", rule.id, int(row["level"])))
                    continue
                entity = self.new_alert(
                    tenant, rule, ch.originator, ch.values, ch.location, ch.at, text
                )
                aid = entity.id
                created[aid] = entity
                noted = ch.noted if ch.noted is not None else ch.at
                due = next_due(rule, noted, 0, noted)
                made = {
                    "id": aid,
                    "rule_id": rule.id,
                    "originator": ch.originator,
                    "source_type": ch.source_type,
                    "active": 1,
                    "status": ACTIVE_UNACK,
                    "severity": rule.alarm.severity,
                    "level": 0,
                    "next_at": iso(due) if due is not None else None,
                    "raised_at": iso(noted),
                }
                active[key] = made
                pending[aid] = Pending(
                    {**self._keep(made), "raised_at": made["raised_at"]},
                    [
                        (
                            actor,
                            "raised",
                            {"severity": rule.alarm.severity, "description": text, **ch.detail},
                        )
                    ],
                )
                events.append((aid, "raised", rule.id, 0))
            else:
                if row is None:
                    continue
                aid = row["id"]
                status = CLEARED_ACK if row["status"] == ACTIVE_ACK else CLEARED_UNACK
                del active[key]
                p = pending.setdefault(aid, Pending(self._keep(row)))
                p.row.update(active=0, status=status, next_at=None)
                p.timeline.append(
                    (actor, "cleared", {"reason": "condition no longer holds", **ch.detail})
                )
                updates.setdefault(aid, []).append(
                    self._attrs(aid, {"alarmStatus": status, "validTo": iso(ch.at)})
                )
                events.append((aid, "cleared", rule.id, int(row["level"])))

        def plan(eid: str, cur: Entity | None) -> Entity:
            base = created.get(eid) or cur
            if base is None:
                raise NotFound(f"alarm '{eid}' does not exist")
            new = Entity(
                base.id,
                list(base.types),
                {k: list(v) for k, v in base.attrs.items()},
                list(base.scopes) if base.scopes else None,
                base.created_at,
                base.modified_at,
            )
            for attrs in updates.get(eid, ()):
                new.attrs.update(attrs)
            return new

        ids = list(pending)
        token = self._pending.set(pending)
        try:
            done, errors = self.hub.hub.modify(self.hub.ensure_tenant(tenant), ids, plan)
        finally:
            self._pending.reset(token)
        shown = {aid: self.render(c.after) for aid, c in done.items() if c.after is not None}
        return [
            Outcome(tenant, event, shown[aid], rid, level)
            for aid, event, rid, level in events
            if aid in shown and aid not in errors
        ]

    # -- operator actions ---------------------------------------------------------------
    def _row(self, tenant: str, aid: str) -> dict[str, Any]:
        return self.rstore.alarm_row(tenant, aid)

    @staticmethod
    def _keep(row: dict[str, Any], **changes: Any) -> dict[str, Any]:
        out = {
            k: row[k]
            for k in (
                "rule_id",
                "originator",
                "source_type",
                "active",
                "status",
                "severity",
                "level",
                "next_at",
            )
        }
        out.update(changes)
        return out

    def clear(
        self,
        tenant: str,
        aid: str,
        actor: str,
        reason: str = "",
        now: float | None = None,
        detail: dict[str, Any] | None = None,
    ) -> Outcome:
        row = self._row(tenant, aid)
        if not row["active"]:
            raise Conflict(f"alarm '{aid}' is already cleared")
        status = CLEARED_ACK if row["status"] == ACTIVE_ACK else CLEARED_UNACK
        stamp = iso(now if now is not None else datetime.now(UTC).timestamp())
        pending = Pending(
            self._keep(row, active=0, status=status, next_at=None),
            [(actor, "cleared", {"reason": reason, **(detail or {})} if reason else detail or {})],
        )
        alarm = self._write(
            tenant, aid, self._update(aid, {"alarmStatus": status, "validTo": stamp}), pending
        )
        return Outcome(tenant, "cleared", alarm, row["rule_id"], row["level"])

    def acknowledge(self, tenant: str, aid: str, actor: str, comment: str = "") -> Outcome:
        row = self._row(tenant, aid)
        status = {ACTIVE_UNACK: ACTIVE_ACK, CLEARED_UNACK: CLEARED_ACK}.get(row["status"])
        if status is None:
            raise Conflict(f"alarm '{aid}' is already acknowledged")
        pending = Pending(
            self._keep(row, status=status, next_at=None),
            [(actor, "acknowledged", {"comment": comment} if comment else {})],
        )
        alarm = self._write(tenant, aid, self._update(aid, {"alarmStatus": status}), pending)
        return Outcome(tenant, "acknowledged", alarm, row["rule_id"], row["level"])

    def assign(self, tenant: str, aid: str, actor: str, assignee: str) -> Outcome:
        row = self._row(tenant, aid)
        pending = Pending(self._keep(row), [(actor, "assigned", {"assignee": assignee})])
        alarm = self._write(tenant, aid, self._update(aid, {"assignee": assignee}), pending)
        return Outcome(tenant, "updated", alarm, row["rule_id"], row["level"])

    def comment(self, tenant: str, aid: str, actor: str, text: str) -> dict[str, Any]:
        self._row(tenant, aid)
        entry = {
            "at": iso(datetime.now(UTC).timestamp()),
            "actor": actor,
            "action": "comment",
            "text": text,
        }
        with self.rstore.store.transaction() as tx:
            RulesStore.add_timeline(tx, tenant, aid, entry["at"], actor, "comment", {"text": text})
        return entry

    def get(self, tenant: str, aid: str) -> dict[str, Any]:
        row = self._row(tenant, aid)
        entity = self.hub.hub.get(tenant, aid)
        if entity is None:
            raise NotFound(f"alarm '{aid}' does not exist")
        return {**self.render(entity), "level": row["level"]}

    def entities(self, tenant: str, ids: list[str]) -> dict[str, dict[str, Any]]:
        from sencity.hub.store import Query

        found, _ = self.hub.hub.query(tenant, Query(ids=ids, limit=max(1, len(ids))))
        return {e.id: self.render(e) for e in found}

    # -- escalation (the engine's timer) ------------------------------------------------
    def escalate_or_remind(
        self, tenant: str, row: dict[str, Any], rule: Rule | None, now: float
    ) -> Outcome | None:
        """The alarm ``row`` is due: escalate it (next level) or remind (same level)."""
        aid = row["id"]
        if rule is None or row["status"] != ACTIVE_UNACK:
            self.rstore.set_next(tenant, aid, None)
            return None
        raised = epoch(row["raised_at"])
        level = int(row["level"])
        if level < len(rule.escalation) and raised + rule.escalation[level].after <= now + 1e-6:
            step = rule.escalation[level]
            severity = row["severity"]
            if step.severity and SEVERITY_RANK[step.severity] > SEVERITY_RANK[severity]:
                severity = step.severity
            level += 1
            due = next_due(rule, raised, level, now)
            pending = Pending(
                self._keep(
                    row,
                    severity=severity,
                    level=level,
                    next_at=iso(due) if due is not None else None,
                ),
                [("rule:" + rule.id, "escalated", {"level": level, "severity": severity})],
            )
            alarm = self._write(tenant, aid, self._update(aid, {"severity": severity}), pending)
            return Outcome(tenant, "escalated", alarm, rule.id, level)
        due = next_due(rule, raised, level, now)
        if not rule.reminder:  # early: only the time of the next escalation
            self.rstore.set_next(tenant, aid, iso(due) if due is not None else None)
            return None
        pending = Pending(
            self._keep(row, next_at=iso(due) if due is not None else None),
            [("rule:" + rule.id, "reminder", {})],
        )
        alarm = self._write(tenant, aid, self._update(aid, {}), pending)
        return Outcome(tenant, "reminder", alarm, rule.id, level)
