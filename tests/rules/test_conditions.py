"""Condition evaluation without a database: every condition kind, hysteresis, ``for:``
durations, sliding windows, rates, geo-fences, schedules in a time zone, scopes and
cross-entity groups; and rule validation errors that name the rule and the field."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from shapely.geometry import shape

from sencity.errors import BadRequest
from sencity.rules.conditions import Clock, Machine, View, advance, evaluate
from sencity.rules.evaluator import GROUP, Evaluator
from sencity.rules.model import parse_condition, parse_rule, read_rules

HCM = ZoneInfo("Asia/Ho_Chi_Minh")
SQUARE = {
    "type": "Polygon",
    "coordinates": [[[108.0, 16.0], [108.1, 16.0], [108.1, 16.1], [108.0, 16.1], [108.0, 16.0]]],
}


def view(eid: str = "urn:x:1", t: float = 0.0, location: Any = None, **values: Any) -> View:
    return View(eid, "Sensor", values, {k: t for k in values}, t, location)


def clock(now: float = 1000.0, **kw: Any) -> Clock:
    return Clock(now, kw.pop("tz", UTC), **kw)


def truth(cond: dict[str, Any], v: View, m: Machine | None = None, **kw: Any) -> bool:
    return evaluate(parse_condition("r", cond), v, m or Machine(), clock(**kw))


def rule(when: dict[str, Any], **extra: Any) -> Any:
    return parse_rule({"id": "r", "name": "R", "scope": {"type": "Sensor"}, "when": when, **extra})


def test_comparisons_and_operands() -> None:
    assert truth({"attr": "pm25", "above": 150}, view(pm25=151))
    assert not truth({"attr": "pm25", "above": 150}, view(pm25=150))
    assert truth({"attr": "pm25", "at_least": 150}, view(pm25=150))
    assert truth({"attr": "pm25", "below": 10}, view(pm25=9.5))
    assert truth({"attr": "pm25", "at_most": 10}, view(pm25=10))
    assert truth({"attr": "status", "equals": "defectiveLamp"}, view(status="defectiveLamp"))
    assert truth({"attr": "status", "not_equals": "ok"}, view(status="brokenConnection"))
    assert not truth({"attr": "pm25", "above": 150}, view())  # missing: false
    assert not truth({"attr": "pm25", "above": 150}, view(pm25="high"))  # not a number
    # another attribute of the same entity as the threshold
    lvl = {"attr": "currentLevel", "at_least": {"attr": "alertLevel2"}}
    assert truth(lvl, view(currentLevel=2.5, alertLevel2=2.5))
    assert not truth(lvl, view(currentLevel=2.4, alertLevel2=2.5))
    assert truth({"attr": "pm25", "exists": True}, view(pm25=1))
    assert truth({"attr": "pm25", "exists": False}, view())


def test_combinations() -> None:
    c = {
        "all": [
            {"attr": "a", "above": 1},
            {"any": [{"attr": "b", "equals": "x"}, {"not": {"attr": "c", "below": 5}}]},
        ]
    }
    assert truth(c, view(a=2, b="x", c=0))
    assert truth(c, view(a=2, b="y", c=9))
    assert not truth(c, view(a=2, b="y", c=1))
    assert not truth(c, view(a=0, b="x", c=9))


def test_hysteresis_raises_at_150_clears_below_140() -> None:
    r = rule({"attr": "pm25", "above": 150, "clear_below": 140})
    m = Machine()
    seq = [(149, None), (151, "raise"), (145, None), (140, None), (139.9, "clear"), (145, None)]
    for value, expected in seq:
        got = advance(m, evaluate(r.cond, view(pm25=value), m, clock()), 0, None)
        assert got == expected, value
    below = rule({"attr": "temp", "below": 5, "clear_above": 8})
    m = Machine()
    assert advance(m, evaluate(below.cond, view(temp=4), m, clock()), 0, None) == "raise"
    assert advance(m, evaluate(below.cond, view(temp=7), m, clock()), 0, None) is None
    assert advance(m, evaluate(below.cond, view(temp=9), m, clock()), 0, None) == "clear"


def test_for_duration() -> None:
    m = Machine()
    assert advance(m, True, 0, 600) is None  # starts waiting
    assert m.since == 0
    assert advance(m, True, 599, 600) is None
    assert advance(m, True, 600, 600) == "raise"
    assert advance(m, True, 700, 600) is None  # already active
    assert advance(m, False, 800, 600) == "clear"
    m = Machine()
    advance(m, True, 0, 600)
    assert advance(m, False, 300, 600) is None and m.since is None  # interrupted


def test_count_in_a_sliding_window() -> None:
    c = parse_condition("r", {"count": {"attr": "x", "above": 5}, "within": "PT10M", "at_least": 3})
    m = Machine()
    got = [evaluate(c, view(x=v), m, clock(t)) for t, v in [(0, 9), (60, 1), (120, 9), (180, 9)]]
    assert got == [False, False, False, True]
    assert not evaluate(c, view(x=1), m, clock(700))  # the first hit left the window
    assert evaluate(c, view(x=9), m, clock(710))  # three hits within 10 min again
    assert m.hits  # kept in the state (survives a restart)


def test_rate_of_change() -> None:
    c = parse_condition("r", {"rate": "currentLevel", "per": "PT1H", "above": 0.5})
    m = Machine()
    assert not evaluate(c, view(t=0, currentLevel=1.0), m, clock(0))
    assert not evaluate(c, view(t=1800, currentLevel=1.2), m, clock(1800))  # 0.4 m/h
    assert evaluate(c, view(t=3600, currentLevel=1.6), m, clock(3600))  # 0.8 m/h


def test_no_data() -> None:
    c = {"no_data": "PT15M", "attr": "pm25"}
    assert not truth(c, view(t=0, pm25=1), now=899)
    assert truth(c, view(t=0, pm25=1), now=900)
    assert truth({"no_data": "15m"}, view(t=0, pm25=1), now=1000)


def test_geo_fences() -> None:
    inside = view(location={"type": "Point", "coordinates": [108.05, 16.05]})
    outside = view(location={"type": "Point", "coordinates": [108.5, 16.05]})
    assert truth({"inside": {"polygon": SQUARE}}, inside)
    assert not truth({"inside": {"polygon": SQUARE}}, outside)
    assert truth({"outside": {"polygon": SQUARE}}, outside)
    wards = {"20194": shape(SQUARE)}
    assert truth({"inside": {"ward": "20194"}}, inside, wards=wards.get)
    assert not truth({"inside": {"ward": "99999"}}, inside, wards=wards.get)  # unknown ward
    near = {"near": {"point": [108.05, 16.05], "within_m": 500}}
    assert truth(near, inside)
    assert not truth(near, outside)
    assert not truth(near, view())  # no location


def test_schedule_in_the_tenants_time_zone() -> None:
    # 2026-03-02 is a Monday; 15:30 UTC is 22:30 in Ho Chi Minh City
    monday_night = datetime(2026, 3, 2, 15, 30, tzinfo=UTC).timestamp()
    night = {"schedule": {"days": ["mon", "tue"], "from": "22:00", "to": "06:00"}}
    assert truth(night, view(), now=monday_night, tz=HCM)
    assert not truth(night, view(), now=monday_night, tz=UTC)  # 15:30 in UTC
    tuesday_early = datetime(2026, 3, 2, 21, 0, tzinfo=UTC).timestamp()  # Tue 04:00 local
    assert truth(night, view(), now=tuesday_early, tz=HCM)  # Monday night's tail
    sunday_early = datetime(2026, 3, 1, 21, 0, tzinfo=UTC).timestamp()  # Mon 04:00 local
    assert not truth(night, view(), now=sunday_early, tz=HCM)  # Sunday night: not listed
    office = {"schedule": {"days": ["mon"], "from": "08:00", "to": "17:00"}}
    assert not truth(office, view(), now=monday_night, tz=HCM)


def test_scope_by_id_pattern_ward_and_area() -> None:
    r = parse_rule(
        {
            "id": "r",
            "name": "R",
            "scope": {"type": "Sensor", "id_pattern": "aq-0", "ward": ["20194", 20195]},
            "when": {"attr": "x", "above": 1},
        }
    )
    ev = Evaluator(r)
    assert ev.in_scope(view("urn:x:aq-01", wardCode="20194"))
    assert ev.in_scope(view("urn:x:aq-02", wardCode="20195"))
    assert not ev.in_scope(view("urn:x:tf-01", wardCode="20194"))
    assert not ev.in_scope(view("urn:x:aq-01", wardCode="1"))
    area = Evaluator(
        parse_rule(
            {
                "id": "a",
                "name": "A",
                "scope": {"type": "S", "area": SQUARE},
                "when": {"attr": "x", "above": 1},
            }
        )
    )
    assert area.in_scope(view(location={"type": "Point", "coordinates": [108.05, 16.05]}))
    assert not area.in_scope(view(location={"type": "Point", "coordinates": [109, 16]}))
    assert not area.in_scope(view())


def test_cross_entity_group_at_least_three_gauges_in_a_ward() -> None:
    r = rule(
        {"attr": "floodAlertLevel", "at_least": 2},
        group={"by": "wardCode", "at_least": 3},
    )
    ev = Evaluator(r)
    c = clock()
    trs = []
    for n in range(3):
        trs += ev.entity(view(f"urn:g:{n}", floodAlertLevel=2, wardCode="W1"), c)
    trs += ev.entity(view("urn:g:9", floodAlertLevel=3, wardCode="W2"), c)
    assert [(t.kind, t.key, t.members) for t in trs] == [
        ("raise", GROUP + "W1", ["urn:g:0", "urn:g:1", "urn:g:2"])
    ]
    # one gauge falls: fewer than three in the ward, the group clears
    trs = ev.entity(view("urn:g:1", floodAlertLevel=1, wardCode="W1"), c)
    assert [(t.kind, t.key) for t in trs] == [("clear", GROUP + "W1")]


def test_evaluator_timers_raise_when_the_duration_ends() -> None:
    r = rule({"attr": "x", "above": 1}, **{"for": "10m"})
    ev = Evaluator(r)
    v = view("urn:e:1", x=5)
    assert ev.entity(v, clock(0)) == []
    assert ev.next_due() == 600
    assert ev.timers(clock(599), lambda ids: {"urn:e:1": v}) == []
    trs = ev.timers(clock(600), lambda ids: {"urn:e:1": v})
    assert [(t.kind, t.key) for t in trs] == [("raise", "urn:e:1")]
    dirty = dict(ev.take_dirty())
    assert dirty["urn:e:1"] == {"active": True}


@pytest.mark.parametrize(
    ("doc", "field", "words"),
    [
        ({"when": {"attr": "pm25", "above": "high"}}, "when.above", "number"),
        (
            {"when": {"attr": "pm25", "above": 150, "clear_below": 160}},
            "when.clear_below",
            "hysteresis",
        ),
        ({"when": {"all": []}}, "when.all", "non-empty"),
        (
            {"when": {"any": [{"attr": "a", "above": 1}, {"bogus": 1}]}},
            "when.any[1]",
            "unknown condition",
        ),
        ({"when": {"attr": "a", "above": 1, "below": 2}}, "when", "exactly one"),
        ({"when": {"attr": "a", "above": 1, "colour": "red"}}, "when.colour", "unknown member"),
        ({"when": {"no_data": "soon"}}, "when.no_data", "duration"),
        ({"when": {"count": {"attr": "a", "above": 1}, "at_least": 2}}, "when.within", "required"),
        ({"when": {"inside": {"circle": 1}}}, "when.inside", "ward"),
        ({"when": {"near": {"point": [200, 16], "within_m": 5}}}, "when.near.point", ""),
        ({"when": {"schedule": {"days": ["funday"]}}}, "when.schedule.days", "funday"),
        ({"for": "forever"}, "for", "duration"),
        ({"alarm": {"severity": "huge"}}, "alarm.severity", "critical"),
        ({"notify": [{"type": "webhook"}]}, "notify[0]", "url"),
        ({"notify": [{"type": "pigeon"}]}, "notify[0].type", "webhook"),
        ({"escalation": [{"after": "x"}]}, "escalation[0].after", "duration"),
        ({"quiet_hours": {"from": "25:00", "to": "06:00"}}, "quiet_hours.from", "HH:MM"),
        ({"scope": {"id_pattern": "("}}, "scope.type", "required"),
        ({"scope": {"type": "S", "id_pattern": "("}}, "scope.id_pattern", "regular expression"),
        ({"cap": {"event": {"vi": "Lũ"}}}, "cap.event.en", "required"),
        ({"colour": "red"}, "colour", "unknown member"),
    ],
)
def test_validation_errors_name_the_rule_and_the_field(
    doc: dict[str, Any], field: str, words: str
) -> None:
    body = {"id": "flood-1", "name": "F", "scope": {"type": "S"}, "when": {"attr": "a", "above": 1}}
    body.update(doc)
    with pytest.raises(BadRequest) as err:
        parse_rule(body)
    assert err.value.extra == {"rule": "flood-1", "field": field}
    assert f"rule 'flood-1': field '{field}'" in err.value.detail
    assert words in err.value.detail


def test_rule_files_name_the_file_and_the_rule() -> None:
    good = "rules:\n  - {id: a, name: A, scope: {type: S}, when: {attr: x, above: 1}}\n"
    assert [r.id for r in read_rules(good)] == ["a"]
    with pytest.raises(BadRequest, match=r"city.yaml: rules\[1\]: rule 'a' is given twice"):
        read_rules(
            good + "  - {id: a, name: A, scope: {type: S}, when: {attr: x, above: 1}}\n",
            "city.yaml",
        )
    with pytest.raises(BadRequest, match=r"city.yaml: not valid YAML"):
        read_rules("rules: [", "city.yaml")
    with pytest.raises(BadRequest, match=r"city.yaml: rules\[0\]: rule 'b': field 'when'"):
        read_rules("- {id: b, name: B, scope: {type: S}, when: 3}", "city.yaml")


def test_compiled_conditions_agree_with_evaluate() -> None:
    from sencity.rules.conditions import compile_condition

    conds = [
        {"attr": "x", "above": 5, "clear_below": 3},
        {"attr": "x", "at_most": 5},
        {"all": [{"attr": "x", "at_least": 2}, {"not": {"attr": "y", "equals": "ok"}}]},
        {"any": [{"attr": "x", "below": 0}, {"attr": "x", "above": 8}]},
    ]
    values: list[Any] = [None, -1, 0, 2, 3, 4.5, 5, 8, 9.5, float("nan"), "7", True]
    for doc in conds:
        c = parse_condition("r", doc)
        fast = compile_condition(c)
        for active in (False, True):
            for x in values:
                for y in ("ok", "bad"):
                    v = view(x=x, y=y) if x is not None else view(y=y)
                    m = Machine(active=active)
                    assert fast(v, m, clock()) == evaluate(c, v, Machine(active=active), clock())
