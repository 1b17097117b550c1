"""Notifications out: entity data rendered as the subscription asks, the NGSI-LD
notification body and the headers of its delivery."""

from __future__ import annotations

import json
import uuid
from typing import Any

from sencity.hub.core_context import CORE_CONTEXT_URL
from sencity.hub.ldcontext import link_header
from sencity.hub.model import NGSI_LD_NULL, VALUE_KEY, Entity
from sencity.hub.render import Options, feature, render
from sencity.hub.store import LOCATION_IRI
from sencity.subs.model import Subscription
from sencity.subs.store import Job

LD, GEO = "application/ld+json", "application/geo+json"
#: the member that carries an attribute's value before the change (showChanges)
PREVIOUS = {
    "value": "previousValue",
    "object": "previousObject",
    "languageMap": "previousLanguageMap",
    "json": "previousJson",
    "vocab": "previousVocab",
    "valueList": "previousValueList",
    "objectList": "previousObjectList",
}
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def options(sub: Subscription) -> Options:
    return Options(format=sub.format, sys_attrs=sub.sys_attrs, attrs=sub.attrs, lang=sub.lang)


def entity_data(
    sub: Subscription,
    before: Entity | None,
    after: Entity | None,
    now: str,
    deleted_attrs: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """One element of a notification's ``data``.

    A deleted entity is ``{id, type, deletedAt}``; attributes deleted by an update (when
    ``attributeDeleted`` triggered) appear with the value ``urn:ngsi-ld:null`` and
    ``deletedAt``; ``showChanges`` adds ``previousValue`` (``previousObject``, …) to
    every attribute instance that existed before."""
    ctx = sub.ctx
    if after is None:
        assert before is not None
        types = [ctx.compact(t) for t in before.types]
        return {
            "id": before.id,
            "type": types[0] if len(types) == 1 else types,
            "deletedAt": now,
        }
    o = options(sub)
    out = render(after, ctx, o)
    for name in sorted(deleted_attrs):
        if before is None or (o.attrs is not None and name not in o.attrs):
            continue
        old = before.attrs.get(name)
        if not old:
            continue
        kind = old[0]["type"]
        if o.format == "keyValues":
            out[ctx.compact(name)] = NGSI_LD_NULL
            continue
        gone: dict[str, Any] = {"type": kind} if o.format == "normalized" else {}
        gone[VALUE_KEY[kind]] = NGSI_LD_NULL
        gone["deletedAt"] = now
        out[ctx.compact(name)] = gone
    if sub.show_changes and before is not None:
        _show_changes(sub, o, before, after, out)
    if sub.endpoint.accept == GEO:
        return feature(out, after, LOCATION_IRI)
    return out


def _show_changes(
    sub: Subscription, o: Options, before: Entity, after: Entity, out: dict[str, Any]
) -> None:
    ctx = sub.ctx
    for name, insts in after.attrs.items():
        if o.attrs is not None and name not in o.attrs:
            continue
        old = {i.get("datasetId"): i for i in before.attrs.get(name, [])}
        if not old:
            continue
        short = ctx.compact(name)
        shown: Any = out.get(short)
        many = isinstance(shown, list)
        items: list[Any] = shown if many else [shown]
        for n, inst in enumerate(insts[: len(items)]):
            prev = old.get(inst.get("datasetId"))
            if prev is None:
                continue
            key = VALUE_KEY[prev["type"]]
            # the old instance rendered like the new one (compacted vocab, chosen language)
            prev_out = render(
                Entity(before.id, before.types, {name: [prev]}),
                ctx,
                Options(format="normalized", lang=sub.lang),
            )[short]
            value_key = next((k for k in PREVIOUS if k in prev_out), key)
            item = items[n]
            if not isinstance(item, dict):  # a bare concise value: give it room
                item = {"value": item}
            item[PREVIOUS[value_key]] = prev_out.get(value_key)
            items[n] = item
        out[short] = items if many else items[0]


def make_job(sub: Subscription, tenant: str, data: list[dict[str, Any]], now: str) -> Job:
    """The delivery of a notification carrying ``data``."""
    ep = sub.endpoint
    body: dict[str, Any] = {
        "id": f"urn:ngsi-ld:Notification:{uuid.uuid4()}",
        "type": "Notification",
        "subscriptionId": sub.id,
        "notifiedAt": now,
        "data": data,
    }
    source = None if sub.ctx.is_core_only else sub.ctx.source
    explicit = sub.body.get("jsonldContext")
    headers = {"Content-Type": ep.accept}
    if ep.accept == LD:
        body["@context"] = explicit or source or CORE_CONTEXT_URL
    else:
        url = explicit or (source if isinstance(source, str) else CORE_CONTEXT_URL)
        headers["Link"] = link_header(url)
    headers["NGSILD-Tenant"] = tenant
    for key, value in ep.receiver_info:
        headers[key] = value
    opts: dict[str, Any] = {}
    if ep.timeout is not None:
        opts["timeout"] = ep.timeout
    if ep.mqtt:
        opts["qos"] = ep.qos
        opts["version"] = ep.mqtt_version
    return Job(
        id=uuid.uuid4().hex,
        tenant=tenant,
        sub_id=sub.id,
        uri=ep.uri,
        headers=headers,
        body=_dumps(body).encode(),
        opts=opts,
    )
