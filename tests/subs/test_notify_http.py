"""Notifications over HTTP: what triggers them, what they carry, how they are sent."""

from __future__ import annotations

from tests.hub.conformance.conftest import NGSI, entity, point, prop
from tests.subs.conftest import Receiver, status, subscribe, subscription, wait_for

SENSOR = "urn:ngsi-ld:Sensor:1"


def test_create_and_update_notify_with_spec_body_and_headers(
    ngsi: NGSI, receiver: Receiver
) -> None:
    sid = subscribe(
        ngsi,
        subscription(
            receiver.url(),
            notification={
                "endpoint": {
                    "uri": receiver.url(),
                    "receiverInfo": [{"key": "X-Auth-Token", "value": "s3cret"}],
                }
            },
        ),
    )
    assert ngsi.create(entity(SENSOR, temperature=prop(21.5))).status_code == 201
    first = receiver.wait(1)[0]
    body = first.body
    assert body["type"] == "Notification"
    assert body["id"].startswith("urn:ngsi-ld:Notification:")
    assert body["subscriptionId"] == sid
    assert body["notifiedAt"].endswith("Z")
    assert body["data"] == [
        {"id": SENSOR, "type": "Sensor", "temperature": {"type": "Property", "value": 21.5}}
    ]
    h = first.headers
    assert h["content-type"] == "application/json"
    assert (
        "ngsi-ld-core-context" in h["link"]
        and 'rel="http://www.w3.org/ns/json-ld#context"' in h["link"]
    )
    assert h["ngsild-tenant"] == ngsi.tenant
    assert h["x-auth-token"] == "s3cret"
    r = ngsi.request("PATCH", f"/entities/{SENSOR}/attrs", {"temperature": prop(22.0)})
    assert r.status_code == 204, r.text
    second = receiver.wait(2)[1].body
    assert second["data"][0]["temperature"]["value"] == 22.0
    st = wait_for(lambda: (s := status(ngsi, sid))["notification"].get("timesSent") == 2 and s)
    note = st["notification"]
    assert st["status"] == "active" and note["status"] == "ok"
    assert note["timesFailed"] == 0
    assert note["lastNotification"] == note["lastSuccess"]
    assert "lastFailure" not in note


def test_q_and_geoq_decide_like_entity_queries(ngsi: NGSI, receiver: Receiver) -> None:
    subscribe(
        ngsi,
        subscription(
            receiver.url(),
            q='temperature>30;status=="ok"',
            geoQ={
                "georel": "near;maxDistance==2000",
                "geometry": "Point",
                "coordinates": [108.22, 16.07],
            },
        ),
    )
    near, far = point(108.221, 16.071), point(108.5, 16.5)
    ngsi.create(
        entity("urn:ngsi-ld:Sensor:cool", temperature=prop(20), status=prop("ok"), location=near)
    )
    ngsi.create(
        entity("urn:ngsi-ld:Sensor:far", temperature=prop(35), status=prop("ok"), location=far)
    )
    ngsi.create(
        entity("urn:ngsi-ld:Sensor:hot", temperature=prop(35), status=prop("ok"), location=near)
    )
    receiver.wait(1)
    # the cool one warms up: now it matches
    ngsi.request("PATCH", "/entities/urn:ngsi-ld:Sensor:cool/attrs", {"temperature": prop(31)})
    receiver.wait(2)
    # the query says the same
    r = ngsi.query(
        type="Sensor",
        q='temperature>30;status=="ok"',
        georel="near;maxDistance==2000",
        geometry="Point",
        coordinates="[108.22,16.07]",
    )
    assert sorted(e["id"] for e in r.json()) == sorted(d["id"] for d in receiver.data())
    assert [d["id"] for d in receiver.data()] == [
        "urn:ngsi-ld:Sensor:hot",
        "urn:ngsi-ld:Sensor:cool",
    ]
