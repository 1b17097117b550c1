"""Bad input: every case answers problem+json with the NGSI-LD type and writes nothing."""

from __future__ import annotations

import time

import pytest

from tests.hub.conformance.conftest import NGSI, entity, problem, prop

GOOD = entity("urn:ngsi-ld:Sensor:1", t=prop(1))


def nothing_written(ngsi: NGSI) -> None:
    r = ngsi.get("urn:ngsi-ld:Sensor:1")
    assert r.status_code == 404, r.text


def test_malformed_json(ngsi: NGSI) -> None:
    ngsi.create(entity("urn:ngsi-ld:Other:1"))
    problem(ngsi.request("POST", "/entities", b'{"id": "urn:x:1", "type": '), 400, "InvalidRequest")
    nothing_written(ngsi)


def test_media_types(ngsi: NGSI) -> None:
    ngsi.create(entity("urn:ngsi-ld:Other:1"))
    problem(ngsi.request("POST", "/entities", GOOD, ctype="text/plain"), 415)
    problem(
        ngsi.request("POST", "/entities", GOOD, ctype="application/ld+json"), 400, "BadRequestData"
    )  # ld+json without @context
    nothing_written(ngsi)
    problem(ngsi.get("urn:ngsi-ld:Other:1", headers={"Accept": "image/png"}), 406)


@pytest.mark.parametrize(
    "bad",
    [
        {"id": "not a uri", "type": "Sensor"},
        {"id": "urn:ngsi-ld:Sensor:1"},  # no type
        {"id": "urn:ngsi-ld:Sensor:1", "type": "Sensor", "t": None},
        {"id": "urn:ngsi-ld:Sensor:1", "type": "Sensor", "t": {"type": "Property"}},
        {
            "id": "urn:ngsi-ld:Sensor:1",
            "type": "Sensor",
            "r": {"type": "Relationship", "object": "no uri"},
        },
        {"id": "urn:ngsi-ld:Sensor:1", "type": "Sensor", "t": prop(1, observedAt="yesterday")},
        {"id": "urn:ngsi-ld:Sensor:1", "type": "Sensor", "bad name": prop(1)},
        ["not", "an", "object"],
    ],
)
def test_bad_entities(ngsi: NGSI, bad: object) -> None:
    ngsi.create(entity("urn:ngsi-ld:Other:1"))
    problem(ngsi.request("POST", "/entities", bad), 400, "BadRequestData")
    nothing_written(ngsi)


@pytest.mark.parametrize(
    "geometry",
    [
        {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]},  # bow-tie
        {"type": "Point", "coordinates": [108.2, 96.0]},  # latitude out of range
        {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1]]]},  # not closed
        {"type": "Point", "coordinates": "here"},
        {"type": "Circle", "coordinates": [1, 2]},
    ],
)
def test_invalid_geometry(ngsi: NGSI, geometry: dict[str, object]) -> None:
    ngsi.create(entity("urn:ngsi-ld:Other:1"))
    body = entity("urn:ngsi-ld:Sensor:1", location={"type": "GeoProperty", "value": geometry})
    problem(ngsi.request("POST", "/entities", body), 400, "BadRequestData")
    nothing_written(ngsi)


def test_q_syntax_error_names_position(ngsi: NGSI) -> None:
    ngsi.create(GOOD)
    body = problem(ngsi.query(type="Sensor", q="t>>5"), 400, "BadRequestData")
    assert "position" in body["detail"]
    problem(ngsi.query(type="Sensor", q="(t==1"), 400)
    problem(ngsi.query(type="(Sensor"), 400)
    problem(ngsi.query(georel="near;maxDistance==x", geometry="Point", coordinates="[1,2]"), 400)
    problem(ngsi.query(georel="within", geometry="Point"), 400)


def test_unresolvable_context_is_503_quickly(ngsi: NGSI) -> None:
    body = {**GOOD, "@context": "https://contexts.invalid/nowhere.jsonld"}
    t0 = time.monotonic()
    problem(ngsi.create(body), 503, "LdContextNotAvailable")
    assert time.monotonic() - t0 < 10
    link = '<https://contexts.invalid/x.jsonld>; rel="http://www.w3.org/ns/json-ld#context"'
    problem(ngsi.query(type="Sensor", headers={"Link": link}), 503, "LdContextNotAvailable")
    nothing_written(ngsi)


def test_payload_too_large(ngsi: NGSI) -> None:
    ngsi.create(entity("urn:ngsi-ld:Other:1"))
    big = entity("urn:ngsi-ld:Sensor:1", blob=prop("x" * 1_200_000))
    r = ngsi.request("POST", "/entities", big)
    assert r.status_code == 413 and r.headers["content-type"] == "application/problem+json"
    nothing_written(ngsi)


def test_unknown_tenant(ngsi: NGSI) -> None:
    problem(ngsi.query(type="Sensor"), 404, "NonexistentTenant")
    problem(ngsi.get("urn:ngsi-ld:Sensor:1"), 404, "NonexistentTenant")
