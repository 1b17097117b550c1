"""Browser fixtures: Debian chromium driven by Playwright, with every request to a host
other than the test server refused (and recorded, so a test can assert none was tried).

The browser tests skip, saying why, when chromium or the built front end is missing
(``make test`` builds it first; ``make web`` builds it alone)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from sencity.web.plugin import BUILD_DIR

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-unsafe-swiftshader",
    "--use-angle=swiftshader",
]
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "web"


def is_local(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("data", "blob", "about") or parts.hostname in LOCAL_HOSTS


def need_browser() -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    if not (BUILD_DIR / "app.js").exists():
        pytest.skip("the front end is not built (run 'make web'; 'make test' builds it)")


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    need_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


class Offline:
    """Refuses and records every request to another host."""

    def __init__(self) -> None:
        self.attempts: list[str] = []

    def install(self, context: object) -> None:
        def refuse(route: object) -> None:
            self.attempts.append(route.request.url)  # type: ignore[attr-defined]
            route.abort("internetdisconnected")  # type: ignore[attr-defined]

        context.route(lambda url: not is_local(url), refuse)  # type: ignore[attr-defined]
        context.on(  # type: ignore[attr-defined]
            "request", lambda r: None if is_local(r.url) else self.attempts.append(r.url)
        )


@pytest.fixture
def offline() -> Offline:
    return Offline()


@pytest.fixture
def artifacts(request: pytest.FixtureRequest) -> Path:
    """Where a test saves its screenshots (test-artifacts/web/<test>/, git-ignored)."""
    path = ARTIFACTS / request.node.name.replace("[", "-").replace("]", "")
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path
