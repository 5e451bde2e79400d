"""What `Ledger.aggregate` returns: cost-event totals per group of tags and per time window.

A backend computes these in its database (SQL aggregates over indexed columns), exactly:
money sums are `Decimal` to the last of its 18 places on every backend. Rollups, chargeback,
exports, anomaly scans and the finance report are built on them (`agent_finops.rollups`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Final, get_args

from agent_finops.exceptions import ConfigurationError
from agent_finops.ledger._money import EXACT, tidy
from agent_finops.ledger._records import CostBucket, CostEvent, bucket_of

__all__ = [
    "BUCKETS",
    "FIELD_DIMENSIONS",
    "MAX_DIMENSIONS",
    "MAX_WINDOWS",
    "Aggregate",
    "EventTotals",
    "Window",
    "aggregate_events",
    "check_query",
    "dimension_value",
    "group_order",
    "tidy_money",
]

BUCKETS: Final[tuple[CostBucket, ...]] = get_args(CostBucket)
MAX_DIMENSIONS: Final = 8
"""Tags one aggregate may group by."""
MAX_WINDOWS: Final = 50_000
"""Windows one aggregate may ask for (an hourly series of about five years)."""

Window = tuple[datetime, datetime]
"""`[start, end)`, aware datetimes."""

FIELD_DIMENSIONS: Final[dict[str, str]] = {
    ":model": "name",
    ":provider": "provider",
    ":kind": "kind",
    ":bucket": "bucket",
}
"""`by` names for fields of the event rather than tags (a tag name cannot start with `:`):
`:model` groups by the model (or tool) name, `:provider`, `:kind`, `:bucket`."""


@dataclass(slots=True, kw_only=True)
class EventTotals:
    """Totals of the cost events of one group in one window."""

    cost: Decimal = Decimal(0)
    """Sum of known costs (USD)."""
    events: int = 0
    model_calls: int = 0
    tool_calls: int = 0
    compute_events: int = 0
    unpriced: int = 0
    """Events whose cost is unknown (never counted as $0 in `cost`)."""
    uncached_input_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    units: int = 0
    """Tool units and billed compute seconds."""
    compute_seconds: int = 0
    """Billed seconds of compute events."""
    cost_by_bucket: dict[str, Decimal] = field(default_factory=dict)
    """Known cost per bucket (`tokens`, `tools`, `compute`, `overhead`); every bucket present."""
    runs: int = 0
    """Distinct runs (trace ids) with an event in the group and window."""
    tasks: int = 0
    """Distinct values of the `task` tag (events without one are not a task)."""
    runtime_seconds: float = 0.0
    """Wall-clock seconds of those runs (start to end; a run still open counts zero). A run
    counts in full in every group and window it has events in."""

    @property
    def tokens(self) -> int:
        """Every token billed: input (uncached, cache reads, cache writes) and output."""
        return (
            self.uncached_input_tokens
            + self.cache_read_tokens
            + self.cache_write_tokens
            + self.output_tokens
        )

    def add(self, other: EventTotals) -> None:
        """Add another group's counts (distinct counts add as if the groups were disjoint)."""
        self.cost = EXACT.add(self.cost, other.cost)
        for name in _COUNTS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.runtime_seconds += other.runtime_seconds
        for bucket in BUCKETS:
            self.cost_by_bucket[bucket] = EXACT.add(
                self.cost_by_bucket.get(bucket, Decimal(0)),
                other.cost_by_bucket.get(bucket, Decimal(0)),
            )


