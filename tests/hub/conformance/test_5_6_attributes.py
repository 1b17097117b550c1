"""Clause 5.6.3–5.6.6: append, update, partial update, replace and delete attributes."""

from __future__ import annotations

from tests.hub.conformance.conftest import NGSI, entity, problem, prop

E = entity(
    "urn:ngsi-ld:Streetlight:1",
    type="Streetlight",
    powerState=prop("on"),
    illuminance=prop(80, unitCode="LUX"),
)
ATTRS = f"/entities/{E['id']}/attrs"


def test_append_and_no_overwrite(ngsi: NGSI) -> None:
    ngsi.create(E)
    r = ngsi.request("POST", ATTRS, {"powerState": prop("off"), "dimmingLevel": prop(40)})
    assert r.status_code == 204, r.text
    body = ngsi.get(E["id"], options="keyValues").json()
    assert body["powerState"] == "off" and body["dimmingLevel"] == 40
    r = ngsi.request(
        "POST", ATTRS, {"powerState": prop("on"), "status": prop("ok")}, options="noOverwrite"
    )
    assert r.status_code == 207
    assert r.json()["updated"] == ["status"]
    assert r.json()["notUpdated"][0]["attributeName"] == "powerState"
    assert ngsi.get(E["id"], options="keyValues").json()["powerState"] == "off"


def test_update_only_existing(ngsi: NGSI) -> None:
    ngsi.create(E)
    r = ngsi.request("PATCH", ATTRS, {"powerState": prop("off")})
    assert r.status_code == 204
    r = ngsi.request("PATCH", ATTRS, {"powerState": prop("on"), "ghost": prop(1)})
    assert r.status_code == 207
    assert r.json() == {
        "updated": ["powerState"],
        "notUpdated": [
            {"attributeName": "ghost", "reason": "attribute (or its datasetId) does not exist"}
        ],
    }
    assert "ghost" not in ngsi.get(E["id"]).json()


def test_partial_attribute_update(ngsi: NGSI) -> None:
    ngsi.create(E)
    r = ngsi.request("PATCH", f"{ATTRS}/illuminance", {"value": 95})
    assert r.status_code == 204, r.text
    ill = ngsi.get(E["id"]).json()["illuminance"]
    assert ill == prop(95, unitCode="LUX")
    problem(ngsi.request("PATCH", f"{ATTRS}/nothing", {"value": 1}), 404, "ResourceNotFound")


def test_replace_attribute(ngsi: NGSI) -> None:
    ngsi.create(E)
    r = ngsi.request("PUT", f"{ATTRS}/illuminance", prop(10))
    assert r.status_code == 204, r.text
    assert ngsi.get(E["id"]).json()["illuminance"] == prop(10)
    problem(ngsi.request("PUT", f"{ATTRS}/nothing", prop(1)), 404, "ResourceNotFound")


def test_delete_attribute(ngsi: NGSI) -> None:
    ngsi.create(E)
    assert ngsi.request("DELETE", f"{ATTRS}/illuminance").status_code == 204
    assert "illuminance" not in ngsi.get(E["id"]).json()
    problem(ngsi.request("DELETE", f"{ATTRS}/illuminance"), 404, "ResourceNotFound")


def test_delete_all_instances(ngsi: NGSI) -> None:
    ngsi.create(entity("urn:ngsi-ld:Sensor:m", t=[prop(1), prop(2, datasetId="urn:d:2")]))
    r = ngsi.request("DELETE", "/entities/urn:ngsi-ld:Sensor:m/attrs/t", deleteAll="true")
    assert r.status_code == 204
    assert "t" not in ngsi.get("urn:ngsi-ld:Sensor:m").json()


def test_modified_at_moves_only_for_changed_attributes(ngsi: NGSI) -> None:
    ngsi.create(E)
    before = ngsi.get(E["id"], options="sysAttrs").json()
    ngsi.request("PATCH", ATTRS, {"powerState": prop("off")})
    after = ngsi.get(E["id"], options="sysAttrs").json()
    assert after["powerState"]["modifiedAt"] > before["powerState"]["modifiedAt"]
    assert after["illuminance"]["modifiedAt"] == before["illuminance"]["modifiedAt"]
    assert after["powerState"]["createdAt"] == before["powerState"]["createdAt"]
