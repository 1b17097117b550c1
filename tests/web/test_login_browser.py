"""The login page in a real browser (Debian chromium driven by Playwright)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from sencity.config import Settings
from sencity.store import Store
from tests.conftest import Server, add_user

pytestmark = pytest.mark.browser


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    ctx = browser.new_context(locale="vi-VN")
    pg = ctx.new_page()
    yield pg
    ctx.close()


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_login_with_keyboard_switch_language_and_logout(
    page: Page, serve: Callable[..., Server], store: Store, settings: Settings, store_url: str
) -> None:
    store.create_tenant("danang", "Thành phố Đà Nẵng")
    add_user(store, settings, "lan", {"danang": "operator"}, password="mật-khẩu-đúng")
    server = serve(store_url)

    page.goto(server.url + "/")  # signed out: sent to the login page, in Vietnamese
    expect(page).to_have_url(server.url + "/login")
    expect(page.locator("h2")).to_have_text("Đăng nhập")

    page.keyboard.type("lan")  # the username field has focus
    page.keyboard.press("Tab")
    page.keyboard.type("sai")
    page.keyboard.press("Enter")
    expect(page.get_by_role("alert")).to_have_text("Sai tên đăng nhập hoặc mật khẩu.")

    page.get_by_label("Tên đăng nhập").fill("lan")
    page.get_by_label("Mật khẩu").fill("mật-khẩu-đúng")
    page.get_by_role("button", name="Đăng nhập").click()
    expect(page.locator("#username")).to_have_text("lan")
    expect(page.locator("#tenant-name")).to_contain_text("Thành phố Đà Nẵng")

    page.get_by_role("link", name="English").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    expect(page.locator("html")).to_have_attribute("lang", "en")
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(server.url + "/login")
    expect(page.locator("h2")).to_have_text("Sign in")  # the language choice is kept
    page.goto(server.url + "/")
    expect(page).to_have_url(server.url + "/login")


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_one_time_link_in_browser(page: Page, serve: Callable[..., Server], store_url: str) -> None:
    server = serve(store_url, command="demo")
    link = server.wait_for(r"(http://\S+/login\?token=\S+)").group(1)
    page.goto(link)
    expect(page.locator("#username")).to_have_text("admin")
    page.context.clear_cookies()
    page.goto(link)  # second use fails with a clear message
    expect(page.get_by_role("alert")).to_contain_text("đã được dùng")
