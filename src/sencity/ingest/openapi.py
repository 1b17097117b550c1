"""The OpenAPI 3.1 description of ``/ingest/v1``, made from the routes themselves (their
summaries and roles) and the provisioning models (their JSON Schemas), so it cannot
drift from what the server does."""

from __future__ import annotations

import re
from typing import Any

from sencity import __version__
from sencity.core.routing import Route
from sencity.ingest.model import Device, Group

PROBLEM = {"$ref": "#/components/responses/Problem"}
_BODIES = {
    ("POST", "/groups"): "Group",
    ("PATCH", "/groups/{apikey}"): "Group",
    ("POST", "/devices"): "Device",
    ("PATCH", "/devices/{device_id}"): "Device",
}
_QUERY = {
    "limit": "Items per page (1..1000, default 100)",
    "offset": "Items to skip",
    "apikey": "Only devices of this service group",
    "silentFor": "Only devices that have not reported for this long (ISO 8601, e.g. PT1H)",
    "reason": "Only dead letters of this reason",
    "before": "Delete dead letters received before this time (ISO 8601)",
    "k": "The service group's API key",
    "i": "The device id",
}
_PARAMS = {
    ("GET", "/groups"): ["limit", "offset"],
    ("GET", "/devices"): ["apikey", "silentFor", "limit", "offset"],
    ("GET", "/deadletters"): ["reason", "limit", "offset"],
    ("GET", "/deadletters/unattributed"): ["reason", "limit", "offset"],
    ("DELETE", "/deadletters"): ["before"],
    ("POST", "/iot/json"): ["k", "i"],
    ("POST", "/iot/d"): ["k", "i"],
}


def _schemas() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for model in (Group, Device):
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        out.update(schema.pop("$defs", {}))
        out[model.__name__] = schema
    return out


def document(routes: list[Route], base: str) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for r in routes:
        if not r.path.startswith(base):
            continue
        rel = r.path[len(base) :]
        op: dict[str, Any] = {
            "summary": r.summary,
            "operationId": r.name,
            "responses": {"default": PROBLEM},
        }
        params = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in re.findall(r"{(\w+)}", rel)
        ]
        params += [
            {"name": q, "in": "query", "description": _QUERY[q], "schema": {"type": "string"}}
            for q in _PARAMS.get((r.method, rel), [])
        ]
        if params:
            op["parameters"] = params
        body = _BODIES.get((r.method, rel))
        if body:
            ref = {"$ref": f"#/components/schemas/{body}"}
            many = {
                "type": "object",
                "properties": {body.lower() + "s": {"type": "array", "items": ref}},
            }
            # POST takes one or {groups|devices: [...]}; PATCH the members to change
            schema = {"oneOf": [ref, many]} if r.method == "POST" else {"type": "object"}
            op["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": schema}},
            }
        elif rel.startswith("/iot/"):
            kind = "application/json" if rel.endswith("json") else "text/plain"
            op["requestBody"] = {"required": True, "content": {kind: {"schema": {}}}}
        if r.public:
            op["security"] = []
        else:
            op["description"] = f"Roles: {', '.join(sorted(r.roles))}."
        paths.setdefault(rel, {})[r.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "SenCity sensor ingestion",
            "version": __version__,
            "description": "Provisioning of service groups and devices, dead letters and "
            "HTTP measures. MQTT topics and payloads: docs/INGEST.md.",
        },
        "servers": [{"url": base}],
        "paths": paths,
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "responses": {
                "Problem": {
                    "description": "An error (RFC 9457 problem details)",
                    "content": {"application/problem+json": {"schema": {"type": "object"}}},
                }
            },
        },
        "security": [{"bearer": []}],
    }
