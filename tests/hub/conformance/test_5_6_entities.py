"""Clause 5.6 (context information provision) and 5.7.1 (retrieve entity)."""

from __future__ import annotations

from tests.hub.conformance.conftest import NGSI, entity, point, problem, prop, rel

AQ = entity(
    "urn:ngsi-ld:AirQualityObserved:DN-01",
    type="AirQualityObserved",
    pm25=prop(41.5, unitCode="GQ", observedAt="2026-11-25T08:00:00Z", accuracy=prop(0.5)),
    name={
        "type": "LanguageProperty",
        "languageMap": {"vi": "Trạm Hải Châu", "en": "Hai Chau station"},
    },
    refDevice=rel("urn:ngsi-ld:Device:7"),
    location=point(108.2208, 16.0678),
    raw={"type": "JsonProperty", "json": {"any": ["shape", 1]}},
    category={"type": "VocabProperty", "vocab": "urban"},
    readings={"type": "ListProperty", "valueList": [1, 2, 3]},
    neighbours={"type": "ListRelationship", "objectList": [{"object": "urn:ngsi-ld:X:1"}]},
)


def test_create_and_retrieve_normalized(ngsi: NGSI) -> None:
    r = ngsi.create(AQ)
    assert r.status_code == 201, r.text
    assert r.headers["location"] == "/ngsi-ld/v1/entities/urn:ngsi-ld:AirQualityObserved:DN-01"
    got = ngsi.get(AQ["id"])
    assert got.status_code == 200
    assert got.headers["content-type"].startswith("application/json")
    assert "json-ld#context" in got.headers["link"]
    body = got.json()
    assert body["type"] == "AirQualityObserved"
    assert body["pm25"] == prop(
        41.5, unitCode="GQ", observedAt="2026-11-25T08:00:00Z", accuracy=prop(0.5)
    )
    assert body["refDevice"] == rel("urn:ngsi-ld:Device:7")
    assert body["location"] == point(108.2208, 16.0678)
    assert body["name"]["languageMap"]["vi"] == "Trạm Hải Châu"
    assert body["raw"] == {"type": "JsonProperty", "json": {"any": ["shape", 1]}}
    assert body["category"] == {"type": "VocabProperty", "vocab": "urban"}
    assert body["readings"]["valueList"] == [1, 2, 3]
    assert body["neighbours"]["objectList"] == ["urn:ngsi-ld:X:1"]
    assert "createdAt" not in body


def test_create_twice_is_409(ngsi: NGSI) -> None:
    assert ngsi.create(AQ).status_code == 201
    problem(ngsi.create(AQ), 409, "AlreadyExists")


def test_retrieve_representations(ngsi: NGSI) -> None:
    ngsi.create(AQ)
    kv = ngsi.get(AQ["id"], options="keyValues").json()
    assert kv["pm25"] == 41.5 and kv["refDevice"] == "urn:ngsi-ld:Device:7"
    assert kv["location"] == {"type": "Point", "coordinates": [108.2208, 16.0678]}
    assert kv["name"] == {"vi": "Trạm Hải Châu", "en": "Hai Chau station"}
    concise = ngsi.get(AQ["id"], format="concise").json()
    assert concise["refDevice"] == {"object": "urn:ngsi-ld:Device:7"}
    assert concise["pm25"]["value"] == 41.5 and "type" not in concise["pm25"]
    assert concise["location"] == {"type": "Point", "coordinates": [108.2208, 16.0678]}
    sys = ngsi.get(AQ["id"], options="sysAttrs").json()
    assert sys["createdAt"] <= sys["modifiedAt"]
    assert "createdAt" in sys["pm25"] and "modifiedAt" in sys["pm25"]
    en = ngsi.get(AQ["id"], lang="en").json()
    assert en["name"] == {"type": "Property", "value": "Hai Chau station", "lang": "en"}
    assert ngsi.get(AQ["id"], lang="fr").json()["name"]["value"] in (
        "Trạm Hải Châu",
        "Hai Chau station",
    )


def test_attrs_pick_omit(ngsi: NGSI) -> None:
    ngsi.create(AQ)
    only = ngsi.get(AQ["id"], attrs="pm25,location").json()
    assert set(only) == {"id", "type", "pm25", "location"}
    assert set(ngsi.get(AQ["id"], pick="id,pm25").json()) == {"id", "pm25"}
    assert "pm25" not in ngsi.get(AQ["id"], omit="pm25").json()
    problem(ngsi.get(AQ["id"], attrs="nothingHere"), 404, "ResourceNotFound")
    problem(ngsi.get(AQ["id"], pick="id", omit="type"), 400, "BadRequestData")


