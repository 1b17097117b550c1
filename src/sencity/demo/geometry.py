"""Planar helpers: an equal-area projection in kilometres and geodesic lengths.

The demo works in the sinusoidal projection centred on the city (x = R·Δλ·cos φ,
y = R·φ): it preserves areas exactly on the sphere, so a polygon's area in km² there is
its area on the ground, and shapes near the central meridian are barely sheared.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import shapely  # type: ignore[import-untyped]

EARTH_RADIUS_KM = 6371.0088
DECIMALS = 6  # of a degree in the output: ~0.1 m


class Projection:
    """Sinusoidal (equal-area) projection in km around the meridian ``lon0``."""

    def __init__(self, lon0: float) -> None:
        self.lon0 = lon0

    def forward(self, lon: Any, lat: Any) -> tuple[Any, Any]:
        lam = np.radians(np.asarray(lon, dtype=float) - self.lon0)
        phi = np.radians(np.asarray(lat, dtype=float))
        return EARTH_RADIUS_KM * lam * np.cos(phi), EARTH_RADIUS_KM * phi

    def inverse(self, x: Any, y: Any) -> tuple[Any, Any]:
        phi = np.asarray(y, dtype=float) / EARTH_RADIUS_KM
        lam = np.asarray(x, dtype=float) / (EARTH_RADIUS_KM * np.cos(phi))
        return np.degrees(lam) + self.lon0, np.degrees(phi)

    def to_lonlat(self, geom: Any) -> Any:
        """A projected shapely geometry in longitude/latitude, snapped to 1e-6° (valid)."""

        def back(coords: Any) -> Any:
            lon, lat = self.inverse(coords[:, 0], coords[:, 1])
            return np.column_stack([lon, lat])

        out = shapely.transform(shapely.set_precision(geom, 1e-3), back)  # 1 m grid first
        if not out.is_valid:
            out = shapely.make_valid(out)
        try:
            return shapely.set_precision(out, 10.0**-DECIMALS)
        except shapely.errors.GEOSException:  # a sliver GEOS cannot snap: round, then repair
            return shapely.make_valid(shapely.set_precision(out, 10.0**-DECIMALS, mode="pointwise"))

    def point(self, lon: float, lat: float) -> tuple[float, float]:
        x, y = self.forward(lon, lat)
        return float(x), float(y)


def polygons(geom: Any) -> list[Any]:
    """The non-empty polygons of any geometry (collections flattened)."""
    if geom.is_empty:
        return []
    if geom.geom_type == "Polygon":
        return [geom]
    return [p for g in getattr(geom, "geoms", []) for p in polygons(g)]


def haversine_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Great-circle distance in metres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * 1000 * math.asin(math.sqrt(a))


def line_length_m(coords: list[list[float]]) -> float:
    """Length in metres of a ``[[lon, lat], …]`` line."""
    return sum(haversine_m(a[0], a[1], b[0], b[1]) for a, b in itertools.pairwise(coords))


def geojson(geom: Any) -> dict[str, Any]:
    """A shapely geometry as a GeoJSON dict with coordinates rounded to ``DECIMALS``."""
    gj: dict[str, Any] = shapely.geometry.mapping(geom)

    def rnd(c: Any) -> Any:
        if isinstance(c, (int, float)):
            return round(float(c), DECIMALS)
        return [rnd(v) for v in c]

    return {"type": gj["type"], "coordinates": rnd(gj["coordinates"])}


def unit_hash(*parts: str) -> float:
    """A deterministic number in [0, 1) from strings (no process-random ``hash``)."""
    import hashlib

    digest = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64
