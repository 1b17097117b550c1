"""Generated points of interest (hospitals, police and fire stations) and water bodies.

Places: the *centre* is the phường with the most other phường within 5 km (the urban
core); the wards are then ordered by farthest-point sampling from it (each next ward is
the one farthest from those already chosen, distances divided by the ward's area^0.6 so
that dense urban wards count more), which spreads the services over the city as a
planner would.  Hospitals go to the first ``n/12`` wards of that order (3–12),
police stations to the first ``n/8`` (4–20), fire stations to the first ``n/20`` (2–8);
each sits 300–900 m from its ward's centroid in a direction drawn from its code.

Water: Đà Nẵng has three hand-drawn, approximate water bodies (the Hàn and Cu Đê
rivers and the sea off its coast) so the basemap shows where the city meets the water; other cities
have none until a real import (``sencity import osm``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from sencity.demo.cities import City, Ward
from sencity.demo.geometry import DECIMALS, unit_hash
from sencity.demo.roads import connected_wards
from sencity.demo.wards import projection

CENTRE_RADIUS_KM = 5.0
DENSITY = 0.6


@dataclass
class Poi:
    local_id: str  # poi-<n>
    name: str
    category: str  # hospital | police | fire_station
    ward: Ward
    lon: float
    lat: float


def _count(n: int, per: int, lo: int, hi: int) -> int:
    return max(lo, min(hi, n // per))


def spread_order(city: City) -> list[Ward]:
    """The wards on the road network, the centre first, then by farthest-point sampling."""
    wards = connected_wards(city)
    if not wards:
        return []
    proj = projection(city)
    xy = np.array([proj.point(w.lon, w.lat) for w in wards])
    urban = [i for i, w in enumerate(wards) if w.urban] or list(range(len(wards)))

    def crowd(i: int) -> tuple[int, float, str]:
        d = np.hypot(*(xy[urban] - xy[i]).T)
        return (-int((d <= CENTRE_RADIUS_KM).sum()), wards[i].area_km2 or 1e9, wards[i].code)

    first = min(urban, key=crowd)
    order = [first]
    nearest = np.hypot(*(xy - xy[first]).T)
    # distance over area^0.6: small (dense) wards count more, as more people live there
    scale = np.array([(w.area_km2 or 10.0) ** DENSITY for w in wards])
    while len(order) < len(wards):
        score = nearest / scale
        score[order] = -1.0
        nxt = int(np.argmax(score))  # the first of equal scores: deterministic
        order.append(nxt)
        nearest = np.minimum(nearest, np.hypot(*(xy - xy[nxt]).T))
    return [wards[i] for i in order]


def _near(city: City, ward: Ward, salt: str) -> tuple[float, float]:
    proj = projection(city)
    x, y = proj.point(ward.lon, ward.lat)
    angle = 2 * math.pi * unit_hash(salt, "angle", ward.code)
    dist = 0.3 + 0.6 * unit_hash(salt, "dist", ward.code)  # km
    lon, lat = proj.inverse(x + dist * math.cos(angle), y + dist * math.sin(angle))
    return round(float(lon), DECIMALS), round(float(lat), DECIMALS)


def pois(city: City) -> list[Poi]:
    order = spread_order(city)
    n = len(order)
    if not n:
        return []
    out: list[Poi] = []

    def add(name: str, category: str, ward: Ward) -> None:
        lon, lat = _near(city, ward, category)
        out.append(Poi(f"poi-{len(out) + 1}", name, category, ward, lon, lat))

    for k, w in enumerate(order[: _count(n, 12, 3, 12)]):
        add(
            f"Bệnh viện Đa khoa {city.short}" if k == 0 else f"Trung tâm Y tế khu vực {w.short}",
            "hospital",
            w,
        )
    for k, w in enumerate(order[: _count(n, 8, 4, 20)]):
        local = f"Công an {w.kind.lower()} {w.short}"
        add(f"Công an {city.name}" if k == 0 else local, "police", w)
    for w in order[: _count(n, 20, 2, 8)]:
        add(f"Đội Cảnh sát PCCC và CNCH khu vực {w.short}", "fire_station", w)
    return out


def poi_entities(city: City) -> list[dict[str, Any]]:
    """One NGSI-LD ``PointOfInterest`` per generated place."""
    return [
        {
            "id": f"urn:ngsi-ld:PointOfInterest:{city.slug}:{p.local_id}",
            "type": "PointOfInterest",
            "name": {"type": "Property", "value": p.name},
            "category": {"type": "Property", "value": [p.category]},
            "location": {
                "type": "GeoProperty",
                "value": {"type": "Point", "coordinates": [p.lon, p.lat]},
            },
            "wardCode": {"type": "Property", "value": p.ward.code},
            "areaServed": {"type": "Property", "value": p.ward.name},
            "source": {"type": "Property", "value": "generated"},
        }
        for p in pois(city)
    ]


# -- water ---------------------------------------------------------------------------------
#: hand-drawn, approximate: (name, waterType, GeoJSON geometry) per city
WATER: dict[str, list[tuple[str, str, dict[str, Any]]]] = {
    "danang": [
        (
            "Sông Hàn",
            "river",
            {
                "type": "LineString",
                "coordinates": [
                    [108.2167, 15.9990],
                    [108.2260, 16.0200],
                    [108.2290, 16.0400],
                    [108.2275, 16.0612],
                    [108.2267, 16.0723],
                    [108.2240, 16.0880],
                    [108.2227, 16.0936],
                    [108.2190, 16.1060],
                ],
            },
        ),
        (
            "Sông Cu Đê",
            "river",
            {
                "type": "LineString",
                "coordinates": [
                    [108.0000, 16.1270],
                    [108.0350, 16.1280],
                    [108.0650, 16.1220],
                    [108.0900, 16.1160],
                    [108.1120, 16.1150],
                    [108.1298, 16.1148],
                ],
            },
        ),
        (
            "Biển Đông",
            "sea",
            {
                "type": "Polygon",
                "coordinates": [
                    [
                        [108.3300, 16.1400],
                        [108.3000, 16.1000],
                        [108.2550, 16.0850],
                        [108.2470, 16.0600],
                        [108.2620, 16.0200],
                        [108.2850, 15.9850],
                        [108.3300, 15.9300],
                        [108.3850, 15.8800],
                        [108.4500, 15.7900],
                        [108.5200, 15.6800],
                        [108.5800, 15.5800],
                        [108.6800, 15.4500],
                        [108.8000, 15.3000],
                        [109.2000, 15.3000],
                        [109.2000, 16.1400],
                        [108.3300, 16.1400],
                    ]
                ],
            },
        ),
    ],
}


def water_entities(city: City) -> list[dict[str, Any]]:
    """The city's hand-drawn ``WaterBody`` entities (none for most cities)."""
    return [
        {
            "id": f"urn:ngsi-ld:WaterBody:{city.slug}:wb-{n}",
            "type": "WaterBody",
            "name": {"type": "Property", "value": name},
            "waterType": {"type": "Property", "value": kind},
            "location": {"type": "GeoProperty", "value": geometry},
            "source": {"type": "Property", "value": "generated"},
        }
        for n, (name, kind, geometry) in enumerate(WATER.get(city.slug, []), start=1)
    ]
