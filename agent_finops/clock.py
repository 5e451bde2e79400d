"""The one clock: every component takes a `Clock` (pass a fake in tests) defaulting to `utcnow`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

__all__ = ["Clock", "utcnow"]

Clock = Callable[[], datetime]
"""Returns the current timezone-aware datetime."""


def utcnow() -> datetime:
    """The current time in UTC (aware)."""
    return datetime.now(UTC)
