"""SQLite WAL checkpoints on a background thread, so budget callers never wait for the fsyncs.

SQLite's automatic checkpoint runs inside the COMMIT that takes the WAL past 1,000 pages: that
caller fsyncs the WAL, copies its pages into the database file and fsyncs that file, a stall
of about 10 ms on a cloud VM's disk once every 100 or so reserve+settle cycles, which made the
P99 of a policy decision, and the store's P99.9, 20-30 times the median. Instead, every
`CHECKPOINT_EVERY` commits of the store, this thread runs `PRAGMA wal_checkpoint(PASSIVE)` on
its own connection, with the GIL released. A passive checkpoint takes no lock that writers or
readers wait for, and never waits itself.

SQLite restarts the WAL from its beginning only when a writer finds every frame copied back,
which does not happen while commits keep arriving during the checkpoints. So once the WAL
holds `WAL_RESTART_PAGES` pages, the thread copies the last few frames back while holding the
store's in-process writer lock (a short stall of this process's store writers, most pages
having been copied already), and the next commit restarts the WAL. The store's own connection
keeps an inline automatic checkpoint at `WAL_BACKSTOP_PAGES` as the bound, should this thread
fall behind. Durability is unchanged (WAL, synchronous=NORMAL): the WAL is only fsynced sooner.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import Engine

__all__ = ["CHECKPOINT_EVERY", "WAL_BACKSTOP_PAGES", "WAL_RESTART_PAGES", "Checkpointer"]

CHECKPOINT_EVERY = 64
"""A store's commits between two background checkpoints."""
WAL_RESTART_PAGES = 2000
"""WAL size (pages) at which a background checkpoint briefly holds the store's writers back,
so that the WAL can restart from its beginning."""
WAL_BACKSTOP_PAGES = 4000
"""WAL size (pages) at which the store's connection checkpoints inline (a bound reached only
when the background checkpoints fall behind)."""

log = logging.getLogger("agent_finops")


class Checkpointer:
    """Checkpoints one SQLite database's WAL on a daemon thread, when poked."""

    def __init__(self, engine: Engine, writers_lock: Callable[[], threading.Lock]) -> None:
        """Checkpoint `engine`'s database; `writers_lock()` is the store's writer lock."""
        self.pid = os.getpid()
        self._engine = engine
        self._writers_lock = writers_lock
        self._cond = threading.Condition()
        self._due = False
        self._closed = False
        self._thread: threading.Thread | None = None

    def poke(self) -> None:
        """Ask for a checkpoint soon (starts the thread on first use); never blocks."""
        with self._cond:
            if self._closed:
                return
            self._due = True
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="agent-finops-checkpoint", daemon=True
                )
                self._thread.start()
            else:
                self._cond.notify()

    def close(self, wait: bool = True) -> None:
        """Stop the thread; `wait`: until the checkpoint in progress returned its connection."""
        if self.pid != os.getpid():
            return  # inherited by a forked child: the thread and connection are the parent's
        with self._cond:
            self._closed = True
            self._cond.notify()
            thread = self._thread
        if wait and thread is not None and thread is not threading.current_thread():
            thread.join(timeout=30.0)

    def _run(self) -> None:
        fairy: Any = None
        try:
            while True:
                with self._cond:
                    while not (self._due or self._closed):
                        self._cond.wait()
                    if self._closed:
                        return
                    self._due = False
                try:
                    if fairy is None:
                        fairy = self._engine.raw_connection()
                    self._checkpoint(fairy.driver_connection)
                except Exception as exc:  # the next one tries again, on a fresh connection
                    log.warning("agent-finops: background WAL checkpoint failed: %s", exc)
                    if fairy is not None:
                        fairy.invalidate()
                        fairy.close()
                        fairy = None
        finally:
            if fairy is not None:
                fairy.close()

    def _checkpoint(self, conn: Any) -> None:
        _busy, pages, _copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        if pages >= WAL_RESTART_PAGES:
            with self._writers_lock():
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
