"""The login page (with one-time login links), the IOC dashboard pages, the built front
end and the live stream (``/web/v1/live``)."""

from __future__ import annotations

import json
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sencity.auth.plugin import safe_next, session_cookie
from sencity.auth.roles import READERS
from sencity.core.hooks import Task, hookimpl
from sencity.core.platform import Platform
from sencity.core.routing import Request, Response, Route, StreamResponse
from sencity.errors import NotFound, SenCityError
from sencity.web.i18n import pick_language, t, ui_strings
from sencity.web.live import LiveFeed

LANG_COOKIE = "sencity_lang"

_CSS = """
:root{color-scheme:light dark;--fg:#0b1f33;--bg:#f4f7fb;--card:#fff;--accent:#0b5cad}
@media (prefers-color-scheme:dark){:root{--fg:#e8eef6;--bg:#0d1620;--card:#16212d;
--accent:#5aa9ff}}
*{box-sizing:border-box}body{margin:0;font:16px/1.5 system-ui,sans-serif;color:var(--fg);
background:var(--bg)}main{max-width:28rem;margin:8vh auto;padding:2rem;background:var(--card);
border-radius:12px;box-shadow:0 2px 12px #0002}h1{font-size:1.4rem;margin-top:0}
label{display:block;margin:1rem 0 .25rem;font-weight:600}input{width:100%;padding:.6rem;
font-size:1rem;border:1px solid #8899aa;border-radius:6px;background:transparent;color:inherit}
button{margin-top:1.5rem;width:100%;padding:.7rem;font-size:1rem;font-weight:600;border:0;
border-radius:6px;background:var(--accent);color:#fff;cursor:pointer}
button:focus-visible,input:focus-visible,a:focus-visible{outline:3px solid #f5a623;
outline-offset:2px}.error{padding:.6rem;border-radius:6px;background:#b00020;color:#fff}
.lang{float:right;font-size:.9rem}a{color:var(--accent)}ul{padding-left:1.2rem}
"""


def _page(lang: str, body: str, switch_href: str) -> str:
    return (
        f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{escape(t(lang, 'title'))}</title><style>{_CSS}</style></head><body><main>"
        f'<a class="lang" href="{escape(switch_href)}">{escape(t(lang, "lang.switch"))}</a>'
        f"{body}</main></body></html>"
    )


def _lang(req: Request) -> str:
    return pick_language(
        req.arg("lang"), req.cookies.get(LANG_COOKIE), req.headers.get("accept-language", "")
    )


def _html(lang: str, html: str, status: int = 200, remember: bool = False) -> Response:
    resp = Response(html, status=status, media_type="text/html; charset=utf-8")
    if remember:  # an explicit choice (?lang=) is kept; else the tenant's language applies
        resp.set_cookie(LANG_COOKIE, lang, samesite="lax", path="/", max_age=365 * 86400)
    return resp


def login_page(req: Request) -> Response:
    lang = _lang(req)
    nxt = safe_next(req.arg("next"))
    link = req.arg("token")
    error = req.arg("error")
    if link:
        try:
            session, _ = req.platform.auth.login_with_link(link)
        except SenCityError:
            error = "link"
        else:
            resp = Response(status=303, headers={"Location": nxt})
            session_cookie(resp, req.platform, session)
            return resp
    message = ""
    if error in ("invalid", "throttled", "link"):
        message = f'<p class="error" role="alert">{escape(t(lang, "login.error." + error))}</p>'
    other = "en" if lang == "vi" else "vi"
    body = (
        f"<h1>{escape(t(lang, 'title'))}</h1><h2>{escape(t(lang, 'login.heading'))}</h2>"
        f'{message}<form method="post" action="/auth/login">'
        f'<input type="hidden" name="next" value="{escape(nxt)}">'
        f'<label for="username">{escape(t(lang, "login.username"))}</label>'
        '<input id="username" name="username" autocomplete="username" required autofocus>'
        f'<label for="password">{escape(t(lang, "login.password"))}</label>'
        '<input id="password" name="password" type="password" '
        'autocomplete="current-password" required>'
        f'<button type="submit">{escape(t(lang, "login.submit"))}</button></form>'
    )
    status = 401 if error else 200
    page = _page(lang, body, f"/login?lang={other}&next={quote(nxt)}")
    return _html(lang, page, status, remember=req.arg("lang") is not None)


