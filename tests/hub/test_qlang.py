"""The NGSI-LD query language (sencity.hub.qlang): the parser, and the SQL it compiles to
run on real SQLite and PostgreSQL databases."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from sencity.errors import BadRequest
from sencity.hub import schema
from sencity.hub.qlang import (
    And,
    Compare,
    Exists,
    Match,
    Or,
    Path,
    Range,
    attribute_names,
    compile_q,
    parse,
)
from sencity.store import Store
from sencity.store.sqlite import SQLiteStore

BASE = "https://example.org/"


def expand(term: str) -> str:
    return BASE + term


# -- parser ------------------------------------------------------------------------------
def cmp(attr: str, op: str, value: Any) -> Compare:
    return Compare(Path(attr), op, value)


@pytest.mark.parametrize(
    ("q", "ast"),
    [
        ("a==1", cmp("a", "==", 1)),
        ("a!=1.5", cmp("a", "!=", 1.5)),
        ("a>-2", cmp("a", ">", -2)),
        ("a>=1e3", cmp("a", ">=", 1000.0)),
        ("a<0.5", cmp("a", "<", 0.5)),
        ("a<=10", cmp("a", "<=", 10)),
        ('a=="x y"', cmp("a", "==", "x y")),
        (r'a=="say \"hi\" \\ \u00e9\n"', cmp("a", "==", 'say "hi" \\ é\n')),
        ("a==true", cmp("a", "==", True)),
        ("a==false", cmp("a", "==", False)),
        ("a==null", cmp("a", "==", None)),
        ("a==2020-01-01T00:00:00Z", cmp("a", "==", "2020-01-01T00:00:00Z")),
        ("a>2020-01-01T00:00:00.5+07:00", cmp("a", ">", "2020-01-01T00:00:00.5+07:00")),
        ("a<2020-01-31", cmp("a", "<", "2020-01-31")),
        ("a>=12:30:00Z", cmp("a", ">=", "12:30:00Z")),
        ("ref==urn:ngsi-ld:Device:1", cmp("ref", "==", "urn:ngsi-ld:Device:1")),
        ("ref==https://x.org/a?b=1", cmp("ref", "==", "https://x.org/a?b=1")),
        ("a==1,2,3", cmp("a", "==", (1, 2, 3))),
        ('a!="x","y"', cmp("a", "!=", ("x", "y"))),
        ("ref==urn:a:1,urn:a:2", cmp("ref", "==", ("urn:a:1", "urn:a:2"))),
        ("a==1..5", cmp("a", "==", Range(1, 5))),
        ("a!=-1.5..2", cmp("a", "!=", Range(-1.5, 2))),
        ('a=="a".."m"', cmp("a", "==", Range("a", "m"))),
        ("a==2020-01-01..2020-12-31", cmp("a", "==", Range("2020-01-01", "2020-12-31"))),
        ('a~="^x\\d+"', Match(Path("a"), "^x\\d+")),
        ('a~="say \\"hi\\""', Match(Path("a"), 'say "hi"')),
        ('a!~="x"', Match(Path("a"), "x", negated=True)),
        ("a~=(?i)^ab(c|d)", Match(Path("a"), "(?i)^ab(c|d)")),
        ("a", Exists(Path("a"))),
        ("!a", Exists(Path("a"), negated=True)),
        ("a.b", Exists(Path("a", ("b",)))),
        ("a.b.c==1", Compare(Path("a", ("b", "c")), "==", 1)),
        ("a[k]==1", Compare(Path("a", (), ("k",)), "==", 1)),
        ("a[k1][k2]", Exists(Path("a", (), ("k1", "k2")))),
        ("a.b[k]==1", Compare(Path("a", ("b",), ("k",)), "==", 1)),
        ("a[k].b==1", Compare(Path("a", (), ("k", "b")), "==", 1)),
        ("a.observedAt>2020-01-01", Compare(Path("a", ("observedAt",)), ">", "2020-01-01")),
        ("schema:name", Exists(Path("schema:name"))),
        (" a == 1 ", cmp("a", "==", 1)),
    ],
)
def test_parse_terms(q: str, ast: Any) -> None:
    assert parse(q) == ast


def test_parse_precedence_and_parentheses() -> None:
    a, b, c, d = (Exists(Path(n)) for n in "abcd")
    assert parse("a;b") == And((a, b))
    assert parse("a|b") == Or((a, b))
    assert parse("a;b|c;d") == Or((And((a, b)), And((c, d))))
    assert parse("a|b;c|d") == Or((a, And((b, c)), d))
    assert parse("(a|b);c") == And((Or((a, b)), c))
    assert parse("a;(b|(c;d))") == And((a, Or((b, And((c, d))))))
    assert parse("((a))") == a
    assert parse(" ( a | b ) ; !c ") == And((Or((a, b)), Exists(Path("c"), negated=True)))
    assert parse('x>1;y=="a;b|c"') == And((cmp("x", ">", 1), cmp("y", "==", "a;b|c")))


def test_attribute_names() -> None:
    node = parse('(a.b>1|c[k]=="x");!d;e~="y";a==2')
    assert attribute_names(node) == {"a", "c", "d", "e"}
    assert attribute_names(parse("x")) == {"x"}


@pytest.mark.parametrize(
    ("q", "position", "expected"),
    [
        ("", 1, "an attribute name"),
        ("t>>5", 3, "a value after '>'"),
        ("(t==1", 6, "')' to close the '(' at position 1"),
        ("t==1)", 5, "';', '|' or the end"),
        ("a=5", 2, "an operator"),
        ("a==", 4, "a value after '=='"),
        ("temperature==", 14, "a value after '=='"),
        ("a==foo", 4, "a value after '=='"),
        ("a==1,", 6, "a value after ','"),
        ("a==1..", 7, "a value after '..'"),
        ('a==1.."z"', 7, "a range end of the same type"),
        ("a==true..false", 4, "a number, a string, a date or a time to start a range"),
        ("a>1,2", 4, "lists and ranges need '==' or '!='"),
        ("a>true", 3, "a number, a string, a date or a time after '>'"),
        ('a=="x', 6, "a closing '\"' for the string at position 4"),
        (r'a=="\u12"', 7, "four hexadecimal digits"),
        ("a[k", 4, "']'"),
        ("a[]", 3, "a key inside '[ ]'"),
        ("a.", 3, "a name after '.'"),
        ("a;", 3, "an attribute name"),
        ("a;;b", 3, "an attribute name"),
        ("a|", 3, "an attribute name"),
        ("a b", 3, "';', '|' or the end"),
        ("1a", 1, "an attribute name"),
        ("a==1abc", 5, "';', '|' or the end"),
        ("a~=", 4, "a regular expression after '~='"),
        ('a~="("', 4, "invalid regular expression"),
        ("!", 2, "an attribute name"),
        ("()", 2, "an attribute name"),
    ],
)
def test_parse_errors_name_the_position(q: str, position: int, expected: str) -> None:
    with pytest.raises(BadRequest) as info:
        parse(q)
    detail = info.value.detail
    assert detail.startswith(f"invalid q at position {position}: "), detail
    assert expected in detail


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
@pytest.mark.parametrize(
    "q",
    [
        'a>1;b.c[k]=="x"|!d',
        "a==1,2,true,null",
        'a!=1..5;a.observedAt<2020-01-01;b!~="%?"',
        'a~="100%?"',
    ],
)
def test_compiled_sql_uses_placeholders_only(dialect: str, q: str) -> None:
    sql, params = compile_q(parse(q), dialect, expand)
    assert sql.count("?") == len(params)
    assert "%" not in sql
    assert "example.org" not in sql  # names are parameters too


def test_unknown_dialect() -> None:
    with pytest.raises(ValueError, match="dialect"):
        compile_q(parse("a"), "oracle", expand)


# -- on real databases -------------------------------------------------------------------
def prop(value: Any, **extra: Any) -> list[dict[str, Any]]:
    return [{"type": "Property", "value": value, **extra}]


def sub(value: Any, **extra: Any) -> dict[str, Any]:
    return {"type": "Property", "value": value, **extra}


def rel(obj: str) -> list[dict[str, Any]]:
    return [{"type": "Relationship", "object": obj}]


ENTITIES: dict[str, dict[str, list[dict[str, Any]]]] = {
    "E1": {
        "temperature": prop(
            21.5,
            unitCode="CEL",
            observedAt="2024-01-01T10:00:00Z",
            **{BASE + "accuracy": sub(0.1, **{BASE + "method": sub("calib")})},
        ),
        "name": prop("Alpha"),
        "active": prop(True),
        "refDevice": rel("urn:ngsi-ld:Device:1"),
        "address": prop({"city": "Da Nang", "zip": "550000", "geo": {"lat": 16}}),
        "tags": prop(["red", "blue"]),
        "counts": prop([1, 2, 3]),
        "when": prop("2024-03-01T00:00:00Z"),
    },
    "E2": {
        "temperature": prop(30, observedAt="2024-06-01T10:00:00Z", **{BASE + "accuracy": sub(0.5)}),
        "name": prop("Beta"),
        "active": prop(False),
        "refDevice": rel("urn:ngsi-ld:Device:2"),
        "address": prop({"city": "Hanoi"}),
        "tags": prop(["green"]),
        "when": prop({"@type": "DateTime", "@value": "2023-05-01T00:00:00Z"}),
        "motto": prop("100% sure?"),
    },
    "E3": {
        "temperature": prop("hot"),
        "name": prop("alpha2"),
        "address": prop("somewhere"),
    },
    "E4": {
        "name": prop("Gamma"),
        "label": [{"type": "LanguageProperty", "languageMap": {"en": "Street", "vi": "Đường"}}],
        "category": [{"type": "VocabProperty", "vocab": "Park"}],
        "note": prop(None),
        "active": prop(1),
    },
    "E5": {
        "temperature": [
            {"type": "Property", "value": 15},
            {"type": "Property", "value": 99, "datasetId": "urn:ngsi-ld:Dataset:2"},
        ],
        "name": prop("Delta"),
        "config": [{"type": "JsonProperty", "json": {"mode": "auto", "level": 3}}],
        "note": prop("x"),
        "motto": prop('say "hi"'),
        "refs": [{"type": "ListRelationship", "objectList": ["urn:a:1", "urn:a:2"]}],
    },
}


@pytest.fixture
def hub(store: Store) -> Store:
    store.migrate(schema.MIGRATIONS)
    if isinstance(store, SQLiteStore):
        store._conn().create_function(
            "regexp",
            2,
            lambda p, v: 1 if v is not None and re.search(p, str(v)) else 0,
            deterministic=True,
        )
    cast = "::jsonb" if store.dialect == "postgresql" else ""
    rows = [
        (
            "t",
            f"urn:ngsi-ld:Thing:{name}",
            json.dumps([BASE + "Thing"]),
            json.dumps({BASE + attr: inst for attr, inst in attrs.items()}),
            "2024-01-01T00:00:00Z",
            "2024-01-01T00:00:00Z",
        )
        for name, attrs in ENTITIES.items()
    ]
    with store.transaction() as tx:
        tx.executemany(
            "INSERT INTO hub_entities (tenant, id, types, attrs, created_at, modified_at) "
            f"VALUES (?, ?, ?{cast}, ?{cast}, ?, ?)",
            rows,
        )
    return store


def matching(store: Store, q: str) -> list[str]:
    where, params = compile_q(parse(q), store.dialect, expand)
    with store.transaction(write=False) as tx:
        rows = tx.execute(
            f"SELECT id FROM hub_entities e WHERE e.tenant = ? AND {where} ORDER BY id",
            ["t", *params],
        )
    return [r["id"].rsplit(":", 1)[-1] for r in rows]


QUERIES: list[tuple[str, str]] = [
    # numbers (E3's string and E4's missing temperature never match)
    ("temperature>20", "E1 E2"),
    ("temperature>=30", "E2"),
    ("temperature<21.5", "E5"),
    ("temperature<=21.5", "E1 E5"),
    ("temperature==30", "E2"),
    ("temperature==30.0", "E2"),
    ("temperature!=30", "E1 E3 E5"),
    ("temperature==15,30", "E2 E5"),
    ("temperature!=15,30", "E1 E3"),
    ("temperature==20..30", "E1 E2"),
    ("temperature!=20..30", "E3 E5"),
    ("temperature>50", ""),  # only the default instance counts
    # strings
    ('temperature=="hot"', "E3"),
    ('temperature>"a"', "E3"),
    ('name=="Alpha"', "E1"),
    ('name!="Alpha"', "E2 E3 E4 E5"),
    ('name=="Beta","Gamma"', "E2 E4"),
    ('name=="B".."D"', "E2"),  # code-point order: "Delta" > "D"
    ('name>"a"', "E3"),  # lower case sorts after upper case
    ('motto=="say \\"hi\\""', "E5"),
    ('motto=="100% sure?"', "E2"),
    # patterns
    ('name~="^[Aa]lpha"', "E1 E3"),
    ('name~="(?i)^ALPHA"', "E1 E3"),
    ('name!~="^[Aa]lpha"', "E2 E4 E5"),
    ("name~=a$", "E1 E2 E4 E5"),
    ('motto~="100%"', "E2"),
    ('temperature~="h.t"', "E3"),  # numbers are not matched by patterns
    ('tags~="^bl"', "E1"),
    # booleans and null
    ("active==true", "E1"),
    ("active==false", "E2"),
    ("active!=true", "E2 E4"),
    ("active==1", "E4"),  # 1 is not true
    ("note==null", "E4"),
    ("note!=null", "E5"),
    # dates
    ("temperature.observedAt>=2024-03-01T00:00:00Z", "E2"),
    ("temperature.observedAt==2024-01-01T00:00:00Z..2024-12-31T23:59:59Z", "E1 E2"),
    ("when==2024-01-01T00:00:00Z..2024-12-31T23:59:59Z", "E1"),
    ("when<2024-01-01", "E2"),  # a {"@type": "DateTime", "@value": ...} value
    # relationships
    ("refDevice==urn:ngsi-ld:Device:1", "E1"),
    ("refDevice==urn:ngsi-ld:Device:1,urn:ngsi-ld:Device:2", "E1 E2"),
    ("refDevice!=urn:ngsi-ld:Device:1", "E2"),
    ('refDevice=="urn:ngsi-ld:Device:2"', "E2"),
    ("refs==urn:a:2", "E5"),
    # arrays: any element
    ('tags=="red"', "E1"),
    ('tags!="red"', "E2"),
    ("counts==2", "E1"),
    ("counts>2", "E1"),
    ("counts>3", ""),
    ("tags>1", ""),
    # members: unitCode, sub-properties, compound values
    ('temperature.unitCode=="CEL"', "E1"),
    ("temperature.accuracy>0.2", "E2"),
    ("temperature.accuracy", "E1 E2"),
    ('temperature.accuracy.method=="calib"', "E1"),
    ('address[city]=="Hanoi"', "E2"),
    ('address.city=="Da Nang"', "E1"),
    ("address[geo][lat]==16", "E1"),
    ("address.geo[lat]>=16", "E1"),
    ("address[geo].lat==16", "E1"),
    ("address[city]", "E1 E2"),
    ("!address[zip]", "E2 E3 E4 E5"),
    ('label[vi]=="Đường"', "E4"),
    ('category=="Park"', "E4"),
    ('config[mode]=="auto"', "E5"),
    ("config.level==3", "E5"),
    # existence
    ("temperature", "E1 E2 E3 E5"),
    ("!temperature", "E4"),
    ("nothing", ""),
    ("!nothing", "E1 E2 E3 E4 E5"),
    # type mismatches match nothing and raise nothing
    ("name>5", ""),
    ("address>5", ""),
    ('address=="Da Nang"', ""),
    ("config==3", ""),
    ("label>1", ""),
    # logic
    ('temperature>20;name=="Beta"', "E2"),
    ('temperature<20|name=="Gamma"', "E4 E5"),
    ('(temperature<20|name=="Gamma");!temperature', "E4"),
    ('temperature<20|name=="Gamma";!temperature', "E4 E5"),
    ('temperature<20|(name=="Gamma";temperature)', "E5"),
    (' temperature > 20 ; name == "Beta" ', "E2"),
    ("active==true|active==false|note", "E1 E2 E4 E5"),
]


@pytest.mark.parametrize(("q", "expected"), QUERIES, ids=[q for q, _ in QUERIES])
def test_query_on_database(hub: Store, q: str, expected: str) -> None:
    assert matching(hub, q) == expected.split()
