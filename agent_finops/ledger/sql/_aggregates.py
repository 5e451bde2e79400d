"""`Ledger.aggregate` and `Ledger.iter_events` in SQL: totals computed by the database.

One grouped statement per window (built once, run with each window's bounds) reads the
window's events through the `created_at` index. Money is summed exactly by the dialect
(`NUMERIC` sums on PostgreSQL; on SQLite, integer sums of the cost split into nano-dollars
and a 1e-18 remainder). The rare amounts those integers cannot hold (a single cost of about
$9.2 billion or more) and a SQLite sum that overflows 64 bits are summed exactly in Python
from the rows instead: slower, never rounded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, bindparam, distinct, func, or_, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import StaticPool

from agent_finops.attribution import STANDARD_TAGS
from agent_finops.ledger._aggregates import (
    BUCKETS,
    FIELD_DIMENSIONS,
    Aggregate,
    EventTotals,
    Window,
    aggregate_events,
    group_order,
    tidy_money,
)
from agent_finops.ledger._money import EXACT, HUGE_REST, MONEY_PLACES
from agent_finops.ledger._records import CostEvent
from agent_finops.ledger.sql._dialect import SQLDialect
from agent_finops.ledger.sql._faults import faults
from agent_finops.ledger.sql._rows import EVENT_COLUMNS, event_from
from agent_finops.ledger.sql._tables import cost_events as _events
from agent_finops.ledger.sql._tables import runs as _runs

__all__ = ["aggregate", "iter_events"]

_GIVEN_BACK = Decimal(-HUGE_REST).scaleb(-MONEY_PLACES)
_ZERO = Decimal(0)

_COUNT_COLUMNS = (
    "uncached_input_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
    "units",
)


def tag_column(name: str) -> Any:
    """The SQL expression of a `by` name: an event field, a standard tag, a free-form tag.

    Fields (`:model`...) and standard tags are columns; free-form tags come from the JSON.
    """
    field = FIELD_DIMENSIONS.get(name)
    if field is not None:
        return _events.c[field]
    if name in STANDARD_TAGS:
        return _events.c[name]
    return _events.c.tags[name].as_string()


def _group_keys(dims: tuple[str, ...]) -> list[Any]:
    """The `by` expressions, labelled `g0`, `g1`... (the statements group and join on them)."""
    return [tag_column(d).label(f"g{i}") for i, d in enumerate(dims)]


def _filters(where: Mapping[str, tuple[str, ...]]) -> list[Any]:
    return [tag_column(k).in_(v) for k, v in where.items()]


def _in_window() -> list[Any]:
    created = _events.c.created_at
    return [created >= bindparam("start"), created < bindparam("end")]


def _totals_statement(
    dims: tuple[str, ...], where: Mapping[str, tuple[str, ...]], dialect: SQLDialect
) -> Any:
    """Plain sums grouped by the tags, the bucket and the kind (folded in Python after).

    Splitting buckets and kinds by grouping rather than with `CASE` sums keeps the work per
    row to a few additions, all read from the rollup index.
    """
    keys = _group_keys(dims)
    e = _events.c
    columns = [
        *keys,
        e.bucket,
        e.kind,
        func.count(),
        dialect.priced(_events),
        *(func.sum(e[c]) for c in _COUNT_COLUMNS),
        dialect.unsummed(_events),
        *dialect.money_sums(_events, None),
    ]
    return select(*columns).where(*_in_window(), *_filters(where)).group_by(*keys, e.bucket, e.kind)


def _distinct_statement(dims: tuple[str, ...], where: Mapping[str, tuple[str, ...]]) -> Any:
    """Distinct runs and tasks per group."""
    keys = _group_keys(dims)
    e = _events.c
    return (
        select(*keys, func.count(distinct(e.trace_id)), func.count(distinct(e.task)))
        .where(*_in_window(), *_filters(where))
        .group_by(*keys)
    )


def _runtime_statement(
    dims: tuple[str, ...], where: Mapping[str, tuple[str, ...]], dialect: SQLDialect
) -> Any:
    """Seconds of the distinct runs of each group (a run counts once per group)."""
    keys = _group_keys(dims)
    pairs = (
        select(*keys, _events.c.trace_id.label("trace_id"))
        .where(*_in_window(), *_filters(where))
        .distinct()
        .subquery()
    )
    group_cols = [pairs.c[f"g{i}"] for i in range(len(dims))]
    seconds = dialect.seconds_between(_runs.c.started_at, _runs.c.ended_at)
    return (
        select(*group_cols, func.sum(seconds))
        .select_from(pairs.join(_runs, _runs.c.trace_id == pairs.c.trace_id))
        .where(_runs.c.ended_at.is_not(None))
        .group_by(*group_cols)
    )


def aggregate(
    engine: Engine,
    dialect: SQLDialect,
    dims: tuple[str, ...],
    windows: Sequence[Window],
    where: Mapping[str, tuple[str, ...]],
    *,
    runtime: bool,
    distinct: bool = True,
) -> list[Aggregate]:
    """See `Ledger.aggregate` (arguments already checked)."""
    if not windows:
        return []
    stmt = _totals_statement(dims, where, dialect)
    counted = _distinct_statement(dims, where)
    run_time = _runtime_statement(dims, where, dialect)
    n = len(dims)
    found: list[Aggregate] = []
    side = _Side(engine, counted if distinct else None, run_time if runtime else None, n)
    # Distinct counts and runtimes run on a second connection, in a second thread, while
    # this one sums: each database query releases the GIL, so the two take two cores.
    pending = side.start(windows)
    with faults("cannot aggregate cost events"), engine.connect() as conn:
        for index, (start, end) in enumerate(windows):
            bounds = {"start": start, "end": end}
            try:
                rows = conn.execute(stmt, bounds).all()
            except OperationalError as exc:
                if "overflow" not in str(exc).lower():
                    raise
                conn.rollback()
                found.extend(_in_python(conn, dims, index, (start, end), where, runtime))
                continue
            if not rows:
                continue
            by_key: dict[tuple[Any, ...], EventTotals] = {}
            needs_rows = False
            for row in rows:
                key = tuple(row[:n])
                totals = by_key.get(key)
                if totals is None:
                    totals = by_key[key] = EventTotals(cost_by_bucket=dict.fromkeys(BUCKETS, _ZERO))
                needs_rows = _fold(totals, row[n:], dialect) or needs_rows
            groups = [
                Aggregate(window=index, start=start, end=end, group=key, totals=totals)
                for key, totals in by_key.items()
            ]
            if needs_rows:
                _add_unsummed(conn, dims, bounds, where, groups)
            found.extend(groups)
    counts, seconds = side.results(pending, windows)
    done = []
    for a in found:
        if not distinct:
            a.totals.runs = a.totals.tasks = 0
        elif (a.window, a.group) in counts:
            a.totals.runs, a.totals.tasks = counts[a.window, a.group]
        if (a.window, a.group) in seconds:
            a.totals.runtime_seconds = seconds[a.window, a.group]
        tidy_money(a.totals)
        done.append(a)
    done.sort(key=lambda a: (a.window, group_order(a.group)))
    return done


class _Side:
    """The distinct-count and runtime statements of every window, on their own connection."""

    def __init__(self, engine: Engine, counted: Any, run_time: Any, width: int) -> None:
        self.engine, self.counted, self.run_time, self.width = engine, counted, run_time, width

    def start(self, windows: Sequence[Window]) -> Future[Any] | None:
        """Start them in a thread (None: nothing to do, or one shared connection only)."""
        if self.counted is None and self.run_time is None:
            return None
        if isinstance(self.engine.pool, StaticPool):  # an in-memory SQLite database
            return None
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="agent-finops-aggregate")
        future = pool.submit(self._run, windows)
        pool.shutdown(wait=False)
        return future

    def results(
        self, pending: Future[Any] | None, windows: Sequence[Window]
    ) -> tuple[dict[tuple[int, tuple[Any, ...]], tuple[int, int]], dict[Any, float]]:
        """(window, group) -> (runs, tasks), and -> runtime seconds."""
        if self.counted is None and self.run_time is None:
            return {}, {}
        if pending is None:
            return self._run(windows)
        result: tuple[dict[Any, tuple[int, int]], dict[Any, float]] = pending.result()
        return result

    def _run(
        self, windows: Sequence[Window]
    ) -> tuple[dict[Any, tuple[int, int]], dict[Any, float]]:
        n = self.width
        counts: dict[Any, tuple[int, int]] = {}
        seconds: dict[Any, float] = {}
        with faults("cannot aggregate cost events"), self.engine.connect() as conn:
            for index, (start, end) in enumerate(windows):
                bounds = {"start": start, "end": end}
                if self.counted is not None:
                    for row in conn.execute(self.counted, bounds):
                        counts[index, tuple(row[:n])] = (int(row[n]), int(row[n + 1]))
                if self.run_time is not None:
                    for row in conn.execute(self.run_time, bounds):
                        seconds[index, tuple(row[:n])] = float(row[n] or 0)
        return counts, seconds


def _fold(totals: EventTotals, values: Sequence[Any], dialect: SQLDialect) -> bool:
    """Add one (bucket, kind) row of sums; whether it left huge amounts out."""
    bucket, kind, events, priced, *rest = values
    counts = rest[: len(_COUNT_COLUMNS)]
    unsummed = int(rest[len(_COUNT_COLUMNS)] or 0)
    cost = dialect.money_total(rest[len(_COUNT_COLUMNS) + 1 :])
    totals.events += int(events)
    totals.unpriced += int(events) - int(priced)
    if kind == "model":
        totals.model_calls += int(events)
    elif kind == "tool":
        totals.tool_calls += int(events)
    else:
        totals.compute_events += int(events)
    for name, value in zip(_COUNT_COLUMNS, counts, strict=True):
        setattr(totals, name, getattr(totals, name) + int(value or 0))
    if kind == "compute":
        totals.compute_seconds += int(counts[-1] or 0)
    totals.cost = EXACT.add(totals.cost, cost)
    totals.cost_by_bucket[bucket] = EXACT.add(totals.cost_by_bucket.get(bucket, _ZERO), cost)
    return unsummed > 0


def _add_unsummed(
    conn: Connection,
    dims: tuple[str, ...],
    bounds: Mapping[str, datetime],
    where: Mapping[str, tuple[str, ...]],
    groups: list[Aggregate],
) -> None:
    """Add the exact amounts the integer sums left out (huge single costs).

    Each such row added `HUGE_REST` (-1) to the `cost_rest` sums: that 1e-18 is given back.
    """
    keys = [tag_column(d) for d in dims]
    query = select(*keys, _events.c.bucket, _events.c.cost).where(
        *_in_window(),
        *_filters(where),
        _events.c.cost_rest == HUGE_REST,
    )
    by_key = {a.group: a.totals for a in groups}
    for row in conn.execute(query, dict(bounds)):
        totals = by_key[tuple(row[: len(dims)])]
        bucket = row[len(dims)]
        amount = EXACT.add(Decimal(row[len(dims) + 1]), _GIVEN_BACK)
        totals.cost = EXACT.add(totals.cost, amount)
        totals.cost_by_bucket[bucket] = EXACT.add(totals.cost_by_bucket[bucket], amount)


def _in_python(
    conn: Connection,
    dims: tuple[str, ...],
    index: int,
    window: Window,
    where: Mapping[str, tuple[str, ...]],
    runtime: bool,
) -> list[Aggregate]:
    """One window summed from its rows (a SQLite integer sum overflowed)."""
    events = list(_pages(lambda: nullcontext(conn), window[0], window[1], where, 5000))
    traces = sorted({e.trace_id for e in events}) if runtime else []
    seconds: dict[str, float] = {}
    for chunk in range(0, len(traces), 500):
        ids = traces[chunk : chunk + 500]
        query = select(_runs.c.trace_id, _runs.c.started_at, _runs.c.ended_at).where(
            _runs.c.trace_id.in_(ids), _runs.c.ended_at.is_not(None)
        )
        for trace_id, started, ended in conn.execute(query):
            seconds[trace_id] = (ended - started).total_seconds()
    found = aggregate_events(events, seconds, dims, [window], where)
    return [
        Aggregate(window=index, start=a.start, end=a.end, group=a.group, totals=a.totals)
        for a in found
    ]


def _page(
    conn: Connection,
    start: datetime,
    end: datetime,
    where: Mapping[str, tuple[str, ...]],
    batch_size: int,
    after: tuple[datetime, str] | None,
) -> list[CostEvent]:
    """One keyset page of events, after `(created_at, event_id)` if given."""
    created, key = _events.c.created_at, _events.c.event_id
    query = select(*EVENT_COLUMNS).where(created >= start, created < end, *_filters(where))
    if after is not None:
        query = query.where(or_(created > after[0], and_(created == after[0], key > after[1])))
    rows = conn.execute(query.order_by(created, key).limit(batch_size))
    return [event_from(row._mapping) for row in rows]


def iter_events(
    engine: Engine,
    start: datetime,
    end: datetime,
    where: Mapping[str, tuple[str, ...]],
    batch_size: int,
) -> Iterator[CostEvent]:
    """See `Ledger.iter_events`: one short read per page, no connection held in between."""

    @contextmanager
    def connect() -> Iterator[Connection]:
        with faults("cannot read cost events"), engine.connect() as conn:
            yield conn

    return _pages(connect, start, end, where, batch_size)


def _pages(
    connect: Callable[[], AbstractContextManager[Connection]],
    start: datetime,
    end: datetime,
    where: Mapping[str, tuple[str, ...]],
    batch_size: int,
) -> Iterator[CostEvent]:
    after: tuple[datetime, str] | None = None
    while True:
        with connect() as conn:
            rows = _page(conn, start, end, where, batch_size, after)
        yield from rows
        if len(rows) < batch_size:
            return
        after = (rows[-1].created_at, rows[-1].event_id)
