"""NGSI-LD conformance fixtures.

The suite targets a running SenCity server: by default one started here per backend
(SQLite and PostgreSQL) for the whole session; set ``SENCITY_TEST_URL`` (and
``SENCITY_TEST_TOKEN`` when it needs one) to run it against any server instead.
Every test works in a tenant of its own, so tests never see each other's entities.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sencity.auth.service import AuthService
from sencity.config import load_settings
from sencity.core.platform import prepare_store
from tests.conftest import SHARED, _pg_schema_url, start_server, stop_server

CORE = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld"
SDM = SHARED / "data" / "smart-data-models"


#: the general Smart Data Models contexts: the union of the domain contexts stands for them
GENERAL_SDM_CONTEXTS = (
    "https://smartdatamodels.org/context.jsonld",
    "https://smartdatamodels.org/context",
    "https://fiware.github.io/data-models/context.jsonld",
    "https://smart-data-models.github.io/data-models/context.jsonld",
    "https://schema.lab.fiware.org/ld/context",
    "https://raw.githubusercontent.com/smart-data-models/data-models/master/context.jsonld",
)


def sdm_preload(tmp: Path) -> dict[str, str]:
    """Map the Smart Data Models context URLs used by the examples to local files."""
    out: dict[str, str] = {}
    if not SDM.exists():
        return out
    union: dict[str, Any] = {}
    for domain in sorted(SDM.iterdir()):
        ctx = domain / "context.jsonld"
        if ctx.exists():
            terms = json.loads(ctx.read_text())["@context"]
            for k, v in terms.items():
                union.setdefault(k, v)
    merged = tmp / "sdm-union-context.jsonld"
    merged.write_text(json.dumps({"@context": union}))
    out.update({url: str(merged) for url in GENERAL_SDM_CONTEXTS})
    for domain in sorted(SDM.iterdir()):
        ctx = domain / "context.jsonld"
        if ctx.exists():
            for url in (
                f"https://raw.githubusercontent.com/smart-data-models/{domain.name}/master/"
                "context.jsonld",
                f"https://smart-data-models.github.io/{domain.name}/context.jsonld",
            ):
                out[url] = str(ctx)
    return out


class NGSI:
    """A small NGSI-LD client bound to one server, token and tenant."""

    def __init__(self, url: str, token: str | None, tenant: str) -> None:
        headers = {"NGSILD-Tenant": tenant}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.tenant = tenant
        self.http = httpx.Client(
            base_url=url.rstrip("/") + "/ngsi-ld/v1", headers=headers, timeout=30
        )

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        ctype: str | None = None,
        headers: dict[str, str] | None = None,
        **params: Any,
    ) -> httpx.Response:
        h = dict(headers or {})
        content = None
        if body is not None:
            content = body if isinstance(body, bytes) else json.dumps(body).encode()
            h.setdefault("Content-Type", ctype or "application/json")
        return self.http.request(
            method,
            path,
            content=content,
            headers=h,
            params={k: v for k, v in params.items() if v is not None},
        )

    def create(self, entity: dict[str, Any], **kw: Any) -> httpx.Response:
        ctype = "application/ld+json" if "@context" in entity else "application/json"
        return self.request("POST", "/entities", entity, ctype=ctype, **kw)

    def get(self, eid: str, **params: Any) -> httpx.Response:
        return self.request("GET", f"/entities/{eid}", **params)

    def query(self, **params: Any) -> httpx.Response:
        return self.request("GET", "/entities", **params)


def problem(resp: httpx.Response, status: int, kind: str | None = None) -> dict[str, Any]:
    assert resp.status_code == status, f"{resp.status_code} {resp.text[:500]}"
    assert resp.headers["content-type"].startswith("application/problem+json"), resp.headers
    body = resp.json()
    assert body["status"] == status and body["detail"]
    if kind:
        assert body["type"] == f"https://uri.etsi.org/ngsi-ld/errors/{kind}", body
    return body


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def hub_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str | None]]:
    if os.environ.get("SENCITY_TEST_URL"):
        if request.param != "sqlite":
            pytest.skip("SENCITY_TEST_URL given: the suite runs once, against that server")
        yield os.environ["SENCITY_TEST_URL"], os.environ.get("SENCITY_TEST_TOKEN")
        return
    tmp = tmp_path_factory.mktemp(f"hub-{request.param}")
    if request.param == "sqlite":
        url = f"sqlite:///{tmp / 'hub.db'}"
    else:
        url = _pg_schema_url(request.getfixturevalue("pg_url"))
    settings = load_settings(None, {"store": {"url": url}}, environ={})
    store = prepare_store(settings)
    store.create_user("conformance", roles={"*": "admin"})
    token, _ = AuthService(store, settings).issue_token("conformance")
    store.close()
    cfg = tmp / "sencity.toml"
    preload = "".join(f'"{k}" = "{v}"\n' for k, v in sdm_preload(tmp).items())
    cfg.write_text(
        "[server]\nmax_body_bytes = 1000000\n[hub]\ncontext_fetch = false\n"
        f"[hub.context_preload]\n{preload}"
    )
    server = start_server(["--config", str(cfg), "serve", "--port", "0", "--store", url], tmp)
    yield server.url, token
    stop_server(server)


@pytest.fixture
def ngsi(hub_server: tuple[str, str | None]) -> Iterator[NGSI]:
    url, token = hub_server
    client = NGSI(url, token, f"t{uuid.uuid4().hex[:12]}")
    yield client
    client.http.close()


def entity(eid: str = "urn:ngsi-ld:Sensor:1", **attrs: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"id": eid, "type": "Sensor"}
    body.update(attrs)
    return body


def prop(value: Any, **extra: Any) -> dict[str, Any]:
    return {"type": "Property", "value": value, **extra}


def rel(obj: str, **extra: Any) -> dict[str, Any]:
    return {"type": "Relationship", "object": obj, **extra}


def point(lon: float, lat: float) -> dict[str, Any]:
    return {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, lat]}}


__all__ = ["CORE", "NGSI", "entity", "point", "problem", "prop", "rel"]
