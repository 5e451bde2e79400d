"""`ProcessLedgerWriter`: the ledger written by a child process, off this process's GIL.

A background `LedgerWriter` thread shares the interpreter lock with the user's run: in a
CPU-bound process its wake-ups, the rows it binds and the records it keeps queued (which
the garbage collector then promotes and walks in every full collection) are time the run
waits (docs/scaling.md). This sink encodes each group to bytes (`_wire.encode`, a few
microseconds) and writes it to a pipe on the emitting thread, without blocking: a child
process (`_writer_child`) reads the pipe and writes the ledger on another core, in
batches, with the `LedgerWriter`'s rules (retries, a refused record isolated and kept in
the dead-letter file). When the pipe is full (a slow or unreachable ledger) the groups
queue here (bounded, then the dead-letter file) and a feeder thread hands them over in
order.

What a crash loses: a group is in the pipe when `emit` returns (unless the pipe was full),
and the child writes everything its parent sent before it exits, so a SIGKILL of this
process loses only groups still queued here because the pipe was full. If the child dies,
every group it had not acknowledged, and everything after, is written by an in-process
`LedgerWriter` instead (logged).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import pickle
import select
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Final

from agent_finops.exceptions import ConfigurationError, LedgerError
from agent_finops.ledger import Ledger
from agent_finops.sinks._base import Records
from agent_finops.sinks._dead_letter import DeadLetterFile, default_dead_letter_path
from agent_finops.sinks._frames import (
    ACK,
    FAILED,
    FLUSH,
    HEADER,
    OPEN,
    RECORDS,
    read_frame,
    write_frame,
)
from agent_finops.sinks._ledger_writer import (
    FULL_WAIT,
    MAX_QUEUED,
    LedgerWriter,
    _Batch,
    flush_all_writers,
    register_writer,
    unregister_writer,
)
from agent_finops.sinks._sigterm import install_sigterm_flush
from agent_finops.sinks._wire import decode, encode

__all__ = ["PIPE_SIZE", "ProcessLedgerWriter"]

log = logging.getLogger("agent_finops")

PIPE_SIZE: Final = 1 << 20
"""Bytes the pipe to the child holds (Linux `F_SETPIPE_SZ`, best effort): room for bursts."""
_F_SETPIPE_SZ: Final = 1031
_ATOMIC: Final = select.PIPE_BUF
"""A non-blocking write this small to a pipe is all or nothing (POSIX)."""


class ProcessLedgerWriter:
    """Writes the ledger from a child process; the tracker's first sink with `writer="process"`.

    Needs a ledger opened with `SQLLedger.from_url` on a SQLite file or a database server
    (the child opens the same URL with the same options) and a POSIX system. The counters
    (`errors`, `dead_lettered`, `batches`) are the child's as of its last acknowledgement
    (every flush, and about every `ACK_EVERY` seconds).
    """

    def __init__(
        self,
        ledger: Ledger,
        *,
        dead_letter: str | os.PathLike[str] | None = None,
        flush_on_sigterm: bool = True,
        max_queued: int = MAX_QUEUED,
    ) -> None:
        """Start the child for `ledger` (it connects while this process goes on).

        `dead_letter`, `flush_on_sigterm` and `max_queued` as for `LedgerWriter`
        (`max_queued` bounds what waits here while the pipe is full).
        """
        source = getattr(ledger, "source", None)
        if source is None:
            raise ConfigurationError(
                "writer='process' needs a ledger opened with SQLLedger.from_url on a SQLite "
                "file or a database server (the child process opens the same URL)",
                source="CostTracker",
                field="writer",
                value="process",
                expected="a file or server ledger, or writer='thread'",
            )
        if os.name != "posix":  # pragma: no cover - POSIX CI only
            raise ConfigurationError(
                "writer='process' is available on POSIX systems only",
                source="CostTracker",
                field="writer",
                value="process",
                expected="writer='thread'",
            )
        url, engine_kwargs = source
        self.ledger = ledger
        self.max_queued = max_queued
        self._dead_letter = Path(
            dead_letter if dead_letter is not None else default_dead_letter_path(ledger)
        ).resolve()
        try:
            options = pickle.dumps(
                {"url": url, "engine_kwargs": engine_kwargs, "dead_letter": str(self._dead_letter)}
            )
        except Exception as exc:
            raise ConfigurationError(
                f"writer='process' cannot hand the ledger's engine options to a child: {exc}",
                source="CostTracker",
                field="writer",
                value="process",
                expected="engine options that pickle (or writer='thread')",
            ) from exc
        self.overflowed = 0
        """Groups kept in the dead-letter file because the queue was full."""
        self._keep = DeadLetterFile(self._dead_letter)
        self._kept = 0
        self._cond = threading.Condition()
        self._queued: deque[tuple[int, bytes]] = deque()  # waiting for room in the pipe
        self._feeding = False  # the feeder is writing a frame: others queue behind it
        self._unacked: deque[tuple[int, bytes]] = deque()  # in the pipe, not yet written
        self._emitted = 0  # sequence number of the last group emitted
        self._acked = 0
        self._counters: dict[str, int] = {}
        self._closed = False
        self._fallback: LedgerWriter | None = None
        self._failure: str | None = None
        self._child = subprocess.Popen(
            [sys.executable, "-m", "agent_finops.sinks._writer_child"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            close_fds=True,
            start_new_session=True,  # a Ctrl-C of the terminal does not reach it
        )
        assert self._child.stdin is not None and self._child.stdout is not None
        self._pipe = self._child.stdin.fileno()
        with contextlib.suppress(OSError):
            fcntl.fcntl(self._pipe, _F_SETPIPE_SZ, PIPE_SIZE)
        write_frame(self._pipe, OPEN, 0, options)
        os.set_blocking(self._pipe, False)
        self._feeder: threading.Thread | None = None
        self._reader = threading.Thread(
            target=self._read_acks,
            args=(self._child.stdout.fileno(),),
            name="agent-finops-process-acks",
            daemon=True,
        )
        self._reader.start()
        register_writer(self)
        if flush_on_sigterm:
            install_sigterm_flush(flush_all_writers)

    # -- what the tracker reads -------------------------------------------------------

    @property
    def pid(self) -> int:
        """The child process's id."""
        return self._child.pid

    @property
    def backlog(self) -> int:
        """Record groups emitted and not yet acknowledged as written."""
        if self._fallback is not None:
            return self._fallback.backlog
        return self._emitted - self._acked

    @property
    def errors(self) -> int:
        """Failed write attempts (the child's, as of its last acknowledgement)."""
        own = self._fallback.errors if self._fallback is not None else 0
        return self._counters.get("errors", 0) + own

    @property
    def dead_lettered(self) -> int:
        """Records kept in the dead-letter file (the child's, as of its last acknowledgement)."""
        own = self._fallback.dead_lettered if self._fallback is not None else 0
        return self._counters.get("dead_lettered", 0) + own + self._kept

    @property
    def batches(self) -> int:
        """Transactions the child has written."""
        return self._counters.get("batches", 0)

    @property
    def dead_letter_path(self) -> Path:
        """The JSONL file where records the ledger refused are kept (`read_dead_letters`)."""
        return self._dead_letter

    @property
    def failure(self) -> str | None:
        """Why the child stopped, if it did (the records then go through a `LedgerWriter`)."""
        return self._failure

    # -- the sink ---------------------------------------------------------------------

    def emit(self, records: Records) -> None:
        """Hand a group to the child (queued here while the pipe is full); never blocks long."""
        fallback = self._fallback
        if fallback is not None:
            fallback.emit(records)
            return
        data = encode(records)
        with self._cond:
            if self._fallback is not None:  # the child failed meanwhile
                self._fallback.emit(records)
                return
            if not self._queued and not self._feeding and len(data) + HEADER.size <= _ATOMIC:
                seq = self._emitted + 1
                try:
                    os.write(
                        self._pipe, HEADER.pack(RECORDS, seq, len(data)) + data
                    )  # all or nothing
                    self._emitted = seq
                    self._unacked.append((seq, data))
                    return
                except BlockingIOError:
                    pass  # the pipe is full: queue it for the feeder
                except OSError as exc:
                    self._hand_over(records, f"the writer process stopped reading: {exc}")
                    return
            if len(self._queued) >= self.max_queued and not self._wait_for_room():
                self._overflow(records)
                return
            if self._fallback is not None:
                self._fallback.emit(records)
                return
            self._emitted += 1
            self._queued.append((self._emitted, data))
            self._start_feeder()

    def _hand_over(self, records: Records, reason: str) -> None:
        # Under self._cond: the child is gone; `records` and everything unwritten go in-process.
        fallback = self._child_failed(reason)
        fallback.emit(records)

    def _wait_for_room(self) -> bool:
        deadline = time.monotonic() + FULL_WAIT
        while len(self._queued) >= self.max_queued and not self._closed:
            if not self._cond.wait(max(0.0, deadline - time.monotonic())):
                break
        return len(self._queued) < self.max_queued

    def _overflow(self, records: Records) -> None:
        self.overflowed += 1
        log.warning(
            "agent-finops: the writer process's queue is full (%d groups): keeping a group in %s",
            self.max_queued,
            self._dead_letter,
        )
        kept = _Batch.of((records,)).records()
        reason = (
            f"the writer's queue was full ({self.max_queued} groups): the ledger did not keep up"
        )
        if self._keep.append(kept, reason, sync=False):
            self._kept += len(kept)

    def flush(self, timeout: float | None = 30.0) -> None:
        """Block until the child has written everything emitted so far."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            target = self._emitted
            if self._acked < target and self._fallback is None:
                self._queued.append((target, b""))  # a FLUSH frame: the child answers it
                self._start_feeder()
            while self._acked < target and self._fallback is None:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise LedgerError(
                        f"ledger flush timed out with {target - self._acked} record groups "
                        "not yet written by the writer process (it keeps them)"
                    )
                self._cond.wait(remaining)
            fallback = self._fallback
        if fallback is not None:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            fallback.flush(timeout=remaining)

    def close(self, timeout: float = 30.0) -> None:
        """Flush, then close the pipe; the child writes what is left and exits."""
        try:
            self.flush(timeout=timeout)
        except LedgerError as exc:
            log.error("agent-finops: %s", exc)
        finally:
            self._stop("closed")

    def _stop(self, reason: str) -> None:
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
            feeder = self._feeder
        if feeder is not None:
            feeder.join(timeout=5.0)  # it hands over what is queued
        with contextlib.suppress(OSError):
            self._child.stdin.close()  # type: ignore[union-attr]  # the child writes what it has, then exits
        try:
            self._child.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            log.warning(
                "agent-finops: the writer process (pid %d) is still writing; it finishes on "
                "its own",
                self._child.pid,
            )
        self._reader.join(timeout=1.0)
        if not self._reader.is_alive():
            self._child.stdout.close()  # type: ignore[union-attr]
        unregister_writer(self)
        if self._fallback is not None:
            self._fallback.close()

    # -- threads ----------------------------------------------------------------------

    def _start_feeder(self) -> None:
        # Under self._cond.
        self._cond.notify_all()
        if self._feeder is None or not self._feeder.is_alive():
            self._feeder = threading.Thread(
                target=self._feed, name="agent-finops-process-feeder", daemon=True
            )
            self._feeder.start()

    def _feed(self) -> None:
        """Hand queued frames over in order, waiting for room in the pipe; exit when none."""
        while True:
            with self._cond:
                if not self._queued or self._fallback is not None:
                    self._feeding = False
                    self._cond.notify_all()
                    return
                seq, data = self._queued.popleft()
                self._feeding = True
                if data:
                    self._unacked.append((seq, data))
                self._cond.notify_all()  # room for producers waiting on a full queue
            frame = HEADER.pack(RECORDS if data else FLUSH, seq, len(data)) + data
            try:
                _write_when_ready(self._pipe, frame)
            except OSError as exc:
                with self._cond:
                    self._feeding = False
                    self._child_failed(f"the writer process stopped reading: {exc}")
                return

    def _read_acks(self, fd: int) -> None:
        """Take the child's acknowledgements until its pipe closes."""
        while True:
            frame = read_frame(fd)
            if frame is None:
                break
            kind, seq, payload = frame
            if kind == FAILED:
                with self._cond:
                    self._child_failed(
                        "the writer process could not open the ledger: "
                        + payload.decode(errors="replace")
                    )
                return
            if kind == ACK:
                counters: dict[str, int] = pickle.loads(payload)  # our child's pipe
                with self._cond:
                    self._counters = counters
                    self._acked = max(self._acked, seq)
                    while self._unacked and self._unacked[0][0] <= seq:
                        self._unacked.popleft()
                    self._cond.notify_all()
        code = self._child.wait()
        with self._cond:
            # After close the child exits once it has written (or kept in the dead-letter
            # file) everything it was sent: nothing to hand over, even if unacknowledged.
            if not self._closed:
                self._child_failed(f"the writer process exited (status {code})")
            elif code != 0:
                log.error("agent-finops: the writer process exited with status %d", code)

    def _child_failed(self, reason: str) -> LedgerWriter:
        """Hand everything not acknowledged to an in-process writer (once). Under _cond."""
        if self._fallback is not None:
            return self._fallback
        self._failure = reason
        log.error("agent-finops: %s; writing the ledger in-process instead", reason)
        fallback = LedgerWriter(self.ledger, dead_letter=self._dead_letter, flush_on_sigterm=False)
        for _, data in [*self._unacked, *self._queued]:
            if data:
                fallback.emit(decode(data))
        self._unacked.clear()
        self._queued.clear()
        self._acked = self._emitted
        self._fallback = fallback
        self._cond.notify_all()
        return fallback


def _write_when_ready(fd: int, frame: bytes) -> None:
    """Write all of `frame` to the non-blocking pipe `fd`, waiting for room as needed."""
    view = memoryview(frame)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            select.select([], [fd], [], 1.0)
