"""The simulated device kinds: entity type, how readings map to attributes (the service
group each kind is provisioned with), how often they report, and their values."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from sencity.sim import models
from sencity.sim.city import Device
from sencity.sim.noise import F

TS = "ts"  # the payload key holding the reading's time


@dataclass(frozen=True)
class Attr:
    name: str
    unit: str | None = None
    datatype: str = "number"  # number, integer, text
    digits: int = 1  # decimals kept
    kind: str = "Property"


@dataclass(frozen=True)
class Kind:
    name: str
    etype: str
    attrs: tuple[Attr, ...]
    cadence: float  # seconds of simulated time between live readings
    step: float  # seconds between backfilled instances

    @property
    def main(self) -> str:
        return self.attrs[0].name


KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind(
            "air",
            "AirQualityObserved",
            (
                Attr("pm25", "GQ"),
                Attr("pm10", "GQ"),
                Attr("no2", "GQ"),
                Attr("o3", "GQ"),
                Attr("co", "GQ", digits=0),
                Attr("so2", "GQ"),
                Attr("temperature", "CEL"),
                Attr("relativeHumidity", "C62", digits=3),
            ),
            300,
            900,
        ),
        Kind(
            "traffic",
            "TrafficFlowObserved",
            (
                Attr("averageVehicleSpeed", "KMH"),
                Attr("intensity", None, "integer", 0),
                Attr("occupancy", "C62", digits=3),
            ),
            120,
            900,
        ),
        Kind("flood", "FloodMonitoring", (Attr("currentLevel", "MTR", digits=3),), 300, 900),
        Kind(
            "light",
            "Streetlight",
            (
                Attr("illuminanceLevel", "C62", digits=2),
                Attr("powerState", None, "text"),
                Attr("status", None, "text"),
            ),
            900,
            3600,
        ),
        Kind(
            "parking",
            "OffStreetParking",
            (Attr("availableSpotNumber", None, "integer", 0), Attr("occupancy", "C62", digits=3)),
            300,
            900,
        ),
        Kind("noise", "NoiseLevelObserved", (Attr("LAeq", "2N"), Attr("LAmax", "2N")), 300, 900),
        Kind(
            "weather",
            "WeatherObserved",
            (
                Attr("temperature", "CEL"),
                Attr("relativeHumidity", "C62", digits=3),
                Attr("precipitation", "H67"),
                Attr("windSpeed", "MTS"),
                Attr("windDirection", "DD", digits=0),
                Attr("atmosphericPressure", "A97"),
            ),
            300,
            900,
        ),
        Kind(
            "bus",
            "Vehicle",
            (
                Attr("location", None, "geo", kind="GeoProperty"),
                Attr("speed", "KMH"),
                Attr("heading", "DD", digits=0),
            ),
            10,
            900,
        ),
    )
}


def group_body(kind: Kind, apikey: str) -> dict[str, Any]:
    """The service group a kind's devices are provisioned under."""
    attributes = []
    for a in kind.attrs:
        m: dict[str, Any] = {"object_id": a.name, "name": a.name, "type": a.kind}
        if a.kind != "GeoProperty":
            m["datatype"] = a.datatype
        if a.unit:
            m["unitCode"] = a.unit
        attributes.append(m)
    return {
        "apikey": apikey,
        "entity_type": kind.etype,
        "timestamp": TS,
        "attributes": attributes,
        "explicit_attrs": True,
        "description": f"sencity sim: {kind.etype}",
    }


def device_body(dev: Device, kind: Kind, apikey: str, tenant: str) -> dict[str, Any]:
    statics = []
    for name, value in dev.static.items():
        if isinstance(value, dict) and "rel" in value:
            statics.append({"name": name, "type": "Relationship", "value": value["rel"]})
        else:
            statics.append({"name": name, "value": value})
    body: dict[str, Any] = {
        "device_id": dev.local,
        "apikey": apikey,
        "entity_id": entity_id(kind, tenant, dev.local),
        "static_attributes": statics,
        "description": "simulated",
    }
    if kind.name != "bus":
        body["location"] = dev.geometry or {
            "type": "Point",
            "coordinates": [round(dev.lon, 6), round(dev.lat, 6)],
        }
    return body


