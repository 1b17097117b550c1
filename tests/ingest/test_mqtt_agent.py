"""The sensor agent end to end: provisioning, MQTT (JSON, UltraLight, single measures,
a fleet's own format) through the real Mosquitto into the hub, HTTP ingestion, dead
letters and last-seen times — on both backends."""

from __future__ import annotations

import json
import threading
import uuid
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from tests.conftest import start_server, stop_server
from tests.ingest.conftest import BROKER, Agent, Publisher, wait_for
from tests.subs.conftest import free_port, make_admin

ATTRS = [
    {"object_id": "t", "name": "temperature", "unitCode": "CEL", "datatype": "number"},
    {"object_id": "pm25", "name": "pm25", "unitCode": "GQ"},
    {"object_id": "f", "name": "temperature_f", "expression": "value * 1.8 + 32"},
]
SPOT = {"type": "Point", "coordinates": [107.59, 16.46]}  # Huế


def eid(dev: str) -> str:
    return f"urn:ngsi-ld:AirQualityObserved:{dev}"


def provision(agent: Agent, dev: str, **group: object) -> None:
    r = agent.group(attributes=ATTRS, timestamp="ts", **group)
    assert r.status_code == 201, r.text
    r = agent.device(dev, location=SPOT, static_attributes=[{"name": "source", "value": "test"}])
    assert r.status_code == 201, r.text


def test_json_measures_become_the_entity(agent: Agent, publisher: Publisher) -> None:
    provision(agent, "aq-1")
    payload = {"t": 25.3, "pm25": "41", "f": 10, "ts": "2026-12-01T10:00:00+07:00", "rain": 0}
    publisher.send(f"/{agent.apikey}/aq-1/attrs", json.dumps(payload))
    e = wait_for(lambda: agent.entity(eid("aq-1")), what="the entity")
    assert e["type"] == "AirQualityObserved"
    assert e["temperature"] == 25.3 and e["pm25"] == 41 and e["rain"] == 0
    assert e["temperature_f"] == 50.0  # the expression
    assert e["source"] == "test" and e["location"] == SPOT
    full = agent.http.get(f"/ngsi-ld/v1/entities/{eid('aq-1')}").json()
    assert full["temperature"]["unitCode"] == "CEL"
    assert full["temperature"]["observedAt"] == "2026-12-01T03:00:00Z"
    dev = agent.http.get("/ingest/v1/devices/aq-1").json()
    assert dev["entity_id"] == eid("aq-1") and dev["lastSeen"]


def test_ultralight_readings_each_kept_in_history(agent: Agent, publisher: Publisher) -> None:
    provision(agent, "aq-2")
    publisher.send(
        f"/ul/{agent.apikey}/aq-2/attrs",
        "2026-12-01T01:00:00Z|t|20|pm25|41#2026-12-01T02:00:00Z|t|21#t|22",
    )
    e = wait_for(lambda: (x := agent.entity(eid("aq-2"))) and x["temperature"] == 22 and x)
    assert e["pm25"] == 41
    hist = agent.http.get(
        f"/ngsi-ld/v1/temporal/entities/{eid('aq-2')}",
        params={"attrs": "temperature", "options": "temporalValues"},
    ).json()
    assert [v[0] for v in hist["temperature"]["values"]] == [20, 21, 22]
    # one measure on its own topic
    publisher.send(f"/{agent.apikey}/aq-2/attrs/t", "23.5")
    wait_for(lambda: agent.entity(eid("aq-2"))["temperature"] == 23.5)  # type: ignore[index]


def test_a_fleets_own_format(agent: Agent, publisher: Publisher) -> None:
    topic = f"fleet-{uuid.uuid4().hex[:6]}/{{device_id}}/telemetry"
    provision(agent, "aq-3", mapping={"topic": topic, "paths": {"t": "data.temp", "ts": "at"}})
    body = {"data": {"temp": 19.5}, "at": 1764554400}
    publisher.send(topic.replace("{device_id}", "aq-3"), json.dumps(body))
    e = wait_for(lambda: agent.entity(eid("aq-3")), what="the entity")
    assert e["temperature"] == 19.5
    full = agent.http.get(f"/ngsi-ld/v1/entities/{eid('aq-3')}").json()
    assert full["temperature"]["observedAt"] == "2025-12-01T02:00:00Z"


