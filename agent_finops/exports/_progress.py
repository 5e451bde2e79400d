"""A progress line for long exports on a terminal; nothing at all when the output is piped."""

from __future__ import annotations

import time
from typing import TextIO

from agent_finops.exports._export import Progress

__all__ = ["terminal_progress"]


def terminal_progress(total: int, stream: TextIO, *, every: float = 0.2) -> Progress | None:
    """A `Progress` that redraws `exported N of TOTAL events (P%)` on `stream`.

    None when `stream` is not a terminal (a pipe, a file, CI logs): piped output stays
    silent. Redraws at most every `every` seconds, and once at the end.
    """
    if not stream.isatty():
        return None
    last = [0.0]

    def show(done: int) -> None:
        now = time.monotonic()
        final = done >= total
        if not final and now - last[0] < every:
            return
        last[0] = now
        pct = 100 if total == 0 else min(100, done * 100 // total)
        stream.write(f"\rexported {done:,} of {total:,} events ({pct}%)")
        if final:
            stream.write("\n")
        stream.flush()

    return show
