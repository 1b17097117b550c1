"""Clause 5.6.7–5.6.10 and 5.6.18: batch create, upsert, update, delete and merge."""

from __future__ import annotations

from tests.hub.conformance.conftest import NGSI, entity, problem, prop

OPS = "/entityOperations"


def _e(n: int, **attrs: object) -> dict[str, object]:
    return entity(f"urn:ngsi-ld:Sensor:{n}", **attrs)


def test_create_with_partial_failure(ngsi: NGSI) -> None:
    ngsi.create(_e(1, t=prop(1)))
    batch = [
        _e(1, t=prop(9)),
        _e(2, t=prop(2)),
        {"id": "not a uri", "type": "Sensor"},
        _e(3, bad={"type": "Property"}),
    ]
    r = ngsi.request("POST", f"{OPS}/create", batch)
    assert r.status_code == 207, r.text
    body = r.json()
    assert body["success"] == ["urn:ngsi-ld:Sensor:2"]
    errs = {e["entityId"]: e["error"] for e in body["errors"]}
    assert errs["urn:ngsi-ld:Sensor:1"]["type"].endswith("AlreadyExists")
    assert errs["urn:ngsi-ld:Sensor:3"]["status"] == 400
    assert "'value'" in errs["urn:ngsi-ld:Sensor:3"]["detail"]
    assert len(errs) == 3
    assert ngsi.get("urn:ngsi-ld:Sensor:1").json()["t"]["value"] == 1  # untouched
    problem(ngsi.get("urn:ngsi-ld:Sensor:3"), 404)  # no partial write


def test_upsert_replace_and_update(ngsi: NGSI) -> None:
    r = ngsi.request("POST", f"{OPS}/upsert", [_e(1, a=prop(1), b=prop(1))])
    assert r.status_code == 201 and r.json() == ["urn:ngsi-ld:Sensor:1"]
    r = ngsi.request("POST", f"{OPS}/upsert", [_e(1, a=prop(2))])
    assert r.status_code == 204
    assert set(ngsi.get("urn:ngsi-ld:Sensor:1", options="keyValues").json()) == {
        "id",
        "type",
        "a",
    }  # replaced
    r = ngsi.request(
        "POST", f"{OPS}/upsert", [_e(1, b=prop(3)), _e(2, a=prop(1))], options="update"
    )
    assert r.status_code == 201 and r.json() == ["urn:ngsi-ld:Sensor:2"]
    kv = ngsi.get("urn:ngsi-ld:Sensor:1", options="keyValues").json()
    assert kv["a"] == 2 and kv["b"] == 3


def test_update_no_overwrite(ngsi: NGSI) -> None:
    ngsi.create(_e(1, a=prop(1)))
    r = ngsi.request(
        "POST",
        f"{OPS}/update",
        [{"id": "urn:ngsi-ld:Sensor:1", "a": prop(5), "b": prop(6)}],
        options="noOverwrite",
    )
    assert r.status_code == 204, r.text
    kv = ngsi.get("urn:ngsi-ld:Sensor:1", options="keyValues").json()
    assert kv["a"] == 1 and kv["b"] == 6
    r = ngsi.request("POST", f"{OPS}/update", [{"id": "urn:ngsi-ld:Sensor:404", "a": prop(1)}])
    assert r.status_code == 207
    assert r.json()["errors"][0]["error"]["status"] == 404


def test_delete_and_merge(ngsi: NGSI) -> None:
    ngsi.request("POST", f"{OPS}/create", [_e(1, a=prop(1)), _e(2, a=prop(2))])
    r = ngsi.request(
        "POST", f"{OPS}/merge", [{"id": "urn:ngsi-ld:Sensor:1", "a": {"value": 10}, "c": prop(3)}]
    )
    assert r.status_code == 204, r.text
    assert ngsi.get("urn:ngsi-ld:Sensor:1", options="keyValues").json()["a"] == 10
    r = ngsi.request("POST", f"{OPS}/delete", ["urn:ngsi-ld:Sensor:1", "urn:ngsi-ld:Sensor:9"])
    assert r.status_code == 207
    assert r.json()["success"] == ["urn:ngsi-ld:Sensor:1"]
    r = ngsi.request("POST", f"{OPS}/delete", ["urn:ngsi-ld:Sensor:2"])
    assert r.status_code == 204
    problem(ngsi.request("POST", f"{OPS}/delete", {"not": "a list"}), 400)
