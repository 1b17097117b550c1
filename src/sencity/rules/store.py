"""Tables of the rules module (both backends):

* ``rules_rules`` — the rule documents, per tenant;
* ``rules_alarms`` — one row per alarm (its ``Alert`` entity lives in the hub): rule,
  originator, status, severity, escalation level and when its next escalation or
  reminder is due.  A partial unique index allows one *active* alarm per (rule,
  originator).  Rows are written by a hub write hook, in the transaction that writes
  the Alert entity, so the two never disagree;
* ``rules_timeline`` — every change of every alarm, with who and when;
* ``rules_state`` — the engine's state that must survive a restart: which (rule,
  entity) conditions are active, pending ``for:`` durations with their due time,
  sliding-window hits.  Written on state transitions only.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

from sencity.errors import AlreadyExists, NotFound
from sencity.rules.model import Rule, parse_rule
from sencity.store.base import Migration, Store, Tx, utcnow

_TABLES = [
    """CREATE TABLE rules_rules (
        tenant TEXT NOT NULL, id TEXT NOT NULL, body TEXT NOT NULL,
        created_at TEXT NOT NULL, modified_at TEXT NOT NULL, PRIMARY KEY (tenant, id))""",
    """CREATE TABLE rules_alarms (
        tenant TEXT NOT NULL, id TEXT NOT NULL, rule_id TEXT NOT NULL,
        originator TEXT NOT NULL, source_type TEXT NOT NULL,
        active INTEGER NOT NULL, status TEXT NOT NULL, severity TEXT NOT NULL,
        level INTEGER NOT NULL DEFAULT 0, next_at TEXT,
        raised_at TEXT NOT NULL, updated_at TEXT NOT NULL, PRIMARY KEY (tenant, id))""",
    "CREATE UNIQUE INDEX rules_alarms_one_active ON rules_alarms (tenant, rule_id, originator) "
    "WHERE active = 1",
    "CREATE INDEX rules_alarms_due ON rules_alarms (next_at)",
    "CREATE INDEX rules_alarms_list ON rules_alarms (tenant, raised_at)",
    """CREATE TABLE rules_timeline (
        id TEXT PRIMARY KEY, tenant TEXT NOT NULL, alarm_id TEXT NOT NULL, at TEXT NOT NULL,
        actor TEXT NOT NULL, action TEXT NOT NULL, detail TEXT)""",
    "CREATE INDEX rules_timeline_alarm ON rules_timeline (tenant, alarm_id, at)",
    """CREATE TABLE rules_state (
        tenant TEXT NOT NULL, rule_id TEXT NOT NULL, key TEXT NOT NULL, state TEXT NOT NULL,
        due_at TEXT, PRIMARY KEY (tenant, rule_id, key))""",
    "CREATE INDEX rules_state_due ON rules_state (due_at)",
]

MIGRATIONS = [Migration("rules", 1, sqlite=list(_TABLES), postgresql=list(_TABLES))]

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


class RulesStore:
    def __init__(self, store: Store) -> None:
        self.store = store

    # -- rules --------------------------------------------------------------------------
    def add_rule(self, tenant: str, rule: Rule) -> None:
        now = utcnow()
        try:
            with self.store.transaction() as tx:
                tx.execute(
                    "INSERT INTO rules_rules (tenant, id, body, created_at, modified_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (tenant, rule.id, _dumps(rule.document()), now, now),
                )
        except Exception as exc:
            if self.store.is_race(exc):
                raise AlreadyExists(f"rule '{rule.id}' already exists", rule=rule.id) from None
            raise

    def put_rules(self, tenant: str, rules: Sequence[Rule]) -> tuple[int, int]:
        """Create or replace ``rules`` in one transaction: (created, replaced)."""
        now = utcnow()
        made = replaced = 0
        with self.store.transaction() as tx:
            have = {
                r["id"]
                for r in tx.execute("SELECT id FROM rules_rules WHERE tenant = ?", (tenant,))
            }
            for rule in rules:
                if rule.id in have:
                    tx.execute(
                        "UPDATE rules_rules SET body = ?, modified_at = ? "
                        "WHERE tenant = ? AND id = ?",
                        (_dumps(rule.document()), now, tenant, rule.id),
                    )
                    replaced += 1
                else:
                    tx.execute(
                        "INSERT INTO rules_rules (tenant, id, body, created_at, modified_at) "
                        "VALUES (?, ?, ?, ?, ?)",
                        (tenant, rule.id, _dumps(rule.document()), now, now),
                    )
                    made += 1
        return made, replaced

    def replace_rule(self, tenant: str, rule: Rule) -> None:
        with self.store.transaction() as tx:
            done = tx.execute(
                "UPDATE rules_rules SET body = ?, modified_at = ? WHERE tenant = ? AND id = ? "
                "RETURNING id",
                (_dumps(rule.document()), utcnow(), tenant, rule.id),
            )
        if not done:
            raise NotFound(f"rule '{rule.id}' does not exist", rule=rule.id)

    def delete_rule(self, tenant: str, rid: str) -> None:
        with self.store.transaction() as tx:
            done = tx.execute(
                "DELETE FROM rules_rules WHERE tenant = ? AND id = ? RETURNING id", (tenant, rid)
            )
            tx.execute("DELETE FROM rules_state WHERE tenant = ? AND rule_id = ?", (tenant, rid))
        if not done:
            raise NotFound(f"rule '{rid}' does not exist", rule=rid)

    def row(self, tenant: str, rid: str) -> dict[str, Any]:
        with self.store.transaction(write=False) as tx:
            row = tx.one(
                "SELECT id, body, created_at, modified_at FROM rules_rules "
                "WHERE tenant = ? AND id = ?",
                (tenant, rid),
            )
        if row is None:
            raise NotFound(f"rule '{rid}' does not exist", rule=rid)
        return row

    def get_rule(self, tenant: str, rid: str) -> Rule:
        return parse_rule(json.loads(self.row(tenant, rid)["body"]))

    def list_rows(self, tenant: str, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
        with self.store.transaction(write=False) as tx:
            rows = tx.execute(
                "SELECT id, body, created_at, modified_at FROM rules_rules WHERE tenant = ? "
                "ORDER BY id LIMIT ? OFFSET ?",
                (tenant, limit, offset),
            )
            total = tx.execute("SELECT count(*) AS n FROM rules_rules WHERE tenant = ?", (tenant,))[
                0
            ]["n"]
        return rows, int(total)

    def all_rules(self, tenant: str | None = None) -> dict[str, list[Rule]]:
        """Every stored rule by tenant (a rule that no longer validates is skipped)."""
        sql = "SELECT tenant, body FROM rules_rules"
        params: tuple[Any, ...] = ()
        if tenant is not None:
            sql += " WHERE tenant = ?"
            params = (tenant,)
        with self.store.transaction(write=False) as tx:
            rows = tx.execute(sql + " ORDER BY tenant, id", params)
        out: dict[str, list[Rule]] = {}
        for r in rows:
            try:
                out.setdefault(r["tenant"], []).append(parse_rule(json.loads(r["body"])))
            except Exception:  # noqa: S112 - a rule stored by an older version: skipped
                continue
        return out

    # -- alarms -------------------------------------------------------------------------
    @staticmethod
    def active_alarm(tx: Tx, tenant: str, rule_id: str, originator: str) -> dict[str, Any] | None:
        return tx.one(
            "SELECT * FROM rules_alarms WHERE tenant = ? AND rule_id = ? AND originator = ? "
            "AND active = 1",
            (tenant, rule_id, originator),
        )

    def alarm_row(self, tenant: str, aid: str) -> dict[str, Any]:
        with self.store.transaction(write=False) as tx:
            row = tx.one("SELECT * FROM rules_alarms WHERE tenant = ? AND id = ?", (tenant, aid))
        if row is None:
            raise NotFound(f"alarm '{aid}' does not exist")
        return row

    @staticmethod
    def upsert_alarm(tx: Tx, tenant: str, row: dict[str, Any]) -> None:
        done = tx.execute(
            "UPDATE rules_alarms SET active = ?, status = ?, severity = ?, level = ?, "
            "next_at = ?, updated_at = ? WHERE tenant = ? AND id = ? RETURNING id",
            (
                row["active"],
                row["status"],
                row["severity"],
                row["level"],
                row["next_at"],
                row["updated_at"],
                tenant,
                row["id"],
            ),
        )
        if not done:
            tx.execute(
                "INSERT INTO rules_alarms (tenant, id, rule_id, originator, source_type, active, "
                "status, severity, level, next_at, raised_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    tenant,
                    row["id"],
                    row["rule_id"],
                    row["originator"],
                    row["source_type"],
                    row["active"],
                    row["status"],
                    row["severity"],
                    row["level"],
                    row["next_at"],
                    row.get("raised_at") or row["updated_at"],
                    row["updated_at"],
                ),
            )

    def set_next(self, tenant: str, aid: str, next_at: str | None) -> None:
        with self.store.transaction() as tx:
            tx.execute(
                "UPDATE rules_alarms SET next_at = ? WHERE tenant = ? AND id = ?",
                (next_at, tenant, aid),
            )

    @staticmethod
    def add_timeline(
        tx: Tx, tenant: str, aid: str, at: str, actor: str, action: str, detail: dict[str, Any]
    ) -> None:
        tx.execute(
            "INSERT INTO rules_timeline (id, tenant, alarm_id, at, actor, action, detail) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (uuid.uuid4().hex, tenant, aid, at, actor, action, _dumps(detail) if detail else None),
        )

    def timeline(self, tenant: str, aid: str) -> list[dict[str, Any]]:
        with self.store.transaction(write=False) as tx:
            rows = tx.execute(
                "SELECT at, actor, action, detail FROM rules_timeline "
                "WHERE tenant = ? AND alarm_id = ? ORDER BY at, id",
                (tenant, aid),
            )
        return [
            {
                "at": r["at"],
                "actor": r["actor"],
                "action": r["action"],
                **(json.loads(r["detail"]) if r["detail"] else {}),
            }
            for r in rows
        ]

    def list_alarms(
        self,
        tenant: str,
        *,
        status: list[str] | None = None,
        severity: list[str] | None = None,
        rule_id: str | None = None,
        originator: str | None = None,
        source_type: str | None = None,
        active: bool | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> tuple[list[dict[str, Any]], int]:
        sql: list[str] = ["tenant = ?"]
        params: list[Any] = [tenant]
        for col, vals in (("status", status), ("severity", severity)):
            if vals:
                sql.append(f"{col} IN ({','.join('?' * len(vals))})")
                params.extend(vals)
        if rule_id:
            sql.append("rule_id = ?")
            params.append(rule_id)
        if originator:
            sql.append("originator = ?")
            params.append(originator)
        if source_type:
            sql.append("source_type = ?")
            params.append(source_type)
        if active is not None:
            sql.append("active = ?")
            params.append(1 if active else 0)
        where = " AND ".join(sql)
        with self.store.transaction(write=False) as tx:
            rows = tx.execute(
                f"SELECT * FROM rules_alarms WHERE {where} ORDER BY raised_at DESC, id "
                "LIMIT ? OFFSET ?",
                [*params, limit, offset],
            )
            total = tx.execute(f"SELECT count(*) AS n FROM rules_alarms WHERE {where}", params)
        return rows, int(total[0]["n"])

    def due_alarms(self, now: str, limit: int = 500) -> list[dict[str, Any]]:
        with self.store.transaction(write=False) as tx:
            return tx.execute(
                "SELECT * FROM rules_alarms WHERE next_at IS NOT NULL AND next_at <= ? "
                "ORDER BY next_at LIMIT ?",
                (now, limit),
            )

    # -- engine state -------------------------------------------------------------------
    def load_state(self) -> list[dict[str, Any]]:
        with self.store.transaction(write=False) as tx:
            return tx.execute("SELECT tenant, rule_id, key, state, due_at FROM rules_state")

    def save_state(
        self,
        puts: Sequence[tuple[str, str, str, dict[str, Any], str | None]],
        drops: Sequence[tuple[str, str, str]],
    ) -> None:
        """Write state rows (tenant, rule, key, state, due) and delete others, at once."""
        if not puts and not drops:
            return
        with self.store.transaction() as tx:
            if drops or puts:
                tx.executemany(
                    "DELETE FROM rules_state WHERE tenant = ? AND rule_id = ? AND key = ?",
                    [*drops, *[(t, r, k) for t, r, k, _, _ in puts]],
                )
            if puts:
                tx.executemany(
                    "INSERT INTO rules_state (tenant, rule_id, key, state, due_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    [(t, r, k, _dumps(s), d) for t, r, k, s, d in puts],
                )
