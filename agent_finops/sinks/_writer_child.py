"""The process writer's child: reads record batches from its parent and writes the ledger.

    python -P -c "$BOOTSTRAP"     # started by ProcessLedgerWriter only (BOOTSTRAP below)

A drain thread reads the pipe into memory from the first instant (`BOOTSTRAP`); the main
thread reads what has arrived (up to `BATCH_MAX` groups) and delivers it in one
transaction with the `LedgerWriter`'s rules (retried while the ledger is unreachable, a
refused record isolated and kept in the dead-letter file). It acknowledges what it has
written when a flush asks, about every `ACK_EVERY` seconds while busy, and once it has been
idle for `IDLE_ACK` seconds. It ignores SIGINT and SIGTERM: it runs until its parent closes
the pipe (at exit, or because it was killed), writes what it has read, and exits; so a
parent killed with SIGKILL loses only what it had not yet handed to the pipe. Once the
parent is gone it retries an unreachable ledger for `GIVE_UP_AFTER_EXIT` seconds at most,
then keeps what it holds in the dead-letter file.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import pickle
import signal
import sys
import threading
import time
from collections import deque
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from agent_finops.ledger import SQLLedger
from agent_finops.sinks._base import Records
from agent_finops.sinks._frames import ACK, FAILED, FLUSH, OPEN, RECORDS, frame_from, write_frame
from agent_finops.sinks._ledger_writer import BATCH_MAX, _Batch, _Delivery
from agent_finops.sinks._wire import decode

log = logging.getLogger("agent_finops")

RETRY_DELAYS: Final = (0.05, 0.2, 1.0)
ACK_EVERY: Final = 0.5
"""Seconds between the acknowledgements the child sends while it writes (besides those a
flush asks for): the parent keeps what is unacknowledged, to rewrite it if the child dies."""
IDLE_ACK: Final = 0.02
"""Seconds without new data after which the child acknowledges what it has written."""
GIVE_UP_AFTER_EXIT: Final = 30.0
"""Seconds the child keeps retrying an unreachable ledger once its parent is gone; then
what it holds goes to the dead-letter file (an orphan never retries forever)."""
HOLD_MAX: Final = 256 << 20
"""Bytes the child reads ahead of what it has written at most (then the pipe fills, and the
parent queues, bounded, as for a slow ledger)."""


class _ChildDelivery(_Delivery):
    """Delivery that retries while the parent lives, and for a bounded time after."""

    def __init__(self, ledger: SQLLedger, dead_letter: str, parent: int) -> None:
        super().__init__(ledger, dead_letter, sync=False)
        self.parent = parent
        self.orphaned_at: float | None = None
        self.batches = 0
        self.undecodable = 0

    def orphaned(self) -> None:
        """The parent is gone (its pipe ended, or it is no longer our parent)."""
        if self.orphaned_at is None:
            self.orphaned_at = time.monotonic()

    def _give_up(self, attempt: int) -> bool:
        if os.getppid() != self.parent:  # re-parented: the parent died while we retried
            self.orphaned()
        return (
            self.orphaned_at is not None
            and time.monotonic() - self.orphaned_at > GIVE_UP_AFTER_EXIT
        )

    def _delay(self, attempt: int) -> float:
        return RETRY_DELAYS[min(attempt, len(RETRY_DELAYS)) - 1]

    def counters(self) -> bytes:
        return pickle.dumps(
            {
                "errors": self.errors,
                "dead_lettered": self.dead_lettered + self.undecodable,
                "dropped": self.dropped,
                "batches": self.batches,
            }
        )

    def keep_undecodable(self, data: bytes, error: Exception) -> None:
        """A group this child cannot rebuild: kept as its bytes, next to the dead letters."""
        path = Path(str(self.dead_letter.path) + ".undecodable")
        line = json.dumps(
            {
                "at": datetime.now(UTC).isoformat(),
                "error": f"{type(error).__name__}: {error}",
                "group": base64.b64encode(data).decode(),
            }
        )
        log.error("agent-finops writer process: a record group could not be decoded (%s)", error)
        try:
            with path.open("a", encoding="utf-8") as out:
                out.write(line + "\n")
            self.undecodable += 1
        except OSError:
            self.dropped += 1


class _Inbox:
    """The frames the bootstrap's drain thread has read from the pipe (see `BOOTSTRAP`)."""

    def __init__(self, chunks: deque[bytes], ready: threading.Condition, held: list[int]) -> None:
        self._chunks, self._ready, self._held = chunks, ready, held
        self._buffer = b""
        self._pos = 0
        self._ended = False

    def waiting(self, timeout: float = 0.0) -> bool:
        """Whether data has arrived that is not read yet (waiting up to `timeout` for it)."""
        if len(self._buffer) > self._pos or self._chunks:
            return True
        if timeout > 0:
            with self._ready:
                self._ready.wait_for(lambda: bool(self._chunks), timeout)
        return bool(self._chunks)

    def frame(self) -> tuple[bytes, int, bytes] | None:
        """The next frame, blocking until it has arrived; None at the end of the pipe."""
        return frame_from(self._take)

    def _take(self, size: int) -> bytes | None:
        # `_buffer[_pos:]` is unread: a frame is sliced out without copying the rest.
        while len(self._buffer) - self._pos < size:
            if self._ended:
                return None
            with self._ready:
                while not self._chunks:
                    self._ready.wait()
                chunk = self._chunks.popleft()
                self._held[0] -= len(chunk)
                self._ready.notify_all()  # room for the drain thread
            if not chunk:
                self._ended = True
            self._buffer = self._buffer[self._pos :] + chunk
            self._pos = 0
        start = self._pos
        self._pos += size
        return self._buffer[start : self._pos]


