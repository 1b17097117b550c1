"""History retention with downsampling, run by the server in the background (both backends)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from statistics import fmean
from typing import Any

from sencity.auth.service import AuthService
from sencity.config import Settings
from sencity.store import Store
from tests.conftest import Server, stop_server

CONFIG = """
[hub]
retention_interval = 0.2

[[hub.retention]]
tenant = "*"
type = "Sensor"
raw_days = 30
rollup = "PT1H"
rollup_days = 365

[[hub.retention]]
tenant = "city"
type = "Camera"
raw_days = 1
"""


def _iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_old_history_is_rolled_up_then_dropped(
    store: Store, settings: Settings, serve: Callable[..., Server]
) -> None:
    store.create_user("ops", roles={"*": "admin"})
    token, _ = AuthService(store, settings).issue_token("ops")
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    ancient = now - timedelta(days=400)  # beyond the rollups' 365 days: gone
    old = now - timedelta(days=100)  # beyond 30 raw days: kept as hourly aggregates
    recent = now - timedelta(days=2)  # kept raw
    old_values = [float(v) for v in range(12)]  # 12 readings, 5 minutes apart, in one hour
    body: dict[str, Any] = {
        "id": "urn:ngsi-ld:Sensor:r1",
        "type": "Sensor",
        "pm25": [{"type": "Property", "value": 500.0, "observedAt": _iso(ancient)}]
        + [
            {"type": "Property", "value": v, "observedAt": _iso(old + timedelta(minutes=5 * i))}
            for i, v in enumerate(old_values)
        ]
        + [{"type": "Property", "value": 7.0, "observedAt": _iso(recent)}],
    }
    camera = {
        "id": "urn:ngsi-ld:Camera:c1",
        "type": "Camera",
        "frames": [{"type": "Property", "value": 1, "observedAt": _iso(recent)}],
    }
    loader = serve(settings.store_url)  # the data first, then a server that keeps it short
    with loader.client(token, headers={"NGSILD-Tenant": "city"}) as c:
        for b in (body, camera):
            assert c.post("/ngsi-ld/v1/temporal/entities", json=b).status_code == 201
    stop_server(loader)
    server = serve(settings.store_url, CONFIG)
    # rule 1 removes 13 raw instances and the ancient hour's rollup; rule 2 one instance
    server.wait_for(r"history retention removed \[\(13, 1\), \(1, 0\)\]")
    with server.client(token, headers={"NGSILD-Tenant": "city"}) as c:
        raw = c.get("/ngsi-ld/v1/temporal/entities/urn:ngsi-ld:Sensor:r1").json()
        assert [i["value"] for i in raw["pm25"]] == [7.0]
        assert (
            c.get("/ngsi-ld/v1/temporal/entities/urn:ngsi-ld:Camera:c1").json().get("frames")
            is None
        )
        agg = c.get(
            "/ngsi-ld/v1/temporal/entities/urn:ngsi-ld:Sensor:r1",
            params={
                "options": "aggregatedValues",
                "aggrMethods": "avg,min,max,totalCount,sum,stddev",
                "aggrPeriodDuration": "PT1H",
                "timerel": "after",
                "timeAt": _iso(now - timedelta(days=500)),
            },
        ).json()["pm25"]
        hour = [_iso(old), _iso(old + timedelta(hours=1))]
        assert agg["avg"][0] == [fmean(old_values), *hour]
        assert agg["min"][0][0] == 0.0 and agg["max"][0][0] == 11.0
        assert agg["totalCount"][0][0] == 12 and agg["sum"][0][0] == sum(old_values)
        assert [a[0] for a in agg["avg"]] == [fmean(old_values), 7.0]  # the ancient one is gone