def test_bad_messages_are_dead_letters_nothing_dropped(agent: Agent, publisher: Publisher) -> None:
    provision(agent, "aq-4")
    good = f"/{agent.apikey}/aq-4/attrs"
    cases = [
        (good, b'{"t": 1', "parse"),
        (good, b'{"t": "warm"}', "value"),
        (f"/{agent.apikey}/ghost/attrs", b'{"t": 1}', "unknown-device"),
        (good, b'{"t": 1, "ts": "yesterday"}', "time"),
        (good, b"t|" + b"9" * 70_000, "oversized"),
        (good, b"\xff\xfe", "encoding"),
    ]
    for topic, payload, _ in cases:
        publisher.send(topic, payload)
    publisher.send(good, b'{"t": 2}')  # after them all: once it is in, they were handled
    wait_for(lambda: agent.entity(eid("aq-4")), what="the good message")
    dead = wait_for(lambda: len(x := agent.dead()) >= len(cases) and x, what="dead letters")
    assert sorted(d["reason"] for d in dead) == sorted(r for _, _, r in cases)
    by_reason = {d["reason"]: d for d in dead}
    assert by_reason["value"]["detail"] == "measure 't': 'warm' is not a number"
    assert by_reason["value"]["payload"] == {"text": '{"t": "warm"}'}
    assert by_reason["value"]["topic"] == good and by_reason["value"]["device_id"] == "aq-4"
    assert by_reason["encoding"]["payload"] == {"base64": "//4="}
    assert agent.entity(eid("aq-4"))["temperature"] == 2  # type: ignore[index]
    metrics = agent.http.get("/metrics").text
    assert 'sencity_ingest_deadletters{reason="unknown-device"}' in metrics


def test_unknown_api_keys_are_unattributed_dead_letters(agent: Agent, publisher: Publisher) -> None:
    key = f"nobody{uuid.uuid4().hex[:8]}"
    publisher.send(f"/{key}/x/attrs", b'{"t": 1}')
    publisher.send(f"/{key}/x/attrs/t", b"1")

    def mine() -> list[dict[str, object]]:
        r = agent.http.get("/ingest/v1/deadletters/unattributed", params={"limit": 1000})
        assert r.status_code == 200, r.text
        return [d for d in r.json() if d["apikey"] == key]

    got = wait_for(lambda: len(x := mine()) == 2 and x, what="unattributed dead letters")
    assert {d["reason"] for d in got} == {"unknown-apikey"}
    # not in a tenant's own list (this one has nothing provisioned: it does not even exist)
    assert agent.http.get("/ingest/v1/deadletters").status_code == 404


def test_http_ingestion(agent: Agent) -> None:
    provision(agent, "aq-5")
    post = agent.http.post
    r = post("/ingest/v1/iot/json", params={"k": agent.apikey, "i": "aq-5"}, json={"t": 30})
    assert r.status_code == 204, r.text
    assert agent.entity(eid("aq-5"))["temperature"] == 30  # type: ignore[index]
    r = post("/ingest/v1/iot/d", params={"k": agent.apikey, "i": "aq-5"}, content=b"t|31|pm25|7")
    assert r.status_code == 204, r.text
    assert agent.entity(eid("aq-5"))["pm25"] == 7  # type: ignore[index]
    r = post("/ingest/v1/iot/json", params={"k": agent.apikey, "i": "aq-5"}, content=b"{oops")
    assert r.status_code == 400 and r.headers["content-type"] == "application/problem+json"
    assert "invalid JSON" in r.json()["detail"]
    r = post("/ingest/v1/iot/json", params={"k": "wrong", "i": "aq-5"}, json={"t": 1})
    assert r.status_code == 403
    r = post("/ingest/v1/iot/json", params={"k": agent.apikey}, json={"t": 1})
    assert r.status_code == 400
    assert [d["reason"] for d in agent.dead()] == ["parse"]
    assert agent.entity(eid("aq-5"))["temperature"] == 31  # type: ignore[index]


