"""Seeding the demo city into a store (SQLite and PostgreSQL): one transaction, fast,
idempotent, and careful with entities someone has edited since."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from sencity.config import Settings
from sencity.core.platform import Platform
from sencity.demo.cities import load_city
from sencity.demo.seed import seed
from sencity.hub.api import HubService
from sencity.hub.store import Query
from sencity.ingest.hubwrite import HubWriter

WARD = "urn:ngsi-ld:AdministrativeArea:danang:20242"
ROAD = "urn:ngsi-ld:RoadSegment:danang:rd-1"


@pytest.fixture
def platform(settings: Settings) -> Iterator[Platform]:
    p = Platform(settings)
    yield p
    p.close()


def _hub(platform: Platform) -> HubService:
    hub: HubService = platform.state["hub"]
    return hub


def _count(platform: Platform, tenant: str, type_: str) -> int:
    writer = HubWriter.of(platform)
    q = Query(types=[[writer.ctx.expand(type_)]], limit=0, count=True)
    return _hub(platform).hub.query(tenant, q)[1] or 0


def _value(platform: Platform, eid: str, name: str) -> Any:
    e = _hub(platform).hub.get("danang", eid)
    assert e is not None
    return e.attrs[HubWriter.of(platform).ctx.expand(name)][0]["value"]


def _history_rows(platform: Platform) -> int:
    with platform.store.transaction(write=False) as tx:
        return int(tx.execute("SELECT count(*) AS n FROM hub_history")[0]["n"])


def test_seed_writes_the_city_once(platform: Platform) -> None:
    started = time.perf_counter()
    first = seed(platform, "danang")
    assert time.perf_counter() - started < 5  # "a few seconds at most"
    assert first.tenant_created and first.created == sum(first.types.values())
    assert first.types["AdministrativeArea"] == 94 and first.types["RoadSegment"] > 150
    tenant = platform.store.get_tenant("danang")
    assert (tenant["display_name"], tenant["timezone"], tenant["locale"]) == (
        "Thành phố Đà Nẵng",
        "Asia/Ho_Chi_Minh",
        "vi",
    )
    for type_, n in first.types.items():
        assert _count(platform, "danang", type_) == n
    before = _hub(platform).hub.get("danang", WARD)
    history = _history_rows(platform)

    again = seed(platform, "danang")
    assert not again.tenant_created
    assert (again.created, again.updated, again.kept) == (0, 0, 0)
    assert again.unchanged == first.created
    after = _hub(platform).hub.get("danang", WARD)
    assert after is not None and before is not None
    assert after.modified_at == before.modified_at  # not rewritten
    assert _history_rows(platform) == history
    for type_, n in first.types.items():
        assert _count(platform, "danang", type_) == n  # no duplicates


def test_edited_entities_are_kept(platform: Platform) -> None:
    seed(platform, "danang")
    writer = HubWriter.of(platform)
    real = {
        "type": "Polygon",
        "coordinates": [[[108.21, 16.07], [108.23, 16.07], [108.23, 16.08], [108.21, 16.07]]],
    }
    res = writer.write(
        "danang",
        [
            {  # real boundaries imported over the generated cell
                "id": WARD,
                "type": "AdministrativeArea",
                "location": {"type": "GeoProperty", "value": real},
                "boundaryApproximate": {"type": "Property", "value": False},
            },
            {  # an operator corrected a generated road's speed limit
                "id": ROAD,
                "type": "RoadSegment",
                "maximumAllowedSpeed": {"type": "Property", "value": 30},
            },
        ],
    )
    assert not res.errors
    ctx = writer.ctx
    gone = _hub(platform).hub.get("danang", "urn:ngsi-ld:PointOfInterest:danang:poi-1")
    assert gone is not None
    gone.attrs.pop(ctx.expand("wardCode"))  # an attribute lost: the seed adds it back
    _hub(platform).upsert("danang", [gone])

    kept = seed(platform, "danang")
    assert (kept.created, kept.kept, kept.updated) == (0, 2, 1)
    assert _value(platform, WARD, "location") == real
    assert _value(platform, WARD, "boundaryApproximate") is False
    assert _value(platform, ROAD, "maximumAllowedSpeed") == 30
    assert _value(platform, "urn:ngsi-ld:PointOfInterest:danang:poi-1", "wardCode")

    reseeded = seed(platform, "danang", reseed=True)  # generated data back; real kept
    assert (reseeded.updated, reseeded.kept) == (1, 1)
    assert _value(platform, ROAD, "maximumAllowedSpeed") != 30
    assert _value(platform, WARD, "location") == real


def test_another_city_in_its_own_tenant(platform: Platform) -> None:
    res = seed(platform, load_city("hue"))
    assert res.city.slug == "hue" and res.created == sum(res.types.values())
    assert platform.store.get_tenant("hue")["display_name"] == "Thành phố Huế"
    assert _count(platform, "hue", "AdministrativeArea") == 40
    assert _count(platform, "danang", "AdministrativeArea") == 0


def test_a_tenant_with_its_own_roads_gets_no_generated_ones(platform: Platform) -> None:
    writer = HubWriter.of(platform)
    osm_road = {
        "id": "urn:ngsi-ld:RoadSegment:danang:osm-4242",
        "type": "RoadSegment",
        "roadClass": {"type": "Property", "value": "primary"},
        "source": {"type": "Property", "value": "osm"},
        "location": {
            "type": "GeoProperty",
            "value": {"type": "LineString", "coordinates": [[108.2, 16.06], [108.21, 16.07]]},
        },
    }
    platform.store.create_tenant("danang", "Thành phố Đà Nẵng")
    assert not writer.write("danang", [osm_road]).errors
    res = seed(platform, "danang")
    assert res.skipped["RoadSegment"] == res.types["RoadSegment"]
    assert "not added (the tenant has its own RoadSegment)" in res.summary()
    assert _count(platform, "danang", "RoadSegment") == 1
    assert _count(platform, "danang", "AdministrativeArea") == 94  # wards always
    assert _count(platform, "danang", "PointOfInterest") == res.types["PointOfInterest"]
