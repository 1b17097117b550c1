"""``/ngsi-ld/v1/subscriptions``: create, list, retrieve, update, delete; bad input."""

from __future__ import annotations

from typing import Any

import pytest

from tests.hub.conformance.conftest import NGSI, problem
from tests.subs.conftest import status, subscribe, subscription

URI = "http://127.0.0.1:9/notify"


def test_create_retrieve_with_status(ngsi: NGSI) -> None:
    body = subscription(
        URI,
        id="urn:ngsi-ld:Subscription:air",
        subscriptionName="air",
        watchedAttributes=["pm25"],
        q="pm25>35",
        notificationTrigger=["attributeUpdated"],
        notification={"attributes": ["pm25"], "format": "keyValues"},
    )
    r = ngsi.request("POST", "/subscriptions", body)
    assert r.status_code == 201, r.text
    assert r.headers["Location"] == "/ngsi-ld/v1/subscriptions/urn:ngsi-ld:Subscription:air"
    got = status(ngsi, "urn:ngsi-ld:Subscription:air")
    assert got["id"] == "urn:ngsi-ld:Subscription:air"
    assert got["type"] == "Subscription"
    assert got["subscriptionName"] == "air"
    assert got["entities"] == [{"type": "Sensor"}]
    assert got["watchedAttributes"] == ["pm25"]
    assert got["q"] == "pm25>35"
    assert got["notificationTrigger"] == ["attributeUpdated"]
    assert got["status"] == "active" and got["isActive"] is True
    note = got["notification"]
    assert note["attributes"] == ["pm25"] and note["format"] == "keyValues"
    assert note["endpoint"] == {"uri": URI}
    assert note["timesSent"] == 0 and note["timesFailed"] == 0
    # a generated id
    sid = subscribe(ngsi, subscription(URI))
    assert sid.startswith("urn:ngsi-ld:Subscription:")
    assert status(ngsi, sid)["id"] == sid


def test_list_pages_and_counts(ngsi: NGSI) -> None:
    ids = [subscribe(ngsi, subscription(URI, id=f"urn:ngsi-ld:Subscription:{i}")) for i in range(5)]
    r = ngsi.request("GET", "/subscriptions", limit=2, count="true")
    assert r.status_code == 200
    assert r.headers["NGSILD-Results-Count"] == "5"
    assert [s["id"] for s in r.json()] == ids[:2]
    assert 'rel="next"' in r.headers["Link"] and "offset=2" in r.headers["Link"]
    r = ngsi.request("GET", "/subscriptions", limit=2, offset=4)
    assert [s["id"] for s in r.json()] == ids[4:]
    assert 'rel="prev"' in r.headers["Link"] and 'rel="next"' not in r.headers["Link"]
    r = ngsi.request("GET", "/subscriptions", limit=2000)
    problem(r, 403, "TooManyResults")


def test_update_pause_and_delete(ngsi: NGSI) -> None:
    sid = subscribe(ngsi, subscription(URI, q="a>1"))
    r = ngsi.request("PATCH", f"/subscriptions/{sid}", {"isActive": False, "q": "a>2"})
    assert r.status_code == 204, r.text
    got = status(ngsi, sid)
    assert got["status"] == "paused" and got["isActive"] is False and got["q"] == "a>2"
    r = ngsi.request(
        "PATCH", f"/subscriptions/{sid}", {"notification": {"format": "concise"}, "isActive": True}
    )
    assert r.status_code == 204, r.text
    got = status(ngsi, sid)
    assert got["status"] == "active"
    assert got["notification"]["format"] == "concise"
    assert got["notification"]["endpoint"] == {"uri": URI}  # kept
    problem(ngsi.request("PATCH", f"/subscriptions/{sid}", {"q": "a>>"}), 400, "BadRequestData")
    assert status(ngsi, sid)["q"] == "a>2"
    assert ngsi.request("DELETE", f"/subscriptions/{sid}").status_code == 204
    problem(ngsi.request("GET", f"/subscriptions/{sid}"), 404, "ResourceNotFound")
    problem(ngsi.request("DELETE", f"/subscriptions/{sid}"), 404, "ResourceNotFound")
    problem(ngsi.request("PATCH", f"/subscriptions/{sid}", {"q": "a>1"}), 404, "ResourceNotFound")


def test_duplicate_id_conflicts(ngsi: NGSI) -> None:
    body = subscription(URI, id="urn:ngsi-ld:Subscription:dup")
    subscribe(ngsi, body)
    problem(ngsi.request("POST", "/subscriptions", body), 409, "AlreadyExists")


