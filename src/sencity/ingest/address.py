"""Vietnamese addresses → the 2025 ward (two-level units: province, ward) and its centroid.

Resolution uses the ``vietnamadminunits`` package (its 34-province dataset, offline: no
geocoding service is called).  An address resolves when both its province and its ward
are recognised; the result is an NGSI-LD ``address`` value in the schema.org
PostalAddress shape the Smart Data Models use (streetAddress, addressLocality = ward,
addressRegion = province, addressCountry) and the ward's centroid as a GeoJSON Point.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any


@dataclass(frozen=True)
class Resolved:
    """An address resolved to its 2025 ward."""

    street: str | None
    ward: str  # full name, e.g. "Phường Hải Châu"
    province: str  # e.g. "Thành phố Đà Nẵng"
    ward_code: str
    lon: float
    lat: float

    def postal_address(self) -> dict[str, Any]:
        """The value of the ``address`` Property."""
        value: dict[str, Any] = {
            "addressLocality": self.ward,
            "addressRegion": self.province,
            "addressCountry": "VN",
        }
        if self.street:
            value["streetAddress"] = self.street
        return value

    def point(self) -> dict[str, Any]:
        """The ward's centroid as a GeoJSON Point (lon, lat)."""
        return {"type": "Point", "coordinates": [self.lon, self.lat]}


class Unresolved(ValueError):
    """The address names no ward the 2025 units know; the message says how far it got."""


@lru_cache(maxsize=65536)
def resolve(address: str) -> Resolved:
    """The 2025 ward of ``address`` ("376 Trần Cao Vân, Thanh Khê, Đà Nẵng" …); raises
    :class:`Unresolved`.  Cached: department files repeat the same wards a lot."""
    from vietnamadminunits import parse_address  # type: ignore[import-untyped]

    unit = parse_address(address, mode="FROM_2025", keep_street=True, level=2)
    if not unit.province:
        raise Unresolved(f"address {address!r}: no province recognised")
    if not unit.ward or unit.latitude is None or unit.longitude is None:
        raise Unresolved(
            f"address {address!r}: no ward of {unit.province} recognised "
            "(2025 wards; an old district or ward name is not enough)"
        )
    return Resolved(
        street=unit.street or None,
        ward=str(unit.ward),
        province=str(unit.province),
        ward_code=str(unit.ward_code),
        lon=float(unit.longitude),
        lat=float(unit.latitude),
    )
