"""Every FIWARE Smart Data Models example round-trips through the hub.

For each ``example-normalized.jsonld`` (normalized) and ``example.jsonld`` (keyValues):
create it with its own @context → retrieve it in the same representation with the
same context → equal; and a query by its type and one of its attributes finds it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.hub.conformance.conftest import NGSI, SDM

LINK = '<{}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'
OFFLINE_MISSING = ("Aeronautics", "incubated", "iudx:")
#: examples that are not valid NGSI-LD (ids that are not URIs, attribute types such as
#: "string", latitude 168, "2020-03-17TT08:45:00Z", a name with a trailing space…): the
#: hub must refuse each with 400 naming the defect, and write nothing
INVALID: dict[str, str] = {
    "FloodMonitoring/example-normalized.jsonld": "type 'string' is not an NGSI-LD attribute",
    "NightSkyQuality/example-normalized.jsonld": "'id' must be a URI",
    "NightSkyQuality/example.jsonld": "'id' must be a URI",
    "PhreaticObserved/example-normalized.jsonld": "is not an ISO 8601 date-time",
    "WaterObserved/example-normalized.jsonld": "'object' must be a URI",
    "AnprFlowObserved/example.jsonld": "latitude 168.371",
    "CityWork/example-normalized.jsonld": "type 'Property ' is not an NGSI-LD attribute",
    "RestrictionException/example-normalized.jsonld": "is not an NGSI-LD attribute type",
    "RoadAccident/example.jsonld": "latitude 168.371",
    "SpecialRestriction/example-normalized.jsonld": "is not an NGSI-LD attribute type",
    "TransportStation/example-normalized.jsonld": "type 'DateTime' is not an NGSI-LD attribute",
    "TransportStation/example.jsonld": "invalid attribute name 'featuredArtist '",
    "WaterQualityPredicted/example-normalized.jsonld": "'id' must be a URI",
    "WaterQualityPredicted/example.jsonld": "'id' must be a URI",
    "WeatherAlert/example.jsonld": "'id' must be a URI",
    "WeatherForecast/example-normalized.jsonld": "'id' must be a URI",
    "WeatherForecast/example.jsonld": "'id' must be a URI",
}


def _examples() -> list[Any]:
    if not SDM.exists():
        return [
            pytest.param(
                None,
                id="no-shared-data",
                marks=pytest.mark.skip(reason="../shared/data/smart-data-models is absent"),
            )
        ]
    params = []
    for path in sorted(SDM.glob("*/*/examples/example*.jsonld")):
        name = f"{path.parts[-4]}/{path.parts[-3]}/{path.name}"
        text = path.read_text()
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            params.append(
                pytest.param(
                    path,
                    id=name,
                    marks=pytest.mark.skip(reason=f"the shared copy is not valid JSON: {exc}"),
                )
            )
            continue
        if any(m in text for m in OFFLINE_MISSING):
            params.append(
                pytest.param(
                    path,
                    id=name,
                    marks=pytest.mark.skip(
                        reason="its @context has no local copy and the test network is closed"
                    ),
                )
            )
            continue
        for i in range(len(data) if isinstance(data, list) else 1):
            params.append(pytest.param((path, i), id=f"{name}#{i}"))
    return params


def _context_url(ngsi: NGSI, ctx: Any) -> str:
    """One URL standing for the example's @context: itself, or a hosted copy of a list."""
    urls = ctx if isinstance(ctx, list) else [ctx]
    user = [u for u in urls if not (isinstance(u, str) and "uri.etsi.org" in u)]
    if len(user) <= 1 and all(isinstance(u, str) for u in urls):
        return str(user[0] if user else urls[0])
    r = ngsi.request("POST", "/jsonldContexts", {"@context": ctx})
    assert r.status_code == 201, r.text
    return str(ngsi.http.base_url).rstrip("/") + r.headers["location"].removeprefix("/ngsi-ld/v1")


@pytest.mark.parametrize("case", _examples())
def test_example_round_trips(ngsi: NGSI, case: tuple[Path, int]) -> None:
    path, index = case
    data = json.loads(path.read_text())
    example = (data if isinstance(data, list) else [data])[index]
    normalized = path.name == "example-normalized.jsonld"
    r = ngsi.create(example)
    if path.parts[-3] + "/" + path.name in INVALID:
        assert r.status_code == 400, r.text
        assert INVALID[path.parts[-3] + "/" + path.name] in r.json()["detail"]
        assert ngsi.query(type="Nothing").status_code in (200, 404)  # the hub still answers
        return
    assert r.status_code == 201, r.text
    link = LINK.format(_context_url(ngsi, example["@context"]))
    got = ngsi.get(
        example["id"],
        headers={"Accept": "application/ld+json", "Link": link},
        **({} if normalized else {"options": "keyValues"}),
    )
    assert got.status_code == 200, got.text
    body = got.json()
    body.pop("@context")
    expected = {k: v for k, v in example.items() if k != "@context"}
    assert body == expected
    attr = next(k for k in expected if k not in ("id", "type"))
    found = ngsi.query(
        type=expected["type"] if isinstance(expected["type"], str) else expected["type"][0],
        attrs=attr,
        headers={"Link": link},
    )
    assert found.status_code == 200, found.text
    assert [e["id"] for e in found.json()] == [example["id"]]
