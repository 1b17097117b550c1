"""The hub writer every ingestion path uses: one transaction per batch, bad bodies
reported by position and not written, history kept — on both backends."""

from __future__ import annotations

from sencity.config import Settings
from sencity.hub.store import Query
from sencity.ingest.hubwrite import HubWriter, open_platform

TEMP = "https://uri.etsi.org/ngsi-ld/default-context/temperature"


def sensor(i: int, t: object) -> dict[str, object]:
    return {
        "id": f"urn:ngsi-ld:Sensor:{i}",
        "type": "Sensor",
        "temperature": {"type": "Property", "value": t, "observedAt": f"2026-12-01T0{i}:00:00Z"},
    }


def test_batches_are_written_with_errors_by_position(settings: Settings) -> None:
    with open_platform(settings) as platform:
        w = HubWriter.of(platform)
        res = w.write("hue", [sensor(1, 20.5), {"id": "not a uri", "type": "Sensor"}, sensor(2, 7)])
        assert res.created == ["urn:ngsi-ld:Sensor:1", "urn:ngsi-ld:Sensor:2"]
        assert list(res.errors) == [1] and "id" in res.errors[1]
        # update merges: the other attributes stay
        res = w.write(
            "hue",
            [
                {
                    "id": "urn:ngsi-ld:Sensor:1",
                    "type": "Sensor",
                    "status": {"type": "Property", "value": "ok"},
                }
            ],
        )
        assert res.written == ["urn:ngsi-ld:Sensor:1"] and res.created == [] and not res.errors
        found, _ = w.hub.hub.query("hue", Query(ids=["urn:ngsi-ld:Sensor:1"], limit=1))
        assert set(found[0].attrs) >= {TEMP, "https://uri.etsi.org/ngsi-ld/status"}
        temporal = platform.state["temporal"]
        ent = temporal.store.entity("hue", "urn:ngsi-ld:Sensor:2")
        assert ent.id == "urn:ngsi-ld:Sensor:2"
