"""Cost-event exports for finance: CSV or JSON, streamed, the same bytes for the same ledger.

One row per event and owner: without allocation rules, one row per event (allocated cost =
raw cost, to the owner its owner tag names); with them, an event a rule splits across owners
gives one row per owner whose parts sum exactly to the event's raw cost (1e-18 quantum), so
`sum(allocated_cost)` is the exported total and `raw_cost` repeats on the rows of one split
event (`allocation_part` says which). Unpriced events are exported with empty costs and
`allocation_rule` `(unpriced)`: never as $0.

Text that a spreadsheet would run as a formula (a tag value starting with `=`, `+`, `-`, `@`)
is prefixed with `'` in CSV (JSON keeps it as is).

Events are read in keyset pages (`Ledger.iter_events`) and written as they come: memory stays
flat however large the range. Order: by time, then event id, then owner. Money is exact
decimal text, times ISO 8601 in UTC, so a re-run of the same day writes the same bytes.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import IO, Any, Final, Literal
from zoneinfo import ZoneInfo

from agent_finops.allocation import AllocationRules, Allocator, CostLine, measure_period
from agent_finops.exports._gl import GLMapping
from agent_finops.ledger import CostEvent, Ledger, bucket_of
from agent_finops.ledger._money import money_text as _text
from agent_finops.policy.periods import window_for

__all__ = ["EXPORT_COLUMNS", "ExportFormat", "Progress", "export_rows", "write_export"]

ExportFormat = Literal["csv", "json"]
EXPORT_COLUMNS: Final = (
    "date",
    "created_at",
    "event_id",
    "run_id",
    "span_id",
    "kind",
    "bucket",
    "name",
    "provider",
    "agent",
    "team",
    "project",
    "cost_center",
    "tenant",
    "environment",
    "user",
    "task",
    "gl_code",
    "policy_version",
    "price_source",
    "price_version",
    "currency",
    "raw_cost",
    "allocated_to",
    "allocated_cost",
    "allocation_rule",
    "allocation_part",
    "uncached_input_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
    "units",
)
"""Every export's columns, in order (CSV header; JSON object keys)."""
UNPRICED_RULE: Final = "(unpriced)"
NO_RULES: Final = ""

Progress = Callable[[int], None]
"""Called with the number of events written so far (every few hundred, and at the end)."""


def _line(event: CostEvent) -> CostLine:
    assert event.cost is not None
    return CostLine(tags=event.tags, amount=event.cost, bucket=bucket_of(event), id=event.event_id)


def export_rows(
    events: Iterator[CostEvent],
    *,
    tz: ZoneInfo,
    owner_tag: str = "team",
    allocator: Allocator | None = None,
    gl: GLMapping | None = None,
) -> Iterator[dict[str, Any]]:
    """The export records of `events`, in `EXPORT_COLUMNS` order (see the module docs)."""
    for event in events:
        bucket = bucket_of(event)
        tags = event.tags
        base: dict[str, Any] = {
            "date": event.created_at.astimezone(tz).date().isoformat(),
            "created_at": event.created_at.astimezone(UTC).isoformat(timespec="microseconds"),
            "event_id": event.event_id,
            "run_id": event.trace_id,
            "span_id": event.span_id,
            "kind": event.kind,
            "bucket": bucket,
            "name": event.name,
            "provider": event.provider,
            "agent": tags.get("agent"),
            "team": tags.get("team"),
            "project": tags.get("project"),
            "cost_center": tags.get("cost_center"),
            "tenant": tags.get("tenant"),
            "environment": tags.get("environment"),
            "user": tags.get("user"),
            "task": tags.get("task"),
            "gl_code": None if gl is None else gl.code_for(tags, bucket),
            "policy_version": event.policy_version,
            "price_source": event.price_source,
            "price_version": event.price_version,
            "currency": "USD",
            "raw_cost": _text(event.cost),
        }
        tokens = {
            "uncached_input_tokens": event.uncached_input_tokens,
            "cache_read_tokens": event.cache_read_tokens,
            "cache_write_tokens": event.cache_write_tokens,
            "output_tokens": event.output_tokens,
            "reasoning_tokens": event.reasoning_tokens,
            "units": event.units,
        }
        if event.cost is None:
            parts: Sequence[tuple[str | None, Decimal | None, str]] = [
                (tags.get(owner_tag), None, UNPRICED_RULE)
            ]
        elif allocator is None:
            parts = [(tags.get(owner_tag), event.cost, NO_RULES)]
        else:
            parts = [(a.owner, a.amount, a.rule_id) for a in allocator.split(_line(event))]
        for index, (owner, amount, rule) in enumerate(parts, 1):
            yield {
                **base,
                "allocated_to": owner,
                "allocated_cost": _text(amount),
                "allocation_rule": rule,
                "allocation_part": f"{index}/{len(parts)}",
                **tokens,
            }