def test_provisioning_api(agent: Agent) -> None:
    assert agent.group(attributes=ATTRS).status_code == 201
    r = agent.group()
    assert r.status_code == 409
    r = agent.http.post("/ingest/v1/groups", json={"apikey": "x y", "entity_type": "T"})
    assert r.status_code == 400 and "'apikey'" in r.json()["detail"]
    bad = {
        "apikey": "k2",
        "entity_type": "T",
        "attributes": [{"object_id": "t", "name": "t", "expression": "value +"}],
    }
    r = agent.http.post("/ingest/v1/groups", json=bad)
    assert r.status_code == 400 and "expression" in r.json()["detail"]
    # devices: all or none
    r = agent.http.post(
        "/ingest/v1/devices",
        json={
            "devices": [
                {"device_id": "d1", "apikey": agent.apikey},
                {"device_id": "d2", "apikey": "unknown"},
            ]
        },
    )
    assert r.status_code == 404
    assert agent.http.get("/ingest/v1/devices").json() == []
    assert agent.device("d1").status_code == 201
    assert agent.device("d1").status_code == 409
    r = agent.http.patch("/ingest/v1/devices/d1", json={"entity_id": "urn:ngsi-ld:Thing:d1"})
    assert r.status_code == 204
    got = agent.http.get("/ingest/v1/devices/d1").json()
    assert got["entity_id"] == "urn:ngsi-ld:Thing:d1" and got["lastSeen"] is None
    silent = agent.http.get("/ingest/v1/devices", params={"silentFor": "PT1H"})
    assert [d["device_id"] for d in silent.json()] == ["d1"]
    assert silent.headers["Total-Count"] == "1"
    assert agent.http.delete(f"/ingest/v1/groups/{agent.apikey}").status_code == 409
    assert agent.http.delete("/ingest/v1/devices/d1").status_code == 204
    assert agent.http.get("/ingest/v1/devices/d1").status_code == 404
    assert agent.http.delete(f"/ingest/v1/groups/{agent.apikey}").status_code == 204


def test_embedded_broker_when_none_is_configured(tmp_path: Path) -> None:
    port = free_port()
    url = f"sqlite:///{tmp_path / 's.db'}"
    token = make_admin(url)
    cfg = tmp_path / "sencity.toml"
    cfg.write_text(f"[hub]\ncontext_fetch = false\n[ingest]\nembedded_port = {port}\n")
    server = start_server(
        ["--config", str(cfg), "serve", "--port", "0", "--store", url],
        tmp_path,
        env={"SENCITY_INGEST__EMBEDDED_BROKER": "true"},
    )
    try:
        server.wait_for(f"embedded MQTT broker on 127.0.0.1:{port}")
        server.wait_for("connected to MQTT broker")
        agent = Agent(server.url, token, "hue")
        provision(agent, "aq-e")
        pub = Publisher(port=port)
        pub.send(f"/{agent.apikey}/aq-e/attrs", b"t|17")
        pub.close()
        e = wait_for(lambda: agent.entity(eid("aq-e")), what="the entity via the embedded broker")
        assert e["temperature"] == 17
        status = agent.http.get("/ingest/v1/status").json()
        assert status["embedded_broker"] is True and status["connected"] is True
        agent.http.close()
    finally:
        stop_server(server)