def test_ld_json_and_geojson(ngsi: NGSI) -> None:
    ngsi.create(AQ)
    ld = ngsi.get(AQ["id"], headers={"Accept": "application/ld+json"})
    assert ld.headers["content-type"].startswith("application/ld+json")
    assert "@context" in ld.json()
    gj = ngsi.get(AQ["id"], headers={"Accept": "application/geo+json"})
    f = gj.json()
    assert f["type"] == "Feature" and f["id"] == AQ["id"]
    assert f["geometry"] == {"type": "Point", "coordinates": [108.2208, 16.0678]}
    assert f["properties"]["pm25"]["value"] == 41.5
    problem(ngsi.get(AQ["id"], headers={"Accept": "text/csv"}), 406)


def test_user_context_round_trip(ngsi: NGSI) -> None:
    ctx = {"Sensor": "https://example.org/city#Sensor", "pm25": "https://example.org/city#pm25"}
    body = {**entity("urn:ngsi-ld:Sensor:ctx", pm25=prop(3)), "@context": [ctx]}
    assert ngsi.create(body).status_code == 201, ngsi.create(body).text
    # without the context, the terms come back as full IRIs
    plain = ngsi.get("urn:ngsi-ld:Sensor:ctx").json()
    assert plain["type"] == "https://example.org/city#Sensor"
    assert plain["https://example.org/city#pm25"]["value"] == 3
    # a query by the expanded type finds it
    r = ngsi.query(type="https://example.org/city#Sensor")
    assert [e["id"] for e in r.json()] == ["urn:ngsi-ld:Sensor:ctx"]


def test_delete(ngsi: NGSI) -> None:
    ngsi.create(AQ)
    assert ngsi.request("DELETE", f"/entities/{AQ['id']}").status_code == 204
    problem(ngsi.get(AQ["id"]), 404, "ResourceNotFound")
    problem(ngsi.request("DELETE", f"/entities/{AQ['id']}"), 404, "ResourceNotFound")


def test_replace_keeps_created_at(ngsi: NGSI) -> None:
    ngsi.create(AQ)
    before = ngsi.get(AQ["id"], options="sysAttrs").json()
    new = entity(AQ["id"], type="AirQualityObserved", pm10=prop(60))
    assert ngsi.request("PUT", f"/entities/{AQ['id']}", new).status_code == 204
    after = ngsi.get(AQ["id"], options="sysAttrs").json()
    assert "pm25" not in after and after["pm10"]["value"] == 60
    assert after["createdAt"] == before["createdAt"]
    assert after["modifiedAt"] > before["modifiedAt"]
    problem(
        ngsi.request("PUT", "/entities/urn:ngsi-ld:X:none", entity("urn:ngsi-ld:X:none")),
        404,
        "ResourceNotFound",
    )


def test_merge_patch(ngsi: NGSI) -> None:
    ngsi.create(AQ)
    patch = {
        "pm25": {"value": 50},
        "pm10": prop(70),
        "raw": "urn:ngsi-ld:null",
        "refDevice": {"object": "urn:ngsi-ld:Device:8"},
    }
    r = ngsi.request("PATCH", f"/entities/{AQ['id']}", patch)
    assert r.status_code == 204, r.text
    body = ngsi.get(AQ["id"]).json()
    assert body["pm25"]["value"] == 50
    assert body["pm25"]["unitCode"] == "GQ" and body["pm25"]["accuracy"]["value"] == 0.5
    assert body["pm10"]["value"] == 70
    assert "raw" not in body
    assert body["refDevice"]["object"] == "urn:ngsi-ld:Device:8"
    problem(ngsi.request("PATCH", "/entities/urn:ngsi-ld:X:none", patch), 404, "ResourceNotFound")


def test_multi_instance_dataset_ids(ngsi: NGSI) -> None:
    e = entity(
        "urn:ngsi-ld:Sensor:ds",
        temperature=[
            prop(20),
            prop(21, datasetId="urn:ngsi-ld:Dataset:sat"),
        ],
    )
    assert ngsi.create(e).status_code == 201
    got = ngsi.get(e["id"]).json()["temperature"]
    assert isinstance(got, list) and {i["value"] for i in got} == {20, 21}
    r = ngsi.request(
        "DELETE", f"/entities/{e['id']}/attrs/temperature", datasetId="urn:ngsi-ld:Dataset:sat"
    )
    assert r.status_code == 204
    assert ngsi.get(e["id"]).json()["temperature"] == prop(20)
