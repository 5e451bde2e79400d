"""The one clock: every component takes a `Clock` (pass a fake in tests) defaulting to `utcnow`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import Final

__all__ = ["Clock", "fast_utcnow", "utcnow"]

Clock = Callable[[], datetime]
"""Returns the current timezone-aware datetime."""


def utcnow() -> datetime:
    """The current time in UTC (aware)."""
    return datetime.now(UTC)


fast_utcnow: Final[Clock] = partial(datetime.now, UTC)
"""`utcnow` without its Python frame (the same aware UTC datetime): the tracker's default
clock, read several times per model call on the hot path."""
