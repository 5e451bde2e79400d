"""Batched inserts sent as SQL text and tuples: the ledger writer's hot path without compiling.

`conn.execute(insert, [dict, ...])` compiles-or-fetches the statement and builds every
row's parameters through SQLAlchemy's execution context each time; for the writer's small
batches (a few dozen rows) that was most of its time, on the same GIL as the user's run.
`BulkInsert` does that work once per statement: its SQL text, its parameter order and each
column's bind processor (the same `UTCDateTime`, `Money`, `JSON` and `Boolean` processing
`execute` applies), then hands the rows to one DBAPI `executemany`: through
`exec_driver_sql` for a positional-parameter dialect (SQLite's `qmark`), on the driver's
cursor for a named one (psycopg's `pyformat`); any other keeps `execute`.

A JSON column's text is made once per value object in a batch: rows sharing one dict (the
events of a run share their tag dict) share its JSON.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import Any

from sqlalchemy import JSON, Table
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.exc import DBAPIError, StatementError

from agent_finops._foreground import step_aside

__all__ = ["ASIDE_EVERY", "ROWS_PER_STATEMENT", "BulkInsert", "Processors", "bind_rows"]

ROWS_PER_STATEMENT = 64
"""Rows in one multi-row insert at most (`BulkInsert.send` on SQLite)."""
ASIDE_EVERY = 64
"""Rows bound between two looks at the budget calls in flight (about 0.5 ms of work)."""


Processors = list[tuple[int, Callable[[Any], Any], bool]]
"""(position, bind processor, whether the column holds JSON) for each column that has one."""


def bind_rows(
    rows: Sequence[dict[str, Any]],
    values: Callable[[dict[str, Any]], Sequence[Any]],
    processors: Processors,
    sql: str,
    *,
    numbered: bool = False,
    aside: bool = False,
) -> list[tuple[Any, ...]]:
    """Each row's `values` as a tuple, bound by `processors` as `execute` would bind them.

    A JSON value object shared by several rows (the events of a run share their tag dict)
    is bound once. `numbered` appends each row's position in `rows`. `aside`: the caller
    holds no database lock, so the work steps aside for budget calls in flight
    (`agent_finops._foreground`) every `ASIDE_EVERY` rows.
    """
    params = []
    made: dict[int, Any] = {}  # id(value) -> (value, its bound form), for shared values
    for position, row in enumerate(rows):
        if aside and not position % ASIDE_EVERY:
            step_aside()
        one = list(values(row))
        try:
            for i, process, shared in processors:
                value = one[i]
                if value is None:
                    continue
                if not shared:
                    one[i] = process(value)
                    continue
                done = made.get(id(value))
                if done is None or done[0] is not value:
                    done = made[id(value)] = (value, process(value))
                one[i] = done[1]
        except Exception as exc:  # as `execute` reports a value it cannot bind
            raise StatementError(str(exc), sql, row, exc) from exc
        if numbered:
            one.append(position)
        params.append(tuple(one))
    return params


class BulkInsert:
    """One insert (or upsert) statement, compiled once for one dialect."""

    def __init__(self, statement: Any, table: Table, dialect: Dialect) -> None:
        """Compile `statement` (an insert into `table`) for `dialect`."""
        compiled = statement.compile(dialect=dialect)
        names: Sequence[str] | None = compiled.positiontup
        self.positional = dialect.paramstyle == "qmark" and bool(names)
        self.statement = statement
        self.sql = str(compiled)
        self.names: tuple[str, ...] = tuple(names or ())
        # For multi-row inserts (`send`): the text around the one VALUES group of `?`s.
        group = "(" + ", ".join("?" * len(self.names)) + ")"
        parts = self.sql.split(f" VALUES {group}") if self.positional else []
        self._around = (parts[0], parts[1], group) if len(parts) == 2 else None
        self._rows_sql: dict[int, str] = {}
        processors: list[Callable[[Any], Any] | None] = [
            table.c[name].type.dialect_impl(dialect).bind_processor(dialect) for name in self.names
        ]
        self._values = itemgetter(*self.names) if len(self.names) > 1 else None
        shared = {i for i, name in enumerate(self.names) if isinstance(table.c[name].type, JSON)}
        self._processors: Processors = [
            (i, p, i in shared) for i, p in enumerate(processors) if p is not None
        ]
        self._named = [  # for a named-parameter driver's own executemany (psycopg)
            (name, processor)
            for name in compiled.params
            if (processor := table.c[name].type.dialect_impl(dialect).bind_processor(dialect))
        ]
        self.named = dialect.paramstyle == "pyformat" and not self.positional

    def insert_returning(
        self, conn: Connection, rows: Sequence[dict[str, Any]], column: str
    ) -> set[Any]:
        """Insert `rows` with the driver's `executemany(..., returning=True)` (psycopg 3.1+).

        The `column` values of the rows this statement inserted (an insert-or-ignore returns
        nothing for a row already there). One fixed statement for any number of rows: a
        multi-row insert with RETURNING (SQLAlchemy's way) changes its text with the batch
        size, and psycopg parsed and adapted each new text (2-3x slower, measured). Values
        get the bind processing `execute` applies; driver errors are raised as SQLAlchemy's.
        """
        sql = f"{self.sql} RETURNING {column}"
        params = self._bind_named(rows, sql)
        dbapi = conn.dialect.loaded_dbapi
        cursor: Any = conn.connection.cursor()
        try:
            cursor.executemany(sql, params, returning=True)
            found: set[Any] = set()
            while True:
                found.update(r[0] for r in cursor.fetchall())
                if not cursor.nextset():
                    break
        except dbapi.Error as exc:
            raise DBAPIError.instance(
                sql, params, exc, dbapi.Error, dialect=conn.dialect, ismulti=True
            ) from exc
        finally:
            cursor.close()
        return found

    def _bind_named(self, rows: Sequence[dict[str, Any]], sql: str) -> list[dict[str, Any]]:
        """Rows as a named-parameter driver's parameters, values bound as `execute` would."""
        named = self._named
        params = []
        for row in rows:
            one = dict(row)
            try:
                for name, process in named:
                    if one[name] is not None:
                        one[name] = process(one[name])
            except Exception as exc:  # as `execute` reports a value it cannot bind
                raise StatementError(str(exc), sql, row, exc) from exc
            params.append(one)
        return params

    def execute(self, conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
        """Insert `rows`: dicts with a value for every column, keyed by column name."""
        self.send(conn, self.prepare(rows))

    def prepare(self, rows: Sequence[dict[str, Any]], *, aside: bool = False) -> list[Any]:
        """`rows` as this statement's parameters, values bound (no database needed).

        The writer prepares a batch before it takes the database's write lock, so the
        lock is held for the statements alone (a budget grow waits on it); `aside` (see
        `bind_rows`) only then.
        """
        if self.named:
            return self._bind_named(rows, self.sql)
        if not self.positional or self._values is None:
            return list(rows)
        return bind_rows(rows, self._values, self._processors, self.sql, aside=aside)

    def send(self, conn: Connection, params: list[Any]) -> None:
        """Execute the statement for parameters from `prepare`.

        A named-parameter driver (psycopg) gets one DBAPI `executemany` of the fixed SQL
        text: SQLAlchemy's `execute` of a list of dicts ran its per-statement execution
        context, the writer's largest cost on PostgreSQL. Driver errors are raised as
        SQLAlchemy's, as `execute` raises them.
        """
        if self.named:
            dbapi = conn.dialect.loaded_dbapi
            cursor: Any = conn.connection.cursor()
            try:
                cursor.executemany(self.sql, params)
            except dbapi.Error as exc:
                raise DBAPIError.instance(
                    self.sql, params, exc, dbapi.Error, dialect=conn.dialect, ismulti=True
                ) from exc
            finally:
                cursor.close()
        elif not self.positional or self._values is None:
            conn.execute(self.statement, params)
        elif self._around is None or len(params) < 2:
            conn.exec_driver_sql(self.sql, params)
        else:
            # Multi-row statements, not `executemany`: sqlite3 lets the GIL go around every
            # statement step, and a writer thread that lets it go must wait the switch
            # interval (5 ms) to get it back from a busy run, at each row: measured, a
            # tracking writer fell 70,000 groups behind a CPU-bound graph. Sizes are powers
            # of two (few statement texts, each prepared once per connection).
            start = 0
            while start < len(params):
                size = min(ROWS_PER_STATEMENT, 1 << ((len(params) - start).bit_length() - 1))
                chunk = params[start : start + size]
                conn.exec_driver_sql(self._sql_of(size), tuple(v for row in chunk for v in row))
                start += size

    def _sql_of(self, rows: int) -> str:
        """The text of this insert of `rows` rows: its VALUES group repeated (made once)."""
        sql = self._rows_sql.get(rows)
        if sql is None:
            assert self._around is not None
            head, tail, group = self._around
            sql = self._rows_sql[rows] = f"{head} VALUES {', '.join([group] * rows)}{tail}"
        return sql