def test_commands_reach_the_device_and_its_answer_is_recorded(
    agent: Agent, publisher: Publisher
) -> None:
    r = agent.group(entity_type="Streetlight")
    assert r.status_code == 201, r.text
    r = agent.device("lamp-1", commands=[{"name": "dim"}])
    assert r.status_code == 201, r.text
    got: list[tuple[str, bytes]] = []
    arrived = threading.Event()
    lamp = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"lamp-{uuid.uuid4().hex[:8]}")

    def on_message(c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        got.append((msg.topic, msg.payload))
        c.publish(f"/{agent.apikey}/lamp-1/cmdexe", b'{"dim": "OK dimmed to 40"}', qos=1)
        arrived.set()

    subscribed = threading.Event()
    lamp.on_message = on_message
    lamp.on_subscribe = lambda *_a: subscribed.set()
    lamp.connect(*BROKER)
    lamp.loop_start()
    try:
        lamp.subscribe(f"/{agent.apikey}/lamp-1/cmd", qos=1)
        assert subscribed.wait(10)
        eid = "urn:ngsi-ld:Streetlight:lamp-1"
        # the lamp reports its level: a measure, which must not come back as a command
        publisher.send(f"/{agent.apikey}/lamp-1/attrs", b'{"dim": 100}')
        wait_for(lambda: agent.entity(eid), what="the lamp's entity")
        r = agent.http.patch(
            f"/ngsi-ld/v1/entities/{eid}/attrs/dim", json={"type": "Property", "value": 40}
        )
        assert r.status_code == 204, r.text
        assert arrived.wait(10), "the command did not reach the lamp"
        assert got == [(f"/{agent.apikey}/lamp-1/cmd", b'{"dim": 40}')]
        e = wait_for(
            lambda: (x := agent.entity(eid)) and x.get("dim_status") == "OK" and x,
            what="the command's status",
        )
        assert e["dim_info"] == "OK dimmed to 40" and e["dim"] == 40
    finally:
        lamp.loop_stop()
        lamp.disconnect()


def test_openapi_describes_every_ingest_route(agent: Agent) -> None:
    from openapi_spec_validator import validate

    r = httpx.get(f"{agent.url}/ingest/v1/openapi.json")  # public
    assert r.status_code == 200
    doc = r.json()
    validate(doc)
    ops = {(m.upper(), "/ingest/v1" + p) for p, item in doc["paths"].items() for m in item}
    routes = {
        tuple(line.split("`")[1].split(" ", 1))
        for line in (Path(__file__).parents[2] / "docs" / "API.md").read_text().splitlines()
        if line.startswith("| `") and "/ingest/v1/" in line
    }
    assert ops == routes
    assert "Group" in doc["components"]["schemas"] and "AttrMap" in doc["components"]["schemas"]


def test_vehicle_positions_update_vehicles_linked_to_their_route(
    agent: Agent, publisher: Publisher
) -> None:
    r = agent.group(
        entity_type="Vehicle",
        attributes=[
            {"object_id": "pos", "name": "location", "type": "GeoProperty"},
            {
                "object_id": "route",
                "name": "refRoute",
                "type": "Relationship",
                "expression": '"urn:ngsi-ld:GtfsRoute:hue:" + value',
            },
            {"object_id": "v", "name": "speed", "unitCode": "KMH"},
        ],
        static_attributes=[{"name": "vehicleType", "value": "bus"}],
    )
    assert r.status_code == 201, r.text
    assert agent.device("bus-7").status_code == 201
    publisher.send(
        f"/{agent.apikey}/bus-7/attrs",
        json.dumps({"pos": "16.4637,107.5909", "route": "B01", "v": 28.5, "bearing": 90}),
    )
    e = wait_for(lambda: agent.entity("urn:ngsi-ld:Vehicle:bus-7"), what="the vehicle")
    assert e["location"] == {"type": "Point", "coordinates": [107.5909, 16.4637]}
    assert e["refRoute"] == "urn:ngsi-ld:GtfsRoute:hue:B01"
    assert e["speed"] == 28.5 and e["bearing"] == 90 and e["vehicleType"] == "bus"
    # it moves: the position is kept in history
    publisher.send(f"/{agent.apikey}/bus-7/attrs", json.dumps({"pos": [107.60, 16.47]}))
    wait_for(
        lambda: (
            agent.entity("urn:ngsi-ld:Vehicle:bus-7")["location"]["coordinates"]  # type: ignore[index]
            == [107.60, 16.47]
        )
    )
    hist = agent.http.get(
        "/ngsi-ld/v1/temporal/entities/urn:ngsi-ld:Vehicle:bus-7", params={"attrs": "location"}
    ).json()
    assert len(hist["location"]) == 2
