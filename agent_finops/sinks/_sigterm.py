"""Flush the ledger writers on SIGTERM (what `docker stop` and Kubernetes send), then chain.

Python's default SIGTERM kills the process at once: no `atexit` hook runs, and records the
background writer had queued are lost. The handler installed here flushes every live writer
(bounded by `SIGTERM_FLUSH_TIMEOUT`), then does what the previous handler would have done:
it calls a Python handler installed before it, or, for the default disposition, restores
it and sends itself SIGTERM again, so the process ends with the conventional status
(killed by signal 15; 143 in a shell). It is installed once, only from the main thread
(Python allows no other), and never over an ignored SIGTERM or a handler installed outside
Python (which it could not chain to). A handler installed *after* it replaces it: that
handler should call `tracker.flush()` itself.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any, Final

__all__ = ["SIGTERM_FLUSH_TIMEOUT", "install_sigterm_flush"]

log = logging.getLogger("agent_finops")

SIGTERM_FLUSH_TIMEOUT: Final = 5.0
"""Seconds the SIGTERM handler waits for the writers (`docker stop` allows 10 by default)."""

_lock = threading.Lock()
_previous: Any = None
_installed = False


def install_sigterm_flush(flush: Callable[[float], None]) -> bool:
    """Install the chaining SIGTERM handler that calls `flush(timeout)`; True if it is in place.

    Idempotent. Returns False (installing nothing) off the main thread, when SIGTERM is
    ignored, or when its handler was installed outside Python.
    """
    global _previous, _installed, _flush
    with _lock:
        if _installed:
            return True
        if threading.current_thread() is not threading.main_thread():
            return False
        try:
            previous = signal.getsignal(signal.SIGTERM)
        except (AttributeError, ValueError):  # pragma: no cover - a platform without SIGTERM
            return False
        if previous is None or previous is signal.SIG_IGN:
            log.debug("agent-finops: SIGTERM is ignored or handled outside Python; not flushing")
            return False
        _flush = flush
        signal.signal(signal.SIGTERM, _on_sigterm)
        _previous, _installed = previous, True
        return True


def _default_flush(timeout: float) -> None:  # pragma: no cover - replaced at install
    """Nothing to flush."""


_flush: Callable[[float], None] = _default_flush


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    try:
        _flush(SIGTERM_FLUSH_TIMEOUT)
    except Exception as exc:  # the previous handler must run whatever happens here
        log.error("agent-finops: flush on SIGTERM failed: %s", exc)
    previous = _previous
    if callable(previous):
        previous(signum, frame)
        return
    # The default disposition: end the process as it would have, killed by the signal.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)
