"""A real NGSI-LD client from PyPI (ngsildclient) against SenCity."""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit

import pytest
import requests

ngsildclient = pytest.importorskip("ngsildclient", reason="ngsildclient is installed by make test")


class _Bearer(requests.auth.AuthBase):
    def __init__(self, token: str | None) -> None:
        self.token = token

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        if self.token:
            r.headers["Authorization"] = f"Bearer {self.token}"
        return r


def test_ngsildclient_crud_query_batch(hub_server: tuple[str, str | None]) -> None:
    url, token = hub_server
    parts = urlsplit(url)
    tenant = f"t{uuid.uuid4().hex[:10]}"
    client = ngsildclient.Client(
        hostname=parts.hostname, port=parts.port, tenant=tenant, custom_auth=_Bearer(token)
    )
    try:
        e = ngsildclient.Entity("AirQualityObserved", "DaNang:HaiChau")
        e.prop("pm25", 41.5, unitcode="GQ").loc(16.0678, 108.2208).rel(
            "refDevice", "urn:ngsi-ld:Device:7"
        )
        client.create(e)
        got = client.get(e.id)
        assert got["pm25"]["value"] == 41.5
        assert got["location"]["value"]["coordinates"] == [108.2208, 16.0678]
        assert got["refDevice"]["object"] == "urn:ngsi-ld:Device:7"
        more = []
        for n, pm in enumerate([12.0, 77.0, 30.0]):
            m = ngsildclient.Entity("AirQualityObserved", f"DaNang:S{n}")
            m.prop("pm25", pm)
            more.append(m)
        client.upsert(*more)
        found = client.query(type="AirQualityObserved", q="pm25>40")
        assert sorted(x.id for x in found) == [
            "urn:ngsi-ld:AirQualityObserved:DaNang:HaiChau",
            "urn:ngsi-ld:AirQualityObserved:DaNang:S1",
        ]
        assert client.count(type="AirQualityObserved") == 4
        e["pm25"]["value"] = 10.0
        client.update(e)
        assert client.get(e.id)["pm25"]["value"] == 10.0
        client.delete(e)
        assert not client.exists(e)
    finally:
        client.close()
