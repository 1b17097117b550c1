"""UI strings in Vietnamese (the default) and English."""

from __future__ import annotations

LANGUAGES = ("vi", "en")
DEFAULT_LANGUAGE = "vi"

STRINGS: dict[str, dict[str, str]] = {
    "vi": {
        "title": "SenCity — Trung tâm điều hành thông minh",
        "login.heading": "Đăng nhập",
        "login.username": "Tên đăng nhập",
        "login.password": "Mật khẩu",
        "login.submit": "Đăng nhập",
        "login.error.invalid": "Sai tên đăng nhập hoặc mật khẩu.",
        "login.error.throttled": "Đăng nhập sai quá nhiều lần. Vui lòng thử lại sau 15 phút.",
        "login.error.link": "Liên kết đăng nhập không hợp lệ, đã hết hạn hoặc đã được dùng.",
        "home.signed_in": "Đã đăng nhập với tài khoản",
        "home.tenants": "Thành phố của bạn",
        "home.role": "vai trò",
        "home.logout": "Đăng xuất",
        "home.health": "Tình trạng hệ thống",
        "home.coming": "Bản đồ và bảng điều khiển IOC sẽ xuất hiện tại đây.",
        "lang.switch": "English",
    },
    "en": {
        "title": "SenCity — Intelligent Operations Center",
        "login.heading": "Sign in",
        "login.username": "Username",
        "login.password": "Password",
        "login.submit": "Sign in",
        "login.error.invalid": "Wrong username or password.",
        "login.error.throttled": "Too many failed sign-ins. Please try again in 15 minutes.",
        "login.error.link": "This sign-in link is invalid, expired or already used.",
        "home.signed_in": "Signed in as",
        "home.tenants": "Your cities",
        "home.role": "role",
        "home.logout": "Sign out",
        "home.health": "System health",
        "home.coming": "The IOC map and dashboards will appear here.",
        "lang.switch": "Tiếng Việt",
    },
}


def pick_language(query_lang: str | None, cookie_lang: str | None, accept: str) -> str:
    for cand in (query_lang, cookie_lang):
        if cand in LANGUAGES:
            return cand
    for part in accept.split(","):
        code = part.split(";")[0].strip().lower()[:2]
        if code in LANGUAGES:
            return code
    return DEFAULT_LANGUAGE


def t(lang: str, key: str) -> str:
    return STRINGS.get(lang, STRINGS[DEFAULT_LANGUAGE])[key]
