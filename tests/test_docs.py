"""The documentation covers every setting, command, hook and endpoint, and its example runs."""

from __future__ import annotations

import asyncio
import re
import types
from pathlib import Path

import click
import httpx

from sencity.auth.service import AuthService
from sencity.cli import cli
from sencity.config import Settings, setting_keys
from sencity.core import hooks
from sencity.core.bus import Event
from sencity.core.platform import Platform, plugin_manager
from sencity.store import Store
from sencity.web.asgi import create_app

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_every_setting_is_documented() -> None:
    text = (DOCS / "CONFIGURATION.md").read_text()
    documented = set(re.findall(r"^\| `([a-z_.]+)` \|", text, re.M))
    assert documented == set(setting_keys())
    for key in setting_keys():
        assert f"`SENCITY_{key.upper().replace('.', '__')}`" in text


def _commands(group: click.Group, prefix: str = "sencity") -> list[str]:
    out = []
    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            out.extend(_commands(cmd, f"{prefix} {name}"))
        else:
            out.append(f"{prefix} {name}")
    return out


def test_every_command_is_documented() -> None:
    text = (DOCS / "OPERATIONS.md").read_text()
    plugin_manager().hook.sencity_cli(cli=cli)  # the plugins' commands too, as main() does
    for command in _commands(cli):
        assert f"`{command}" in text, command


def test_every_hook_is_documented() -> None:
    text = (DOCS / "PLUGINS.md").read_text()
    for name in dir(hooks):
        if name.startswith("sencity_"):
            assert f"`{name}(" in text, name


def test_every_endpoint_is_documented(settings: Settings, store: Store) -> None:
    text = (DOCS / "API.md").read_text()
    platform = Platform(settings, store)
    for route in platform.routes:
        assert f"`{route.method} {route.path}`" in text, route.path


def test_plugin_example_runs(settings: Settings, store: Store) -> None:
    code = re.search(r"```python\n(.*?)```", (DOCS / "PLUGINS.md").read_text(), re.S)
    assert code is not None
    plugin = types.ModuleType("waste_plugin")
    exec(compile(code.group(1), "PLUGINS.md", "exec"), plugin.__dict__)
    store.create_tenant("danang")
    store.create_user("op", roles={"danang": "operator"})
    store.create_user("viewer", roles={"danang": "viewer"})
    platform = Platform(settings, store, plugins=[plugin])
    auth = AuthService(store, settings)
    op = {"Authorization": "Bearer " + auth.issue_token("op")[0]}
    viewer = {"Authorization": "Bearer " + auth.issue_token("viewer")[0]}
    events: list[Event] = []
    got = asyncio.Event()

    def on_event(e: Event) -> None:
        events.append(e)
        got.set()

    async def main() -> None:
        await platform.start()
        platform.bus.subscribe("waste.*", on_event)
        transport = httpx.ASGITransport(app=create_app(platform))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            r = await c.get("/waste/v1/bins/b1", headers=viewer)
            assert r.json() == {"id": "b1", "tenant": "danang"}
            r = await c.post("/waste/v1/bins/b1/empty", json={"when": "now"}, headers=viewer)
            assert r.status_code == 403
            r = await c.post("/waste/v1/bins/b1/empty", json={}, headers=op)
            assert r.status_code == 400 and r.json()["detail"] == "'when' is required"
            r = await c.post("/waste/v1/bins/b1/empty", json={"when": "now"}, headers=op)
            assert r.status_code == 204
            assert (await c.get("/waste/v1/bins/b1")).status_code == 401
        await asyncio.wait_for(got.wait(), 5)
        await platform.stop()

    asyncio.run(main())
    assert [e.topic for e in events] == ["waste.bin.emptied"]
