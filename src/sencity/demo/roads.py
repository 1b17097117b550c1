"""A generated arterial road network between ward centres (plausible, not real).

1. Nodes: the centroids of the mainland wards (special zones — the island districts
   Hoàng Sa, Phú Quốc… — and island communes far from every other ward get no roads).
2. Edges: the Gabriel graph of the centroids (a Delaunay edge is kept when no other
   centroid lies in the circle whose diameter it is): planar, connected (it holds the
   minimum spanning tree) and road-like.  Edges longer than three times the median
   are dropped unless the spanning tree needs them, so the graph stays connected.
3. Class by load: every ward sends one trip to every other along the shortest path;
   the most used 8 % of the edges are ``trunk``, the next 17 % ``primary``, the next
   30 % ``secondary``, the rest ``tertiary``.
4. Speed limits follow Vietnam's rules (Circular 38/2024/TT-BGTVT): in built-up
   areas — both ends in a phường — 60 km/h on the trunk and primary roads and
   50 km/h on the others; outside, 90, 80, 60 and 50 km/h.
5. Each road is a line with one bend (a deterministic offset of the midpoint), so
   the map does not look like a triangulation.  Generated roads are two-way.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely  # type: ignore[import-untyped]
from shapely.geometry import LineString, MultiPoint  # type: ignore[import-untyped]

from sencity.demo.cities import City, Ward
from sencity.demo.geometry import DECIMALS, line_length_m, unit_hash
from sencity.demo.wards import projection, target_areas

CLASSES = (("trunk", 0.08), ("primary", 0.25), ("secondary", 0.55), ("tertiary", 1.0))
SPEED_URBAN = {"trunk": 60, "primary": 60, "secondary": 50, "tertiary": 50}
SPEED_RURAL = {"trunk": 90, "primary": 80, "secondary": 60, "tertiary": 50}
LANES = {"trunk": 4, "primary": 4, "secondary": 2, "tertiary": 2}
LONG_EDGE = 3.0  # × the median edge length
ISOLATED = 3.0  # × the sum of two wards' radii: farther from every other ward = an island


@dataclass
class Road:
    local_id: str  # rd-<n>
    a: Ward
    b: Ward
    road_class: str
    speed: int
    lanes: int
    coords: list[list[float]]  # [[lon, lat], …]
    length_m: float

    @property
    def name(self) -> str:
        prefix = "Trục chính" if self.road_class == "trunk" else "Đường"
        return f"{prefix} {self.a.short} – {self.b.short}"


def _mst(n: int, edges: list[tuple[float, int, int]]) -> set[tuple[int, int]]:
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    tree = set()
    for _, u, v in sorted(edges):
        ru, rv = find(u), find(v)
        if ru != rv:
            parent[ru] = rv
            tree.add((u, v))
    return tree


def _loads(n: int, edges: list[tuple[int, int]], length: list[float]) -> list[float]:
    """Trips through each edge when every node sends one trip to every other node along
    its shortest path (ties broken by node order: deterministic)."""
    adj: list[list[tuple[int, int]]] = [[] for _ in range(n)]
    for k, (u, v) in enumerate(edges):
        adj[u].append((v, k))
        adj[v].append((u, k))
    load = [0.0] * len(edges)
    for s in range(n):
        dist = [math.inf] * n
        via = [-1] * n
        dist[s] = 0.0
        heap = [(0.0, s)]
        order = []
        while heap:
            d, u = heapq.heappop(heap)
            if d > dist[u]:
                continue
            order.append(u)
            for v, k in adj[u]:
                nd = d + length[k]
                if nd < dist[v] - 1e-12:
                    dist[v], via[v] = nd, k
                    heapq.heappush(heap, (nd, v))
        below = [1.0] * n
        for u in reversed(order):
            k = via[u]
            if k >= 0:
                load[k] += below[u]
                a, b = edges[k]
                below[a if b == u else b] += below[u]
    return load


def connected_wards(city: City) -> list[Ward]:
    """The wards on the road network: not the special zones (đặc khu, the island
    districts), nor a ward farther than ``ISOLATED`` times the sum of the two radii
    (√(area/π)) from its nearest neighbour — an island commune such as Tân Hiệp (Cù Lao
    Chàm), whose road would cross the sea."""
    wards = [w for w in city.wards if not w.island]
    if len(wards) < 2:
        return wards
    proj = projection(city)
    xy = np.array([proj.point(w.lon, w.lat) for w in wards])
    radius = np.sqrt(np.array(target_areas(city))[[city.wards.index(w) for w in wards]] / math.pi)
    keep = []
    for i, w in enumerate(wards):
        gap = np.hypot(*(xy - xy[i]).T) / (radius + radius[i])
        gap[i] = math.inf
        if gap.min() <= ISOLATED:
            keep.append(w)
    return keep


def graph(city: City) -> tuple[list[Ward], list[tuple[int, int]], Any]:
    """The connected wards, the edges (index pairs) and the projected points."""
    wards = connected_wards(city)
    proj = projection(city)
    xy = np.array([proj.point(w.lon, w.lat) for w in wards]) if wards else np.zeros((0, 2))
    n = len(wards)
    if n < 2:
        return wards, [], xy
    index = {(round(x, 9), round(y, 9)): i for i, (x, y) in enumerate(xy)}
    lines = shapely.delaunay_triangles(MultiPoint(xy.tolist()), only_edges=True)
    cand: set[tuple[int, int]] = set()
    for line in getattr(lines, "geoms", [lines]):
        (x1, y1), (x2, y2) = line.coords[0], line.coords[-1]
        u = index.get((round(x1, 9), round(y1, 9)))
        v = index.get((round(x2, 9), round(y2, 9)))
        if u is not None and v is not None and u != v:
            cand.add((min(u, v), max(u, v)))
    if n == 2 or not cand:
        cand = {(0, 1)} if n == 2 else cand
    gabriel = []
    for u, v in sorted(cand):
        mid = (xy[u] + xy[v]) / 2
        r2 = float(((xy[u] - xy[v]) ** 2).sum()) / 4
        d2 = ((xy - mid) ** 2).sum(axis=1)
        d2[[u, v]] = math.inf
        if not (d2 < r2 - 1e-9).any():
            gabriel.append((u, v))
    weighted = [(float(np.hypot(*(xy[u] - xy[v]))), u, v) for u, v in gabriel]
    tree = _mst(n, weighted)
    cutoff = LONG_EDGE * float(np.median([w for w, _, _ in weighted]))
    edges = [(u, v) for w, u, v in weighted if w <= cutoff or (u, v) in tree]
    return wards, edges, xy


def roads(city: City) -> list[Road]:
    """The generated roads of ``city``, ids ``rd-1``… in the order of their ward codes."""
    wards, edges, xy = graph(city)
    if not edges:
        return []
    proj = projection(city)
    edges.sort(key=lambda e: (wards[e[0]].code, wards[e[1]].code))
    length = [float(np.hypot(*(xy[u] - xy[v]))) for u, v in edges]
    load = _loads(len(wards), edges, length)
    rank = sorted(range(len(edges)), key=lambda k: (-load[k], k))
    cls = [""] * len(edges)
    for pos, k in enumerate(rank):
        share = (pos + 1) / len(edges)
        cls[k] = next(c for c, upto in CLASSES if share <= upto + 1e-9)
    out = []
    for k, (u, v) in enumerate(edges):
        a, b = wards[u], wards[v]
        (x1, y1), (x2, y2) = xy[u], xy[v]
        bend = (unit_hash("bend", a.code, b.code) - 0.5) * 0.16  # up to 8 % of the length
        t = 0.35 + 0.3 * unit_hash("at", a.code, b.code)
        mx, my = x1 + (x2 - x1) * t - (y2 - y1) * bend, y1 + (y2 - y1) * t + (x2 - x1) * bend
        line = LineString([(x1, y1), (mx, my), (x2, y2)])
        lon, lat = proj.inverse(np.array(line.xy[0]), np.array(line.xy[1]))
        coords = [[a.lon, a.lat]]
        coords.append([round(float(lon[1]), DECIMALS), round(float(lat[1]), DECIMALS)])
        coords.append([b.lon, b.lat])
        urban = a.urban and b.urban
        speed = (SPEED_URBAN if urban else SPEED_RURAL)[cls[k]]
        out.append(
            Road(f"rd-{k + 1}", a, b, cls[k], speed, LANES[cls[k]], coords, line_length_m(coords))
        )
    return out


def road_entities(city: City, generated: list[Road] | None = None) -> list[dict[str, Any]]:
    """One NGSI-LD ``RoadSegment`` per generated road (normalized, core @context)."""
    out = []
    for r in roads(city) if generated is None else generated:
        out.append(
            {
                "id": f"urn:ngsi-ld:RoadSegment:{city.slug}:{r.local_id}",
                "type": "RoadSegment",
                "name": {"type": "Property", "value": r.name},
                "roadClass": {"type": "Property", "value": r.road_class},
                "maximumAllowedSpeed": {"type": "Property", "value": r.speed, "unitCode": "KMH"},
                "oneWay": {"type": "Property", "value": False},
                "length": {"type": "Property", "value": round(r.length_m, 1), "unitCode": "MTR"},
                "totalLaneNumber": {"type": "Property", "value": r.lanes},
                "location": {
                    "type": "GeoProperty",
                    "value": {"type": "LineString", "coordinates": r.coords},
                },
                "source": {"type": "Property", "value": "generated"},
            }
        )
    return out
