"""Where things are: the city's wards, roads and rivers, and the simulated fleet placed
on them deterministically from the seed.

Wards (``AdministrativeArea`` with ``centroid`` and ``wardCode``), roads
(``RoadSegment``) and rivers (``WaterBody``) are read from the tenant through the
NGSI-LD API; a tenant without wards falls back to Đà Nẵng's wards from the
``vietnamadminunits`` package (centroids and areas), with straight road segments
between neighbouring wards.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import numpy as np
from shapely.geometry import Point, shape  # type: ignore[import-untyped]
from shapely.geometry.base import BaseGeometry  # type: ignore[import-untyped]

from sencity.sim import noise
from sencity.sim.models import PARKING_PROFILES, Gauge, Route, metres

#: how many of each kind a city gets (the load mode's devices are separate)
COUNTS = {
    "air": 30,
    "traffic": 60,
    "flood": 20,
    "light": 200,
    "parking": 10,
    "noise": 12,
    "weather": 2,
    "bus": 40,
}
BUS_ROUTES = 10
CORE_RADIUS_KM = 16.0
ROAD_REACH_M = 4000.0  # roads this close to a core ward's centre are the city's
ROUTE_M = (4000.0, 18000.0)  # a bus route's length, shortest and longest

#: the Hàn river from the Cẩm Lệ confluence to the bay (lon, lat), through the centre
HAN_RIVER = [
    (108.2095, 15.9905),
    (108.2135, 16.0086),
    (108.2240, 16.0245),
    (108.2296, 16.0378),
    (108.2290, 16.0500),
    (108.2274, 16.0612),
    (108.2267, 16.0721),
    (108.2240, 16.0830),
    (108.2217, 16.0936),
]
#: the Cu Đê river from Hòa Bắc (Hòa Vang) to its mouth at Nam Ô (Liên Chiểu)
CU_DE_RIVER = [
    (108.0000, 16.1270),
    (108.0350, 16.1280),
    (108.0650, 16.1220),
    (108.0900, 16.1160),
    (108.1120, 16.1150),
    (108.1298, 16.1148),
]
#: wards where streets flood first (names without "Phường"/"Xã")
LOW_LYING = ("Hòa Xuân", "Cẩm Lệ", "Liên Chiểu", "Hòa Khánh", "Thanh Khê", "An Khê", "Hòa Vang")
ROAD_RANK = {"motorway": 0, "trunk": 1, "primary": 2, "secondary": 3, "tertiary": 4}
FREE_FLOW = {"motorway": 80, "trunk": 60, "primary": 50, "secondary": 45, "tertiary": 40}


@dataclass
class Ward:
    code: str
    name: str
    lon: float
    lat: float
    area: float = 10.0  # km²
    urban: bool = True
    polygon: BaseGeometry | None = None


@dataclass
class Road:
    local: str
    entity: str | None  # the RoadSegment's id (None for fallback segments)
    name: str
    road_class: str
    coords: list[tuple[float, float]]
    speed: float
    lanes: int


@dataclass
class City:
    tenant: str
    wards: list[Ward]
    roads: list[Road]
    rivers: dict[str, list[tuple[float, float]]]
    source: str  # "tenant" or "vietnamadminunits"
    roads_source: str  # "tenant" or "generated"
    all_wards: list[Ward] = field(default_factory=list)  # the core's and the others

    def __post_init__(self) -> None:
        if not self.all_wards:
            self.all_wards = list(self.wards)


@dataclass
class Device:
    kind: str
    local: str  # device id = the entity id's local part
    number: int
    lon: float
    lat: float
    ward: Ward
    static: dict[str, Any] = field(default_factory=dict)  # attribute → value
    params: dict[str, Any] = field(default_factory=dict)  # model parameters
    geometry: dict[str, Any] | None = None  # a LineString for traffic detectors


# -- reading the city --
def _coords(geom: Any) -> list[tuple[float, float]]:
    if not isinstance(geom, dict):
        return []
    c = geom.get("coordinates") or []
    if geom.get("type") == "LineString":
        return [(float(x), float(y)) for x, y, *_ in c]
    if geom.get("type") == "MultiLineString" and c:
        return [(float(x), float(y)) for x, y, *_ in max(c, key=len)]
    if geom.get("type") == "Polygon" and c:
        return [(float(x), float(y)) for x, y, *_ in c[0]]
    return []


_ATTR_TYPES = frozenset(
    {"Property", "GeoProperty", "Relationship", "LanguageProperty", "ListProperty", "JsonProperty"}
)


def _value(v: Any) -> Any:
    """An attribute's value in normalized or keyValues form (a GeoJSON geometry also has a
    ``type``, so only NGSI-LD attribute types are unwrapped)."""
    if isinstance(v, dict) and v.get("type") in _ATTR_TYPES:
        if "value" in v:
            return v["value"]
        return v.get("object", v.get("languageMap", v.get("json")))
    return v


def wards_from_entities(items: list[dict[str, Any]]) -> list[Ward]:
    out = []
    for e in items:
        cen = _value(e.get("centroid"))
        loc = _value(e.get("location"))
        code = _value(e.get("wardCode")) or e["id"].rsplit(":", 1)[-1]
        name = str(_value(e.get("name")) or code)
        poly = None
        if isinstance(loc, dict) and loc.get("type") in ("Polygon", "MultiPolygon"):
            try:
                poly = shape(loc)
            except (ValueError, TypeError, AttributeError):
                poly = None
        if isinstance(cen, dict) and cen.get("type") == "Point":
            lon, lat = cen["coordinates"][:2]
        elif poly is not None:
            p = poly.representative_point()
            lon, lat = p.x, p.y
        else:
            continue
        kind = str(_value(e.get("wardType")) or name)
        area = _value(e.get("area"))
        out.append(
            Ward(
                str(code),
                name,
                float(lon),
                float(lat),
                float(area) if isinstance(area, (int, float)) else 10.0,
                not kind.lower().startswith(("xã", "xa", "đặc", "dac")),
                poly,
            )
        )
    return out


def package_wards() -> list[Ward]:
    """Đà Nẵng's wards (2025) from the vietnamadminunits package."""
    from vietnamadminunits.database import query  # type: ignore[import-untyped]

    rows = query(
        "SELECT ward, wardType, wardCode, wardLat, wardLon, wardAreaKm2 FROM admin_units "
        "WHERE provinceCode = '48' OR province = 'Thành phố Đà Nẵng'"
    )
    return [
        Ward(
            r["wardCode"],
            r["ward"],
            float(r["wardLon"]),
            float(r["wardLat"]),
            float(r["wardAreaKm2"] or 10.0),
            r["wardType"] == "Phường",
        )
        for r in rows
        if r["wardType"] != "Đặc khu"
    ]


