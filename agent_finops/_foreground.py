"""Decisions first: the background writer steps aside while a budget call waits on the database.

A thread that blocks on a database answer lets the other threads run; when the answer
comes it must wait for the GIL, up to the interpreter's switch interval (5 ms by default)
if a background thread is busy in Python meanwhile: the ledger writer binding a batch.
That wait landed on the user's run at every lease grow (measured on PostgreSQL with the
writer busy: a grow took 7-11 ms at the median, 25 ms at P90, against 2 ms with the
writer idle; docs/benchmarks.md).

Budget calls run inside `foreground()`. A thread that has an allowance (`allow_aside`: the
ledger writer, for each batch) calls `step_aside()` between its units of Python work, never
while it holds a lock a budget call could need, and waits there, off the GIL, while any is
in flight, until its allowance is spent: budget calls that never stop (many threads on a
store without leases) slow the writer down by that much per batch, never stall it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

__all__ = ["ASIDE_PER_BATCH", "allow_aside", "foreground", "step_aside"]

ASIDE_PER_BATCH: Final = 0.02
"""Seconds the ledger writer may wait, per batch, for the budget calls in flight."""

_cond = threading.Condition(threading.Lock())
_in_flight = 0
"""Budget calls waiting on their database now, in this process."""
_local = threading.local()


@contextmanager
def foreground() -> Iterator[None]:
    """Mark a budget call's database work: threads with an allowance step aside meanwhile."""
    global _in_flight
    with _cond:
        _in_flight += 1
    try:
        yield
    finally:
        with _cond:
            _in_flight -= 1
            if not _in_flight:
                _cond.notify_all()


def allow_aside(seconds: float) -> None:
    """Let the calling thread's `step_aside()` wait for `seconds` in all from now on."""
    _local.left = seconds


def step_aside() -> None:
    """Wait (off the GIL) while a budget call is in flight, within this thread's allowance.

    Returns at once when none is in flight (a plain read: the common case costs nothing
    more) or when the thread has no allowance left (threads without one never wait).
    """
    if not _in_flight:
        return
    left: float = getattr(_local, "left", 0.0)
    if left <= 0:
        return
    started = time.monotonic()
    with _cond:
        _cond.wait_for(lambda: not _in_flight, left)
    _local.left = left - (time.monotonic() - started)
