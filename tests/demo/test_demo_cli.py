"""``sencity demo`` end to end: the city through the NGSI-LD API, a second start that
writes nothing, ``--city``, the MQTT broker choice and the simulator's account."""

from __future__ import annotations

import re
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sencity.auth.service import AuthService
from sencity.cli import cli
from sencity.config import load_settings
from sencity.core.platform import prepare_store
from sencity.demo.rules import demo_rules
from sencity.demo.runner import (
    SIM_USER,
    choose_broker,
    mqtt_answers,
    sim_command,
    sim_token,
)
from sencity.errors import Unauthorized
from tests.conftest import Server, start_server, stop_server
from tests.subs.conftest import make_admin
from tests.test_cli import run

SUMMARY = r"demo city '(\w+)' \((.+?)\): (.+); (\d+) created, (\d+) updated, (\d+) unchanged"


def _count(http: httpx.Client, type_: str, tenant: str | None = None, **params: str) -> int:
    headers = {"NGSILD-Tenant": tenant} if tenant else {}
    r = http.get(
        "/ngsi-ld/v1/entities",
        params={"type": type_, "count": "true", "limit": "0", **params},
        headers=headers,
    )
    assert r.status_code == 200, r.text
    return int(r.headers["NGSILD-Results-Count"])


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for s in started:
        stop_server(s)


def _demo(
    servers: list[Server],
    tmp_path: Path,
    store_url: str,
    *args: str,
    env: dict[str, str] | None = None,
) -> Server:
    server = start_server(["demo", "--port", "0", "--store", store_url, *args], tmp_path, env)
    servers.append(server)
    return server


@pytest.mark.mqtt
@pytest.mark.timeout(120)
def test_demo_city_end_to_end(tmp_path: Path, servers: list[Server]) -> None:
    store_url = f"sqlite:///{tmp_path / 'demo.db'}"
    token = make_admin(store_url)
    # the embedded broker's port is Mosquitto's: the demo uses that broker instead
    env = {
        "SENCITY_INGEST__EMBEDDED_BROKER": "true",
        "SENCITY_INGEST__EMBEDDED_PORT": "1883",
        "SENCITY_INGEST__CLIENT_ID": f"demo-test-{uuid.uuid4().hex[:8]}",
        "SENCITY_INGEST__SESSION_EXPIRY": "0",
    }
    server = _demo(servers, tmp_path, store_url, "--no-sim", env=env)
    m = server.wait_for(SUMMARY)
    assert m.group(1, 2) == ("danang", "Thành phố Đà Nẵng")
    assert "94 AdministrativeArea" in m.group(3) and int(m.group(5)) == int(m.group(6)) == 0
    created = int(m.group(4))
    server.wait_for(r"MQTT: port 1883 already has a broker; the demo uses it")
    server.wait_for(r"/login\?token=sct_")
    with server.client(token, headers={"NGSILD-Tenant": "danang"}) as http:
        assert _count(http, "AdministrativeArea") == 94
        roads, pois, water = (
            _count(http, t) for t in ("RoadSegment", "PointOfInterest", "WaterBody")
        )
        assert roads > 150 and pois >= 10 and water == 3
        assert 94 + roads + pois + water == created
        assert _count(http, "RoadSegment", q='source=="generated"') == roads
        ward = http.get(
            "/ngsi-ld/v1/entities/urn:ngsi-ld:AdministrativeArea:danang:20242",
            params={"options": "keyValues"},
        ).json()
        assert ward["name"] == "Phường Hải Châu" and ward["boundaryApproximate"] is True
        assert ward["location"]["type"] == "Polygon" and ward["area"] == 7.58
        # the cells are real geometry: the ward that holds Hải Châu's centroid is Hải Châu
        found = http.get(
            "/ngsi-ld/v1/entities",
            params={
                "type": "AdministrativeArea",
                "georel": "intersects",
                "geometry": "Point",
                "coordinates": "[108.218,16.0762]",
                "options": "keyValues",
            },
        ).json()
        assert [e["wardCode"] for e in found] == ["20242"]
        hospitals = http.get(
            "/ngsi-ld/v1/entities",
            params={"type": "PointOfInterest", "q": 'category=="hospital"', "options": "keyValues"},
        ).json()
        assert hospitals[0]["name"] == "Bệnh viện Đa khoa Đà Nẵng"
        status = http.get("/ingest/v1/status").json()
        assert status["broker"] == "mqtt://127.0.0.1:1883"
        # the demo's alarm rules, imported once; an operator's deletion is kept below
        rules = http.get("/rules/v1/rules", params={"limit": "100"}).json()
        assert {r["id"] for r in rules} == {r.id for r in demo_rules()}
        assert {"aqi-bad", "flood-alert-2", "congestion", "sensor-offline"} <= {
            r["id"] for r in rules
        }
        assert http.delete("/rules/v1/rules/parking-full").status_code == 204
    stop_server(server)
    servers.remove(server)

    # a second start writes nothing, and starts the simulator (when installed) once the
    # server is ready, with the embedded broker (on a free port this time)
    port = _free_port()
    env = {"SENCITY_INGEST__EMBEDDED_BROKER": "true", "SENCITY_INGEST__EMBEDDED_PORT": str(port)}
    again = _demo(servers, tmp_path, store_url, env=env)
    m = again.wait_for(SUMMARY)
    assert m.group(4, 5, 6) == ("0", "0", str(created))
    again.wait_for(rf"MQTT: embedded broker on port {port}")
    again.wait_for(r"/login\?token=sct_")
    with again.client(token, headers={"NGSILD-Tenant": "danang"}) as http:
        ids = {r["id"] for r in http.get("/rules/v1/rules", params={"limit": "100"}).json()}
        assert ids == {r.id for r in demo_rules()} - {"parking-full"}
    if "sim" not in cli.commands:
        again.wait_for(r"'sencity sim' is not available; the demo runs without simulated sensors")
    else:
        m = again.wait_for(r"simulator started \(pid (\d+)\): sencity (sim .*)")
        assert m.group(2) == (
            f"sim --url {again.url} --tenant danang --mqtt-url mqtt://127.0.0.1:{port} "
            "--seed 1 --backfill 30d"
        )
        sim_pid = int(m.group(1))
    stop_server(again)
    servers.remove(again)
    if "sim" in cli.commands:  # stopped with the server
        status = Path(f"/proc/{sim_pid}/status")
        assert not status.exists() or "zombie" in status.read_text()

    # another province, in its own tenant, which becomes the default tenant
    hue = _demo(servers, tmp_path, store_url, "--no-sim", "--city", "Huế")
    assert hue.wait_for(SUMMARY).group(1, 2) == ("hue", "Thành phố Huế")
    with hue.client(token) as http:
        assert _count(http, "AdministrativeArea") == 40  # no NGSILD-Tenant: hue
        assert _count(http, "AdministrativeArea", tenant="danang") == 94


