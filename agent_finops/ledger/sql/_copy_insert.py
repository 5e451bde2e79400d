"""Batched inserts on PostgreSQL through COPY: the ledger writer's hot path there.

psycopg's `executemany` (`BulkInsert`'s named-parameter path) adapts and queues every row
in Python, 17-33 µs of the writer's CPU per row measured on this machine: on a CPU-bound
agent process the writer shares the GIL with the user's run, so that time is taken from
it. COPY formats rows in psycopg's C code (7-14 µs per row with the bind processing, the
same rows; docs/benchmarks.md). COPY cannot resolve conflicts, so `CopyInsert` copies the
rows into a temporary table of the target's columns (created in the same transaction if
the session has none: nothing depends on session state, so PgBouncer's transaction
pooling keeps working; `ON COMMIT DELETE ROWS` empties it at every commit or rollback),
then moves them with one statement (`WITH moved AS (DELETE ... RETURNING) INSERT ... SELECT`)
carrying the statement's own conflict clause (upsert or insert-or-ignore), in the rows'
order. It needs a role that may create temporary tables: the ledger uses `BulkInsert`
for one that may not.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, MetaData, Table, delete, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.exc import DBAPIError

from agent_finops._foreground import step_aside
from agent_finops.ledger.sql._bulk import ASIDE_EVERY, Processors, bind_rows

__all__ = ["CopyInsert", "ORDINAL"]

ORDINAL = "finops_row"
"""The temporary table's extra column: a row's place in its batch (rows move in order)."""


class CopyInsert:
    """One upsert or insert-or-ignore of `table`'s rows, sent as COPY + INSERT ... SELECT."""

    def __init__(
        self,
        table: Table,
        conflict: Callable[[Any], Any],
        dialect: Dialect,
    ) -> None:
        """Compile for `dialect` (PostgreSQL through psycopg).

        `conflict` turns an INSERT construct into the same insert with its conflict clause
        (`on_conflict_do_update` / `on_conflict_do_nothing`), as the ledger builds it for
        `BulkInsert`.
        """
        preparer = dialect.identifier_preparer
        self.names: tuple[str, ...] = tuple(c.name for c in table.columns)
        temp_name = f"finops_copy_{table.name}"
        temp = Table(
            temp_name,
            MetaData(),
            *(Column(c.name, c.type) for c in table.columns),
            Column(ORDINAL, BigInteger),
        )
        target = preparer.format_table(table)
        quoted_temp = preparer.quote(temp_name)
        columns = ", ".join(preparer.quote(name) for name in self.names)
        self.create = (
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {quoted_temp} "
            f"(LIKE {target}, {ORDINAL} BIGINT) ON COMMIT DELETE ROWS"
        )
        self.copy = f"COPY {quoted_temp} ({columns}, {ORDINAL}) FROM STDIN"
        # The move empties the temporary table as it reads it (a data-modifying WITH), so a
        # second batch of the same table in one transaction moves its own rows only.
        moved = delete(temp).returning(*temp.c).cte("moved")
        rows = select(*(moved.c[name] for name in self.names)).order_by(moved.c[ORDINAL])
        statement = conflict(postgresql.insert(table).from_select(list(self.names), rows))
        self.sql = str(statement.add_cte(moved).compile(dialect=dialect))
        self._values = itemgetter(*self.names)
        self._processors: Processors = [
            (i, processor, isinstance(table.c[name].type, JSON))
            for i, name in enumerate(self.names)
            if (processor := table.c[name].type.dialect_impl(dialect).bind_processor(dialect))
        ]

    def prepare(
        self, rows: Sequence[dict[str, Any]], *, aside: bool = False
    ) -> list[tuple[Any, ...]]:
        """`rows` (dicts keyed by column name) as COPY rows, values bound as `execute` binds them.

        A JSON value object shared by several rows (the events of a run share their tag
        dict) is bound once; `aside` as for `bind_rows`.
        """
        return bind_rows(rows, self._values, self._processors, self.sql, numbered=True, aside=aside)

    def execute(self, conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
        """Insert `rows`: dicts with a value for every column, keyed by column name."""
        self.send(conn, self.prepare(rows))

    def send(self, conn: Connection, params: list[tuple[Any, ...]]) -> None:
        """Insert rows from `prepare`."""
        self._run(conn, params, "")

    def insert_returning(
        self, conn: Connection, rows: Sequence[dict[str, Any]], column: str
    ) -> set[Any]:
        """Insert `rows`; the `column` values of those this statement inserted."""
        return self._run(conn, self.prepare(rows), f" RETURNING {column}")

    def _run(self, conn: Connection, params: list[tuple[Any, ...]], returning: str) -> set[Any]:
        if not params:
            return set()
        dbapi = conn.dialect.loaded_dbapi
        cursor: Any = conn.connection.cursor()
        sql = self.sql + returning
        try:
            cursor.execute(self.create)
            with cursor.copy(self.copy) as copy:
                write = copy.write_row
                for n, row in enumerate(params):
                    if not n % ASIDE_EVERY:  # no lock a budget call needs is held here
                        step_aside()
                    write(row)
            cursor.execute(sql)
            return {r[0] for r in cursor.fetchall()} if returning else set()
        except dbapi.Error as exc:  # raised as SQLAlchemy's, as `execute` raises them
            raise DBAPIError.instance(
                sql, params, exc, dbapi.Error, dialect=conn.dialect, ismulti=True
            ) from exc
        finally:
            cursor.close()
