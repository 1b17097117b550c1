"""``sencity devices``: YAML import and export of a fleet, lists, dead letters — the real
command on both backends."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.test_cli import ok, run

FLEET = """
groups:
  - apikey: hue-air
    entity_type: AirQualityObserved
    attributes:
      - {object_id: t, name: temperature, unitCode: CEL}
devices:
  - {device_id: aq-01, apikey: hue-air}
  - device_id: aq-02
    apikey: hue-air
    entity_id: urn:ngsi-ld:AirQualityObserved:dong-ba
    location: {type: Point, coordinates: [107.59, 16.47]}
"""


def test_import_export_and_lists(tmp_path: Path, store_url: str) -> None:
    f = tmp_path / "fleet.yaml"
    f.write_text(FLEET)
    out = ok(run(["devices", "import", str(f), "--tenant", "hue"], tmp_path, store_url=store_url))
    assert "1 group(s), 2 device(s) in tenant hue: 3 created, 0 replaced" in out
    out = ok(run(["devices", "import", str(f), "--tenant", "hue"], tmp_path, store_url=store_url))
    assert "0 created, 3 replaced" in out  # idempotent
    exported = yaml.safe_load(
        ok(run(["devices", "export", "--tenant", "hue"], tmp_path, store_url=store_url))
    )
    assert exported == yaml.safe_load(FLEET)
    listed = ok(run(["devices", "list", "--tenant", "hue"], tmp_path, store_url=store_url))
    assert "aq-01\thue-air\turn:ngsi-ld:AirQualityObserved:aq-01\tnever" in listed
    assert "urn:ngsi-ld:AirQualityObserved:dong-ba" in listed
    res = run(["devices", "deadletters", "--tenant", "hue"], tmp_path, store_url=store_url)
    assert res.returncode == 0 and "0 dead letter(s)" in res.stderr


def test_bad_files_name_the_item_and_field_and_write_nothing(
    tmp_path: Path, store_url: str
) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(FLEET.replace("{device_id: aq-01, apikey: hue-air}", "{device_id: 'a b'}"))
    res = run(["devices", "import", str(f), "--tenant", "hue"], tmp_path, store_url=store_url)
    assert res.returncode == 1
    assert f"{f}: devices[0]: 'device_id'" in res.stderr and "'apikey'" in res.stderr
    out = ok(run(["devices", "export", "--tenant", "hue"], tmp_path, store_url=store_url))
    assert yaml.safe_load(out) == {"groups": [], "devices": []}
