"""A small test city written through the NGSI-LD API: wards, roads, water, points of
interest and one or more sensors of every type the dashboard draws (docs/DATAMODEL.md).
The browser tests and bench/web.py use it; nothing here depends on the demo seeding."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

CITY = "danang"
LON0, LAT0 = 108.20, 16.04  # south-west corner of the test city
WARDS = [("20194", "Phường Hải Châu"), ("20197", "Phường Thanh Khê"), ("20200", "Phường Sơn Trà")]


def urn(kind: str, local: str) -> str:
    return f"urn:ngsi-ld:{kind}:{CITY}:{local}"


def prop(value: Any, **extra: Any) -> dict[str, Any]:
    return {"type": "Property", "value": value, **extra}


def geo(geometry: dict[str, Any]) -> dict[str, Any]:
    return {"type": "GeoProperty", "value": geometry}


def point(lon: float, lat: float) -> dict[str, Any]:
    return geo({"type": "Point", "coordinates": [lon, lat]})


def iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def basemap() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i, (code, name) in enumerate(WARDS):
        x0 = LON0 + i * 0.02
        x1, y1 = x0 + 0.02, LAT0 + 0.03
        ring = [[x0, LAT0], [x1, LAT0], [x1, y1], [x0, y1], [x0, LAT0]]
        out.append(
            {
                "id": urn("AdministrativeArea", code),
                "type": "AdministrativeArea",
                "name": prop(name),
                "wardCode": prop(code),
                "boundaryApproximate": prop(True),
                "centroid": point(x0 + 0.01, LAT0 + 0.015),
                "location": geo({"type": "Polygon", "coordinates": [ring]}),
            }
        )
    for i, cls in enumerate(["primary", "secondary", "residential"]):
        lat = LAT0 + 0.005 + i * 0.01
        out.append(
            {
                "id": urn("RoadSegment", f"rd-{i}"),
                "type": "RoadSegment",
                "name": prop(f"Đường số {i + 1}"),
                "roadClass": prop(cls),
                "location": geo(
                    {"type": "LineString", "coordinates": [[LON0, lat], [LON0 + 0.06, lat]]}
                ),
            }
        )
    out.append(
        {
            "id": urn("WaterBody", "wb-1"),
            "type": "WaterBody",
            "name": prop("Sông Hàn"),
            "waterType": prop("river"),
            "location": geo(
                {
                    "type": "LineString",
                    "coordinates": [[LON0 + 0.055, LAT0], [LON0 + 0.05, LAT0 + 0.03]],
                }
            ),
        }
    )
    out.append(
        {
            "id": urn("PointOfInterest", "poi-1"),
            "type": "PointOfInterest",
            "name": prop("Bệnh viện Đà Nẵng"),
            "category": prop(["hospital"]),
            "location": point(LON0 + 0.012, LAT0 + 0.012),
        }
    )
    return out


def sensors(now: datetime | None = None) -> list[dict[str, Any]]:
    now = now or datetime.now(UTC)
    at = iso(now)
    x, y = LON0, LAT0

    def located(kind: str, local: str, dx: float, dy: float, ward: int = 0) -> dict[str, Any]:
        return {
            "id": urn(kind, local),
            "type": kind,
            "location": point(x + dx, y + dy),
            "wardCode": prop(WARDS[ward][0]),
            "areaServed": prop(WARDS[ward][1]),
        }

    return [
        {
            **located("AirQualityObserved", "aq-001", 0.01, 0.02),
            "name": prop("Trạm Hải Châu"),
            "pm25": prop(12.0, unitCode="GQ", observedAt=at),
            "temperature": prop(27.5, unitCode="CEL", observedAt=at),
        },
        {
            **located("AirQualityObserved", "aq-002", 0.03, 0.02, 1),
            "name": prop("Trạm Thanh Khê"),
            "pm25": prop(60.0, unitCode="GQ", observedAt=at),
        },
        {
            "id": urn("TrafficFlowObserved", "tf-001"),
            "type": "TrafficFlowObserved",
            "averageVehicleSpeed": prop(15.0, unitCode="KMH", observedAt=at),
            "freeFlowSpeed": prop(50.0),
            "location": geo(
                {
                    "type": "LineString",
                    "coordinates": [[x, y + 0.005], [x + 0.03, y + 0.005]],
                }
            ),
            "wardCode": prop(WARDS[0][0]),
        },
        {
            **located("FloodMonitoring", "fl-01", 0.052, 0.015, 2),
            "currentLevel": prop(1.2, unitCode="MTR", observedAt=at),
            "alertLevel1": prop(1.0),
            "alertLevel2": prop(1.5),
            "alertLevel3": prop(2.0),
            "river": prop("Sông Hàn"),
        },
        {
            **located("Streetlight", "sl-001", 0.02, 0.01),
            "powerState": prop("on", observedAt=at),
            "status": prop("ok", observedAt=at),
        },
        {
            **located("OffStreetParking", "pk-01", 0.025, 0.025, 1),
            "name": prop("Bãi xe Thanh Khê"),
            "availableSpotNumber": prop(10, observedAt=at),
            "totalSpotNumber": prop(100),
        },
        {
            **located("Vehicle", "bus-01", 0.035, 0.015, 1),
            "vehicleType": prop("bus"),
            "speed": prop(30.0, unitCode="KMH", observedAt=at),
        },
        {
            **located("EmergencyCall", "call-1", 0.045, 0.02, 2),
            "category": prop("fire"),
            "centre": prop("114"),
            "status": prop("new"),
            "callTime": prop(at),
        },
        {
            **located("Alert", "alm-1", 0.05, 0.025, 2),
            "category": prop("flood"),
            "severity": prop("major"),
            "alarmStatus": prop("active-unacknowledged"),
            "description": prop("Mực nước vượt báo động 1"),
            "dateIssued": prop(at),
        },
    ]


def history(eid: str, attr: str, values: list[float], step: timedelta, unit: str) -> dict[str, Any]:
    """A temporal provision body: ``values`` ending now, ``step`` apart."""
    end = datetime.now(UTC) - timedelta(seconds=5)
    n = len(values)
    return {
        "id": eid,
        "type": eid.split(":")[2],
        attr: [
            prop(v, unitCode=unit, observedAt=iso(end - step * (n - 1 - i)))
            for i, v in enumerate(values)
        ],
    }


def write_city(client: httpx.Client) -> None:
    """Upsert the test city; ``client`` carries the token and the NGSILD-Tenant header."""
    r = client.post("/ngsi-ld/v1/entityOperations/upsert", json=basemap() + sensors())
    assert r.status_code in (201, 204), r.text
    body = history(
        urn("AirQualityObserved", "aq-001"),
        "pm25",
        [10, 14, 18, 22, 30, 26, 20, 16, 12, 12],
        timedelta(minutes=5),
        "GQ",
    )
    r = client.post("/ngsi-ld/v1/temporal/entities", json=body)
    assert r.status_code in (201, 204), r.text
