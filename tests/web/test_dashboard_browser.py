"""The IOC dashboard in a real browser (Debian chromium through Playwright), against a
real server connected to Mosquitto: log in, the map shows the city, toggle a layer,
open a station and its history chart, see a reading published over MQTT change the
screen, search, a sector view, switch language, log out — with every request to a host
other than the server refused and none attempted. Screenshots of each step go to
test-artifacts/web/ (git-ignored)."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sencity.config import load_settings
from sencity.core.platform import prepare_store
from tests.conftest import Server, add_user, start_server, stop_server
from tests.ingest.conftest import Publisher, _broker_up, broker_config
from tests.web.city import CITY, LAT0, LON0, urn, write_city
from tests.web.conftest import Offline

pytestmark = [pytest.mark.browser, pytest.mark.mqtt]
PASSWORD = "mật-khẩu-tốt-1"
STATION = urn("AirQualityObserved", "aq-001")
STATION_AT = [LON0 + 0.01, LAT0 + 0.02]


@pytest.fixture(scope="module")
def city_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str, str]]:
    """A server (SQLite) connected to Mosquitto, with the test city: (server, token, apikey)."""
    if not _broker_up():
        pytest.fail("the MQTT broker is not running on 127.0.0.1:1883 (start mosquitto)")
    tmp = tmp_path_factory.mktemp("dashboard")
    url = f"sqlite:///{tmp / 'store.db'}"
    settings = load_settings(
        None,
        {"store": {"url": url}, "data_dir": str(tmp), "ingest": {"embedded_broker": False}},
        environ={},
    )
    store = prepare_store(settings)
    store.create_tenant(CITY, "Thành phố Đà Nẵng", "Asia/Ho_Chi_Minh", "vi")
    token = add_user(store, settings, "lan", {CITY: "operator"}, password=PASSWORD)
    store.close()
    cfg = tmp / "sencity.toml"
    cfg.write_text(broker_config(f"sencity-web-test-{uuid.uuid4().hex[:12]}"))
    server = start_server(["--config", str(cfg), "serve", "--port", "0", "--store", url], tmp)
    apikey = f"k{uuid.uuid4().hex[:10]}"
    try:
        server.wait_for("connected to MQTT broker")
        with server.client(token, headers={"NGSILD-Tenant": CITY}) as c:
            write_city(c)
            r = c.post(
                "/ingest/v1/groups",
                json={
                    "apikey": apikey,
                    "entity_type": "AirQualityObserved",
                    "attributes": [{"object_id": "pm25", "name": "pm25", "unitCode": "GQ"}],
                },
            )
            assert r.status_code == 201, r.text
            r = c.post(
                "/ingest/v1/devices",
                json={"device_id": "aq-001", "apikey": apikey, "entity_id": STATION},
            )
            assert r.status_code == 201, r.text
        yield server, token, apikey
    finally:
        stop_server(server)


def wait_ready(page: Any) -> None:
    page.wait_for_function("window.sencity && window.sencity.ready", timeout=20_000)
    page.wait_for_function(
        "!document.getElementById('live-status').classList.contains('off')", timeout=10_000
    )
    idle(page)


def idle(page: Any) -> None:
    page.wait_for_function(
        "sencity.map.loaded() && sencity.map.areTilesLoaded() && !sencity.map.isMoving()",
        timeout=10_000,
    )


def rendered(page: Any, layer: str) -> int:
    n: int = page.evaluate(  # features drawn (once each, though split over tiles)
        "(l) => new Set(sencity.map.queryRenderedFeatures({layers: [l]})"
        ".map((f) => f.properties.id)).size",
        layer,
    )
    return n


def colour_of(page: Any, source: str, eid: str) -> str | None:
    """The colour the map draws the entity's feature with (feature state or data)."""
    return page.evaluate("([s, id]) => sencity.colour(s, id)", [source, eid])  # type: ignore[no-any-return]


