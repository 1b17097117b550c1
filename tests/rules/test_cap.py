"""CAP 1.2 messages and the Atom feed of public warnings: every message validated
against the official OASIS CAP 1.2 schema; the feed served publicly per city, on both
backends, from Alert entities as the alarms module writes them."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import httpx
import pytest
import xmlschema

from sencity.auth.service import AuthService
from sencity.config import load_settings
from sencity.core.platform import Platform
from sencity.rules.cap import AlertView, FeedEntry, alert_xml, area_shapes, atom_feed
from sencity.web.asgi import create_app
from tests.rules.harness import TENANT, City, poll, rules_settings, running_city

SCHEMA = xmlschema.XMLSchema(Path(__file__).parent / "data" / "CAP-v1.2.xsd")
NS = {"cap": "urn:oasis:names:tc:emergency:cap:1.2", "atom": "http://www.w3.org/2005/Atom"}
CAP_INFO = {
    "event": {"vi": "Ngập lụt", "en": "Flood"},
    "headline": {
        "vi": "Mực nước sông Hương vượt báo động 3",
        "en": "Huong river above alert level 3",
    },
    "instruction": {
        "vi": "Không đi qua các tuyến đường ngập; di chuyển lên nơi cao.",
        "en": "Do not cross flooded roads; move to higher ground.",
    },
    "urgency": "Immediate",
    "certainty": "Observed",
    "area": "Phường Phú Hội, Huế",
}
FLOOD_VALUES: dict[str, Any] = {
    "name": "Báo động 3 sông Hương",
    "severity": "critical",
    "alarmStatus": "active-unacknowledged",
    "alertSource": "urn:ngsi-ld:FloodMonitoring:hue:fl-01",
    "refRule": "flood-alert3",
    "dateIssued": "2026-03-01T12:00:00.123Z",
    "validFrom": "2026-03-01T12:00:00.123Z",
    "description": "currentLevel 3.62 m >= alertLevel3 3.5 m",
    "category": "flood",
    "location": {"type": "Point", "coordinates": [107.5905, 16.4637]},
    "wardCode": "19771",
    "publicWarning": True,
    "capInfo": CAP_INFO,
}
AID = "urn:ngsi-ld:Alert:hue:alm-0123456789abcdef"


def parse(doc: bytes) -> ET.Element:
    SCHEMA.validate(doc.decode())  # raises with the path of the first error
    return ET.fromstring(doc)


def text(el: ET.Element, path: str) -> str | None:
    return el.findtext(path, namespaces=NS)


def view(**changes: Any) -> AlertView:
    values = {**FLOOD_VALUES, **changes.pop("values", {})}
    return AlertView(AID, "hue", values, changes.pop("changed", {}))


def test_alert_message_is_valid_cap_with_two_languages() -> None:
    root = parse(alert_xml(view(), "canhbao@hue.gov.vn", "Thành phố Huế", "http://x/a.xml"))
    assert text(root, "cap:identifier") == AID
    assert text(root, "cap:sender") == "canhbao@hue.gov.vn"
    # CAP times: whole seconds and an explicit offset
    assert text(root, "cap:sent") == "2026-03-01T12:00:00+00:00"
    assert (text(root, "cap:status"), text(root, "cap:msgType")) == ("Actual", "Alert")
    assert text(root, "cap:scope") == "Public" and root.find("cap:references", NS) is None
    infos = root.findall("cap:info", NS)
    assert [text(i, "cap:language") for i in infos] == ["vi-VN", "en-US"]
    vi, en = infos
    assert text(vi, "cap:event") == "Ngập lụt" and text(en, "cap:event") == "Flood"
    assert text(vi, "cap:headline") == "Mực nước sông Hương vượt báo động 3"
    assert text(en, "cap:instruction") == "Do not cross flooded roads; move to higher ground."
    for info in infos:
        assert text(info, "cap:category") == "Met"  # flood
        assert text(info, "cap:severity") == "Extreme"  # critical
        assert text(info, "cap:urgency") == "Immediate"
        assert text(info, "cap:certainty") == "Observed"
        assert text(info, "cap:senderName") == "Thành phố Huế"
        assert text(info, "cap:area/cap:areaDesc") == "Phường Phú Hội, Huế"
        # the alarm's location: CAP circles are "lat,lon radius-km"
        assert text(info, "cap:area/cap:circle") == "16.4637,107.5905 0"
        assert text(info, "cap:area/cap:geocode/cap:value") == "19771"
        assert text(info, "cap:web") == "http://x/a.xml"


def test_changed_alarm_is_an_update_referencing_the_first_message() -> None:
    v = view(
        values={"severity": "major", "description": "currentLevel 3.9 m"},
        changed={"description": "2026-03-01T12:30:00Z", "alarmStatus": "2026-03-01T12:40:00Z"},
    )
    root = parse(alert_xml(v, "canhbao@hue.gov.vn"))
    assert text(root, "cap:msgType") == "Update"
    assert text(root, "cap:identifier") == f"{AID}.u1772368200"
    assert text(root, "cap:sent") == "2026-03-01T12:30:00+00:00"
    assert text(root, "cap:references") == f"canhbao@hue.gov.vn,{AID},2026-03-01T12:00:00+00:00"
    info = root.find("cap:info", NS)
    assert info is not None
    assert text(info, "cap:severity") == "Severe"  # major
    assert text(info, "cap:description") == "currentLevel 3.9 m"


def test_acknowledging_is_no_public_change() -> None:
    v = view(
        values={"alarmStatus": "active-acknowledged"},
        changed={"alarmStatus": "2026-03-01T12:10:00Z"},
    )
    root = parse(alert_xml(v, "s@hue"))
    assert text(root, "cap:msgType") == "Alert"


def test_cleared_alarm_is_a_cancel() -> None:
    v = view(
        values={"alarmStatus": "cleared-unacknowledged", "validTo": "2026-03-01T18:05:00Z"},
        changed={"alarmStatus": "2026-03-01T18:05:00Z"},
    )
    root = parse(alert_xml(v, "s@hue"))
    assert text(root, "cap:msgType") == "Cancel"
    assert text(root, "cap:identifier") == f"{AID}.c1772388300"
    assert text(root, "cap:references") == f"s@hue,{AID},2026-03-01T12:00:00+00:00"
    for info in root.findall("cap:info", NS):
        assert text(info, "cap:responseType") == "AllClear"
        assert text(info, "cap:urgency") == "Past"
        assert text(info, "cap:expires") == "2026-03-01T18:05:00+00:00"
        assert info.find("cap:instruction", NS) is None
    assert text(
        root,
        "cap:info/cap:headline",
    ).startswith("Đã kết thúc: ")  # type: ignore[union-attr]


def test_air_quality_is_env_and_areas_from_geometry() -> None:
    poly = {
        "type": "Polygon",
        "coordinates": [[[108.2, 16.0], [108.3, 16.0], [108.3, 16.1], [108.2, 16.0]]],
    }
    v = view(
        values={
            "category": "airQuality",
            "location": poly,
            "capInfo": {
                **CAP_INFO,
                "area": "",
                "event": {"vi": "Ô nhiễm không khí", "en": "Air pollution"},
            },
            "areaServed": "Hải Châu",
        }
    )
    root = parse(alert_xml(v, "s@danang"))
    info = root.find("cap:info", NS)
    assert info is not None
    assert text(info, "cap:category") == "Env"
    assert text(info, "cap:area/cap:areaDesc") == "Hải Châu"
    assert text(info, "cap:area/cap:polygon") == "16.0,108.2 16.0,108.3 16.1,108.3 16.0,108.2"
    # a road: the circle around it (centre to its farthest point, km)
    _, circles = area_shapes({"type": "LineString", "coordinates": [[108.2, 16.0], [108.22, 16.0]]})
    centre, radius = circles[0].split(" ")
    assert centre == "16.0,108.21" and 1.0 < float(radius) < 1.1  # 0.01° of longitude ≈ 1.07 km
    assert area_shapes(None) == ([], [])
    assert area_shapes({"type": "Nonsense"}) == ([], [])


def test_atom_feed_well_formed_newest_first() -> None:
    old = view()
    new = AlertView(AID + "2", "hue", {**FLOOD_VALUES, "dateIssued": "2026-03-02T08:00:00Z"})
    doc = atom_feed(
        [FeedEntry(old, "http://x/1.xml"), FeedEntry(new, "http://x/2.xml")],
        "http://x/feed.atom",
        "Cảnh báo",
        "Huế",
    )
    feed = ET.fromstring(doc)
    assert feed.tag == "{http://www.w3.org/2005/Atom}feed"
    for req in ("atom:id", "atom:title", "atom:updated", "atom:author/atom:name"):
        assert text(feed, req), req
    assert text(feed, "atom:updated") == "2026-03-02T08:00:00Z"
    entries = feed.findall("atom:entry", NS)
    assert [e.find("atom:link", NS).get("href") for e in entries] == [  # type: ignore[union-attr]
        "http://x/2.xml",
        "http://x/1.xml",
    ]
    for e in entries:
        for req in ("atom:id", "atom:title", "atom:updated"):
            assert text(e, req), req
        link = e.find("atom:link", NS)
        assert link is not None and link.get("type") == "application/cap+xml"


# -- served by the platform ----------------------------------------------------------------
def alert_body(aid: str, public: bool = True, **values: Any) -> dict[str, Any]:
    """An Alert entity as the alarms module writes it."""
    v = {**FLOOD_VALUES, **values}
    body: dict[str, Any] = {"id": aid, "type": "Alert"}
    for k, x in v.items():
        if k in ("publicWarning", "capInfo"):
            continue
        if k == "location":
            body[k] = {"type": "GeoProperty", "value": x}
        elif k == "alertSource":
            body[k] = {"type": "Relationship", "object": x}
        else:
            body[k] = {"type": "Property", "value": x}
    if public:
        body["publicWarning"] = {"type": "Property", "value": True}
        body["capInfo"] = {"type": "JsonProperty", "json": v["capInfo"]}
    return body


def test_public_feed_end_to_end(store_url: str, tmp_path: Path) -> None:
    settings = load_settings(
        None,
        {
            "store": {"url": store_url},
            "data_dir": str(tmp_path),
            "hub": {"context_fetch": False},
            "ingest": {"embedded_broker": False},
            "rules": {"cap_sender": "canhbao@hue.gov.vn"},
        },
        environ={},
    )
    platform = Platform(settings)
    platform.store.create_user("eng", roles={"*": "admin"})
    token = AuthService(platform.store, settings).issue_token("eng")[0]
    h = {"Authorization": f"Bearer {token}", "NGSILD-Tenant": "hue"}
    public_id = "urn:ngsi-ld:Alert:hue:alm-public1"
    private_id = "urn:ngsi-ld:Alert:hue:alm-private1"

    async def main() -> None:
        transport = httpx.ASGITransport(app=create_app(platform))
        async with httpx.AsyncClient(transport=transport, base_url="http://ioc.hue.test") as c:
            long_over = alert_body(
                "urn:ngsi-ld:Alert:hue:alm-old1",
                alarmStatus="cleared-acknowledged",
                validTo="2020-01-01T00:00:00Z",
            )
            for body in (alert_body(public_id), alert_body(private_id, public=False), long_over):
                r = await c.post("/ngsi-ld/v1/entities", json=body, headers=h)
                assert r.status_code == 201, r.text
            # anyone may read the feed: no credentials
            r = await c.get("/cap/v1/hue/feed.atom")
            assert r.status_code == 200, r.text
            assert r.headers["content-type"].startswith("application/atom+xml")
            feed = ET.fromstring(r.content)
            entries = feed.findall("atom:entry", NS)
            # not published: the alarm without publicWarning; a warning cleared over 24 h ago
            assert len(entries) == 1
            assert text(feed, "atom:id") == "http://ioc.hue.test/cap/v1/hue/feed.atom"
            href = entries[0].find("atom:link", NS).get("href")  # type: ignore[union-attr]
            assert href == "http://ioc.hue.test/cap/v1/hue/alerts/alm-public1.xml"
            r = await c.get(href)
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("application/cap+xml")
            root = parse(r.content)
            assert text(root, "cap:msgType") == "Alert"
            assert text(root, "cap:identifier") == public_id
            assert text(root, "cap:sender") == "canhbao@hue.gov.vn"
            # the whole id works too
            r = await c.get(f"/cap/v1/hue/alerts/{public_id}.xml")
            assert r.status_code == 200
            # the operator clears the alarm: the feed now carries its cancellation
            r = await c.post(
                f"/ngsi-ld/v1/entities/{public_id}/attrs",
                json={
                    "alarmStatus": {"type": "Property", "value": "cleared-unacknowledged"},
                    "validTo": {"type": "Property", "value": "2099-01-01T00:00:00Z"},
                },
                headers=h,
            )
            assert r.status_code == 204, r.text
            root = parse((await c.get(href)).content)
            assert text(root, "cap:msgType") == "Cancel"
            assert text(root, "cap:references") == (
                f"canhbao@hue.gov.vn,{public_id},2026-03-01T12:00:00+00:00"
            )
            feed = ET.fromstring((await c.get("/cap/v1/hue/feed.atom")).content)
            assert text(feed, "atom:entry/atom:title").startswith("Đã kết thúc")  # type: ignore[union-attr]
            # what is not a public warning, or not there, is a 404 problem
            for path in (
                "/cap/v1/hue/alerts/alm-private1.xml",
                "/cap/v1/hue/alerts/alm-nothere.xml",
                "/cap/v1/nocity/feed.atom",
                "/cap/v1/nocity/alerts/alm-public1.xml",
            ):
                r = await c.get(path)
                assert r.status_code == 404, path
                assert r.headers["content-type"] == "application/problem+json"

    try:
        asyncio.run(main())
    finally:
        platform.close()


# -- the whole chain: sensor → indicator → rule → alarm → CAP feed -----------------------
@pytest.mark.timeout(60)
def test_flood_gauge_to_public_warning(store_url: str, tmp_path: Path) -> None:
    gauge = f"urn:ngsi-ld:FloodMonitoring:{TENANT}:fl-07"
    rule = {
        "id": "flood-alert3",
        "name": "Báo động 3",
        "scope": {"type": "FloodMonitoring"},
        # floodAlertLevel is derived by the built-in indicators from currentLevel
        "when": {"attr": "floodAlertLevel", "at_least": 3},
        "alarm": {"severity": "critical", "category": "flood"},
        "cap": {k: CAP_INFO[k] for k in ("event", "headline", "instruction", "urgency", "area")},
    }
    levels = {"alertLevel1": 1.5, "alertLevel2": 2.5, "alertLevel3": 3.5}
    loc = {"type": "Point", "coordinates": [108.2208, 16.0678]}

    async def feed(city: City) -> list[ET.Element]:
        r = await city.http.get(f"/cap/v1/{TENANT}/feed.atom")
        assert r.status_code == 200, r.text
        return ET.fromstring(r.content).findall("atom:entry", NS)

    async def main() -> None:
        async with running_city(rules_settings(store_url, tmp_path)) as city:
            r = await city.put_rule(rule)
            assert r.status_code == 201, r.text
            await city.write(gauge, "FloodMonitoring", currentLevel=3.7, location=loc, **levels)

            async def published() -> list[ET.Element]:
                return await feed(city)

            entries = await poll(published, "the warning in the CAP feed")
            href = entries[0].find("atom:link", NS).get("href")  # type: ignore[union-attr]
            path = href.removeprefix("http://t")
            root = parse((await city.http.get(path)).content)
            assert text(root, "cap:msgType") == "Alert"
            assert text(root, "cap:info/cap:category") == "Met"
            assert text(root, "cap:info/cap:severity") == "Extreme"
            assert text(root, "cap:info/cap:area/cap:circle") == "16.0678,108.2208 0"
            # the river falls back: level 0, the alarm clears, the feed cancels the warning
            await city.write(gauge, "FloodMonitoring", currentLevel=1.0)

            async def cancelled() -> bool:
                doc = (await city.http.get(path)).content
                return text(ET.fromstring(doc), "cap:msgType") == "Cancel"

            await poll(cancelled, "the cancellation")
            parse((await city.http.get(path)).content)

    asyncio.run(main())