def core_wards(wards: list[Ward]) -> list[Ward]:
    """The urban core: wards within :data:`CORE_RADIUS_KM` of the centre — the ward with
    the most neighbours within 8 km (the densest part of the city; the smaller ward on a
    tie) — at least five."""
    if len(wards) <= 5:
        return wards

    def crowd(w: Ward) -> tuple[int, float]:
        near = sum(1 for v in wards if metres(w.lon, w.lat, v.lon, v.lat) <= 8000)
        return near, -w.area

    centre = max(wards, key=crowd)
    by_dist = sorted(wards, key=lambda w: metres(centre.lon, centre.lat, w.lon, w.lat))
    near = [
        w for w in by_dist if metres(centre.lon, centre.lat, w.lon, w.lat) <= CORE_RADIUS_KM * 1000
    ]
    return near if len(near) >= 5 else by_dist[:5]


def roads_from_entities(items: list[dict[str, Any]]) -> list[Road]:
    out = []
    for e in items:
        coords = _coords(_value(e.get("location")))
        if len(coords) < 2:
            continue
        cls = str(_value(e.get("roadClass")) or "tertiary")
        speed = _value(e.get("maximumAllowedSpeed"))
        lanes = _value(e.get("totalLaneNumber"))
        out.append(
            Road(
                e["id"].rsplit(":", 1)[-1],
                e["id"],
                str(_value(e.get("name")) or ""),
                cls,
                coords,
                float(speed) if isinstance(speed, (int, float)) else FREE_FLOW.get(cls, 35),
                int(lanes) if isinstance(lanes, (int, float)) and lanes > 0 else 2,
            )
        )
    return out


def generated_roads(wards: list[Ward]) -> list[Road]:
    """Straight segments between each core ward and its three nearest neighbours."""
    pairs: set[tuple[int, int]] = set()
    for i, w in enumerate(wards):
        near = sorted(
            (metres(w.lon, w.lat, v.lon, v.lat), j) for j, v in enumerate(wards) if j != i
        )[:3]
        for _, j in near:
            pairs.add((min(i, j), max(i, j)))
    out = []
    for n, (i, j) in enumerate(sorted(pairs)):
        a, b = wards[i], wards[j]
        cls = "primary" if a.urban and b.urban else "secondary"
        out.append(
            Road(
                f"sim-rd-{n + 1}",
                None,
                f"{a.name} – {b.name}",
                cls,
                [(a.lon, a.lat), (b.lon, b.lat)],
                FREE_FLOW[cls],
                4 if cls == "primary" else 2,
            )
        )
    return out