BUILD_DIR = Path(__file__).resolve().parent / "static" / "build"
TENANT_COOKIE = "sencity_tenant"
_MEDIA = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".map": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".json": "application/json",
}


def _pick_tenant(req: Request) -> str | None:
    """The tenant the dashboard shows: ?tenant=, the last one chosen, the default, the first."""
    assert req.principal is not None
    allowed = req.principal.tenants([r["name"] for r in req.platform.store.list_tenants()])
    for cand in (req.arg("tenant"), req.cookies.get(TENANT_COOKIE), req.tenant):
        if cand and cand in allowed:
            return cand
    return allowed[0] if allowed else None


def _build_version() -> str | None:
    """A version of the built front end (its modification time), None when missing."""
    try:
        return str(int((BUILD_DIR / "app.js").stat().st_mtime))
    except OSError:
        return None


def _json_script(data: Any) -> str:
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def dashboard(req: Request) -> Response:
    """The IOC dashboard: the city overview (``/``) or a sector view (``/sector/{id}``)."""
    if req.principal is None:
        where = "/login" if req.path == "/" else f"/login?next={quote(req.path)}"
        return Response(status=303, headers={"Location": where})
    store = req.platform.store
    tenant = _pick_tenant(req)
    row = store.get_tenant(tenant) if tenant else None
    lang = pick_language(
        req.arg("lang"),
        req.cookies.get(LANG_COOKIE),
        req.headers.get("accept-language", ""),
        row["locale"] if row else "",
    )
    other = "en" if lang == "vi" else "vi"
    if tenant is None or row is None:
        return _html(lang, _page(lang, "<p role=alert>403</p>", "/"), 403)
    sectors = req.platform.settings.web.sectors
    sector = None
    if "sector" in req.path_params:
        sector = next((s for s in sectors if s.id == req.path_params["sector"]), None)
        if sector is None:
            raise NotFound(f"no sector '{req.path_params['sector']}'")
    version = _build_version()
    if version is None:
        body = (
            f"<h1>{escape(t(lang, 'title'))}</h1>"
            f'<p class="error" role="alert">{escape(t(lang, "ui.build.missing"))}</p>'
        )
        return _html(lang, _page(lang, body, f"{req.path}?lang={other}"), 503)
    config = {
        "lang": lang,
        "tenant": tenant,
        "tenantName": row["display_name"],
        "timezone": row["timezone"],
        "user": req.principal.name,
        "role": req.principal.role_on(tenant),
        "sector": sector.id if sector else None,
        "sectors": [s.model_dump() for s in sectors],
        "liveInterval": req.platform.settings.web.live_interval,
        "strings": ui_strings(lang),
    }
    title = (
        row["display_name"]
        + " — "
        + (sector.name.get(lang, sector.id) if sector else t(lang, "ui.overview"))
    )
    nav = "".join(
        f'<a href="/sector/{escape(s.id)}"'
        + (' aria-current="page"' if sector and s.id == sector.id else "")
        + f">{escape(s.name.get(lang, s.id))}</a>"
        for s in sectors
    )
    home_current = "" if sector else ' aria-current="page"'
    html = f"""<!doctype html><html lang="{lang}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>{escape(title)} · SenCity</title>
<link rel="stylesheet" href="/static/build/app.css?v={version}"></head>
<body><a class="skip" href="#map">{escape(t(lang, "ui.skip"))}</a>
<header class="top"><h1><span class="brand">SenCity</span>
<span id="tenant-name">{escape(row["display_name"])}</span></h1>
<nav aria-label="{escape(t(lang, "ui.sectors"))}"><a href="/"{home_current}>
{escape(t(lang, "ui.overview"))}</a>{nav}</nav>
<div class="search" role="search"><label for="search" class="sr-only">
{escape(t(lang, "ui.search"))}</label><input id="search" type="search" autocomplete="off"
placeholder="{escape(t(lang, "ui.search.placeholder"))}" aria-controls="search-results"
aria-expanded="false"><ul id="search-results" role="listbox" hidden></ul></div>
<span id="live-status" role="status" class="live off">{escape(t(lang, "ui.loading"))}</span>
<span class="who"><span class="sr-only">{escape(t(lang, "ui.user"))}</span>
<strong id="username">{escape(req.principal.name)}</strong></span>
<a class="lang" href="{escape(req.path)}?lang={other}">{escape(t(lang, "lang.switch"))}</a>
<form method="post" action="/auth/logout"><button type="submit">
{escape(t(lang, "home.logout"))}</button></form></header>
<main class="ioc"><aside id="side" aria-label="{escape(t(lang, "ui.layers"))}">
<section id="tiles" aria-label="{escape(t(lang, "ui.tiles"))}"></section>
<section id="charts"></section>
<section id="layers"><h2>{escape(t(lang, "ui.layers"))}</h2></section></aside>
<div id="map" role="region" tabindex="0" aria-label="{escape(title)}"></div>
<section id="panel" hidden aria-live="polite"></section></main>
<script id="sencity-config" type="application/json">{_json_script(config)}</script>
<script src="/static/build/app.js?v={version}"></script></body></html>"""
    resp = _html(lang, html, remember=req.arg("lang") is not None)
    resp.set_cookie(TENANT_COOKIE, tenant, samesite="lax", path="/", max_age=365 * 86400)
    resp.headers["Cache-Control"] = "no-store"
    return resp


