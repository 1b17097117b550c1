"""Bulk writes (``Tx.executemany``) on both backends: PostgreSQL sends a plain
``INSERT … VALUES (?, …)`` as COPY; the rows, NULLs, text with COPY's special
characters, JSON and errors must come out exactly as with one statement per row."""

from __future__ import annotations

import json

import pytest

from sencity.store.base import Store
from sencity.store.postgres import _copy_of


def test_which_inserts_go_as_copy() -> None:
    assert (
        _copy_of("INSERT INTO hub_history (sid, ts, val) VALUES (?, ?, ?)")
        == "COPY hub_history (sid, ts, val) FROM STDIN"
    )
    assert (
        _copy_of("INSERT INTO t (a, b) VALUES (?, CAST(? AS jsonb))") == "COPY t (a, b) FROM STDIN"
    )
    for sql in (
        "INSERT INTO t (a) VALUES (?) ON CONFLICT DO NOTHING",
        "INSERT INTO t (a) VALUES (?) RETURNING a",
        "INSERT INTO t (a, b) VALUES (?, ST_GeomFromGeoJSON(?))",
        "INSERT INTO t (a, b) VALUES (?, 1)",
        "INSERT INTO t (a, b) VALUES (?)",
        "INSERT INTO t (a) SELECT ? FROM u WHERE id = ?",
        "UPDATE t SET a = ? WHERE b = ?",
    ):
        assert _copy_of(sql) is None, sql


def _table(store: Store) -> None:
    with store.transaction() as tx:
        tx.execute(
            "CREATE TABLE bulk_t (k INTEGER PRIMARY KEY, n DOUBLE PRECISION, s TEXT, j TEXT)"
        )


TRICKY = ["plain", "tab\there", "new\nline", "back\\slash", "\\N", "", "Đà Nẵng ☂", "a,b;c"]


def test_many_rows_come_back_as_written(store: Store) -> None:
    _table(store)
    rows = [
        (i, None if i % 3 == 0 else i / 7, TRICKY[i % len(TRICKY)], json.dumps({"i": i}))
        for i in range(2_500)
    ]
    with store.transaction() as tx:
        tx.executemany("INSERT INTO bulk_t (k, n, s, j) VALUES (?, ?, ?, ?)", rows)
    with store.transaction(write=False) as tx:
        got = tx.tuples("SELECT k, n, s, j FROM bulk_t ORDER BY k")
    assert [tuple(r) for r in got] == rows


def test_a_failing_bulk_insert_writes_nothing(store: Store) -> None:
    _table(store)
    rows = [(1, 1.0, "a", None), (2, 2.0, "b", None), (1, 3.0, "dup", None)]
    # each driver raises its own error type
    with pytest.raises(Exception) as exc, store.transaction() as tx:
        tx.execute("INSERT INTO bulk_t (k, n, s, j) VALUES (?, ?, ?, ?)", (9, 9.0, "x", None))
        tx.executemany("INSERT INTO bulk_t (k, n, s, j) VALUES (?, ?, ?, ?)", rows)
    assert "unique" in str(exc.value).lower() or "duplicate" in str(exc.value).lower()
    with store.transaction(write=False) as tx:
        assert tx.tuples("SELECT k FROM bulk_t") == []
