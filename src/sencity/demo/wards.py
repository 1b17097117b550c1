"""The wards of a city as ``AdministrativeArea`` entities, each with a generated cell.

The dataset gives every 2025 ward its centroid and its area, not its boundary.  So that a
map has something to draw, each ward gets an approximate polygon (``boundaryApproximate:
true``), made in an equal-area projection (:mod:`sencity.demo.geometry`):

1. the Voronoi cell of its centroid among all the city's centroids (cells never overlap);
2. that cell cut by the disc around the centroid whose radius makes the cut's area
   the ward's real area (a bisection on the radius) — a coast or a border then
   stays roughly where the centroids end, and a remote island (Hoàng Sa) is a disc;
3. a ward whose cell is smaller than its area (a large commune next to small urban
   wards) grows into the free space nearest its centroid (within three radii)
   until it reaches its area or no free space is left, in order of the largest
   shortfall first, so cells still never overlap.

Almost every cell is within 10 % of its ward's real area (tests/demo check the
tolerance on several provinces); the shapes are not the real boundaries.
``docs/DEMO.md`` explains how to import real ones.
"""

from __future__ import annotations

import math
from functools import lru_cache
from statistics import median
from typing import Any

import numpy as np
import shapely  # type: ignore[import-untyped]
from shapely.geometry import MultiPoint, Point, Polygon  # type: ignore[import-untyped]

from sencity.demo.cities import City, Ward, fold
from sencity.demo.geometry import Projection, geojson, polygons, unit_hash

QUAD_SEGS = 16  # a disc is a 64-gon
GROW_REACH = 3.0  # pass 3 looks for free space within this many radii of the centroid


def entity_id(city: City, ward: Ward) -> str:
    return f"urn:ngsi-ld:AdministrativeArea:{city.slug}:{ward.code}"


def projection(city: City) -> Projection:
    """The city's projection, centred on the median longitude of its mainland wards."""
    lons = [w.lon for w in city.wards if not w.island] or [w.lon for w in city.wards]
    return Projection(float(median(lons)))


def target_areas(city: City) -> list[float]:
    """Each ward's area in km²; the median of its kind where the dataset has none."""
    by_kind: dict[str, list[float]] = {}
    for w in city.wards:
        if w.area_km2:
            by_kind.setdefault(w.kind, []).append(w.area_km2)
    every = [a for v in by_kind.values() for a in v] or [10.0]
    return [w.area_km2 or float(median(by_kind.get(w.kind) or every)) for w in city.wards]


def _fit(region: Any, centre: Any, area: float) -> Any:
    """``region`` ∩ the disc around ``centre`` whose cut has ``area`` (all of ``region``
    when it is not that large)."""
    if region.is_empty or region.area <= area:
        return region
    lo, hi = 0.0, math.sqrt(area / math.pi)
    while region.intersection(centre.buffer(hi, quad_segs=QUAD_SEGS)).area < area:
        lo, hi = hi, hi * 2
    for _ in range(24):
        mid = (lo + hi) / 2
        if region.intersection(centre.buffer(mid, quad_segs=QUAD_SEGS)).area < area:
            lo = mid
        else:
            hi = mid
    return region.intersection(centre.buffer(hi, quad_segs=QUAD_SEGS))


def _one_polygon(geom: Any, centre: Any) -> Any:
    """The polygon of ``geom`` that holds (or is nearest to) the centroid."""
    if geom.geom_type == "Polygon":
        return geom
    parts = [g for g in polygons(geom) if g.area > 0]
    if not parts:
        return Polygon()
    return min(parts, key=lambda g: (g.distance(centre), -g.area))


def _points(city: City, proj: Projection) -> list[Any]:
    """Projected centroids; a centroid equal to an earlier one moves 50 m (Voronoi needs
    distinct sites), in a direction drawn from its code."""
    seen: set[tuple[float, float]] = set()
    pts = []
    for w in city.wards:
        x, y = proj.point(w.lon, w.lat)
        while (round(x, 6), round(y, 6)) in seen:
            angle = 2 * math.pi * unit_hash("nudge", w.code, f"{x:.6f}")
            x, y = x + 0.05 * math.cos(angle), y + 0.05 * math.sin(angle)
        seen.add((round(x, 6), round(y, 6)))
        pts.append(Point(x, y))
    return pts