_COUNTS: Final = (
    "events",
    "model_calls",
    "tool_calls",
    "compute_events",
    "unpriced",
    "uncached_input_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
    "units",
    "compute_seconds",
    "runs",
    "tasks",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Aggregate:
    """The totals of one group of events in one window."""

    window: int
    """Index of the window in the `windows` asked for."""
    start: datetime
    end: datetime
    group: tuple[str | None, ...]
    """The values of the `by` tags, in order (None: the events lack that tag)."""
    totals: EventTotals


def check_query(
    by: Sequence[str], windows: Sequence[Window], where: Mapping[str, Sequence[str]] | None
) -> tuple[tuple[str, ...], list[Window], dict[str, tuple[str, ...]]]:
    """Validate an aggregate's arguments the same way on every backend; normalised copies.

    Raises `ConfigurationError` naming the argument for a bad tag name, a tag named twice,
    too many tags or windows, a naive or empty window, or a filter that is not tag -> values.
    """
    from agent_finops.attribution import validate_tag_key

    dims = tuple(by)
    if len(dims) > MAX_DIMENSIONS:
        raise ConfigurationError(
            "too many tags to group by",
            field="by",
            value=",".join(dims),
            expected=f"at most {MAX_DIMENSIONS} tags",
        )
    for dim in dims:
        if dim not in FIELD_DIMENSIONS:
            validate_tag_key(dim, source="by")
    if len(set(dims)) != len(dims):
        raise ConfigurationError(
            "a tag is named twice", field="by", value=",".join(dims), expected="distinct tags"
        )
    spans = list(windows)
    if len(spans) > MAX_WINDOWS:
        raise ConfigurationError(
            "too many windows",
            field="windows",
            value=str(len(spans)),
            expected=f"at most {MAX_WINDOWS}",
        )
    for start, end in spans:
        if start.utcoffset() is None or end.utcoffset() is None:
            raise ConfigurationError(
                "window bounds must be timezone-aware",
                field="windows",
                value=f"{start!r}..{end!r}",
                expected="aware datetimes",
            )
        if not start < end:
            raise ConfigurationError(
                "a window must end after it starts",
                field="windows",
                value=f"{start.isoformat()}..{end.isoformat()}",
                expected="start < end",
            )
    filters: dict[str, tuple[str, ...]] = {}
    for key, values in (where or {}).items():
        if key not in FIELD_DIMENSIONS:
            validate_tag_key(key, source="where")
        if isinstance(values, str) or not all(isinstance(v, str) for v in values):
            raise ConfigurationError(
                "a filter maps a tag to a list of values",
                field=f"where.{key}",
                value=repr(values)[:200],
                expected="a list of strings",
            )
        filters[key] = tuple(values)
    return dims, spans, filters


def aggregate_events(
    events: Sequence[CostEvent],
    run_seconds: Mapping[str, float],
    dims: tuple[str, ...],
    windows: Sequence[Window],
    filters: Mapping[str, tuple[str, ...]],
) -> list[Aggregate]:
    """The reference aggregation in Python (the in-memory ledger's; SQL backends match it).

    `run_seconds`: each run's wall-clock seconds (trace id -> seconds; absent: zero).
    """
    kept = [e for e in events if all(dimension_value(e, k) in v for k, v in filters.items())]
    found: list[Aggregate] = []
    for index, (start, end) in enumerate(windows):
        groups: dict[tuple[str | None, ...], tuple[EventTotals, set[str], set[str]]] = {}
        for e in kept:
            if not start <= e.created_at < end:
                continue
            key = tuple(dimension_value(e, d) for d in dims)
            entry = groups.get(key)
            if entry is None:
                entry = groups[key] = (_empty(), set(), set())
            totals, runs, tasks = entry
            _count(totals, e)
            runs.add(e.trace_id)
            task = e.tags.get("task")
            if task is not None:
                tasks.add(task)
        for key in sorted(groups, key=group_order):
            totals, runs, tasks = groups[key]
            totals.runs = len(runs)
            totals.tasks = len(tasks)
            totals.runtime_seconds = sum(run_seconds.get(r, 0.0) for r in sorted(runs))
            tidy_money(totals)
            found.append(Aggregate(window=index, start=start, end=end, group=key, totals=totals))
    return found


def dimension_value(event: CostEvent, dim: str) -> str | None:
    """An event's value of one `by` name: a tag, or a field (`FIELD_DIMENSIONS`)."""
    field = FIELD_DIMENSIONS.get(dim)
    if field is None:
        return event.tags.get(dim)
    if field == "bucket":
        return bucket_of(event)
    value = getattr(event, field)
    return None if value is None else str(value)


def tidy_money(totals: EventTotals) -> None:
    """Sums without trailing zeros, so every backend prints the same text for a value."""
    totals.cost = tidy(totals.cost)
    totals.cost_by_bucket = {b: tidy(v) for b, v in totals.cost_by_bucket.items()}


def group_order(key: tuple[str | None, ...]) -> tuple[tuple[bool, str], ...]:
    """Sort key of a group: None first, then by value."""
    return tuple((v is not None, v or "") for v in key)


def _empty() -> EventTotals:
    return EventTotals(cost_by_bucket={b: Decimal(0) for b in BUCKETS})


def _count(totals: EventTotals, e: CostEvent) -> None:
    totals.events += 1
    if e.kind == "model":
        totals.model_calls += 1
    elif e.kind == "tool":
        totals.tool_calls += 1
    else:
        totals.compute_events += 1
        totals.compute_seconds += e.units
    if e.cost is None:
        totals.unpriced += 1
    else:
        totals.cost = EXACT.add(totals.cost, e.cost)
        bucket = bucket_of(e)
        totals.cost_by_bucket[bucket] = EXACT.add(totals.cost_by_bucket[bucket], e.cost)
    totals.uncached_input_tokens += e.uncached_input_tokens
    totals.cache_read_tokens += e.cache_read_tokens
    totals.cache_write_tokens += e.cache_write_tokens
    totals.output_tokens += e.output_tokens
    totals.reasoning_tokens += e.reasoning_tokens
    totals.units += e.units
