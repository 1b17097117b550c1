"""Concurrent writers (clients, handler threads, API worker processes) lose nothing.

Every request here runs at the same time as others on the same entities; the server must
answer each one as if they had come one after the other: no lost update, no 500 from a
unique-key race or a deadlock.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from tests.hub.conformance.conftest import NGSI, entity, prop

CLIENTS = 12


def _parallel(ngsi: NGSI, calls: list[tuple[str, str, Any]]) -> list[httpx.Response]:
    """Send ``(method, path, body)`` calls from CLIENTS connections at once."""

    def send(call: tuple[str, str, Any]) -> httpx.Response:
        method, path, body = call
        return ngsi.request(method, path, body)

    with ThreadPoolExecutor(CLIENTS) as pool:
        return list(pool.map(send, calls))


def test_partial_updates_of_one_entity_are_all_kept(ngsi: NGSI) -> None:
    attrs = {f"a{i}": prop(0) for i in range(CLIENTS * 2)}
    assert ngsi.create(entity("urn:ngsi-ld:Sensor:hot", **attrs)).status_code == 201
    calls = [
        ("PATCH", f"/entities/urn:ngsi-ld:Sensor:hot/attrs/a{i}", {"value": i + 1})
        for i in range(CLIENTS * 2)
    ]
    for r in _parallel(ngsi, calls):
        assert r.status_code == 204, r.text
    got = ngsi.get("urn:ngsi-ld:Sensor:hot", options="keyValues").json()
    assert {k: got[k] for k in attrs} == {f"a{i}": i + 1 for i in range(CLIENTS * 2)}


def test_racing_upserts_of_new_entities(ngsi: NGSI) -> None:
    """Many clients upsert the same new entities at once: every request succeeds and each
    entity ends with one client's full value, never a mix or a duplicate."""
    calls = []
    for c in range(CLIENTS * 2):
        batch = [
            entity(f"urn:ngsi-ld:Sensor:r{k}", owner=prop(c), twin=prop(c))
            for k in (range(10) if c % 2 else reversed(range(10)))  # opposite lock orders
        ]
        calls.append(("POST", "/entityOperations/upsert", batch))
    for r in _parallel(ngsi, calls):
        assert r.status_code in (201, 204), r.text
    found = ngsi.query(type="Sensor", limit=100, options="keyValues").json()
    assert sorted(e["id"] for e in found) == sorted(f"urn:ngsi-ld:Sensor:r{k}" for k in range(10))
    assert all(e["owner"] == e["twin"] for e in found), found


def test_racing_creates_give_one_201_and_409s(ngsi: NGSI) -> None:
    calls = [
        ("POST", "/entities", entity("urn:ngsi-ld:Sensor:once", n=prop(c))) for c in range(CLIENTS)
    ]
    codes = sorted(r.status_code for r in _parallel(ngsi, calls))
    assert codes == [201] + [409] * (CLIENTS - 1), codes
