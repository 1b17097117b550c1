"""The PostgreSQL (and PostGIS) backend, over a psycopg 3 connection pool."""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Iterator, Sequence
from typing import Any

from sencity.errors import StoreUnavailable
from sencity.store.base import Row, Store, Tx
from sencity.store.factory import redact_url

try:
    import psycopg
    from psycopg.conninfo import conninfo_to_dict
    from psycopg.rows import dict_row, tuple_row
    from psycopg_pool import ConnectionPool, PoolTimeout
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise StoreUnavailable(
        "the PostgreSQL store needs the 'postgres' extra: pip install 'sencity[postgres]'"
    ) from exc


def to_pg(sql: str) -> str:
    """Rewrite ``?`` placeholders for psycopg (``%`` is escaped first)."""
    return sql.replace("%", "%%").replace("?", "%s")


class _PgTx(Tx):
    def __init__(self, conn: psycopg.Connection[Row]) -> None:
        self.conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        if params:
            cur = self.conn.execute(to_pg(sql), tuple(params))
        else:
            cur = self.conn.execute(sql.encode())
        if cur.description is None:
            return []
        return list(cur.fetchall())

    def tuples(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self.conn.cursor(row_factory=tuple_row) as cur:
            cur.execute(to_pg(sql), tuple(params))
            return cur.fetchall() if cur.description is not None else []

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        copy = _copy_of(sql) if len(rows) > 1 else None
        with self.conn.cursor() as cur:
            if copy is None:
                cur.executemany(to_pg(sql), rows)
                return
            # a plain INSERT … VALUES (?, …) goes as COPY: four times faster than the
            # pipelined statements for history rows (the same values, in text form)
            with cur.copy(copy) as cp:
                for row in rows:
                    cp.write_row(row)


_INSERT = re.compile(
    r"\s*INSERT\s+INTO\s+(\w+)\s*\(([\w\s,]+)\)\s*VALUES\s*\((.*)\)\s*", re.I | re.S
)
_PLAIN = re.compile(r"\?|CAST\(\s*\?\s+AS\s+jsonb\s*\)", re.I)


@functools.lru_cache(maxsize=256)  # a few statements, seen at every batch
def _copy_of(sql: str) -> str | None:
    """``COPY t (a, b) FROM STDIN`` for ``INSERT INTO t (a, b) VALUES (?, ?)`` whose
    values are all bare placeholders (or jsonb casts, which COPY's text input does);
    None for anything else (expressions, ``ON CONFLICT``, ``RETURNING``, ``SELECT``)."""
    m = _INSERT.fullmatch(sql)
    if m is None:
        return None
    cols = [c.strip() for c in m.group(2).split(",")]
    vals = [v.strip() for v in m.group(3).split(",")]
    if len(cols) != len(vals) or not all(_PLAIN.fullmatch(v) for v in vals):
        return None
    return f"COPY {m.group(1)} ({', '.join(cols)}) FROM STDIN"


class PostgresStore(Store):
    dialect = "postgresql"

    def __init__(self, url: str, *, pool_size: int = 10, connect_timeout: float = 5.0) -> None:
        super().__init__(url)
        try:  # one direct attempt first: its error says why (refused, no such database…)
            psycopg.connect(url, connect_timeout=max(1, int(connect_timeout))).close()
        except psycopg.OperationalError as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else "no answer"
            reason = (reason.split(": ")[-1] if "failed:" in reason else reason).strip()
            raise StoreUnavailable(
                f"PostgreSQL store {redact_url(url)} is unreachable: {reason}"
            ) from exc
        # the API runs many short queries: JIT compilation and parallel workers cost more
        # (tens of ms) than they save; a session can still SET them for long analyses
        options = " ".join(
            filter(
                None,
                [
                    str(conninfo_to_dict(url).get("options") or ""),
                    "-c jit=off -c max_parallel_workers_per_gather=0",
                ],
            )
        )
        self.pool: ConnectionPool[psycopg.Connection[Row]] = ConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            # prepare_threshold=None: no server-side prepared statements, whose generic
            # plans (made while a table was small) can stick to sequential scans
            kwargs={
                "row_factory": dict_row,
                "connect_timeout": max(1, int(connect_timeout)),
                "prepare_threshold": None,
                "options": options,
                # a lone read needs no BEGIN/COMMIT; transaction() still opens one
                "autocommit": True,
            },
            timeout=connect_timeout,
            open=False,
            name="sencity",
        )
        try:
            self.pool.open(wait=True, timeout=connect_timeout)
        except PoolTimeout as exc:
            self.pool.close()
            raise StoreUnavailable(
                f"PostgreSQL store {redact_url(url)} is unreachable "
                f"(no connection within {connect_timeout:g} s)"
            ) from exc

    @contextlib.contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Row]]:
        try:
            cm = self.pool.connection()
            conn = cm.__enter__()
        except PoolTimeout as exc:
            raise StoreUnavailable(f"PostgreSQL store {redact_url(self.url)}: {exc}") from exc
        try:
            yield conn
        except BaseException as exc:
            cm.__exit__(type(exc), exc, exc.__traceback__)
            if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError) and not (
                isinstance(exc, psycopg.errors.QueryCanceled)
            ):
                # the connection broke (server restarted, network cut): 503, not 500
                raise StoreUnavailable(
                    f"PostgreSQL store {redact_url(self.url)}: {str(exc).strip()[:300]}"
                ) from exc
            raise
        cm.__exit__(None, None, None)

    @contextlib.contextmanager
    def transaction(self, write: bool = True) -> Iterator[Tx]:
        with self._connection() as conn, conn.transaction():
            yield _PgTx(conn)

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """One statement on its own: one round trip instead of three."""
        with self._connection() as conn:
            return _PgTx(conn).execute(sql, params)

    def _is_unique_violation(self, exc: BaseException) -> bool:
        return isinstance(exc, psycopg.errors.UniqueViolation)

    def is_race(self, exc: BaseException) -> bool:
        return isinstance(
            exc,
            psycopg.errors.UniqueViolation
            | psycopg.errors.DeadlockDetected
            | psycopg.errors.SerializationFailure,
        )

    def close(self) -> None:
        self.pool.close()
