"""Clause 5.7.5–5.7.8: available entity types and attributes."""

from __future__ import annotations

from tests.hub.conformance.conftest import NGSI, entity, problem, prop, rel


def test_types_and_attributes(ngsi: NGSI) -> None:
    ngsi.request(
        "POST",
        "/entityOperations/create",
        [
            entity("urn:ngsi-ld:A:1", type="ParkingSpot", status=prop("free")),
            entity(
                "urn:ngsi-ld:A:2",
                type="ParkingSpot",
                status=prop("occupied"),
                refParkingSite=rel("urn:ngsi-ld:P:1"),
            ),
            entity("urn:ngsi-ld:B:1", type="Streetlight", status=prop("ok")),
        ],
    )
    tl = ngsi.request("GET", "/types").json()
    assert tl["type"] == "EntityTypeList" and tl["typeList"] == ["ParkingSpot", "Streetlight"]
    details = ngsi.request("GET", "/types", details="true").json()
    ps = next(t for t in details if t["typeName"] == "ParkingSpot")
    assert ps["attributeNames"] == ["refParkingSite", "status"]
    info = ngsi.request("GET", "/types/ParkingSpot").json()
    assert info["entityCount"] == 2 and info["type"] == "EntityTypeInfo"
    kinds = {a["attributeName"]: a["attributeTypes"] for a in info["attributeDetails"]}
    assert kinds == {"refParkingSite": ["Relationship"], "status": ["Property"]}
    problem(ngsi.request("GET", "/types/Nothing"), 404, "ResourceNotFound")
    al = ngsi.request("GET", "/attributes").json()
    assert al["attributeList"] == ["refParkingSite", "status"]
    st = ngsi.request("GET", "/attributes/status").json()
    assert st["attributeCount"] == 3 and st["typeNames"] == ["ParkingSpot", "Streetlight"]
    problem(ngsi.request("GET", "/attributes/nothing"), 404, "ResourceNotFound")
