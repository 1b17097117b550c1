"""The simulator places its fleet on the tenant's own wards and roads, whichever form
(normalized or keyValues) the NGSI-LD API answers in."""

from __future__ import annotations

from typing import Any

import pytest

from sencity.demo.cities import load_city as demo_city
from sencity.demo.seed import demo_bodies
from sencity.sim.city import load_city


def _key_values(entity: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"id": entity["id"], "type": entity["type"]}
    for name, attr in entity.items():
        if isinstance(attr, dict) and attr.get("type") in ("Property", "GeoProperty"):
            out[name] = attr["value"]
        elif isinstance(attr, dict) and attr.get("type") == "Relationship":
            out[name] = attr["object"]
    return out


@pytest.mark.parametrize("form", ["normalized", "keyValues"])
def test_the_seeded_wards_and_roads_are_used(form: str) -> None:
    bodies = demo_bodies(demo_city("danang"))
    if form == "keyValues":
        bodies = [_key_values(b) for b in bodies]

    def get_all(entity_type: str) -> list[dict[str, Any]]:
        return [b for b in bodies if b["type"] == entity_type]

    city = load_city(get_all, "danang")
    assert city.source == "tenant"
    assert city.roads_source == "tenant"
    seeded_roads = {b["id"] for b in get_all("RoadSegment")}
    # the province-wide network is cut to the city's roads (near the core wards)
    used = {r.entity for r in city.roads}
    assert used <= seeded_roads and len(used) >= 10
    codes = {b["id"].rsplit(":", 1)[-1] for b in get_all("AdministrativeArea")}
    assert {w.code for w in city.wards} <= codes
    assert all(w.polygon is not None for w in city.wards)