def load_city(get_all: Callable[[str], list[dict[str, Any]]], tenant: str) -> City:
    """The tenant's places (``get_all(type)`` lists entities of a type, normalized or
    keyValues), or the package's fallback."""
    wards = wards_from_entities(get_all("AdministrativeArea"))
    source = "tenant"
    if not wards:
        wards, source = package_wards(), "vietnamadminunits"
    core = core_wards(wards)
    roads = core_roads(roads_from_entities(get_all("RoadSegment")), core)
    roads_source = "tenant"
    if not roads:
        roads, roads_source = generated_roads(core), "generated"
    rivers = {"Sông Hàn": HAN_RIVER, "Sông Cu Đê": CU_DE_RIVER}
    for e in get_all("WaterBody"):
        name = str(_value(e.get("name")) or "")
        geom = _value(e.get("location"))
        # a river drawn as a line is followed; an area (polygon) keeps the built-in line
        is_line = isinstance(geom, dict) and "LineString" in str(geom.get("type"))
        coords = _coords(geom) if is_line else []
        for river in list(rivers):
            if river.split(" ", 1)[1].lower() in name.lower() and len(coords) >= 2:
                rivers[river] = coords
    return City(tenant, core, roads, rivers, source, roads_source, wards)


def core_roads(roads: list[Road], core: list[Ward]) -> list[Road]:
    """The roads whose middle is within :data:`ROAD_REACH_M` of a core ward's centre, or
    none when fewer than 10 are (a province-wide network is cut to the city)."""

    def near(r: Road) -> bool:
        lon, lat = _along(r.coords, 0.5)
        return any(metres(lon, lat, w.lon, w.lat) <= ROAD_REACH_M for w in core)

    kept = [r for r in roads if near(r)]
    return kept if len(kept) >= 10 else []


# -- placing the fleet --
class Placer:
    def __init__(self, city: City, seed: int) -> None:
        self.city = city
        self.rng = np.random.default_rng(noise.stream_key(seed, "fleet") & 0xFFFFFFFFFFFF)
        self.weights = np.array([3.0 if w.urban else 1.0 for w in city.wards])
        self.weights /= self.weights.sum()

    def ward(self) -> Ward:
        return self.city.wards[int(self.rng.choice(len(self.city.wards), p=self.weights))]

    def point_in(self, w: Ward) -> tuple[float, float]:
        if w.polygon is not None:
            minx, miny, maxx, maxy = w.polygon.bounds
            for _ in range(60):
                x, y = self.rng.uniform(minx, maxx), self.rng.uniform(miny, maxy)
                if w.polygon.contains(Point(x, y)):
                    return float(x), float(y)
        r_km = min(2.0, 0.35 * math.sqrt(w.area / math.pi))
        dx, dy = self.rng.normal(0, r_km / 2, 2)
        return (
            w.lon + float(dx) / (111.32 * math.cos(math.radians(w.lat))),
            w.lat + float(dy) / 110.57,
        )

    def ward_of(self, lon: float, lat: float) -> Ward:
        pt = Point(lon, lat)
        wards = self.city.all_wards
        for w in wards:
            if w.polygon is not None and w.polygon.contains(pt):
                return w
        return min(wards, key=lambda w: metres(lon, lat, w.lon, w.lat))


def _along(coords: list[tuple[float, float]], frac: float) -> tuple[float, float]:
    """The point at ``frac`` (0-1) of a polyline's length."""
    cum = [0.0]
    for (x0, y0), (x1, y1) in pairwise(coords):
        cum.append(cum[-1] + metres(x0, y0, x1, y1))
    target = frac * cum[-1]
    for n in range(1, len(cum)):
        if cum[n] >= target:
            seg = cum[n] - cum[n - 1] or 1.0
            u = (target - cum[n - 1]) / seg
            (x0, y0), (x1, y1) = coords[n - 1], coords[n]
            return x0 + u * (x1 - x0), y0 + u * (y1 - y0)
    return coords[-1]


def _static(w: Ward) -> dict[str, Any]:
    return {"wardCode": w.code, "areaServed": w.name}