def _allocator(
    ledger: Ledger,
    rules: AllocationRules,
    start: datetime,
    end: datetime,
    where: Mapping[str, Sequence[str]] | None,
) -> Allocator:
    """Shares from a first pass over the same events (direct usage, pools of the range)."""
    lines = (_line(e) for e in ledger.iter_events(start, end, where=where) if e.cost is not None)
    return Allocator(rules, measure_period(rules, lines))


def write_export(
    ledger: Ledger,
    out: IO[str],
    *,
    start: datetime,
    end: datetime,
    fmt: ExportFormat = "csv",
    tz: str = "UTC",
    where: Mapping[str, Sequence[str]] | None = None,
    rules: AllocationRules | None = None,
    gl: GLMapping | None = None,
    progress: Progress | None = None,
    shares_over: tuple[datetime, datetime] | None = None,
) -> int:
    """Write the events of `[start, end)` to `out`; returns the number of rows written.

    With `rules`, each event is allocated by them, with the direct-usage shares and pools of
    `shares_over` (default: the calendar months of `tz` the range falls in, measured in a
    first streaming pass), so the daily exports of a month allocate exactly as that month's
    chargeback statement does. `progress` is told how many events were written so far.
    """
    zone = ZoneInfo(tz)
    period = shares_over or _months_around(start, end, zone)
    allocator = None if rules is None else _allocator(ledger, rules, *period, where)
    owner = "team" if rules is None else rules.owner_tag
    events = ledger.iter_events(start, end, where=where, batch_size=2000)
    counted = _counting(events, progress)
    rows = export_rows(counted, tz=zone, owner_tag=owner, allocator=allocator, gl=gl)
    written = _write_csv(rows, out) if fmt == "csv" else _write_json(rows, out)
    return written


def _months_around(start: datetime, end: datetime, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """From the start of `start`'s calendar month to the end of `end`'s last moment's."""
    first, _ = window_for("monthly", start, zone)
    _, after = window_for("monthly", end - timedelta(microseconds=1), zone)
    return first, after


def _counting(events: Iterator[CostEvent], progress: Progress | None) -> Iterator[CostEvent]:
    count = 0
    for event in events:
        yield event
        count += 1
        if progress is not None and count % 500 == 0:
            progress(count)
    if progress is not None:
        progress(count)


_NUMBERS: Final = frozenset(
    {
        "raw_cost",
        "allocated_cost",
        "uncached_input_tokens",
        "cache_read_tokens",
        "cache_write_tokens",
        "output_tokens",
        "reasoning_tokens",
        "units",
    }
)
_FORMULA: Final = ("=", "+", "-", "@", "\t", "\r")


def _cell(column: str, value: Any) -> Any:
    """A CSV cell: text that a spreadsheet would run as a formula is quoted with `'`."""
    if value is None:
        return ""
    if column not in _NUMBERS and isinstance(value, str) and value.startswith(_FORMULA):
        return "'" + value
    return value


def _write_csv(rows: Iterator[dict[str, Any]], out: IO[str]) -> int:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    written = 0
    for row in rows:
        writer.writerow([_cell(c, row[c]) for c in EXPORT_COLUMNS])
        written += 1
    return written


def _write_json(rows: Iterator[dict[str, Any]], out: IO[str]) -> int:
    """A JSON array, one object per line (valid JSON, and streamable line by line)."""
    out.write("[")
    written = 0
    for row in rows:
        out.write(",\n" if written else "\n")
        out.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")))
        written += 1
    out.write("\n]\n")
    return written
