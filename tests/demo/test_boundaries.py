"""docs/DEMO.md's recipe for real ward boundaries, run as written: the snippet that marks
the features, the mapping, and ``sencity import`` over the demo's wards."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from sencity.config import load_settings
from sencity.core.platform import Platform
from sencity.demo.cities import load_city
from sencity.demo.seed import seed
from sencity.ingest.hubwrite import HubWriter
from tests.conftest import ROOT
from tests.test_cli import run

DOC = (ROOT / "docs/DEMO.md").read_text()


def _block(marker: str) -> str:
    m = re.search(rf"<!-- {marker} -->\n```\w*\n(.*?)```", DOC, re.S)
    assert m, f"docs/DEMO.md has no block after <!-- {marker} -->"
    return m.group(1)


@pytest.mark.timeout(120)
def test_real_boundaries_replace_the_generated_cells(tmp_path: Path) -> None:
    store_url = f"sqlite:///{tmp_path / 'demo.db'}"
    settings = load_settings(
        None, {"store": {"url": store_url}, "ingest": {"embedded_broker": False}}, environ={}
    )
    platform = Platform(settings)
    try:
        seed(platform, "danang")
    finally:
        platform.close()
    city = load_city("danang")
    squares = {}
    features = []
    for w in city.wards:  # "real" boundaries: a square around each centroid
        d = 0.01
        ring = [
            [w.lon - d, w.lat - d],
            [w.lon + d, w.lat - d],
            [w.lon + d, w.lat + d],
            [w.lon - d, w.lat + d],
            [w.lon - d, w.lat - d],
        ]
        squares[w.code] = {"type": "Polygon", "coordinates": [ring]}
        features.append(
            {
                "type": "Feature",
                "properties": {"ma_xa": int(w.code), "ten_xa": w.name},
                "geometry": squares[w.code],
            }
        )
    (tmp_path / "wards.geojson").write_text(
        json.dumps({"type": "FeatureCollection", "features": features}, ensure_ascii=False)
    )
    subprocess.run(["bash", "-c", _block("prepare-wards")], cwd=tmp_path, check=True, timeout=60)
    (tmp_path / "wards.yaml").write_text(_block("wards.yaml"))

    res = run(
        ["import", "wards-real.geojson", "--mapping", "wards.yaml", "--tenant", "danang"],
        tmp_path,
        store_url=store_url,
    )
    assert res.returncode == 0, res.stderr
    line = "wards-real.geojson: 94 rows read, 94 written (0 created, 94 updated), 0 failed"
    assert line in res.stdout and line in DOC

    platform = Platform(settings)
    try:
        ctx = HubWriter.of(platform).ctx
        hub = platform.state["hub"].hub
        ward = hub.get("danang", "urn:ngsi-ld:AdministrativeArea:danang:20242")
        assert ward is not None
        value = {k.rsplit("/", 1)[-1]: v[0]["value"] for k, v in ward.attrs.items()}
        assert value["location"] == squares["20242"]
        assert value["boundaryApproximate"] is False
        assert value["name"] == "Phường Hải Châu" and value["area"] == 7.58  # kept
        assert ctx.expand("ten_xa") not in ward.attrs and ctx.expand("ma_xa") not in ward.attrs
        again = seed(platform, "danang", reseed=True)  # real boundaries survive a reseed
        assert again.kept == 94 and again.created == 0
        ward = hub.get("danang", "urn:ngsi-ld:AdministrativeArea:danang:20242")
        assert ward is not None
        assert ward.attrs[ctx.expand("location")][0]["value"] == squares["20242"]
    finally:
        platform.close()