@pytest.mark.timeout(180)
def test_operator_session(
    browser: Any,
    city_server: tuple[Server, str, str],
    offline: Offline,
    artifacts: Path,
) -> None:
    server, _, apikey = city_server
    from playwright.sync_api import expect

    # an English browser: the Vietnamese tenant's language wins until the user switches
    context = browser.new_context(locale="en-US", viewport={"width": 1600, "height": 1000})
    offline.install(context)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))

    # 1. log in; land on the city overview of the tenant
    page.goto(server.url + "/")
    expect(page).to_have_url(server.url + "/login")
    page.get_by_label("Username").fill("lan")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    wait_ready(page)
    expect(page.locator("html")).to_have_attribute("lang", "vi")
    expect(page.locator("#tenant-name")).to_have_text("Thành phố Đà Nẵng")
    expect(page.get_by_role("link", name="Tổng quan thành phố")).to_have_attribute(
        "aria-current", "page"
    )

    # the map shows the city: ward cells (said to be approximate), roads, live layers
    assert rendered(page, "wards-fill") >= 3
    assert rendered(page, "roads-line") >= 3
    assert rendered(page, "air-circle") == 2
    assert rendered(page, "traffic-line") == 1
    assert rendered(page, "flood-circle") == 1
    expect(page.locator(".ward-label", has_text="Phường Hải Châu")).to_be_visible()
    expect(page.locator("#layers")).to_contain_text("gần đúng")
    expect(page.locator("#tile-flood strong")).to_have_text("1")  # 1.2 m ≥ báo động 1
    expect(page.locator("#tile-alarms strong")).to_have_text("1")
    style = page.evaluate("sencity.map.getStyle()")
    assert "glyphs" not in style and "sprite" not in style
    assert not [x for x in style["layers"] if x["type"] == "symbol"]
    assert not [s for s in style["sources"].values() if "url" in s or "tiles" in s]
    page.screenshot(path=artifacts / "1-overview.png")
    page.locator("#tile-alarms").click()  # the open alarms, most severe first
    alarm = page.locator("#panel .entity-list button", has_text="Mực nước vượt báo động 1")
    expect(alarm).to_contain_text("cao")  # severity major, in Vietnamese
    alarm.click()
    expect(page.locator("#panel tr[data-attr=alarmStatus] td.v")).to_have_text(
        "đang xảy ra, chưa xác nhận"
    )
    page.keyboard.press("Escape")

    # 2. toggle a layer off and on again (keyboard: Space on the checkbox)
    air = page.get_by_label("Chất lượng không khí", exact=True)
    air.uncheck()
    page.wait_for_function("sencity.map.getLayoutProperty('air-circle', 'visibility') === 'none'")
    idle(page)
    assert rendered(page, "air-circle") == 0
    expect(page.locator("li[data-layer=air] .legend")).to_be_hidden()
    page.screenshot(path=artifacts / "2-air-layer-off.png")
    air.focus()
    page.keyboard.press("Space")
    expect(air).to_be_checked()
    idle(page)
    assert rendered(page, "air-circle") == 2

    # 3. click an air-quality station: its attributes and its history chart
    x, y = page.evaluate(
        """(c) => { const p = sencity.map.project(c);
                   const r = sencity.map.getCanvas().getBoundingClientRect();
                   return [r.left + p.x, r.top + p.y]; }""",
        STATION_AT,
    )
    page.mouse.click(x, y)
    panel = page.locator("#panel")
    expect(panel.locator("h2")).to_have_text("Trạm Hải Châu")
    pm25 = panel.locator("tr[data-attr=pm25] td.v")
    expect(pm25).to_have_text("12 µg/m³")
    expect(panel.locator("tr[data-attr=pm25] th")).to_have_text("PM2.5")
    expect(panel.locator("tr[data-attr=temperature] td.v")).to_have_text("27,5 °C")
    chart = panel.locator("#history-chart")
    expect(chart.locator("canvas")).to_be_visible()
    assert int(chart.get_attribute("data-points") or 0) >= 3
    panel.get_by_role("button", name="1 giờ qua").click()
    # the 10 readings of the hour provisioned through the temporal API, and the current one
    expect(chart).to_have_attribute("data-points", "11")
    page.screenshot(path=artifacts / "3-station-panel.png")

    # 4. a reading published over MQTT changes the marker and the panel without a reload
    before = colour_of(page, "air", STATION)
    publisher = Publisher()
    try:
        t0 = time.monotonic()
        publisher.send(f"/{apikey}/aq-001/attrs", json.dumps({"pm25": 100}))
        expect(pm25).to_have_text("100 µg/m³", timeout=10_000)
        page.wait_for_function(
            "([id, before]) => sencity.colour('air', id) !== before",
            arg=[STATION, before],
            timeout=10_000,
        )
        elapsed = time.monotonic() - t0
    finally:
        publisher.close()
    assert elapsed < 5, f"the live update took {elapsed:.1f} s"
    assert colour_of(page, "air", STATION) not in (before, None)
    page.screenshot(path=artifacts / "4-live-update.png")
    page.keyboard.press("Escape")
    expect(panel).to_be_hidden()

    # 5. search by ward name, keyboard only
    page.keyboard.press("/")
    page.keyboard.type("thanh khe")  # without diacritics finds "Thanh Khê"
    results = page.locator("#search-results")
    expect(results).to_contain_text("Bãi xe Thanh Khê")
    expect(results).to_contain_text("Trạm Thanh Khê")
    page.keyboard.press("Enter")
    expect(panel.locator("h2")).to_contain_text("Thanh Khê")
    page.screenshot(path=artifacts / "5-search.png")

    # 6. a sector view: its layers only, and its city-wide chart
    page.get_by_role("link", name="Môi trường").click()
    wait_ready(page)
    expect(page.locator("#layer-air")).to_be_visible()
    expect(page.locator("#layer-traffic")).to_have_count(0)
    pm_chart = page.locator("[data-chart='AirQualityObserved.pm25']")
    expect(pm_chart).to_have_attribute("data-points", re.compile(r"^[1-9]"), timeout=10_000)
    page.screenshot(path=artifacts / "6-sector-environment.png")

    # 7. switch language: English, then back to Vietnamese labels
    page.get_by_role("link", name="English").click()
    wait_ready(page)
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.get_by_label("Air quality", exact=True)).to_be_visible()
    page.get_by_role("link", name="Tiếng Việt").click()
    wait_ready(page)
    expect(page.locator("html")).to_have_attribute("lang", "vi")
    expect(page.get_by_label("Chất lượng không khí", exact=True)).to_be_visible()
    expect(page.get_by_role("link", name="Tổng quan thành phố")).to_be_visible()
    page.screenshot(path=artifacts / "7-vietnamese.png")

    # 8. the same page on a 4K video wall: everything scales up
    laptop_rem = page.evaluate("parseFloat(getComputedStyle(document.documentElement).fontSize)")
    page.set_viewport_size({"width": 3840, "height": 2160})
    wall_rem = page.evaluate("parseFloat(getComputedStyle(document.documentElement).fontSize)")
    assert wall_rem >= 1.6 * laptop_rem and wall_rem >= 28
    idle(page)
    page.screenshot(path=artifacts / "8-video-wall.png")
    page.set_viewport_size({"width": 1600, "height": 1000})

    # 9. log out
    page.get_by_role("button", name="Đăng xuất").click()
    expect(page).to_have_url(server.url + "/login")
    page.goto(server.url + "/sector/environment")
    expect(page).to_have_url(server.url + "/login?next=/sector/environment")
    page.screenshot(path=artifacts / "9-signed-out.png")

    context.close()
    assert offline.attempts == [], f"requests to other hosts: {offline.attempts}"
    assert errors == [], errors
