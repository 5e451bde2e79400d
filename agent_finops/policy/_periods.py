"""Budget periods: calendar windows in the policy's time zone, epoch buckets, counter keys.

Calendar periods (`hourly`, `daily`, `weekly`, `monthly`) start at local wall-clock
boundaries of the configured zone, converted to UTC, so they follow daylight-saving time:
in Europe/Paris the day of the spring change lasts 23 hours and the day of the autumn
change 25. Weeks are ISO weeks (Monday 00:00 local). A wall-clock boundary that falls in a
spring-forward gap starts at the transition instant; one that is repeated at a fall-back
starts at its first occurrence. So the hour repeated at an autumn change is one two-hour
`hourly` bucket, and the hour skipped in spring has an empty bucket nobody lands in.

`rolling` windows (budgets with `period: rolling` and every rate limit) are approximated by
**fixed buckets of the window length aligned to the Unix epoch** (UTC): a `2h` window is
the bucket 00:00-02:00 UTC, then 02:00-04:00, and so on. A counter keyed by the bucket
can be reserved against atomically, so a hard limit holds inside each bucket; the price
of the approximation is that up to twice the limit can be spent in any window-long
interval that straddles a bucket edge. Windows of whole days are UTC days, not local ones.

`run` and `task` periods are not time windows: they are per-run and per-task cost caps,
keyed by the run id and by the call's `task` tag.

Counter keys are at most `MAX_COUNTER_KEY_LENGTH` (512) characters, what every budget store
accepts. A key that would be longer (long tag values in a `"*"` scope, a long task tag) is
**hashed deterministically**: `rule|sha256=<hex digest of the full key>`. The same inputs
give the same hashed key in every process, distinct full keys give distinct digests, and a
hashed key cannot equal a readable one (readable keys always have three `|` parts).
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, date, datetime, time, timedelta
from typing import Final, Literal, get_args
from zoneinfo import ZoneInfo

from agent_finops.exceptions import ConfigurationError

__all__ = [
    "CALENDAR_PERIODS",
    "EPOCH",
    "MAX_COUNTER_KEY_LENGTH",
    "MAX_WINDOW",
    "PeriodKind",
    "counter_key",
    "escape_key_part",
    "format_duration",
    "parse_duration",
    "window_for",
]

PeriodKind = Literal["run", "task", "hourly", "daily", "weekly", "monthly", "rolling"]
"""How a budget's counter resets: per run, per task, per calendar period, or rolling."""

CALENDAR_PERIODS: Final = ("hourly", "daily", "weekly", "monthly")
"""Periods aligned to local wall-clock boundaries of the policy's time zone."""

EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
"""Origin of the fixed buckets that approximate rolling windows."""

KEY_SEPARATOR: Final = "|"
MAX_COUNTER_KEY_LENGTH: Final = 512
"""Longest counter key (what budget stores accept); longer keys are hashed to fit."""
_HASHED_RULE_PREFIX: Final = 128

MAX_WINDOW: Final = timedelta(days=3660)
"""Longest window or duration accepted (about ten years): longer ones overflow dates."""

_DURATION = re.compile(r"\s*(\d{1,12})\s*([smhd])\s*")
_UNIT_SECONDS: Final = {"d": 86_400, "h": 3_600, "m": 60, "s": 1}
_DURATION_EXPECTED: Final = (
    "a whole number followed by s, m, h or d, such as '90s', '30m', '2h' or '7d' (at most 3660d)"
)
_PERIODS: Final[tuple[str, ...]] = get_args(PeriodKind)


def parse_duration(text: str) -> timedelta:
    """Parse a window length such as `"90s"`, `"30m"`, `"2h"` or `"7d"` (must be > 0).

    Raises `ConfigurationError` naming the bad value and the expected form.
    """
    match = _DURATION.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise ConfigurationError(
            "invalid duration", field="window", value=text, expected=_DURATION_EXPECTED
        )
    seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds <= 0:
        raise ConfigurationError(
            "duration must be longer than zero",
            field="window",
            value=text,
            expected=_DURATION_EXPECTED,
        )
    if seconds > MAX_WINDOW.days * 86_400:
        raise ConfigurationError(
            "duration too long",
            field="window",
            value=text,
            expected=f"at most {format_duration(MAX_WINDOW)}",
        )
    return timedelta(seconds=seconds)


def format_duration(window: timedelta) -> str:
    """The shortest `parse_duration` spelling of `window` (`timedelta(hours=2)` -> `"2h"`)."""
    seconds = _whole_seconds(window)
    for unit, size in _UNIT_SECONDS.items():
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    raise AssertionError("unreachable: every whole number of seconds divides by 1")


