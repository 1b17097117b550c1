"""The NGSI-LD query language (the ``q`` parameter, ETSI GS CIM 009 V1.8 clause 4.9).

:func:`parse` turns a query into a small AST (a hand-written recursive-descent parser,
no database needed); :func:`compile_q` turns the AST into a SQL boolean expression over
the ``attrs`` column of ``hub_entities`` for SQLite (JSON1) or PostgreSQL (JSONB).

Grammar (whitespace around tokens is tolerated)::

    query  = or
    or     = and *("|" and)                 ; AND (";") binds tighter than OR ("|")
    and    = term *(";" term)
    term   = "(" or ")" / "!" path / path [op value]
    path   = name *("." name) *("[" key "]")   ; after a "[", ".name" is a key too
    op     = "==" / "!=" / ">" / ">=" / "<" / "<=" / "~=" / "!~="
    value  = scalar / scalar ".." scalar / scalar 1*("," scalar)   ; lists and ranges
                                                                    ; only with == and !=
    scalar = number / quoted string / true / false / null / DateTime / Date / Time / URI

After ``~=`` and ``!~=`` comes a regular expression, quoted (only ``\\"`` is unescaped)
or, leniently, unquoted up to a ``;``, ``|`` or ``)`` outside parentheses.

Semantics of the compiled SQL:

* the default instance (``[0]``) of an attribute is used; its value is the first present
  of ``value`` (or ``value.@value``), ``object``, ``vocab``, ``json``, ``valueList``,
  ``objectList``, ``languageMap``;
* ``attr.sub`` is the sub-property ``sub`` (expanded) of ``attr``, or else the member
  ``sub`` of the compound value of ``attr``; ``observedAt``, ``createdAt``,
  ``modifiedAt``, ``unitCode`` and ``datasetId`` after a dot are members of the instance;
  ``attr[k1][k2]`` are raw keys inside the value;
* numbers compare numerically, strings (dates too) by code point, booleans and null by
  equality; a value of another type never matches (and never raises an SQL error);
* when the value is a JSON array, a term matches when any element matches;
* ``!=`` and ``!~=`` match when the target exists and ``==`` / ``~=`` does not match,
  so ``a!=1,2`` is "none of", and ``a!=1..5`` is "outside";
* ``~=`` applies to string values only: SQLite calls ``regexp(pattern, value)`` (a Python
  function the store registers), PostgreSQL uses ``~`` (POSIX ARE, close to Python ``re``
  for the common cases; the pattern is checked with Python ``re`` when parsed).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, TypeAlias

from sencity.errors import BadRequest

Scalar: TypeAlias = int | float | str | bool | None
"""A literal of a query: numbers, strings (dates, times and URIs too), booleans, null."""

METADATA = frozenset({"observedAt", "createdAt", "modifiedAt", "unitCode", "datasetId"})
"""Names that, after a dot, are members of the attribute instance, not sub-properties."""


# -- AST ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Path:
    """``attr.members...[keys]...``: ``attr`` and ``members`` are terms, ``keys`` raw keys."""

    attr: str
    members: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()

    def __str__(self) -> str:
        return ".".join((self.attr, *self.members)) + "".join(f"[{k}]" for k in self.keys)


@dataclass(frozen=True)
class Range:
    """``low..high``, both ends included; both numbers or both strings."""

    low: int | float | str
    high: int | float | str


@dataclass(frozen=True)
class Exists:
    """A bare path (the target exists) or ``!path`` (it does not)."""

    path: Path
    negated: bool = False


@dataclass(frozen=True)
class Compare:
    """``path op value``; a tuple value is a list (any of), only with ``==`` / ``!=``."""

    path: Path
    op: str
    value: Scalar | tuple[Scalar, ...] | Range


@dataclass(frozen=True)
class Match:
    """``path~=pattern`` or, negated, ``path!~=pattern``."""

    path: Path
    pattern: str
    negated: bool = False


@dataclass(frozen=True)
class And:
    terms: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    terms: tuple[Node, ...]


Node: TypeAlias = And | Or | Exists | Compare | Match


# -- parser ------------------------------------------------------------------------------
_NAME = re.compile(r"[^\W\d][\w\-:]*")
_KEY = re.compile(r'[^\[\]"\\]+')
_SCALARS: list[tuple[str, re.Pattern[str]]] = [
    (
        "str",
        re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?"),
    ),
    ("str", re.compile(r"\d{4}-\d{2}-\d{2}")),
    ("str", re.compile(r"\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?Z?")),
    ("num", re.compile(r"-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?")),
    ("kw", re.compile(r"(?:true|false|null)(?![\w:\-])")),
    ("str", re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:[^\s;|()\",]+")),  # an unquoted URI
]
_KEYWORDS: dict[str, Scalar] = {"true": True, "false": False, "null": None}
_OPERATORS = ("==", "!=", ">=", "<=", "!~=", "~=", ">", "<")
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


class _Parser:
    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0

    def fail(self, expected: str, at: int | None = None) -> NoReturn:
        pos = self.i if at is None else at
        found = repr(self.s[pos]) if pos < len(self.s) else "end of query"
        raise BadRequest(f"invalid q at position {pos + 1}: expected {expected}, found {found}")

    def peek(self) -> str:
        while self.i < len(self.s) and self.s[self.i].isspace():
            self.i += 1
        return self.s[self.i] if self.i < len(self.s) else ""

    def query(self) -> Node:
        node = self.disjunction()
        if self.peek():
            self.fail("';', '|' or the end of the query")
        return node

    def disjunction(self) -> Node:
        terms = [self.conjunction()]
        while self.peek() == "|":
            self.i += 1
            terms.append(self.conjunction())
        return terms[0] if len(terms) == 1 else Or(tuple(terms))

    def conjunction(self) -> Node:
        terms = [self.term()]
        while self.peek() == ";":
            self.i += 1
            terms.append(self.term())
        return terms[0] if len(terms) == 1 else And(tuple(terms))

    def term(self) -> Node:
        c = self.peek()
        if c == "(":
            opened = self.i
            self.i += 1
            node = self.disjunction()
            if self.peek() != ")":
                self.fail(f"')' to close the '(' at position {opened + 1}")
            self.i += 1
            return node
        if c == "!":
            self.i += 1
            self.peek()
            return Exists(self.path(), negated=True)
        path = self.path()
        c = self.peek()
        op = next((o for o in _OPERATORS if self.s.startswith(o, self.i)), None)
        if op is None:
            if c and c in "=!<>~":
                self.fail("an operator (==, !=, >, >=, <, <=, ~=, !~=)")
            return Exists(path)
        self.i += len(op)
        if op in ("~=", "!~="):
            return Match(path, self.pattern(op), negated=op == "!~=")
        start = self.i
        first = self.scalar(f"a value after '{op}'")
        more = self.peek() == "," or self.s.startswith("..", self.i)
        if more and op not in ("==", "!="):
            self.fail("';', '|' or ')' (lists and ranges need '==' or '!=')")
        if self.s.startswith("..", self.i):
            self.i += 2
            self.peek()
            hi_at = self.i
            high = self.scalar("a value after '..'")
            value: Scalar | tuple[Scalar, ...] | Range = self.range(first, high, start, hi_at)
        elif self.peek() == ",":
            items = [first]
            while self.peek() == ",":
                self.i += 1
                items.append(self.scalar("a value after ','"))
            value = tuple(items)
        else:
            value = first
        if op not in ("==", "!=") and (isinstance(value, bool) or value is None):
            self.fail(f"a number, a string, a date or a time after '{op}'", at=start)
        return Compare(path, op, value)

    def range(self, low: Scalar, high: Scalar, low_at: int, high_at: int) -> Range:
        def kind(v: Scalar) -> str:
            if isinstance(v, bool) or v is None:
                return "other"
            return "str" if isinstance(v, str) else "num"

        if kind(low) == "other":
            self.fail("a number, a string, a date or a time to start a range", at=low_at)
        if kind(high) != kind(low):
            self.fail("a range end of the same type as its start", at=high_at)
        assert low is not None and high is not None  # for mypy: kinds checked above
        return Range(low, high)

    def path(self) -> Path:
        m = _NAME.match(self.s, self.i)
        if not m:
            self.fail("an attribute name")
        attr, self.i = m.group(), m.end()
        members: list[str] = []
        keys: list[str] = []
        while self.i < len(self.s) and self.s[self.i] in ".[":
            if self.s[self.i] == ".":  # a sub-property, or a compound member after a "["
                m = _NAME.match(self.s, self.i + 1)
                if not m:
                    self.fail("a name after '.'", at=self.i + 1)
                (keys if keys else members).append(m.group())
                self.i = m.end()
                continue
            m = _KEY.match(self.s, self.i + 1)
            if not m:
                self.fail("a key inside '[ ]'", at=self.i + 1)
            if not self.s.startswith("]", m.end()):
                self.fail("']'", at=m.end())
            keys.append(m.group())
            self.i = m.end() + 1
        return Path(attr, tuple(members), tuple(keys))

    def scalar(self, expected: str) -> Scalar:
        if self.peek() == '"':
            return self.quoted(raw=False)
        for kind, pattern in _SCALARS:
            m = pattern.match(self.s, self.i)
            if m:
                self.i = m.end()
                text = m.group()
                if kind == "kw":
                    return _KEYWORDS[text]
                if kind == "num":
                    return _number(text)
                return text
        self.fail(expected)

    def quoted(self, raw: bool) -> str:
        s, i = self.s, self.i + 1
        out: list[str] = []
        while i < len(s):
            c = s[i]
            if c == '"':
                self.i = i + 1
                return "".join(out)
            if c == "\\" and i + 1 < len(s):
                n = s[i + 1]
                if raw:
                    out.append('"' if n == '"' else c + n)
                elif n == "u":
                    digits = s[i + 2 : i + 6]
                    if not re.fullmatch(r"[0-9A-Fa-f]{4}", digits):
                        self.fail("four hexadecimal digits after '\\u'", at=i + 2)
                    out.append(chr(int(digits, 16)))
                    i += 6
                    continue
                else:
                    out.append(_ESCAPES.get(n, n))
                i += 2
                continue
            out.append(c)
            i += 1
        self.fail(f"a closing '\"' for the string at position {self.i + 1}", at=len(s))

    def pattern(self, op: str) -> str:
        self.peek()
        start = self.i
        if self.s.startswith('"', start):
            text = self.quoted(raw=True)
        else:  # unquoted: up to a ";", "|" or ")" outside the pattern's own parentheses
            s, depth, end = self.s, 0, start
            while end < len(s) and not (depth == 0 and s[end] in ";|)"):
                if s[end] == "\\":
                    end += 1
                elif s[end] in "()":
                    depth += 1 if s[end] == "(" else -1
                end += 1
            text = s[start:end].rstrip()
            self.i = start + len(text)
        if not text:
            self.fail(f"a regular expression after '{op}'", at=start)
        try:
            re.compile(text)
        except re.error as exc:
            raise BadRequest(
                f"invalid q at position {start + 1}: invalid regular expression: {exc.msg}"
            ) from exc
        return text


def _number(text: str) -> int | float:
    if re.fullmatch(r"-?\d+", text):
        n = int(text)
        return n if -(2**63) <= n < 2**63 else float(n)
    return float(text)


def parse(q: str) -> Node:
    """The AST of query ``q``; a syntax error raises BadRequest naming the position."""
    return _Parser(q).query()


def attribute_names(node: Node) -> set[str]:
    """The (unexpanded) attribute names the query uses."""
    if isinstance(node, And | Or):
        return set().union(*(attribute_names(t) for t in node.terms))
    return {node.path.attr}


# -- SQL ---------------------------------------------------------------------------------
_Sql: TypeAlias = tuple[str, list[Any]]
_Step: TypeAlias = str | int

# where the value of an attribute (or sub-property) instance is, in order of preference
_VALUE_AT: tuple[tuple[str, ...], ...] = (
    ("value", "@value"),
    ("value",),
    ("object",),
    ("vocab",),
    ("json",),
    ("valueList",),
    ("objectList",),
    ("languageMap",),
)
# where members of a compound value may be (after "attr." or before "[key]")
_COMPOUND_AT: tuple[tuple[str, ...], ...] = (("value",), ("json",))
_KEYED_AT: tuple[tuple[str, ...], ...] = (*_COMPOUND_AT, ("languageMap",))
_SQL_OPS = {"==": "=", "!=": "=", ">": ">", ">=": ">=", "<": "<", "<=": "<="}


class _Compiler:
    def __init__(self, dialect: str, expand: Callable[[str], str], column: str) -> None:
        if dialect not in ("sqlite", "postgresql"):
            raise ValueError(f"unknown SQL dialect {dialect!r}")
        self.pg = dialect == "postgresql"
        self.expand = expand
        self.column = column

    def node(self, n: Node) -> _Sql:
        if isinstance(n, And | Or):
            parts = [self.node(t) for t in n.terms]
            glue = " AND " if isinstance(n, And) else " OR "
            return "(" + glue.join(p[0] for p in parts) + ")", [x for p in parts for x in p[1]]
        if isinstance(n, Exists):
            sql, params = self.target(n.path, instance=True)
            return f"({sql} IS {'' if n.negated else 'NOT '}NULL)", params
        if isinstance(n, Match):
            found = self.any_of(n.path, [self.regex(n.pattern)])
            return self.none_of(n.path, found) if n.negated else found
        if isinstance(n.value, Range):
            preds = [self.compare("BETWEEN", n.value.low, n.value.high)]
        elif isinstance(n.value, tuple):
            preds = [self.compare(_SQL_OPS[n.op], v) for v in n.value]
        else:
            preds = [self.compare(_SQL_OPS[n.op], n.value)]
        found = self.any_of(n.path, preds)
        return self.none_of(n.path, found) if n.op == "!=" else found

    # -- where the target is ------------------------------------------------------------
    def locate(self, steps: Sequence[_Step]) -> _Sql:
        """The JSON (SQLite: JSON text, PostgreSQL: jsonb) at ``steps`` below the column."""
        if self.pg:
            return f"({self.column} #> ?::text[])", [[str(s) for s in steps]]
        path = "$"
        for s in steps:
            if isinstance(s, int):
                path += f"[{s}]"
            elif '"' in s or "\\" in s:
                raise BadRequest(f"invalid q: cannot query the name {s!r}")
            else:
                path += f'."{s}"'
        return f"({self.column} -> ?)", [path]

    def alternatives(
        self, node: list[_Step], members: Sequence[str], keys: Sequence[str]
    ) -> list[list[_Step]]:
        """Where ``node.members[keys]`` may be: sub-properties first, then compound members."""
        if not members:
            return [[*node, *at, *keys] for at in (_KEYED_AT if keys else _VALUE_AT)]
        first, rest = members[0], list(members[1:])
        if first in METADATA:
            return [[*node, first, *rest, *keys]]
        found = self.alternatives([*node, self.expand(first)], rest, keys)
        return found + [[*node, *at, first, *rest, *keys] for at in _COMPOUND_AT]

    def target(self, path: Path, instance: bool = False) -> _Sql:
        base: list[_Step] = [self.expand(path.attr), 0]
        if instance and not path.members and not path.keys:
            return self.locate(base)
        alts = [self.locate(a) for a in self.alternatives(base, path.members, path.keys)]
        if len(alts) == 1:  # SQLite wants at least two arguments to COALESCE
            return alts[0]
        return "COALESCE(" + ", ".join(a[0] for a in alts) + ")", [x for a in alts for x in a[1]]

    # -- matching -------------------------------------------------------------------------
    def any_of(self, path: Path, preds: list[_Sql]) -> _Sql:
        """The target, or any element of it when it is an array, matches one of ``preds``."""
        value, params = self.target(path)
        cond = " OR ".join(p[0] for p in preds)
        params = params + [x for p in preds for x in p[1]]
        if self.pg:
            return (
                f"EXISTS (SELECT 1 FROM (SELECT {value} AS v) AS qs CROSS JOIN LATERAL "
                "jsonb_array_elements(CASE WHEN jsonb_typeof(qs.v) = 'array' THEN qs.v "
                "ELSE jsonb_build_array(qs.v) END) AS qv(x) "
                f"WHERE qs.v IS NOT NULL AND ({cond}))",
                params,
            )
        general = (
            f"EXISTS (SELECT 1 FROM json_each({value}) AS qv "
            f"WHERE (qv.key IS NULL OR typeof(qv.key) = 'integer') AND ({cond}))"
        )
        if path.members or path.keys:
            return general, params
        # fast path for the common case, a Property with a scalar value: one look-up, no
        # json_each; anything else (arrays, objects, relationships…) falls through
        at = self.locate([self.expand(path.attr), 0, "value"])[1][0]
        fast = (
            "(SELECT CASE WHEN qv.type IN ('integer', 'real', 'text', 'true', 'false', 'null') "
            f"THEN ({cond}) END FROM (SELECT json_type({self.column}, ?) AS type, "
            f"json_extract({self.column}, ?) AS value) AS qv)"
        )
        cond_params = [x for p in preds for x in p[1]]
        return f"COALESCE({fast}, {general})", [*cond_params, at, at, *params]

    def none_of(self, path: Path, found: _Sql) -> _Sql:
        value, params = self.target(path)
        return f"({value} IS NOT NULL AND NOT {found[0]})", params + found[1]

    def compare(self, op: str, value: Scalar, high: Scalar = None) -> _Sql:
        """A condition on one element ``qv`` compared with ``value`` (``BETWEEN`` with
        ``high``); only values of the same JSON type can match."""
        rhs = "? AND ?" if op == "BETWEEN" else "?"
        params = [value, high] if op == "BETWEEN" else [value]
        if value is None:
            return ("jsonb_typeof(qv.x) = 'null'" if self.pg else "qv.type = 'null'"), []
        if isinstance(value, bool):
            lit = "true" if value else "false"
            return (f"qv.x = '{lit}'::jsonb" if self.pg else f"qv.type = '{lit}'"), []
        if isinstance(value, str):
            if self.pg:
                rhs = rhs.replace("?", "?::text")
                return _pg_case("string", f"""(qv.x #>> '{{}}') COLLATE "C" {op} {rhs}"""), params
            return f"(qv.type = 'text' AND qv.value {op} {rhs})", params
        if self.pg:
            rhs = rhs.replace("?", "?::numeric")
            return _pg_case("number", f"(qv.x)::numeric {op} {rhs}"), params
        return f"(qv.type IN ('integer', 'real') AND qv.value {op} {rhs})", params

    def regex(self, pattern: str) -> _Sql:
        if self.pg:
            return _pg_case("string", "(qv.x #>> '{}') ~ ?::text"), [pattern]
        return "(qv.type = 'text' AND regexp(?, qv.value))", [pattern]


def _pg_case(json_type: str, condition: str) -> str:
    # CASE, not AND: PostgreSQL may evaluate AND operands in any order, and the cast of a
    # jsonb of another type would raise an error
    return f"CASE WHEN jsonb_typeof(qv.x) = '{json_type}' THEN {condition} ELSE false END"


def compile_q(
    node: Node, dialect: str, expand: Callable[[str], str], column: str = "e.attrs"
) -> tuple[str, list[Any]]:
    """A SQL boolean expression for ``node`` (``?`` placeholders) and its parameters.

    ``dialect`` is "sqlite" or "postgresql"; ``expand`` maps an attribute or sub-property
    term to its IRI; ``column`` holds the ``{IRI: [instance, ...]}`` object.
    """
    return _Compiler(dialect, expand, column).node(node)
