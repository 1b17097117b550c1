"""``/rules/v1``: rules (create, list, read, replace, delete, backtest) and alarms (list,
read, acknowledge, clear, assign, comment, timeline)."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from sencity.auth.roles import ADMIN, READERS, WRITERS
from sencity.core.routing import Request, Response, Route
from sencity.errors import BadRequest, NotFound
from sencity.rules.alarms import STATUSES, Outcome
from sencity.rules.backtest import backtest
from sencity.rules.model import SEVERITIES, parse_rule

if TYPE_CHECKING:
    from sencity.rules.service import RulesService

BASE = "/rules/v1"


def _svc(req: Request) -> RulesService:
    svc: RulesService | None = req.platform.state.get("rules")
    if svc is None:
        raise NotFound("the rules module is not running (it needs the hub plugin)")
    return svc


def _page(req: Request) -> tuple[int, int]:
    try:
        limit = int(req.arg("limit") or 100)
        offset = int(req.arg("offset") or 0)
    except ValueError:
        raise BadRequest("'limit' and 'offset' must be integers") from None
    if not 1 <= limit <= 1000 or offset < 0:
        raise BadRequest("'limit' must be 1..1000 and 'offset' at least 0")
    return limit, offset


def _actor(req: Request) -> str:
    return req.principal.name if req.principal is not None else "anonymous"


def _shown(row: dict[str, Any]) -> dict[str, Any]:
    return {
        **json.loads(row["body"]),
        "createdAt": row["created_at"],
        "modifiedAt": row["modified_at"],
    }


# -- rules ---------------------------------------------------------------------------------
def list_rules(req: Request) -> Response:
    limit, offset = _page(req)
    rows, total = _svc(req).rstore.list_rows(req.tenant, limit, offset)
    return Response([_shown(r) for r in rows], headers={"Total-Count": str(total)})


def create_rule(req: Request) -> Response:
    svc = _svc(req)
    rule = parse_rule(req.json())
    svc.hub.ensure_tenant(req.tenant)
    svc.rstore.add_rule(req.tenant, rule)
    svc.changed(req.tenant)
    return Response(
        _shown(svc.rstore.row(req.tenant, rule.id)),
        status=201,
        headers={"Location": f"{BASE}/rules/{quote(rule.id)}"},
    )


def get_rule(req: Request) -> Response:
    return Response(_shown(_svc(req).rstore.row(req.tenant, req.path_params["rule_id"])))


def replace_rule(req: Request) -> Response:
    svc = _svc(req)
    rid = req.path_params["rule_id"]
    body = req.json()
    if isinstance(body, dict):
        body.setdefault("id", rid)
        if body["id"] != rid:
            raise BadRequest(
                f"rule '{rid}': field 'id': the body names '{body['id']}'", rule=rid, field="id"
            )
    rule = parse_rule(body)
    svc.rstore.replace_rule(req.tenant, rule)
    svc.changed(req.tenant)
    return Response(_shown(svc.rstore.row(req.tenant, rid)))


def delete_rule(req: Request) -> Response:
    svc = _svc(req)
    svc.rstore.delete_rule(req.tenant, req.path_params["rule_id"])
    svc.changed(req.tenant)
    return Response(status=204)


def _time(body: dict[str, Any], name: str) -> float:
    v = body.get(name)
    if not isinstance(v, str):
        raise BadRequest(f"'{name}' is required: an ISO 8601 date-time with a time zone")
    try:
        dt = datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(f"'{name}': '{v[:60]}' is not an ISO 8601 date-time") from None
    if dt.tzinfo is None:
        raise BadRequest(f"'{name}': '{v[:60]}' has no time zone (add Z or an offset)")
    return dt.timestamp()


def run_backtest(req: Request) -> Response:
    svc = _svc(req)
    rid = req.path_params["rule_id"]
    body = req.json()
    if not isinstance(body, dict):
        raise BadRequest("the body must be an object: {from, to, entities?, rule?}")
    lo, hi = _time(body, "from"), _time(body, "to")
    if "rule" in body:  # try a draft of the rule before saving it
        rule = parse_rule({**body["rule"], "id": rid} if isinstance(body["rule"], dict) else None)
    else:
        rule = svc.rstore.get_rule(req.tenant, rid)
    ids = body.get("entities")
    if ids is not None and (not isinstance(ids, list) or not all(isinstance(i, str) for i in ids)):
        raise BadRequest("'entities' must be a list of entity ids")
    return Response(
        backtest(
            svc.hub,
            svc.engine.views,
            req.tenant,
            rule,
            lo,
            hi,
            svc.settings.backtest_max_instances,
            svc.engine.tz(req.tenant),
            lambda code: svc.engine.ward(req.tenant, code),
            ids,
        )
    )


# -- alarms --------------------------------------------------------------------------------
def _csv(req: Request, name: str, allowed: tuple[str, ...] | None = None) -> list[str] | None:
    vals = [v for raw in req.args(name) for v in raw.split(",") if v]
    if allowed is not None:
        for v in vals:
            if v not in allowed:
                raise BadRequest(f"'{name}': unknown value '{v}' (one of {', '.join(allowed)})")
    return vals or None


def list_alarms(req: Request) -> Response:
    svc = _svc(req)
    limit, offset = _page(req)
    active = req.arg("active")
    if active not in (None, "true", "false"):
        raise BadRequest("'active' must be true or false")
    rows, total = svc.rstore.list_alarms(
        req.tenant,
        status=_csv(req, "status", STATUSES),
        severity=_csv(req, "severity", SEVERITIES),
        rule_id=req.arg("rule"),
        originator=req.arg("source"),
        source_type=req.arg("type"),
        active=None if active is None else active == "true",
        limit=limit,
        offset=offset,
    )
    found = svc.alarms.entities(req.tenant, [r["id"] for r in rows]) if rows else {}
    out = [{**found[r["id"]], "level": r["level"]} for r in rows if r["id"] in found]
    return Response(out, headers={"Total-Count": str(total)})


def get_alarm(req: Request) -> Response:
    return Response(_svc(req).alarms.get(req.tenant, req.path_params["alarm_id"]))


def _opt_text(req: Request, name: str, required: bool = False) -> str:
    body = req.json() if req.body else {}
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    v = body.get(name, "")
    if not isinstance(v, str) or (required and not v.strip()):
        raise BadRequest(f"'{name}' must be a{' non-empty' if required else ''} string")
    if len(v) > 4000:
        raise BadRequest(f"'{name}' is longer than 4000 characters")
    return v


async def _tell(req: Request, out: Outcome) -> dict[str, Any]:
    svc = _svc(req)
    rule = await asyncio.to_thread(svc.rule, out.tenant, out.rule_id)
    svc.dispatcher.submit(out, rule)
    return out.alarm


async def ack_alarm(req: Request) -> Response:
    svc = _svc(req)
    comment = _opt_text(req, "comment")
    out = await asyncio.to_thread(
        svc.alarms.acknowledge, req.tenant, req.path_params["alarm_id"], _actor(req), comment
    )
    return Response(await _tell(req, out))


async def clear_alarm(req: Request) -> Response:
    svc = _svc(req)
    reason = _opt_text(req, "reason")
    out = await asyncio.to_thread(
        svc.alarms.clear, req.tenant, req.path_params["alarm_id"], _actor(req), reason
    )
    return Response(await _tell(req, out))


async def assign_alarm(req: Request) -> Response:
    svc = _svc(req)
    assignee = _opt_text(req, "assignee", required=True)
    out = await asyncio.to_thread(
        svc.alarms.assign, req.tenant, req.path_params["alarm_id"], _actor(req), assignee
    )
    return Response(await _tell(req, out))


def add_comment(req: Request) -> Response:
    svc = _svc(req)
    text = _opt_text(req, "text", required=True)
    entry = svc.alarms.comment(req.tenant, req.path_params["alarm_id"], _actor(req), text)
    return Response(entry, status=201)


def list_comments(req: Request) -> Response:
    svc = _svc(req)
    aid = req.path_params["alarm_id"]
    svc.rstore.alarm_row(req.tenant, aid)
    return Response([e for e in svc.rstore.timeline(req.tenant, aid) if e["action"] == "comment"])


def timeline(req: Request) -> Response:
    svc = _svc(req)
    aid = req.path_params["alarm_id"]
    svc.rstore.alarm_row(req.tenant, aid)
    return Response(svc.rstore.timeline(req.tenant, aid))


def status(req: Request) -> Response:
    svc = _svc(req)
    e, d = svc.engine, svc.dispatcher
    return Response(
        {
            "evaluating": e.leading,
            "rules": e.rule_count(),
            "evaluations": e.evaluations,
            "batches": e.batches,
            "transitions": e.transitions,
            "ticks": e.ticks,
            "notices": {
                "sent": d.sent,
                "failed": d.failed,
                "rateLimited": d.limited,
                "quietHours": d.quiet,
            },
        }
    )


def routes() -> list[Route]:
    r, a = f"{BASE}/rules", f"{BASE}/alarms"
    one, alarm = r + "/{rule_id}", a + "/{alarm_id}"
    return [
        Route(
            "GET",
            r,
            list_rules,
            READERS,
            name="rules.list",
            summary="the tenant's rules (limit, offset; Total-Count header)",
        ),
        Route("POST", r, create_rule, ADMIN, name="rules.create", summary="create a rule"),
        Route("GET", one, get_rule, READERS, name="rules.get", summary="one rule"),
        Route("PUT", one, replace_rule, ADMIN, name="rules.replace", summary="replace a rule"),
        Route("DELETE", one, delete_rule, ADMIN, name="rules.delete", summary="delete a rule"),
        Route(
            "POST",
            one + "/backtest",
            run_backtest,
            READERS,
            name="rules.backtest",
            summary="when the rule would have fired over stored history (dry run)",
        ),
        Route(
            "GET",
            f"{BASE}/status",
            status,
            READERS,
            name="rules.status",
            summary="the engine's counters",
        ),
        Route(
            "GET",
            a,
            list_alarms,
            READERS,
            name="alarms.list",
            summary="alarms (status, severity, type, rule, source, active; paging)",
        ),
        Route("GET", alarm, get_alarm, READERS, name="alarms.get", summary="one alarm"),
        Route(
            "POST",
            alarm + "/ack",
            ack_alarm,
            WRITERS,
            name="alarms.ack",
            summary="acknowledge an alarm",
        ),
        Route(
            "POST",
            alarm + "/clear",
            clear_alarm,
            WRITERS,
            name="alarms.clear",
            summary="clear an alarm by hand",
        ),
        Route(
            "POST",
            alarm + "/assign",
            assign_alarm,
            WRITERS,
            name="alarms.assign",
            summary="assign an alarm to someone",
        ),
        Route(
            "POST",
            alarm + "/comments",
            add_comment,
            WRITERS,
            name="alarms.comment",
            summary="comment on an alarm",
        ),
        Route(
            "GET",
            alarm + "/comments",
            list_comments,
            READERS,
            name="alarms.comments",
            summary="an alarm's comments",
        ),
        Route(
            "GET",
            alarm + "/timeline",
            timeline,
            READERS,
            name="alarms.timeline",
            summary="every change of an alarm, with who and when",
        ),
    ]