def window_for(
    period: PeriodKind, now: datetime, tz: ZoneInfo, *, window: timedelta | None = None
) -> tuple[datetime, datetime]:
    """The `[start, end)` window containing `now`, both in UTC.

    `period` is a calendar period (local boundaries of `tz`) or `rolling` (the fixed,
    epoch-aligned bucket of length `window`). `run` and `task` have no time window.
    """
    _require_aware(now)
    if period == "rolling":
        return _rolling_bucket(now, _require_window(window))
    if period not in CALENDAR_PERIODS:
        raise ValueError(f"period {period!r} is not a time window (one of {_PERIODS})")
    local = now.astimezone(tz)
    start_wall, end_wall = _calendar_walls(period, local)
    start, end = _to_utc(start_wall, tz), _to_utc(end_wall, tz)
    # Local labels only go backwards in zones that fall back across midnight; step once.
    if now < start:
        start_wall, end_wall = _calendar_walls(period, start.astimezone(tz) - timedelta(0, 1))
        start, end = _to_utc(start_wall, tz), _to_utc(end_wall, tz)
    elif now >= end:
        start_wall, end_wall = _calendar_walls(period, end.astimezone(tz))
        start, end = _to_utc(start_wall, tz), _to_utc(end_wall, tz)
    return start, end


def counter_key(
    rule_id: str,
    scope_key: str,
    period: PeriodKind,
    now: datetime,
    tz: ZoneInfo,
    *,
    run_id: str | None = None,
    task: str | None = None,
    window: timedelta | None = None,
) -> str:
    """A stable key naming one budget bucket: `rule|scope|bucket`.

    Examples: `support-daily|team=support|2026-11-22`, `weekly|*|2026-W47`,
    `spend-2h|team=support|2026-11-22T14:00:00Z/2h`, `run-cap|*|run=<run id>`,
    `task-cap|team=support|task=ticket-42`. The same inputs always give the same key, so a
    counter store can reserve against it. `run` needs `run_id`, `task` needs `task`,
    `rolling` needs `window`. A key longer than `MAX_COUNTER_KEY_LENGTH` is replaced by
    `rule|sha256=<digest of the full key>` (deterministic, see the module docstring).
    """
    _require_aware(now)
    if period == "run":
        if not run_id:
            raise ValueError("a period 'run' counter key needs run_id")
        bucket = f"run={escape_key_part(run_id)}"
    elif period == "task":
        if not task:
            raise ValueError("a period 'task' counter key needs task (the call's task tag)")
        bucket = f"task={escape_key_part(task)}"
    elif period == "rolling":
        length = _require_window(window)
        start, _ = _rolling_bucket(now, length)
        bucket = f"{start:%Y-%m-%dT%H:%M:%SZ}/{format_duration(length)}"
    elif period in CALENDAR_PERIODS:
        start, _ = window_for(period, now, tz)
        bucket = _calendar_label(period, start.astimezone(tz))
    else:
        raise ValueError(f"unknown period {period!r} (one of {_PERIODS})")
    key = KEY_SEPARATOR.join((rule_id, scope_key, bucket))
    if len(key) <= MAX_COUNTER_KEY_LENGTH:
        return key
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{rule_id[:_HASHED_RULE_PREFIX]}{KEY_SEPARATOR}sha256={digest}"


def escape_key_part(text: str) -> str:
    """Escape the characters counter and scope keys use as separators (`%`, `|`, `,`, `=`)."""
    return text.replace("%", "%25").replace("|", "%7C").replace(",", "%2C").replace("=", "%3D")


def _calendar_walls(period: str, local: datetime) -> tuple[datetime, datetime]:
    """Naive local wall-clock start and end of the calendar period containing `local`."""
    day = local.date()
    if period == "hourly":
        start = datetime.combine(day, time(local.hour))
        return start, start + timedelta(hours=1)
    if period == "daily":
        return _midnight(day), _midnight(day + timedelta(days=1))
    if period == "weekly":
        monday = day - timedelta(days=day.weekday())
        return _midnight(monday), _midnight(monday + timedelta(days=7))
    first = day.replace(day=1)
    following = (
        first.replace(year=first.year + 1, month=1)
        if first.month == 12
        else (first.replace(month=first.month + 1))
    )
    return _midnight(first), _midnight(following)


def _calendar_label(period: str, local_start: datetime) -> str:
    if period == "hourly":
        return f"{local_start:%Y-%m-%dT%H}"
    if period == "daily":
        return f"{local_start:%Y-%m-%d}"
    if period == "weekly":
        iso = local_start.date().isocalendar()
        return f"{iso.year}-W{iso.week:02d}"
    return f"{local_start:%Y-%m}"


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time())


def _to_utc(wall: datetime, tz: ZoneInfo) -> datetime:
    # fold=0: a repeated wall time means its first occurrence; a skipped one (in a DST gap)
    # is read with the offset in force before the gap, which is the transition instant.
    return wall.replace(tzinfo=tz, fold=0).astimezone(UTC)


def _rolling_bucket(now: datetime, window: timedelta) -> tuple[datetime, datetime]:
    index = (now - EPOCH) // window
    start = EPOCH + index * window
    return start, start + window


def _require_window(window: timedelta | None) -> timedelta:
    if window is None:
        raise ValueError("a rolling window needs its length (window=...)")
    _whole_seconds(window)
    return window


def _whole_seconds(window: timedelta) -> int:
    if window <= timedelta(0) or window.microseconds:
        raise ValueError(f"a window must be a positive whole number of seconds, got {window!r}")
    return window.days * 86_400 + window.seconds


def _require_aware(now: datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"now must be timezone-aware, got naive {now!r}")
