"""The rules file of docs/RULES.md validates and imports with ``sencity rules import``;
export gives back the same rules; a bad file is refused naming the file, rule and field,
and nothing is written."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from sencity.rules.model import read_rules
from tests.test_cli import ok, run

DOC = Path(__file__).resolve().parents[2] / "docs" / "RULES.md"


def example() -> str:
    m = re.search(r"```yaml\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    assert m is not None
    return m.group(1)


def test_the_documented_example_validates() -> None:
    rules = read_rules(example(), "RULES.md")
    kinds = {c.kind for r in rules for c in r.cond.walk()}
    assert kinds >= {"compare", "all", "no_data", "count", "rate", "near", "schedule"}
    assert any(r.group for r in rules) and any(r.cap for r in rules)


def test_import_export_and_refusal(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    f = tmp_path / "rules.yaml"
    f.write_text(example(), encoding="utf-8")
    out = ok(
        run(["rules", "import", str(f), "--tenant", "danang", "--check"], tmp_path, store_url=url)
    )
    assert "7 rule(s), all valid" in out
    out = ok(run(["rules", "import", str(f), "--tenant", "danang"], tmp_path, store_url=url))
    assert "7 created, 0 replaced" in out
    exported = ok(run(["rules", "export", "--tenant", "danang"], tmp_path, store_url=url))
    by_id = sorted(yaml.safe_load(example())["rules"], key=lambda r: r["id"])
    assert yaml.safe_load(exported)["rules"] == by_id
    listing = ok(run(["rules", "list", "--tenant", "danang"], tmp_path, store_url=url))
    assert "ward-flooding\t" in listing and "FloodMonitoring" in listing
    bad = tmp_path / "bad.yaml"
    bad.write_text(example().replace("clear_below: 140", "clear_below: 160"), encoding="utf-8")
    res = run(["rules", "import", str(bad), "--tenant", "hue"], tmp_path, store_url=url)
    assert res.returncode == 1
    assert (
        f"error: {bad}: rules[0]: rule 'pm25-very-unhealthy': field 'when.clear_below'"
        in res.stderr
    )
    empty = ok(run(["rules", "export", "--tenant", "hue"], tmp_path, store_url=url))
    assert yaml.safe_load(empty) == {"rules": []}