def static_file(req: Request) -> Response:
    """Files of the built front end (``make web``)."""
    rel = req.path_params["path"]
    path = (BUILD_DIR / rel).resolve()
    if not path.is_relative_to(BUILD_DIR) or not path.is_file():
        if _build_version() is None:
            raise NotFound(
                f"no front-end file {rel}: the front end has not been built (run 'make web')"
            )
        raise NotFound(f"no front-end file {rel}")
    stat = path.stat()
    etag = f'"{int(stat.st_mtime_ns)}-{stat.st_size}"'
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    if req.headers.get("if-none-match") == etag:
        return Response(status=304, headers=headers)
    media = _MEDIA.get(path.suffix, "application/octet-stream")
    return Response(path.read_bytes(), headers=headers, media_type=media)


def _live(req: Request) -> LiveFeed:
    feed: LiveFeed = req.platform.state["web.live"]
    return feed


async def live_stream(req: Request) -> StreamResponse:
    return await _live(req).stream(req)


def live_stats(req: Request) -> dict[str, Any]:
    feed = _live(req)
    return {
        "tenant": req.tenant,
        "changesPerSecond": feed.rate(req.tenant),
        "liveClients": len(feed.clients.get(req.tenant, ())),
    }


@hookimpl
def sencity_startup(platform: Platform) -> None:
    platform.state["web.live"] = LiveFeed(platform)


@hookimpl
def sencity_subscriptions(platform: Platform) -> list[tuple[str, Any]]:
    feed: LiveFeed = platform.state["web.live"]
    return [("hub.entity.*", feed.on_change), ("rules.alarm.*", feed.on_alarm)]


@hookimpl
def sencity_tasks(platform: Platform) -> list[Task]:
    feed: LiveFeed = platform.state["web.live"]
    return [Task("web-live", feed.run)]


@hookimpl
def sencity_routes() -> list[Route]:
    return [
        Route(
            "GET",
            "/login",
            login_page,
            public=True,
            name="web.login",
            summary="Sign-in page; ?token= signs in with a one-time link",
        ),
        Route(
            "GET",
            "/",
            dashboard,
            public=True,
            name="web.home",
            summary="IOC dashboard, city overview (redirects to /login when signed out)",
        ),
        Route(
            "GET",
            "/sector/{sector}",
            dashboard,
            public=True,
            name="web.sector",
            summary="IOC dashboard, one sector view (web.sectors)",
        ),
        Route(
            "GET",
            "/static/build/{path:path}",
            static_file,
            public=True,
            name="web.static",
            summary="The built front end",
        ),
        Route(
            "GET",
            "/web/v1/live",
            live_stream,
            READERS,
            name="web.live",
            summary="Server-sent events: the tenant's changed entities and alarms",
        ),
        Route(
            "GET",
            "/web/v1/stats",
            live_stats,
            READERS,
            name="web.stats",
            summary="Entity changes per second in the tenant, live browsers",
        ),
    ]
