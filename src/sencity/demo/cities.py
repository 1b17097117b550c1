"""Vietnam's 34 provinces and their 2025 wards, from the ``vietnamadminunits`` dataset
(offline: a SQLite file inside that package).

A city is named by a *slug*, which is also its tenant: ``danang``, ``hanoi``, ``hcmc``,
``hue``, ``haiphong``, ``cantho``… — the province's short name folded to ASCII
(``provinceShortKey`` in the dataset), except Hồ Chí Minh City, which is ``hcmc``.
A few aliases are accepted too (``hn``, ``hcm``, ``tphcm``, ``saigon``, the full
``thanhphodanang``, or the name with its accents: ``"Đà Nẵng"``).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

from sencity.errors import BadRequest

#: slug -> provinceShortKey where they differ
_SLUG_OVERRIDES = {"hochiminh": "hcmc"}
_EXTRA_ALIASES = {"hcm": "hcmc", "tphcm": "hcmc", "saigon": "hcmc", "hochiminhcity": "hcmc"}


@dataclass(frozen=True)
class Ward:
    """A ward (phường), commune (xã) or special zone (đặc khu) of 2025."""

    code: str  # five digits, e.g. "20194"
    name: str  # "Phường Hải Vân"
    short: str  # "Hải Vân"
    kind: str  # "Phường", "Xã" or "Đặc khu"
    lat: float
    lon: float
    area_km2: float | None  # None: the dataset has no area for it (4 wards of 3,321)

    @property
    def urban(self) -> bool:
        return self.kind == "Phường"

    @property
    def island(self) -> bool:
        """Special zones (đặc khu) are the island districts: Hoàng Sa, Phú Quốc, Côn Đảo…"""
        return self.kind == "Đặc khu"


@dataclass(frozen=True)
class City:
    slug: str  # the tenant name
    code: str  # province code, e.g. "48"
    name: str  # "Thành phố Đà Nẵng"
    short: str  # "Đà Nẵng"
    wards: tuple[Ward, ...]  # ordered by code

    @property
    def timezone(self) -> str:
        return "Asia/Ho_Chi_Minh"

    @property
    def locale(self) -> str:
        return "vi"


def fold(text: str) -> str:
    """``"Phường Hải Vân"`` → ``"Phuong Hai Van"``: accents dropped, đ → d."""
    text = text.replace("Đ", "D").replace("đ", "d")
    return "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")


def _key(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", fold(text).lower())


@lru_cache(maxsize=1)
def _provinces() -> dict[str, dict[str, str]]:
    """slug -> {code, name, short, key, shortKey, alias}."""
    from vietnamadminunits.database import query  # type: ignore[import-untyped]

    rows = query(
        "SELECT DISTINCT provinceCode AS code, province AS name, provinceShort AS short, "
        "provinceKey AS key, provinceShortKey AS shortKey, provinceAlias AS alias "
        "FROM admin_units ORDER BY provinceCode"
    )
    return {_SLUG_OVERRIDES.get(r["shortKey"], r["shortKey"]): r for r in rows}


@lru_cache(maxsize=1)
def _aliases() -> dict[str, str]:
    import json

    out: dict[str, str] = dict(_EXTRA_ALIASES)
    for slug, r in _provinces().items():
        out[r["key"]] = out[r["shortKey"]] = out[slug] = slug
        out[r["code"]] = slug
        for alias in json.loads(r["alias"]) if r["alias"] else []:
            out.setdefault(_key(alias), slug)
    return out


def slugs() -> list[str]:
    """Every city slug, sorted."""
    return sorted(_provinces())


def resolve_slug(name: str) -> str:
    """The slug of a city given by slug, alias, province code or (accented) name."""
    slug = _aliases().get(_key(name))
    if slug is None:
        raise BadRequest(f"unknown city '{name}'; one of: {', '.join(slugs())}")
    return slug


@lru_cache(maxsize=8)
def load_city(name: str) -> City:
    """The province with its 2025 wards (real names, codes, centroids and areas)."""
    from vietnamadminunits.database import query

    slug = resolve_slug(name)
    p = _provinces()[slug]
    code = p["code"]
    if not code.isdigit():  # the dataset's own codes; guards the SQL text below
        raise BadRequest(f"unexpected province code {code!r}")
    rows = query(
        "SELECT ward, wardShort, wardType, wardCode, wardLat, wardLon, wardAreaKm2 "
        f"FROM admin_units WHERE provinceCode = '{code}' ORDER BY wardCode"
    )
    wards = tuple(
        Ward(
            code=r["wardCode"],
            name=r["ward"],
            short=r["wardShort"],
            kind=r["wardType"],
            lat=float(r["wardLat"]),
            lon=float(r["wardLon"]),
            area_km2=float(r["wardAreaKm2"]) if (r["wardAreaKm2"] or 0) > 0 else None,
        )
        for r in rows
        if r["wardLat"] is not None and r["wardLon"] is not None
    )
    return City(slug, code, p["name"], p["short"], wards)
