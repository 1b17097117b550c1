"""A bus position → a Smart Data Models Transportation ``Vehicle`` entity body.

Used by the live path (MQTT positions) once it exists; kept beside the GTFS import
because its ``refRoute`` points at the ``GtfsRoute`` entities the import writes
(same id scheme: :func:`sencity.ingest.gtfs.entity_id`).

Terms: ``vehicleType``, ``bearing`` and ``speed`` are Smart Data Models
Transportation terms; :data:`VEHICLE_CONTEXT` maps them to the same IRIs as that
model's published @context so the hub stores the standard attributes without
fetching anything.  The Vehicle model has no route attribute: ``refRoute`` is ours
and expands under the NGSI-LD core context's default vocabulary.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from sencity.errors import BadRequest

_TRANSPORTATION = "https://smartdatamodels.org/dataModel.Transportation/"

#: inline @context for :func:`vehicle_entity` bodies (offline; same IRIs as the model's)
VEHICLE_CONTEXT: dict[str, Any] = {
    "Vehicle": f"{_TRANSPORTATION}Vehicle",
    "vehicleType": f"{_TRANSPORTATION}vehicleType",
    "bearing": f"{_TRANSPORTATION}bearing",
    "speed": f"{_TRANSPORTATION}speed",
    "category": f"{_TRANSPORTATION}category",
}


def _iso(ts: datetime | float | str) -> str:
    """An ISO 8601 UTC instant from a datetime, a Unix time or an ISO string."""
    if isinstance(ts, str):
        try:
            ts = datetime.fromisoformat(ts.replace("Z", "+00:00"))
        except ValueError:
            raise BadRequest(f"timestamp: not an ISO 8601 date-time: {ts!r}") from None
    if isinstance(ts, int | float):
        ts = datetime.fromtimestamp(ts, UTC)
    if ts.tzinfo is None:
        raise BadRequest("timestamp: a time zone is required")
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _number(name: str, value: float, low: float, high: float) -> float:
    if not isinstance(value, int | float) or not math.isfinite(value) or not low <= value <= high:
        raise BadRequest(f"{name}: {value!r} is not a number in [{low}, {high}]")
    return float(value)


def vehicle_entity(
    vehicle_id: str,
    route_id: str | None,
    lat: float,
    lon: float,
    bearing: float | None,
    speed: float | None,
    timestamp: datetime | float | str,
    *,
    prefix: str = "",
) -> dict[str, Any]:
    """The NGSI-LD body of bus ``vehicle_id`` at (``lat``, ``lon``) at ``timestamp``.

    ``bearing`` in degrees clockwise from north, ``speed`` in km/h (the model's units);
    ``route_id`` is the GTFS route_id, related as ``refRoute`` to the ``GtfsRoute``
    entity of the feed imported with the same ``prefix``.  Every dynamic attribute
    carries ``observedAt`` so the hub keeps its history.  Raises BadRequest for
    values out of range.
    """
    from sencity.ingest.gtfs import entity_id

    if not vehicle_id:
        raise BadRequest("vehicle id: must not be empty")
    at = _iso(timestamp)
    lat = _number("lat", lat, -90, 90)
    lon = _number("lon", lon, -180, 180)
    body: dict[str, Any] = {
        "id": entity_id("Vehicle", prefix, vehicle_id),
        "type": "Vehicle",
        "vehicleType": {"type": "Property", "value": "bus"},
        "category": {"type": "Property", "value": ["public"]},
        "location": {
            "type": "GeoProperty",
            "value": {"type": "Point", "coordinates": [lon, lat]},
            "observedAt": at,
        },
    }
    if bearing is not None:
        b = _number("bearing", bearing, 0, 360) % 360
        body["bearing"] = {"type": "Property", "value": b, "observedAt": at}
    if speed is not None:
        s = _number("speed", speed, 0, 1000)
        body["speed"] = {"type": "Property", "value": s, "observedAt": at, "unitCode": "KMH"}
    if route_id:
        body["refRoute"] = {
            "type": "Relationship",
            "object": entity_id("GtfsRoute", prefix, route_id),
            "observedAt": at,
        }
    return body
