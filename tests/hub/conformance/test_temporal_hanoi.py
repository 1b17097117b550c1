"""Real data: four years of hourly AQI at the US Embassy in Hanoi as one entity's history.

Monthly averages and the hours per month above 150 ("unhealthy"), asked of the temporal
API with aggregation, equal a plain-Python computation over the same CSV rows.  The
count of unhealthy hours is the monthly ``sum`` of a boolean ``unhealthy`` attribute kept
beside ``aqi`` (what a rule would write), since NGSI-LD aggregation does not filter values.
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from typing import Any

import pytest

from tests.conftest import SHARED
from tests.hub.conformance.conftest import NGSI, prop

CSV = SHARED / "data" / "airquality" / "hanoi_usembassy_aqi_2015-2018.csv"
EID = "urn:ngsi-ld:AirQualityObserved:hanoi-us-embassy"


def _rows() -> list[tuple[str, int]]:
    with CSV.open(newline="") as f:
        return [
            (r["datetime"], int(r["aqi"]))
            for r in csv.DictReader(f)
            if r["qc_name"] == "Valid" and r["aqi"].lstrip("-").isdigit()
        ]


@pytest.mark.skipif(not CSV.exists(), reason="shared data not present")
def test_monthly_aqi_average_and_unhealthy_hours_match_the_csv(ngsi: NGSI) -> None:
    rows = _rows()
    assert len(rows) > 20_000
    for i in range(0, len(rows), 4000):  # several requests: each stays under the body limit
        part = rows[i : i + 4000]
        body: dict[str, Any] = {
            "id": EID,
            "type": "AirQualityObserved",
            "aqi": [prop(v, observedAt=t) for t, v in part],
            "unhealthy": [prop(v > 150, observedAt=t) for t, v in part],
        }
        r = ngsi.request("POST", "/temporal/entities", body)
        assert r.status_code in (201, 204), r.text

    expected_avg: dict[str, list[int]] = defaultdict(list)
    for t, v in rows:
        expected_avg[t[:7]].append(v)

    r = ngsi.request(
        "GET",
        f"/temporal/entities/{EID}",
        options="aggregatedValues",
        aggrMethods="avg,totalCount,sum",
        aggrPeriodDuration="P1M",
        timerel="between",
        timeAt="2015-12-01T00:00:00Z",
        endTimeAt="2018-07-01T00:00:00Z",
    )
    assert r.status_code == 200, r.text
    body = r.json()
    avg = {a[1][:7]: a[0] for a in body["aqi"]["avg"]}
    count = {a[1][:7]: a[0] for a in body["aqi"]["totalCount"]}
    unhealthy = {a[1][:7]: a[0] for a in body["unhealthy"]["sum"]}
    assert sorted(avg) == sorted(expected_avg)
    for month, values in expected_avg.items():
        assert math.isclose(avg[month], sum(values) / len(values), rel_tol=1e-9), month
        assert count[month] == len(values), month
        assert unhealthy[month] == sum(1 for v in values if v > 150), month
    # bucket bounds are calendar months
    first = body["aqi"]["avg"][0]
    assert first[1:] == ["2015-12-01T00:00:00Z", "2016-01-01T00:00:00Z"]
