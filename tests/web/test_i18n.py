"""Every dashboard string exists in Vietnamese and English, and every key the browser
code asks for is defined."""

from __future__ import annotations

import re
from pathlib import Path

from sencity.config import Settings
from sencity.web.i18n import STRINGS, pick_language, ui_strings

FRONTEND = Path(__file__).resolve().parents[2] / "frontend" / "src"


def test_both_languages_have_every_key() -> None:
    assert set(STRINGS["vi"]) == set(STRINGS["en"])
    for lang in ("vi", "en"):
        assert all(v.strip() for v in STRINGS[lang].values())


def test_keys_used_by_the_front_end_are_defined() -> None:
    code = "\n".join(p.read_text() for p in FRONTEND.glob("*.js"))
    used = set(re.findall(r"""\bt\(\s*["']([a-z][\w.-]+)["']""", code))
    used |= set(re.findall(r"""["']((?:legend|layer|ui)\.[\w.-]+)["']""", code))
    layers = set(re.findall(r"""\bid: "([a-z]+)", type: "[A-Z]""", code))
    assert len(layers) >= 15
    used |= {f"layer.{name}" for name in layers}
    missing = sorted(k for k in used if k not in STRINGS["en"])
    assert not missing, missing
    # sector layers in the default configuration are layers the front end knows
    for sector in Settings().web.sectors:
        assert set(sector.layers) <= layers, sector.id
        assert set(sector.name) == {"vi", "en"}


def test_language_choice_order() -> None:
    assert pick_language("en", "vi", "vi", "vi") == "en"  # the explicit choice
    assert pick_language(None, "en", "vi", "vi") == "en"  # remembered
    assert pick_language(None, None, "en-US,en;q=0.9", "vi") == "vi"  # the city's
    assert pick_language(None, None, "en-US,en;q=0.9", "") == "en"  # the browser's
    assert pick_language(None, None, "fr", "") == "vi"
    assert "login.heading" not in ui_strings("vi") and ui_strings("en")["ui.overview"]