def main(
    chunks: deque[bytes], ready: threading.Condition, held: list[int], outbox: int, parent: int
) -> int:
    """Serve one parent: open its ledger, write its batches until the pipe closes."""
    from agent_finops import __version__

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    inbox = _Inbox(chunks, ready, held)
    first = inbox.frame()
    if first is None or first[0] != OPEN:
        return 2
    options: dict[str, Any] = pickle.loads(first[2])  # our parent's pipe
    if options.get("version") != __version__:
        reason = f"it runs agent-finops {__version__}, its parent {options.get('version')}"
        with contextlib.suppress(OSError):
            write_frame(outbox, FAILED, 0, reason.encode())
        return 1
    try:
        ledger = SQLLedger.from_url(options["url"], **options["open"])
    except Exception as exc:  # reported to the parent, which writes in-process instead
        with contextlib.suppress(OSError):
            write_frame(outbox, FAILED, 0, f"{type(exc).__name__}: {exc}".encode())
        return 1
    delivery = _ChildDelivery(ledger, options["dead_letter"], parent)
    try:
        write_frame(outbox, ACK, 0, delivery.counters())  # ready: the ledger is open
    except OSError:  # the parent is gone already: write what it sent all the same
        delivery.orphaned()
    try:
        _serve(inbox, outbox, delivery)
    finally:
        ledger.close()
    return 0


def _serve(inbox: _Inbox, outbox: int, delivery: _ChildDelivery) -> None:
    ended = False
    acked_at = time.monotonic()
    last = acked = 0  # sequence numbers: of the last group read, of the last acknowledged
    while not ended:
        groups, seq, flush, ended = _read_batch(inbox)
        last = max(last, seq, flush)
        if ended:
            delivery.orphaned()
        if groups:
            delivery._deliver(_Batch.of(_decoded(groups, delivery)))
            delivery.batches += 1
        now = time.monotonic()
        due = flush or now - acked_at >= ACK_EVERY or not inbox.waiting(IDLE_ACK)
        if last > acked and due:
            acked_at, acked = now, last
            try:
                write_frame(outbox, ACK, last, delivery.counters())
            except OSError:  # the parent is gone: keep writing what it sent
                delivery.orphaned()


def _decoded(groups: list[bytes], delivery: _ChildDelivery) -> list[Records]:
    out = []
    for data in groups:
        try:
            out.append(decode(data))
        except Exception as exc:  # never lose the batch for one group: keep its bytes
            delivery.keep_undecodable(data, exc)
    return out


def _read_batch(inbox: _Inbox) -> tuple[list[bytes], int, int, bool]:
    """Block for one frame, then take what else has arrived.

    Returns (encoded groups, last group's sequence number, the last flush's sequence number
    or 0, whether the pipe ended).
    """
    groups: list[bytes] = []
    seq = flush = 0
    while True:
        frame = inbox.frame()
        if frame is None:
            return groups, seq, flush, True
        kind, frame_seq, payload = frame
        if kind == RECORDS:
            groups.append(payload)
            seq = frame_seq
        elif kind == FLUSH:
            flush = frame_seq
        if len(groups) >= BATCH_MAX or not inbox.waiting():
            return groups, seq, flush, False


DRAIN_CHUNK: Final = 1 << 16
DRAIN_PAUSE: Final = 0.002
"""After a read of less than `DRAIN_CHUNK` bytes the drain thread pauses `DRAIN_PAUSE`
seconds: a reader blocked on the pipe is woken by every write, and a wake-up per record
group cost the parent more than the group's encoding (the pipe holds far more than what
arrives meanwhile, and what is in it survives the parent)."""

BOOTSTRAP: Final = f"""
import os, threading, time
from collections import deque
parent = os.getppid()
outbox = os.dup(1)  # the acknowledgements' pipe; fd 1 becomes stderr, so prints cannot
os.dup2(2, 1)       # corrupt it (an engine with echo=True logs to stdout)
chunks, ready, held = deque(), threading.Condition(), [0]
def drain():
    while True:
        try:
            chunk = os.read(0, 1 << 20)
        except OSError:
            chunk = b""
        with ready:
            chunks.append(chunk)
            held[0] += len(chunk)
            ready.notify_all()
            while held[0] > {HOLD_MAX} and chunk:
                ready.wait()
        if not chunk:
            return
        if len(chunk) < {DRAIN_CHUNK}:
            time.sleep({DRAIN_PAUSE})  # let frames gather: one wake-up per many, not per frame
threading.Thread(target=drain, name="agent-finops-drain", daemon=True).start()
from agent_finops.sinks._writer_child import main
os._exit(main(chunks, ready, held, outbox, parent))
"""
"""The child's program (`python -P -c BOOTSTRAP`): a thread drains the pipe into memory from
the first instant, before the imports and the ledger's opening (about half a second), so
what the parent sent is the child's even while it starts, and a parent SIGKILLed then loses
nothing its tracker had returned."""