def test_unknown_city_is_refused(tmp_path: Path) -> None:
    res = run(["demo", "--city", "atlantis"], tmp_path)
    assert res.returncode == 1
    assert "error: unknown city 'atlantis'; one of: angiang," in res.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_simulator_account_is_an_operator_with_a_fresh_token(tmp_path: Path) -> None:
    settings = load_settings(None, {"store": {"url": f"sqlite:///{tmp_path / 's.db'}"}}, environ={})
    store = prepare_store(settings)
    auth = AuthService(store, settings)
    store.create_tenant("danang", "Thành phố Đà Nẵng")
    first = sim_token(store, auth, "danang")
    who = auth.authenticate_token(first)
    assert (who.name, who.kind, who.roles) == (SIM_USER, "client", {"danang": "operator"})
    second = sim_token(store, auth, "danang")  # the next start: the old token is revoked
    assert auth.authenticate_token(second).name == SIM_USER
    with pytest.raises(Unauthorized):
        auth.authenticate_token(first)
    store.create_tenant("hue")
    sim_token(store, auth, "hue")  # another city: operator there too
    assert store.get_user(SIM_USER)["roles"] == {"danang": "operator", "hue": "operator"}
    store.close()
    cmd = sim_command("http://127.0.0.1:8080", "danang", "mqtt://127.0.0.1:1883")
    assert cmd[1:] == [
        "-m",
        "sencity",
        "sim",
        "--url",
        "http://127.0.0.1:8080",
        "--tenant",
        "danang",
        "--mqtt-url",
        "mqtt://127.0.0.1:1883",
        "--seed",
        "1",
        "--backfill",
        "30d",
    ]


@pytest.mark.mqtt
def test_broker_choice(tmp_path: Path) -> None:
    def settings(**ingest: object) -> object:
        return load_settings(None, {"ingest": ingest}, environ={})

    assert mqtt_answers("127.0.0.1", 1883)  # Mosquitto
    mosquitto = choose_broker(settings(embedded_port=1883))  # type: ignore[arg-type]
    assert mosquitto.overrides == {"ingest": {"mqtt_url": "mqtt://127.0.0.1:1883"}}
    with socket.socket() as other:  # a port taken by something that is not a broker
        other.bind(("127.0.0.1", 0))
        other.listen(1)
        taken = other.getsockname()[1]
        assert not mqtt_answers("127.0.0.1", taken, timeout=0.3)
        moved = choose_broker(settings(embedded_port=taken))  # type: ignore[arg-type]
        new_port = moved.overrides["ingest"]["embedded_port"]
        assert new_port != taken and moved.url == f"mqtt://127.0.0.1:{new_port}"
        assert re.search(
            rf"port {taken} is taken .* embedded broker on port {new_port}", moved.note
        )
    free = _free_port()
    embedded = choose_broker(settings(embedded_port=free))  # type: ignore[arg-type]
    assert embedded.overrides == {} and embedded.url == f"mqtt://127.0.0.1:{free}"
    configured = choose_broker(settings(mqtt_url="mqtt://broker.example:1883"))  # type: ignore[arg-type]
    assert configured.url == "mqtt://broker.example:1883" and configured.overrides == {}
    off = choose_broker(settings(embedded_broker=False))  # type: ignore[arg-type]
    assert off.url is None and "MQTT: off" in off.note
