"""Clause 5.13: @context management (/jsonldContexts)."""

from __future__ import annotations

from tests.hub.conformance.conftest import NGSI, entity, problem, prop


def test_hosted_context_lifecycle(ngsi: NGSI) -> None:
    ctx = {
        "@context": {
            "Bin": "https://example.org/waste#Bin",
            "fill": "https://example.org/waste#fillingLevel",
        }
    }
    r = ngsi.request("POST", "/jsonldContexts", ctx)
    assert r.status_code == 201, r.text
    loc = r.headers["location"]
    cid = loc.rsplit("/", 1)[-1]
    served = ngsi.http.get(f"/jsonldContexts/{cid}")
    assert served.status_code == 200 and served.json()["@context"]["Bin"].endswith("#Bin")
    assert any(cid in str(i) for i in ngsi.request("GET", "/jsonldContexts").json())
    assert ngsi.request("DELETE", f"/jsonldContexts/{cid}").status_code == 204
    problem(ngsi.http.get(f"/jsonldContexts/{cid}"), 404)


def test_link_header_context(ngsi: NGSI) -> None:
    """A Smart Data Models context URL resolves offline (preloaded) from the Link header."""
    url = (
        "https://raw.githubusercontent.com/smart-data-models/dataModel.Environment/"
        "master/context.jsonld"
    )
    link = f'<{url}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'
    r = ngsi.request(
        "POST",
        "/entities",
        entity("urn:ngsi-ld:AirQualityObserved:1", type="AirQualityObserved", pm25=prop(3)),
        headers={"Link": link},
    )
    assert r.status_code == 201, r.text
    got = ngsi.get("urn:ngsi-ld:AirQualityObserved:1", headers={"Link": link})
    assert got.json()["type"] == "AirQualityObserved"
    assert url in got.headers["link"]
    plain = ngsi.get("urn:ngsi-ld:AirQualityObserved:1").json()
    assert plain["type"] == "https://smartdatamodels.org/dataModel.Environment/AirQualityObserved"