def test_names_follow_the_readers_context(ngsi: NGSI) -> None:
    ctx = [{"temp": "https://example.org/vocab/temperature", "Sensor": "https://example.org/S"}]
    body = {**subscription(URI, watchedAttributes=["temp"]), "@context": ctx}
    r = ngsi.request("POST", "/subscriptions", body, ctype="application/ld+json")
    assert r.status_code == 201, r.text
    sid = r.headers["Location"].rsplit("/", 1)[1]
    got = status(ngsi, sid)  # read with the core context: full IRIs
    assert got["watchedAttributes"] == ["https://example.org/vocab/temperature"]
    assert got["entities"] == [{"type": "https://example.org/S"}]


def test_tenants_are_isolated(ngsi: NGSI) -> None:
    sid = subscribe(ngsi, subscription(URI))
    other = NGSI(str(ngsi.http.base_url).rsplit("/ngsi-ld", 1)[0], None, "x")
    other.http.headers.update(
        {k: v for k, v in ngsi.http.headers.items() if k.lower() == "authorization"}
    )
    other.http.headers["NGSILD-Tenant"] = ngsi.tenant + "b"
    try:
        subscribe(other, subscription(URI, id="urn:ngsi-ld:Subscription:b"))
        assert [s["id"] for s in other.request("GET", "/subscriptions").json()] == [
            "urn:ngsi-ld:Subscription:b"
        ]
        problem(other.request("GET", f"/subscriptions/{sid}"), 404)
        assert [s["id"] for s in ngsi.request("GET", "/subscriptions").json()] == [sid]
    finally:
        other.http.close()


BAD: list[tuple[str, dict[str, Any]]] = [
    ("neither entities nor watchedAttributes", {"entities": None}),
    ("unsupported scheme", {"notification": {"endpoint": {"uri": "ftp://x.example/n"}}}),
    ("no host", {"notification": {"endpoint": {"uri": "http:///n"}}}),
    ("MQTT without topic", {"notification": {"endpoint": {"uri": "mqtt://127.0.0.1:1883"}}}),
    ("expiresAt in the past", {"expiresAt": "2020-01-01T00:00:00Z"}),
    ("expiresAt not a date", {"expiresAt": "tomorrow"}),
    ("invalid q", {"q": "temperature>>3"}),
    (
        "invalid geoQ",
        {"geoQ": {"georel": "near", "geometry": "Point", "coordinates": [108.2, 16.0]}},
    ),
    ("unknown format", {"notification": {"format": "xml"}}),
    ("unknown trigger", {"notificationTrigger": ["entityExploded"]}),
    ("showChanges with keyValues", {"notification": {"format": "keyValues", "showChanges": True}}),
    ("timeInterval with watchedAttributes", {"timeInterval": 10, "watchedAttributes": ["a"]}),
    ("timeInterval with throttling", {"timeInterval": 10, "throttling": 5}),
    ("negative throttling", {"throttling": -1}),
    ("wrong type", {"type": "Subscriptions"}),
    ("id not a URI", {"id": "not a uri"}),
    ("unknown member", {"watchedAttribute": ["a"]}),
    ("bad accept", {"notification": {"endpoint": {"uri": URI, "accept": "text/xml"}}}),
    (
        "bad QoS",
        {
            "notification": {
                "endpoint": {
                    "uri": "mqtt://127.0.0.1/t",
                    "notifierInfo": [{"key": "MQTT-QoS", "value": "3"}],
                }
            }
        },
    ),
    ("no notification", {"notification": None}),
    ("bad idPattern", {"entities": [{"idPattern": "(["}]}),
]


@pytest.mark.parametrize("case", [c for c, _ in BAD])
def test_bad_subscriptions_are_refused_and_not_stored(ngsi: NGSI, case: str) -> None:
    changes = dict(BAD)[case]
    body = subscription(URI)
    for key, value in changes.items():
        if key == "notification" and value is not None:
            body["notification"] = {**body["notification"], **value}
        elif value is None:
            body.pop(key)
        else:
            body[key] = value
    r = ngsi.request("POST", "/subscriptions", body)
    detail = problem(r, 400, "BadRequestData")["detail"]
    assert detail
    # nothing stored (the tenant may not even exist)
    r = ngsi.request("GET", "/subscriptions", count="true")
    assert r.status_code == 404 or r.headers["NGSILD-Results-Count"] == "0"
