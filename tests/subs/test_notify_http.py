"""Notifications over HTTP: what triggers them, what they carry, how they are sent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

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


def _patch(ngsi: NGSI, eid: str, **attrs: object) -> None:
    r = ngsi.request("PATCH", f"/entities/{eid}/attrs", attrs)
    assert r.status_code == 204, r.text


def test_default_triggers_and_watched_attributes(ngsi: NGSI, receiver: Receiver) -> None:
    subscribe(ngsi, subscription(receiver.url(), watchedAttributes=["temperature"]))
    ngsi.create(entity(SENSOR, humidity=prop(50)))  # no watched attribute: nothing
    _patch(ngsi, SENSOR, humidity=prop(60))  # unwatched: nothing
    ngsi.request("POST", f"/entities/{SENSOR}/attrs", {"temperature": prop(20)})  # created
    _patch(ngsi, SENSOR, temperature=prop(21))  # updated
    ngsi.request("DELETE", f"/entities/{SENSOR}/attrs/temperature")  # deleted: not by default
    ngsi.request("DELETE", f"/entities/{SENSOR}")  # entity deleted: not by default
    ngsi.create(entity("urn:ngsi-ld:Sensor:2", temperature=prop(5)))  # a last one, to know
    got = receiver.wait(3)
    assert [d["temperature"]["value"] for r in got for d in r.body["data"]] == [20, 21, 5]
    assert len(receiver.wait(3)) == 3 and len(receiver.requests) == 3


def test_entity_and_attribute_deletion_triggers(ngsi: NGSI, receiver: Receiver) -> None:
    subscribe(
        ngsi,
        subscription(
            receiver.url(),
            notificationTrigger=["entityDeleted", "attributeDeleted"],
            notification={"sysAttrs": False},
        ),
    )
    ngsi.create(entity(SENSOR, temperature=prop(20), humidity=prop(50)))  # not a trigger
    _patch(ngsi, SENSOR, temperature=prop(21))  # not a trigger
    assert ngsi.request("DELETE", f"/entities/{SENSOR}/attrs/humidity").status_code == 204
    assert ngsi.request("DELETE", f"/entities/{SENSOR}").status_code == 204
    first, second = (r.body["data"] for r in receiver.wait(2))
    assert first[0]["humidity"]["value"] == "urn:ngsi-ld:null"
    assert first[0]["humidity"]["deletedAt"]
    assert first[0]["temperature"]["value"] == 21
    assert second == [{"id": SENSOR, "type": "Sensor", "deletedAt": second[0]["deletedAt"]}]
    assert len(receiver.requests) == 2


def test_formats_attributes_sysattrs_and_show_changes(ngsi: NGSI, receiver: Receiver) -> None:
    subscribe(
        ngsi,
        subscription(
            receiver.url("/kv"),
            notification={"format": "keyValues", "attributes": ["temperature"]},
        ),
    )
    subscribe(
        ngsi,
        subscription(
            receiver.url("/concise"),
            notification={"format": "concise", "showChanges": True, "sysAttrs": True},
        ),
    )
    subscribe(
        ngsi,
        subscription(
            receiver.url("/ld"),
            notificationTrigger=["entityUpdated"],
            notification={
                "endpoint": {"uri": receiver.url("/ld"), "accept": "application/ld+json"}
            },
        ),
    )
    ngsi.create(entity(SENSOR, temperature=prop(20, unitCode="CEL"), humidity=prop(50)))
    _patch(ngsi, SENSOR, temperature=prop(22, unitCode="CEL"))
    kv = receiver.wait(2, path="/kv")
    assert [r.body["data"] for r in kv] == [
        [{"id": SENSOR, "type": "Sensor", "temperature": 20}],
        [{"id": SENSOR, "type": "Sensor", "temperature": 22}],
    ]
    concise = receiver.wait(2, path="/concise")[1].body["data"][0]
    assert concise["temperature"]["value"] == 22
    assert concise["temperature"]["previousValue"] == 20
    assert concise["temperature"]["unitCode"] == "CEL"
    assert concise["humidity"]["previousValue"] == 50
    assert concise["createdAt"] and concise["modifiedAt"]
    assert concise["temperature"]["modifiedAt"]
    ld = receiver.wait(1, path="/ld")[0]  # entityUpdated only: the creation did not notify
    assert ld.headers["content-type"] == "application/ld+json"
    assert "link" not in ld.headers
    assert "ngsi-ld-core-context" in str(ld.body["@context"])
    assert ld.body["data"][0]["temperature"]["value"] == 22


def test_one_notification_per_write_with_every_entity(ngsi: NGSI, receiver: Receiver) -> None:
    subscribe(ngsi, subscription(receiver.url()))
    batch = [entity(f"urn:ngsi-ld:Sensor:{i}", temperature=prop(i)) for i in range(5)]
    r = ngsi.request("POST", "/entityOperations/create", batch)
    assert r.status_code == 201, r.text
    got = receiver.wait(1)[0].body["data"]
    assert sorted(d["id"] for d in got) == sorted(e["id"] for e in batch)


def test_throttling(ngsi: NGSI, receiver: Receiver) -> None:
    subscribe(ngsi, subscription(receiver.url(), throttling=1))
    ngsi.create(entity(SENSOR, temperature=prop(1)))
    _patch(ngsi, SENSOR, temperature=prop(2))  # within the second: no notification
    receiver.wait(1)
    value = 2

    def update_until_notified() -> bool:
        nonlocal value
        value += 1
        _patch(ngsi, SENSOR, temperature=prop(value))
        return len(receiver.requests) >= 2

    wait_for(update_until_notified, 5, "a notification after the throttling period")
    first, second = (r.body for r in receiver.wait(2))
    values = [d["temperature"]["value"] for d in receiver.data()]
    assert values[0] == 1 and 2 not in values
    gap = datetime.fromisoformat(second["notifiedAt"]) - datetime.fromisoformat(first["notifiedAt"])
    assert gap.total_seconds() >= 1.0


def test_periodic_notifications(ngsi: NGSI, receiver: Receiver) -> None:
    ngsi.create(entity(SENSOR, temperature=prop(20)))
    ngsi.create(entity("urn:ngsi-ld:Sensor:cold", temperature=prop(-5)))
    sid = subscribe(ngsi, subscription(receiver.url(), timeInterval=1, q="temperature>0"))
    got = receiver.wait(2, timeout=10)
    assert [[d["id"] for d in r.body["data"]] for r in got] == [[SENSOR], [SENSOR]]
    assert all(r.body["subscriptionId"] == sid for r in got)
    assert status(ngsi, sid)["timeInterval"] == 1


def test_paused_and_expired_subscriptions_stay_silent(ngsi: NGSI, receiver: Receiver) -> None:
    paused = subscribe(ngsi, subscription(receiver.url("/paused"), isActive=False))
    soon = (datetime.now(UTC) + timedelta(seconds=1)).isoformat().replace("+00:00", "Z")
    expiring = subscribe(ngsi, subscription(receiver.url("/expiring"), expiresAt=soon))
    subscribe(ngsi, subscription(receiver.url("/always")))
    wait_for(lambda: status(ngsi, expiring)["status"] == "expired", 5, "expiry")
    assert status(ngsi, paused)["status"] == "paused"
    ngsi.create(entity(SENSOR, temperature=prop(1)))
    receiver.wait(1, path="/always")
    ngsi.request("PATCH", f"/subscriptions/{paused}", {"isActive": True})
    _patch(ngsi, SENSOR, temperature=prop(2))
    receiver.wait(1, path="/paused")
    receiver.wait(2, path="/always")
    assert not receiver.data("/expiring")
    assert [d["temperature"]["value"] for d in receiver.data("/paused")] == [2]
