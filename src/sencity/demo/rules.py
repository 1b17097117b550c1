"""The demo city's alarm rules (``rules.yaml`` beside this module): air quality
(VN_AQI), flood alert levels, congestion, full car parks, streetlight faults and
sensors gone silent.  :func:`seed_rules` imports them into a tenant that has no rules
yet, so a restart never brings back a rule an operator changed or deleted while others
remain."""

from __future__ import annotations

import logging
from importlib import resources
from typing import TYPE_CHECKING

from sencity.rules.model import Rule, read_rules
from sencity.rules.store import RulesStore

if TYPE_CHECKING:
    from sencity.core.platform import Platform

log = logging.getLogger("sencity.demo")


def demo_rules() -> list[Rule]:
    text = resources.files("sencity.demo").joinpath("rules.yaml").read_text(encoding="utf-8")
    return read_rules(text, "sencity/demo/rules.yaml")


def seed_rules(platform: Platform, tenant: str) -> int:
    """Import the demo rules into ``tenant`` when it has none; the number imported."""
    store = RulesStore(platform.store)
    if store.list_rows(tenant, 1, 0)[1]:
        return 0
    rules = demo_rules()
    store.put_rules(tenant, rules)
    svc = platform.state.get("rules")
    if svc is not None:
        svc.changed(tenant)
    log.info("demo: %d alarm rules imported into tenant '%s'", len(rules), tenant)
    return len(rules)
