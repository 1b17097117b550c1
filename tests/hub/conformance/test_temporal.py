"""Temporal API (NGSI-LD clause 5.7.3/5.7.4 retrieval and query, 5.6.11–5.6.18 provision,
6.3.10 pagination, 6.3.12 aggregation), on both backends."""

from __future__ import annotations

import math
import statistics
from typing import Any

from tests.hub.conformance.conftest import NGSI, entity, problem, prop

T = "/temporal/entities"


def hours(n: int, start: int = 0, day: str = "2024-03-01") -> list[str]:
    return [f"{day}T{h:02d}:{m:02d}:00Z" for h, m in ((i // 60 + start, i % 60) for i in range(n))]


def readings(values: list[float], times: list[str], **extra: Any) -> list[dict[str, Any]]:
    return [prop(v, observedAt=t, **extra) for v, t in zip(values, times, strict=True)]


def temporal(ngsi: NGSI, eid: str, **params: Any) -> dict[str, Any]:
    r = ngsi.request("GET", f"{T}/{eid}", **params)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


# -- history of ordinary writes --------------------------------------------------------------
def test_every_change_is_kept_including_batch_and_deletes(ngsi: NGSI) -> None:
    eid = "urn:ngsi-ld:Sensor:h1"
    r = ngsi.create(entity(eid, temperature=prop(20.0, observedAt="2024-01-01T00:00:00Z")))
    assert r.status_code == 201, r.text
    for i, v in enumerate([21.0, 22.5]):
        r = ngsi.request(
            "PATCH",
            f"/entities/{eid}/attrs",
            {"temperature": prop(v, observedAt=f"2024-01-01T0{i + 1}:00:00Z")},
        )
        assert r.status_code == 204, r.text
    r = ngsi.request(
        "POST",
        "/entityOperations/upsert",
        [entity(eid, temperature=prop(23.0, observedAt="2024-01-01T03:00:00Z"))],
        options="update",
    )
    assert r.status_code == 204, r.text
    # the same value at the same time again is no change: not kept twice
    ngsi.request(
        "PATCH",
        f"/entities/{eid}/attrs",
        {"temperature": prop(23.0, observedAt="2024-01-01T03:00:00Z")},
    )
    body = temporal(ngsi, eid)
    insts = body["temperature"]
    assert [i["value"] for i in insts] == [20.0, 21.0, 22.5, 23.0]
    assert [i["observedAt"] for i in insts] == [f"2024-01-01T0{h}:00:00Z" for h in range(4)]
    assert all(i["instanceId"].startswith("urn:ngsi-ld:") for i in insts)
    assert len({i["instanceId"] for i in insts}) == 4
    assert body["type"] == "Sensor"
    # deleting the attribute, then the entity, is recorded; history outlives the entity
    assert ngsi.request("DELETE", f"/entities/{eid}/attrs/temperature").status_code == 204
    assert ngsi.request("DELETE", f"/entities/{eid}").status_code == 204
    body = temporal(ngsi, eid, timeproperty="modifiedAt")
    last = body["temperature"][-1]
    assert last["value"] == "urn:ngsi-ld:null" and "deletedAt" in last
    assert "deletedAt" in body


def test_sys_attrs_and_datasets(ngsi: NGSI) -> None:
    eid = "urn:ngsi-ld:Sensor:h2"
    ngsi.create(
        entity(
            eid,
            speed=[
                prop(10, observedAt="2024-01-01T00:00:00Z"),
                prop(11, observedAt="2024-01-01T00:00:00Z", datasetId="urn:ngsi-ld:Dataset:gps"),
            ],
        )
    )
    body = temporal(ngsi, eid, options="sysAttrs")
    by_ds = {i.get("datasetId"): i for i in body["speed"]}
    assert by_ds[None]["value"] == 10 and by_ds["urn:ngsi-ld:Dataset:gps"]["value"] == 11
    assert "createdAt" in by_ds[None] and "createdAt" in body
    plain = temporal(ngsi, eid)
    assert "createdAt" not in plain["speed"][0]


# -- timerel, lastN, attrs, temporalValues ---------------------------------------------------
def _sensor_with_history(ngsi: NGSI, eid: str, n: int = 10) -> list[str]:
    times = hours(n)
    body = entity(eid, pm25=readings([float(i) for i in range(n)], times, unitCode="GQ"))
    body["no2"] = readings([100.0 + i for i in range(n)], times)
    r = ngsi.request("POST", T, body)
    assert r.status_code == 201, r.text
    return times


def test_timerel_before_after_between(ngsi: NGSI) -> None:
    eid = "urn:ngsi-ld:Sensor:t1"
    times = _sensor_with_history(ngsi, eid)
    before = temporal(ngsi, eid, timerel="before", timeAt=times[3], attrs="pm25")
    assert [i["value"] for i in before["pm25"]] == [0.0, 1.0, 2.0]
    assert "no2" not in before
    after = temporal(ngsi, eid, timerel="after", timeAt=times[7], attrs="pm25")
    assert [i["value"] for i in after["pm25"]] == [8.0, 9.0]
    between = temporal(
        ngsi, eid, timerel="between", timeAt=times[2], endTimeAt=times[5], attrs="pm25"
    )
    assert [i["value"] for i in between["pm25"]] == [2.0, 3.0, 4.0]
    assert between["pm25"][0]["unitCode"] == "GQ"
    # an offset in timeAt means the same instant
    shifted = temporal(
        ngsi, eid, timerel="before", timeAt="2024-03-01T07:03:00+07:00", attrs="pm25"
    )
    assert len(shifted["pm25"]) == 3


def test_last_n_and_temporal_values(ngsi: NGSI) -> None:
    eid = "urn:ngsi-ld:Sensor:t2"
    times = _sensor_with_history(ngsi, eid)
    last = temporal(ngsi, eid, lastN="3")
    assert [i["value"] for i in last["pm25"]] == [7.0, 8.0, 9.0]
    assert [i["value"] for i in last["no2"]] == [107.0, 108.0, 109.0]
    simple = temporal(ngsi, eid, options="temporalValues", attrs="no2")
    assert simple["no2"]["type"] == "Property"
    assert simple["no2"]["values"][0] == [100.0, times[0]]
    assert len(simple["no2"]["values"]) == 10


def test_query_by_type_q_and_id_pattern(ngsi: NGSI) -> None:
    for i in range(3):
        ngsi.create(
            entity(
                f"urn:ngsi-ld:Sensor:q{i}", pm25=prop(float(i), observedAt="2024-01-01T00:00:00Z")
            )
        )
    r = ngsi.request("GET", T, type="Sensor", q="pm25>0", count="true")
    assert r.status_code == 200, r.text
    assert sorted(e["id"] for e in r.json()) == ["urn:ngsi-ld:Sensor:q1", "urn:ngsi-ld:Sensor:q2"]
    assert r.headers["NGSILD-Results-Count"] == "2"
    r = ngsi.request("GET", T, idPattern=".*q0$")
    assert [e["id"] for e in r.json()] == ["urn:ngsi-ld:Sensor:q0"]
    r = ngsi.request(
        "POST",
        "/temporal/entityOperations/query",
        {"type": "Query", "entities": [{"type": "Sensor"}], "q": "pm25==2", "temporalQ": {}},
    )
    assert r.status_code == 200, r.text
    assert [e["id"] for e in r.json()] == ["urn:ngsi-ld:Sensor:q2"]


def test_pagination_with_content_range(ngsi: NGSI) -> None:
    eid = "urn:ngsi-ld:Sensor:page"
    n = 1500  # the default page is 1000 instances per attribute
    times = [f"2024-01-{1 + i // 1440:02d}T{(i // 60) % 24:02d}:{i % 60:02d}:00Z" for i in range(n)]
    r = ngsi.request(
        "POST", T, {"id": eid, "type": "Sensor", "v": readings(list(map(float, range(n))), times)}
    )
    assert r.status_code == 201, r.text
    r = ngsi.request("GET", f"{T}/{eid}", timerel="after", timeAt="2023-12-31T00:00:00Z")
    assert r.status_code == 206, r.text
    assert r.headers["Content-Range"] == f"date-time {times[0]}-{times[999]}/*"
    first = r.json()["v"]
    assert len(first) == 1000
    r = ngsi.request("GET", f"{T}/{eid}", timerel="after", timeAt=times[999])
    assert r.status_code == 200, r.text
    rest = r.json()["v"]
    assert [i["value"] for i in first + rest] == list(map(float, range(n)))
    r = ngsi.request("GET", f"{T}/{eid}", lastN="1200")
    assert r.status_code == 206
    assert r.headers["Content-Range"] == f"date-time {times[500]}-{times[-1]}/1200"


# -- aggregation -----------------------------------------------------------------------------
def test_hourly_aggregation_every_method(ngsi: NGSI) -> None:
    eid = "urn:ngsi-ld:Sensor:agg"
    values = [float((i * 7) % 11) for i in range(180)]  # three hours of minutes
    r = ngsi.request("POST", T, {"id": eid, "type": "Sensor", "v": readings(values, hours(180))})
    assert r.status_code == 201, r.text
    methods = "totalCount,distinctCount,sum,avg,min,max,stddev,sumsq"
    body = temporal(
        ngsi,
        eid,
        options="aggregatedValues",
        aggrMethods=methods,
        aggrPeriodDuration="PT1H",
        timerel="between",
        timeAt="2024-03-01T00:00:00Z",
        endTimeAt="2024-03-01T03:00:00Z",
    )
    v = body["v"]
    for h in range(3):
        chunk = values[h * 60 : (h + 1) * 60]
        start, end = f"2024-03-01T{h:02d}:00:00Z", f"2024-03-01T{h + 1:02d}:00:00Z"
        assert v["totalCount"][h] == [60, start, end]
        assert v["distinctCount"][h][0] == len(set(chunk))
        assert v["sum"][h][0] == sum(chunk)
        assert math.isclose(v["avg"][h][0], statistics.fmean(chunk))
        assert v["min"][h][0] == min(chunk) and v["max"][h][0] == max(chunk)
        assert math.isclose(v["stddev"][h][0], statistics.stdev(chunk))
        assert v["sumsq"][h][0] == sum(x * x for x in chunk)
    whole = temporal(
        ngsi,
        eid,
        options="aggregatedValues",
        aggrMethods="max",
        timerel="between",
        timeAt="2024-03-01T00:00:00Z",
        endTimeAt="2024-03-01T03:00:00Z",
    )
    assert whole["v"]["max"] == [[10.0, "2024-03-01T00:00:00Z", "2024-03-01T03:00:00Z"]]


def test_monthly_aggregation_follows_the_offset_of_time_at(ngsi: NGSI) -> None:
    eid = "urn:ngsi-ld:Sensor:months"
    # local (+07:00) midnight of 1 Feb is 17:00 UTC on 31 Jan: that reading is February's
    times = ["2024-01-15T00:00:00Z", "2024-01-31T16:59:00Z", "2024-01-31T17:00:00Z"]
    times.append("2024-03-10T00:00:00Z")
    r = ngsi.request(
        "POST", T, {"id": eid, "type": "Sensor", "v": readings([1.0, 2.0, 10.0, 20.0], times)}
    )
    assert r.status_code == 201, r.text
    body = temporal(
        ngsi,
        eid,
        options="aggregatedValues",
        aggrMethods="avg,totalCount",
        aggrPeriodDuration="P1M",
        timerel="after",
        timeAt="2024-01-01T00:00:00+07:00",
    )
    avg = body["v"]["avg"]
    assert [a[0] for a in avg] == [1.5, 10.0, 20.0]
    assert avg[0][1:] == ["2023-12-31T17:00:00Z", "2024-01-31T17:00:00Z"]
    assert avg[2][1:] == ["2024-02-29T17:00:00Z", "2024-03-31T17:00:00Z"]


# -- provision -------------------------------------------------------------------------------
def test_create_append_modify_and_delete_instances(ngsi: NGSI) -> None:
    eid = "urn:ngsi-ld:Sensor:prov"
    base = {"id": eid, "type": "Sensor", "v": readings([1.0, 2.0], hours(2))}
    assert ngsi.request("POST", T, base).status_code == 201
    assert ngsi.request("POST", T, base | {"v": readings([3.0], hours(1, 5))}).status_code == 204
    r = ngsi.request("POST", f"{T}/{eid}/attrs", {"w": readings([9.0], hours(1))})
    assert r.status_code == 204, r.text
    body = temporal(ngsi, eid)
    assert [i["value"] for i in body["v"]] == [1.0, 2.0, 3.0] and body["w"][0]["value"] == 9.0
    iid = body["v"][1]["instanceId"]
    r = ngsi.request(
        "PATCH", f"{T}/{eid}/attrs/v/{iid}", prop(2.5, observedAt="2024-03-01T00:01:00Z")
    )
    assert r.status_code == 204, r.text
    assert [i["value"] for i in temporal(ngsi, eid)["v"]] == [1.0, 2.5, 3.0]
    assert ngsi.request("DELETE", f"{T}/{eid}/attrs/v/{iid}").status_code == 204
    assert [i["value"] for i in temporal(ngsi, eid)["v"]] == [1.0, 3.0]
    problem(ngsi.request("DELETE", f"{T}/{eid}/attrs/v/{iid}"), 404, "ResourceNotFound")
    assert ngsi.request("DELETE", f"{T}/{eid}/attrs/w").status_code == 204
    assert "w" not in temporal(ngsi, eid)
    assert ngsi.request("DELETE", f"{T}/{eid}").status_code == 204
    problem(ngsi.request("GET", f"{T}/{eid}"), 404, "ResourceNotFound")
    problem(
        ngsi.request("POST", f"{T}/{eid}/attrs", {"w": readings([1.0], hours(1))}),
        404,
        "ResourceNotFound",
    )


# -- bad input -------------------------------------------------------------------------------
def test_bad_temporal_parameters_are_400(ngsi: NGSI) -> None:
    eid = "urn:ngsi-ld:Sensor:bad"
    _sensor_with_history(ngsi, eid, 2)
    cases = [
        {"timerel": "between", "timeAt": "2024-03-01T00:00:00Z"},
        {"timerel": "before", "timeAt": "yesterday"},
        {"timerel": "before", "timeAt": "2024-03-01T00:00:00"},
        {"timerel": "whenever", "timeAt": "2024-03-01T00:00:00Z"},
        {"timeAt": "2024-03-01T00:00:00Z"},
        {"lastN": "0"},
        {"timeproperty": "deletedAt"},
        {"options": "aggregatedValues", "aggrMethods": "median", "aggrPeriodDuration": "PT1H"},
        {"options": "aggregatedValues", "aggrMethods": "avg", "aggrPeriodDuration": "1 hour"},
        {"options": "aggregatedValues", "aggrMethods": "avg", "aggrPeriodDuration": "P1M2D"},
        {"options": "aggregatedValues"},
        {"aggrMethods": "avg"},
        {"options": "temporalValues,aggregatedValues", "aggrMethods": "avg"},
    ]
    for params in cases:
        body = problem(ngsi.request("GET", f"{T}/{eid}", **params), 400, "BadRequestData")
        assert body["detail"], params
    assert problem(ngsi.request("GET", T, timerel="between", timeAt="x"), 400)


def test_bad_temporal_entity_stores_nothing(ngsi: NGSI) -> None:
    eid = "urn:ngsi-ld:Sensor:none"
    bad = {
        "id": eid,
        "type": "Sensor",
        "v": [prop(1.0, observedAt="2024-01-01T00:00:00Z"), {"type": "Property"}],
    }
    problem(ngsi.request("POST", T, bad), 400, "BadRequestData")
    bad_time = {"id": eid, "type": "Sensor", "v": [prop(1.0, observedAt="noon")]}
    problem(ngsi.request("POST", T, bad_time), 400, "BadRequestData")
    problem(ngsi.request("GET", f"{T}/{eid}"), 404)  # not even the tenant was created