def build_fleet(city: City, seed: int, counts: dict[str, int] | None = None) -> list[Device]:
    """Every simulated device of the city, placed deterministically from ``seed``."""
    n = {**COUNTS, **(counts or {})}
    p = Placer(city, seed)
    rng = p.rng
    out: list[Device] = []

    for i in range(n["air"]):
        w = p.ward()
        lon, lat = p.point_in(w)
        busy = float(rng.uniform(0.5, 1.5))
        out.append(
            Device(
                "air",
                f"aq-{i + 1:03d}",
                i,
                lon,
                lat,
                w,
                _static(w),
                {"factor": float(rng.uniform(0.85, 1.0) + 0.15 * (busy - 0.5)), "traffic": busy},
            )
        )

    roads = sorted(city.roads, key=lambda r: (ROAD_RANK.get(r.road_class, 9), float(rng.random())))
    for i in range(n["traffic"]):
        if not roads:
            break
        r = roads[i % len(roads)]
        # more detectors than roads: the next ones further along the same segments
        lon, lat = _along(r.coords, (0.5, 0.25, 0.75, 0.125, 0.875)[(i // len(roads)) % 5])
        w = p.ward_of(lon, lat)
        static: dict[str, Any] = {**_static(w), "freeFlowSpeed": round(r.speed * 0.9, 1)}
        if r.entity:
            static["refRoadSegment"] = {"rel": r.entity}
        if r.name:
            static["name"] = r.name
        out.append(
            Device(
                "traffic",
                f"tf-{i + 1:03d}",
                i,
                lon,
                lat,
                w,
                static,
                {
                    "free_flow": r.speed * 0.9,
                    "lanes": r.lanes,
                    "busy": float(rng.uniform(0.7, 1.15)),
                },
                {"type": "LineString", "coordinates": [list(c) for c in r.coords]},
            )
        )

    # flood gauges: 8 along the Hàn, 6 along the Cu Đê, the rest in low-lying wards
    han, cude = city.rivers["Sông Hàn"], city.rivers["Sông Cu Đê"]
    low = [w for w in city.wards if any(name in w.name for name in LOW_LYING)] or city.wards
    n_han = min(8, n["flood"])
    n_cude = min(6, n["flood"] - n_han)
    for i in range(n["flood"]):
        if i < n_han:
            lon, lat = _along(han, (i + 0.5) / n_han)
            river = "Sông Hàn"
            mouth = (i + 0.5) / n_han  # downstream gauges feel the tide
            g = Gauge(
                0.35 + 0.2 * (1 - mouth), 0.5, 0.15 + 0.25 * mouth, 0.16, 3.0, (1.0, 1.8, 2.5)
            )
        elif i < n_han + n_cude:
            k = i - n_han
            lon, lat = _along(cude, (k + 0.5) / n_cude)
            river = "Sông Cu Đê"
            mouth = (k + 0.5) / n_cude
            g = Gauge(0.9 + 0.6 * (1 - mouth), 0.8, 0.25 * mouth, 0.22, 4.0, (2.0, 3.0, 4.0))
        else:
            w = low[(i - n_han - n_cude) % len(low)]
            lon, lat = p.point_in(w)
            river = "thoát nước đô thị"
            g = Gauge(0.0, 0.02, 0.0, 0.03, 0.7, (0.2, 0.4, 0.6))
        w = p.ward_of(lon, lat)
        station = f"DN-{i + 1:02d}"
        static = {
            **_static(w),
            "river": river,
            "stationID": station,
            "alertLevel1": g.alerts[0],
            "alertLevel2": g.alerts[1],
            "alertLevel3": g.alerts[2],
        }
        out.append(Device("flood", f"fl-{i + 1:02d}", i, lon, lat, w, static, {"gauge": g}))

    for i in range(n["light"]):
        if city.roads:
            r = city.roads[int(rng.integers(len(city.roads)))]
            lon, lat = _along(r.coords, float(rng.random()))
            lon += float(rng.normal(0, 0.00008))
            lat += float(rng.normal(0, 0.00008))
        else:
            lon, lat = p.point_in(p.ward())
        w = p.ward_of(lon, lat)
        out.append(Device("light", f"sl-{i + 1:03d}", i, lon, lat, w, _static(w)))

    for i in range(n["parking"]):
        w = city.wards[i % len(city.wards)] if i < len(city.wards) else p.ward()
        lon, lat = p.point_in(w)
        profile = PARKING_PROFILES[i % len(PARKING_PROFILES)]
        total = int(rng.integers(8, 60)) * 10
        label = {
            "mall": "Trung tâm thương mại",
            "office": "Khu văn phòng",
            "beach": "Bãi biển",
            "hospital": "Bệnh viện",
            "market": "Chợ",
        }[profile]
        short = w.name.split(" ", 1)[-1]
        static = {**_static(w), "name": f"Bãi đỗ xe {label} {short}", "totalSpotNumber": total}
        out.append(
            Device(
                "parking",
                f"pk-{i + 1:02d}",
                i,
                lon,
                lat,
                w,
                static,
                {"profile": profile, "total": total},
            )
        )

    for i in range(n["noise"]):
        w = p.ward()
        lon, lat = p.point_in(w)
        base = float(rng.uniform(60, 72) if w.urban else rng.uniform(52, 62))
        out.append(Device("noise", f"nz-{i + 1:02d}", i, lon, lat, w, _static(w), {"base": base}))

    for i in range(n["weather"]):
        w = city.wards[0] if i == 0 else p.ward()
        lon, lat = (w.lon, w.lat) if i == 0 else p.point_in(w)
        out.append(Device("weather", f"wx-{i + 1:02d}", i, lon, lat, w, {}))

    routes = bus_routes(city, seed, BUS_ROUTES)
    for i in range(n["bus"]) if routes else ():
        route = routes[i % len(routes)]
        lon, lat = route.points[0]
        w = p.ward_of(lon, lat)
        out.append(
            Device(
                "bus",
                f"bus-{i + 1:02d}",
                i,
                lon,
                lat,
                w,
                {
                    "vehicleType": "bus",
                    "refRoute": {"rel": f"urn:ngsi-ld:GtfsRoute:{city.tenant}:{route.code}"},
                },
                {"route": route},
            )
        )
    return out


# -- bus routes --
def _key(pt: tuple[float, float]) -> tuple[int, int]:
    return round(pt[0] * 1e5), round(pt[1] * 1e5)


def bus_routes(city: City, seed: int, count: int) -> list[Route]:
    """``count`` routes: shortest paths between far-apart nodes of the road network
    (at least 4 km), else chains of neighbouring ward centroids."""
    rng = np.random.default_rng(noise.stream_key(seed, "routes") & 0xFFFFFFFFFFFF)
    graph: dict[
        tuple[int, int], list[tuple[tuple[int, int], float, list[tuple[float, float]]]]
    ] = {}
    for r in city.roads:
        a, b = _key(r.coords[0]), _key(r.coords[-1])
        length = sum(metres(*c0, *c1) for c0, c1 in pairwise(r.coords))
        graph.setdefault(a, []).append((b, length, r.coords))
        graph.setdefault(b, []).append((a, length, r.coords[::-1]))
    routes: list[Route] = []
    nodes = sorted(graph)
    for _ in range(count * 4):
        if len(routes) >= count or len(nodes) < 2:
            break
        start = nodes[int(rng.integers(len(nodes)))]
        dist, prev = _dijkstra(graph, start)
        far = [k for k, d in dist.items() if ROUTE_M[0] <= d <= ROUTE_M[1]]
        if not far:
            continue
        end = far[int(rng.integers(len(far)))]
        pts: list[tuple[float, float]] = []
        node = end
        chain = []
        while node != start:
            node_prev, coords = prev[node]
            chain.append(coords)
            node = node_prev
        for coords in reversed(chain):
            pts.extend(coords if not pts else coords[1:])
        routes.append(Route(f"R{len(routes) + 1:02d}", pts))
    wards = city.wards
    while len(routes) < count and len(wards) >= 3:
        w = wards[int(rng.integers(len(wards)))]
        chain_w = [w]
        for _ in range(5):
            last = chain_w[-1]
            options = sorted(
                (metres(last.lon, last.lat, v.lon, v.lat), v.code)
                for v in wards
                if v not in chain_w
            )[:3]
            if not options:
                break
            code = options[int(rng.integers(len(options)))][1]
            chain_w.append(next(v for v in wards if v.code == code))
        routes.append(Route(f"R{len(routes) + 1:02d}", [(v.lon, v.lat) for v in chain_w]))
    return routes


def _dijkstra(
    graph: dict[tuple[int, int], list[tuple[tuple[int, int], float, list[tuple[float, float]]]]],
    start: tuple[int, int],
) -> tuple[
    dict[tuple[int, int], float],
    dict[tuple[int, int], tuple[tuple[int, int], list[tuple[float, float]]]],
]:
    dist = {start: 0.0}
    prev: dict[tuple[int, int], tuple[tuple[int, int], list[tuple[float, float]]]] = {}
    heap = [(0.0, start)]
    while heap:
        d, node = heapq.heappop(heap)
        if d > dist.get(node, math.inf):
            continue
        for nxt, length, coords in graph.get(node, []):
            nd = d + length
            if nd < dist.get(nxt, math.inf):
                dist[nxt] = nd
                prev[nxt] = (node, coords)
                heapq.heappush(heap, (nd, nxt))
    return dist, prev
