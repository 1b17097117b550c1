"""Citizen reports (``IssueReporting``) and emergency calls (``EmergencyCall``) at
realistic hourly rates, drawn per hour of simulated time from the seed."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from sencity.sim import models, noise
from sencity.sim.city import Device, Placer, Ward
from sencity.sim.kinds import iso

#: reports per hour by category at the busiest hours (scaled by the hour's profile)
REPORT_RATE = {"pothole": 0.5, "garbage": 0.7, "streetlight": 0.3, "noise": 0.35, "flooding": 0.4}
#: calls per hour by category, on average over the day
CALL_RATE = {"medical": 1.2, "trafficAccident": 0.5, "crime": 0.3, "fire": 0.05}
CENTRE = {"medical": "115", "trafficAccident": "113", "crime": "113", "fire": "114"}
#: reports older than this are closed (their follow-up belongs to other modules)
CLOSE_AFTER = 2 * 86400.0

REPORT_TEXT = {
    "pothole": [
        "Ổ gà lớn giữa đường",
        "Mặt đường sụt lún, nguy hiểm cho xe máy",
        "Hố sâu trên làn xe",
    ],
    "garbage": [
        "Rác thải tồn đọng nhiều ngày",
        "Điểm tập kết rác tràn ra lòng đường",
        "Đổ rác trái phép",
    ],
    "streetlight": ["Đèn đường không sáng", "Cột đèn hỏng, khu vực tối", "Đèn chập chờn cả đêm"],
    "noise": ["Karaoke ồn ào sau 22 giờ", "Công trình thi công gây ồn ban đêm", "Tiếng ồn kéo dài"],
    "flooding": [
        "Nước ngập sâu qua bánh xe",
        "Đường ngập, cống không thoát kịp",
        "Ngập cục bộ sau mưa",
    ],
}
CALL_TEXT = {
    "medical": ["Người cao tuổi khó thở", "Ngất xỉu tại nhà", "Tai nạn lao động, cần cấp cứu"],
    "trafficAccident": [
        "Va chạm giữa xe máy và ô tô",
        "Tai nạn liên hoàn",
        "Xe máy tự ngã, người bị thương",
    ],
    "crime": ["Cướp giật tài sản", "Đánh nhau gây rối", "Trộm cắp xe máy"],
    "fire": ["Cháy nhà dân", "Cháy kho hàng", "Khói lớn từ cửa hàng"],
}


@dataclass
class Event:
    time: float
    etype: str  # IssueReporting or EmergencyCall
    local: str
    category: str
    description: str
    lon: float
    lat: float
    ward: Ward

    def entity(self, tenant: str, now: float) -> dict[str, Any]:
        """The NGSI-LD entity (normalized) of the event as it is at ``now``."""
        stamp = {"@type": "DateTime", "@value": iso(self.time)}
        body: dict[str, Any] = {
            "id": f"urn:ngsi-ld:{self.etype}:{tenant}:{self.local}",
            "type": self.etype,
            "category": {"type": "Property", "value": self.category},
            "description": {"type": "Property", "value": self.description},
            "location": {
                "type": "GeoProperty",
                "value": {"type": "Point", "coordinates": [round(self.lon, 6), round(self.lat, 6)]},
            },
            "wardCode": {"type": "Property", "value": self.ward.code},
            "areaServed": {"type": "Property", "value": self.ward.name},
        }
        closed = now - self.time > CLOSE_AFTER
        if self.etype == "IssueReporting":
            body["observationDateTime"] = {"type": "Property", "value": stamp}
            body["resolutionStatus"] = {"type": "Property", "value": "closed" if closed else "open"}
        else:
            body["callTime"] = {"type": "Property", "value": stamp}
            body["centre"] = {"type": "Property", "value": CENTRE[self.category]}
            body["status"] = {"type": "Property", "value": "closed" if closed else "new"}
        return body


def _day_profile(h: float) -> float:
    """Citizens report in waking hours: 0.1 at night, 1 mid-morning and early evening."""
    return 0.1 + 0.9 * max(
        math.exp(-0.5 * ((h - 9.5) / 2.5) ** 2), math.exp(-0.5 * ((h - 18.5) / 2.5) ** 2)
    )


def events_between(
    seed: int, t0: float, t1: float, placer: Placer, lights: list[Device]
) -> list[Event]:
    """Every event in [t0, t1), hour by hour (each hour's draw depends only on the seed
    and the hour)."""
    out: list[Event] = []
    h0, h1 = math.floor(t0 / 3600), math.ceil(t1 / 3600)
    key = noise.stream_key(seed, "citizen-events")
    wards = placer.city.wards
    weights = placer.weights
    for hour in range(h0, h1):
        start = hour * 3600.0
        hl = float(models.local_hours(np.array([start]))[0])
        rain = float(models.precipitation(seed, np.array([start + 1800]))[0])
        demand = float(models.traffic_demand(np.array([start + 1800]))[0])
        rng = np.random.default_rng([key & 0xFFFFFFFF, key >> 32, hour + 10_000_000])
        rates: list[tuple[str, str, float]] = []
        for cat, r in REPORT_RATE.items():
            f = _day_profile(hl)
            if cat == "flooding":
                f = min(rain, 40.0) / 4.0
            elif cat == "noise":
                f = 0.3 + (1.5 if hl >= 21 or hl < 1 else 0.0)
            elif cat == "streetlight":
                f = 0.2 + (0.8 if hl >= 18 or hl < 6 else 0.0)
            rates.append(("IssueReporting", cat, r * f))
        for cat, r in CALL_RATE.items():
            f = 1.0
            if cat == "trafficAccident":
                f = 0.3 + 1.4 * demand
            elif cat == "crime":
                f = 1.8 if hl >= 20 or hl < 3 else 0.6
            elif cat == "medical":
                f = 0.6 + 0.6 * _day_profile(hl)
            rates.append(("EmergencyCall", cat, r * f))
        n = 0
        for etype, cat, lam in rates:
            for _ in range(int(rng.poisson(lam))):
                # every draw is made whether or not the event falls in the window, so an
                # event is the same whatever window it is asked in
                n += 1
                when = start + float(rng.uniform(0, 3600))
                text = (REPORT_TEXT if etype == "IssueReporting" else CALL_TEXT)[cat]
                pick = int(rng.integers(len(text)))
                lamp_n = int(rng.integers(max(1, len(lights))))
                ward = wards[int(rng.choice(len(wards), p=weights))]
                lon, lat = _near(ward, rng)
                if when < t0 or when >= t1:
                    continue
                if cat == "streetlight" and lights:
                    lamp = lights[lamp_n]
                    lon, lat, ward = lamp.lon, lamp.lat, lamp.ward
                prefix = "rpt" if etype == "IssueReporting" else "call"
                stamp = iso(start)[:13].replace("-", "").replace("T", "")
                out.append(
                    Event(
                        when,
                        etype,
                        f"{prefix}-{stamp}-{n:02d}",
                        cat,
                        f"{text[pick]} ({ward.name})",
                        lon,
                        lat,
                        ward,
                    )
                )
    out.sort(key=lambda e: e.time)
    return out


def _near(w: Ward, rng: np.random.Generator) -> tuple[float, float]:
    r_km = min(1.5, 0.3 * math.sqrt(w.area / math.pi))
    dx, dy = rng.normal(0, r_km / 2, 2)
    return (
        w.lon + float(dx) / (111.32 * math.cos(math.radians(w.lat))),
        w.lat + float(dy) / 110.57,
    )
