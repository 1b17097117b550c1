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


def _context_url(ctx: Any) -> str:
    urls = ctx if isinstance(ctx, list) else [ctx]
    user = [u for u in urls if "uri.etsi.org" not in u]
    return user[0] if user else urls[0]


@pytest.mark.parametrize("case", _examples())
def test_example_round_trips(ngsi: NGSI, case: tuple[Path, int]) -> None:
    path, index = case
    data = json.loads(path.read_text())
    example = (data if isinstance(data, list) else [data])[index]
    normalized = path.name == "example-normalized.jsonld"
    r = ngsi.create(example)
    assert r.status_code == 201, r.text
    link = LINK.format(_context_url(example["@context"]))
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
