"""The login page (with one-time login links) and the signed-in landing page."""

from __future__ import annotations

from html import escape
from urllib.parse import quote

from sencity.auth.plugin import safe_next, session_cookie
from sencity.core.hooks import hookimpl
from sencity.core.routing import Request, Response, Route
from sencity.errors import SenCityError
from sencity.web.i18n import pick_language, t

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


def _html(lang: str, html: str, status: int = 200) -> Response:
    resp = Response(html, status=status, media_type="text/html; charset=utf-8")
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
    return _html(lang, _page(lang, body, f"/login?lang={other}&next={quote(nxt)}"), status)


def home(req: Request) -> Response:
    if req.principal is None:
        return Response(status=303, headers={"Location": "/login"})
    lang = _lang(req)
    other = "en" if lang == "vi" else "vi"
    store = req.platform.store
    tenants = req.principal.tenants([r["name"] for r in store.list_tenants()])
    items = "".join(
        f"<li><strong>{escape(store.get_tenant(n)['display_name'])}</strong> ({escape(n)}) — "
        f"{escape(t(lang, 'home.role'))}: {escape(req.principal.role_on(n) or '')}</li>"
        for n in tenants
    )
    body = (
        f"<h1>{escape(t(lang, 'title'))}</h1>"
        f'<p>{escape(t(lang, "home.signed_in"))} <strong id="username">'
        f"{escape(req.principal.name)}</strong></p>"
        f'<h2>{escape(t(lang, "home.tenants"))}</h2><ul id="tenants">{items}</ul>'
        f"<p>{escape(t(lang, 'home.coming'))}</p>"
        f'<p><a href="/health">{escape(t(lang, "home.health"))}</a></p>'
        '<form method="post" action="/auth/logout">'
        f'<button type="submit">{escape(t(lang, "home.logout"))}</button></form>'
    )
    return _html(lang, _page(lang, body, f"/?lang={other}"))


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
            home,
            public=True,
            name="web.home",
            summary="Landing page (redirects to /login when signed out)",
        ),
    ]
