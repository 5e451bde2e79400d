"""Calendar windows of a rollup: hours, days, ISO weeks or months of one time zone.

Boundaries are local wall-clock boundaries converted to UTC (the budget periods' rules, from
`agent_finops.policy.periods`): a day of a daylight-saving change lasts 23 or 25 hours, a
month is a calendar month. Hours are real hours (3,600 s from a local hour boundary): the
hour repeated when clocks go back is two rows. The first and last windows are clipped to the
range asked for, so the totals of a range are the totals of its windows.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Final, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from agent_finops.exceptions import ConfigurationError
from agent_finops.ledger import MAX_WINDOWS, Window
from agent_finops.policy.periods import window_for

__all__ = ["PERIODS", "Period", "calendar_windows", "local_midnight", "zone"]

Period = Literal["hour", "day", "week", "month", "all"]
"""`all`: the whole range as one window."""
PERIODS: Final[tuple[str, ...]] = get_args(Period)
_POLICY_PERIOD: Final = {"hour": "hourly", "day": "daily", "week": "weekly", "month": "monthly"}


def zone(name: str) -> ZoneInfo:
    """An IANA time zone; `ConfigurationError` naming it if unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigurationError(
            "unknown time zone",
            field="tz",
            value=name,
            expected="an IANA name such as Europe/Paris",
        ) from exc


def local_midnight(day: date, tz: ZoneInfo) -> datetime:
    """The start of a local calendar day, as an aware datetime in `tz`."""
    return datetime.combine(day, time(0), tz)


def _hours(start: datetime, end: datetime, tz: ZoneInfo) -> list[Window]:
    """Hours of 3,600 s from the local hour that `start` is in.

    The hour repeated when clocks go back is two windows (two real hours), not one.
    """
    moment = _window("hourly", start, tz)[0]
    if (end - moment) / _HOUR > MAX_WINDOWS:
        raise _too_many("hour")
    windows: list[Window] = []
    while moment < end:
        windows.append((max(moment, start), min(moment + _HOUR, end)))
        moment += _HOUR
    return windows


def _window(kind: str, moment: datetime, tz: ZoneInfo) -> Window:
    """`window_for`, with the ends of the calendar as a `ConfigurationError`."""
    try:
        return window_for(kind, moment, tz)  # type: ignore[arg-type]
    except (ValueError, OverflowError):
        raise ConfigurationError(
            "the range reaches past the calendar",
            field="from/to",
            value=moment.isoformat(),
            expected="dates within years 1-9998",
        ) from None


def _too_many(period: str) -> ConfigurationError:
    return ConfigurationError(
        "too many windows in the range",
        field="period",
        value=period,
        expected=f"at most {MAX_WINDOWS} windows (choose a longer period)",
    )


_HOUR: Final = timedelta(hours=1)


def calendar_windows(period: str, start: datetime, end: datetime, tz: ZoneInfo) -> list[Window]:
    """The `[start, end)` windows of `period` covering the range, clipped to it, in UTC.

    Raises `ConfigurationError` for an unknown period, a naive or empty range, or a range
    of more windows than a ledger aggregates at once (`MAX_WINDOWS`).
    """
    if period not in PERIODS:
        raise ConfigurationError(
            "unknown period", field="period", value=period, expected=" or ".join(PERIODS)
        )
    if start.utcoffset() is None or end.utcoffset() is None:
        raise ConfigurationError(
            "range bounds must be timezone-aware",
            field="from",
            value=f"{start!r}..{end!r}",
            expected="aware datetimes",
        )
    if not start < end:
        raise ConfigurationError(
            "the range must end after it starts",
            field="to",
            value=f"{start.isoformat()}..{end.isoformat()}",
            expected="from < to",
        )
    if period == "all":
        return [(start, end)]
    if period == "hour":
        return _hours(start, end, tz)
    kind = _POLICY_PERIOD[period]
    windows: list[Window] = []
    moment = start
    while moment < end:
        lo, hi = _window(kind, moment, tz)
        windows.append((max(lo, start), min(hi, end)))
        if len(windows) > MAX_WINDOWS:
            raise _too_many(period)
        moment = hi
    return windows