def entity_id(kind: Kind, tenant: str, local: str) -> str:
    return f"urn:ngsi-ld:{kind.etype}:{tenant}:{local}"


def series(seed: int, dev: Device, t: F) -> tuple[np.ndarray, dict[str, list[Any]]]:
    """(mask of the times with a reading, {attribute: values}) of a device at ``t``; the
    values are rounded and ready for JSON (bus locations as [lon, lat])."""
    kind = KINDS[dev.kind]
    mask = np.ones(len(t), dtype=bool)
    raw: dict[str, Any]
    if dev.kind == "air":
        raw = models.air_quality(seed, t, dev.number, dev.params["factor"], dev.params["traffic"])
    elif dev.kind == "traffic":
        raw = models.traffic(
            seed, t, dev.number, dev.params["free_flow"], dev.params["lanes"], dev.params["busy"]
        )
    elif dev.kind == "flood":
        raw = {"currentLevel": models.flood_level(seed, t, dev.params["gauge"], dev.number)}
    elif dev.kind == "light":
        raw = models.streetlight(seed, t, dev.number, dev.lat, dev.lon)
    elif dev.kind == "parking":
        raw = models.parking(seed, t, dev.number, dev.params["profile"], dev.params["total"])
    elif dev.kind == "noise":
        raw = models.noise_level(seed, t, dev.number, dev.params["base"])
    elif dev.kind == "weather":
        raw = models.weather(seed, t, dev.number)
    else:
        b = models.bus(seed, t, dev.number, dev.params["route"])
        # in service every reading; parked, one every 5 minutes
        mask = b["in_service"] | (np.floor(t) % models.PARKED_CADENCE == 0)
        raw = {
            "location": [
                [round(float(x), 6), round(float(y), 6)]
                for x, y in zip(b["lon"], b["lat"], strict=True)
            ],
            "speed": b["speed"],
            "heading": b["heading"],
        }
    out: dict[str, list[Any]] = {}
    for a in kind.attrs:
        v = raw[a.name]
        if a.datatype == "text" or a.kind == "GeoProperty":
            out[a.name] = list(v)
        elif a.datatype == "integer":
            out[a.name] = [int(x) for x in np.asarray(v)]
        else:
            out[a.name] = [
                round(float(x), a.digits) if a.digits else round(float(x)) for x in np.asarray(v)
            ]
    return mask, out


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def payloads(seed: int, dev: Device, t: F) -> list[tuple[float, dict[str, Any]]]:
    """(time, JSON payload) of each reading at ``t`` (buses only in service)."""
    mask, vals = series(seed, dev, t)
    names = list(vals)
    out = []
    for n, when in enumerate(t):
        if mask[n]:
            body: dict[str, Any] = {TS: iso(float(when))}
            for name in names:
                body[name] = vals[name][n]
            out.append((float(when), body))
    return out


def instances(seed: int, dev: Device, t: F) -> tuple[dict[str, list[dict[str, Any]]], int]:
    """The temporal API's attribute instances of a device at ``t`` and their number."""
    kind = KINDS[dev.kind]
    mask, vals = series(seed, dev, t)
    stamps = [iso(float(x)) for x in t]
    out: dict[str, list[dict[str, Any]]] = {}
    count = 0
    for a in kind.attrs:
        col = vals[a.name]
        items = []
        for n, v in enumerate(col):
            if not mask[n]:
                continue
            if a.kind == "GeoProperty":
                inst: dict[str, Any] = {
                    "type": "GeoProperty",
                    "value": {"type": "Point", "coordinates": v},
                    "observedAt": stamps[n],
                }
            else:
                inst = {"type": "Property", "value": v, "observedAt": stamps[n]}
                if a.unit:
                    inst["unitCode"] = a.unit
            items.append(inst)
        if items:
            out[a.name] = items
            count += len(items)
    return out, count