def projected_cells(city: City) -> tuple[Projection, list[Any]]:
    """The cells in the city's projection (km), in the order of ``city.wards``."""
    proj = projection(city)
    pts = _points(city, proj)
    areas = target_areas(city)
    n = len(pts)
    if n == 0:
        return proj, []
    if n == 1:
        return proj, [pts[0].buffer(math.sqrt(areas[0] / math.pi), quad_segs=QUAD_SEGS)]
    xs = np.array([p.x for p in pts])
    ys = np.array([p.y for p in pts])
    radii = [math.sqrt(a / math.pi) for a in areas]
    margin = 4 * max(radii) + 10
    frame = shapely.box(xs.min() - margin, ys.min() - margin, xs.max() + margin, ys.max() + margin)
    sites = MultiPoint([(p.x, p.y) for p in pts])
    voronoi = shapely.voronoi_polygons(sites, extend_to=frame, ordered=True)
    cells = [c.intersection(frame) for c in voronoi.geoms]
    geoms = [_one_polygon(_fit(cells[i], pts[i], areas[i]), pts[i]) for i in range(n)]
    # pass 3: wards short of their area take the free space nearest to them
    short = sorted(
        (i for i in range(n) if geoms[i].area < 0.99 * areas[i]),
        key=lambda i: (geoms[i].area / areas[i], city.wards[i].code),
    )
    bounds = np.array([g.bounds if not g.is_empty else (0, 0, 0, 0) for g in geoms])
    for i in short:
        window = pts[i].buffer(GROW_REACH * radii[i], quad_segs=QUAD_SEGS)
        wx0, wy0, wx1, wy1 = window.bounds
        near = np.nonzero(
            (bounds[:, 0] <= wx1)
            & (bounds[:, 2] >= wx0)
            & (bounds[:, 1] <= wy1)
            & (bounds[:, 3] >= wy0)
        )[0]
        taken = shapely.union_all([geoms[j] for j in near])
        free = window.difference(taken)
        if free.is_empty:
            continue
        grown = _fit(free, pts[i], areas[i] - geoms[i].area)
        merged = shapely.union_all([geoms[i], grown])
        geoms[i] = _one_polygon(merged, pts[i])
        bounds[i] = geoms[i].bounds
    return proj, geoms


def ward_cells(city: City) -> list[Any]:
    """The generated cells as longitude/latitude polygons, in the order of ``city.wards``."""
    return list(_cells(city))


@lru_cache(maxsize=4)
def _cells(city: City) -> tuple[Any, ...]:  # a restart in one process need not redo them
    proj, geoms = projected_cells(city)
    out = []
    for g, w in zip(geoms, city.wards, strict=True):
        ll = _one_polygon(proj.to_lonlat(g), Point(w.lon, w.lat))
        out.append(shapely.normalize(ll))
    return tuple(out)


def ward_entities(city: City, cells: list[Any] | None = None) -> list[dict[str, Any]]:
    """One NGSI-LD ``AdministrativeArea`` (normalized form, core @context) per ward."""
    cells = ward_cells(city) if cells is None else cells
    out = []
    for w, cell in zip(city.wards, cells, strict=True):
        body: dict[str, Any] = {
            "id": entity_id(city, w),
            "type": "AdministrativeArea",
            "name": {"type": "Property", "value": w.name},
            "alternateName": {"type": "Property", "value": fold(w.name)},
            "wardCode": {"type": "Property", "value": w.code},
            "wardType": {"type": "Property", "value": w.kind.lower()},
            "province": {"type": "Property", "value": city.name},
        }
        if w.area_km2:
            body["area"] = {"type": "Property", "value": w.area_km2, "unitCode": "KMK"}
        body["centroid"] = {
            "type": "GeoProperty",
            "value": {"type": "Point", "coordinates": [w.lon, w.lat]},
        }
        body["location"] = {"type": "GeoProperty", "value": geojson(cell)}
        body["boundaryApproximate"] = {"type": "Property", "value": True}
        out.append(body)
    return out
