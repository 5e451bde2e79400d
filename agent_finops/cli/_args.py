"""Argument types the `agent-finops` commands share: bounded numbers, text, dates."""

from __future__ import annotations

import argparse
from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

from agent_finops.approvals._answer import check_text
from agent_finops.exceptions import ConfigurationError

__all__ = [
    "MAX_ARGUMENT",
    "MAX_LIMIT",
    "csv_arg",
    "limit_arg",
    "moment_arg",
    "moment_in",
    "text_arg",
    "where_arg",
]

MIN_YEAR = 1970
MAX_YEAR = 9000
"""Dates the finance commands accept (well inside what datetime and time zones convert)."""
MAX_LIMIT = 100_000
MAX_ARGUMENT = 2000
"""Longest id, thread, reason or path argument accepted."""


def limit_arg(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{ascii(text)[:40]} is not a whole number") from None
    if not 1 <= value <= MAX_LIMIT:
        raise argparse.ArgumentTypeError(f"{value} is not between 1 and {MAX_LIMIT}")
    return value


def text_arg(text: str) -> str:
    """A text argument, else a usage error (exit 2).

    Bounded, UTF-8 encodable (argv bytes that were not UTF-8 arrive as lone surrogates) and
    free of NUL and control characters.
    """
    if len(text) > MAX_ARGUMENT:
        raise argparse.ArgumentTypeError(f"longer than {MAX_ARGUMENT} characters")
    try:
        return check_text(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{ascii(text)[:100]} is not {exc}") from None


def moment_arg(text: str) -> str:
    """A date or datetime argument, checked later against the time zone (`moment_in`)."""
    return text_arg(text)


def moment_in(text: str, tz: ZoneInfo, *, name: str) -> datetime:
    """`2026-11-01` (local midnight in `tz`) or an ISO datetime (local to `tz` if no offset)."""
    try:
        if len(text) == 10:
            moment = datetime.combine(date.fromisoformat(text), time(0), tz)
        else:
            moment = datetime.fromisoformat(text)
            moment = moment if moment.utcoffset() is not None else moment.replace(tzinfo=tz)
        if not MIN_YEAR <= moment.year <= MAX_YEAR:
            raise ValueError("year out of range")
        moment.astimezone(UTC)  # OverflowError at the ends of the calendar
    except (ValueError, OverflowError):
        raise ConfigurationError(
            "not a date or time in range",
            field=name,
            value=text[:60],
            expected=f"YYYY-MM-DD or an ISO 8601 date and time, years {MIN_YEAR}-{MAX_YEAR}",
        ) from None
    return moment


def csv_arg(text: str) -> list[str]:
    """`team,project` as a list of names (empty parts dropped)."""
    return [part.strip() for part in text_arg(text).split(",") if part.strip()]


def where_arg(text: str) -> tuple[str, list[str]]:
    """`team=search,ads` as a filter (tag, values)."""
    key, sep, values = text_arg(text).partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"{ascii(text)[:60]} is not TAG=VALUE[,VALUE...]")
    return key.strip(), [v for v in values.split(",") if v]
