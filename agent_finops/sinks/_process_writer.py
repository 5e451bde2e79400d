"""`ProcessLedgerWriter`: the ledger written by a child process, off this process's GIL.

A background `LedgerWriter` thread shares the interpreter lock with the user's run: in a
CPU-bound process its wake-ups, the rows it binds and the records it keeps queued (which
the garbage collector then promotes and walks in every full collection) are time the run
waits (docs/scaling.md). This sink encodes each group to bytes (`_wire.encode`, a few
microseconds) and writes it to a pipe on the emitting thread, without blocking: a child
process (`_writer_child`) drains the pipe into its memory from its first instant and
writes the ledger on another core, in batches, with the `LedgerWriter`'s rules (retries, a
refused record isolated and kept in the dead-letter file). When the pipe is full (the
child holds `HOLD_MAX` bytes it could not write yet: a slow or unreachable ledger) the
groups queue here, bounded by `max_queued` and then kept in the dead-letter file, and a
feeder thread hands them over in order.

What a crash loses: a group is in the pipe when `emit` returns (unless the pipe was full),
and the child writes everything its parent sent before it exits, so a SIGKILL of this
process loses only groups still queued here because the pipe was full. If the child dies,
every group it had not acknowledged (it acknowledges within `IDLE_ACK` of going idle),
and everything after, is written by an in-process `LedgerWriter` instead (logged). A
process forked from this one (a prefork server) writes through an in-process
`LedgerWriter` of its own: the pipe and the child are its parent's.
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
import weakref
from collections import deque
from pathlib import Path
from typing import Any, Final

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
    queue_full,
    register_writer,
    unregister_writer,
)
from agent_finops.sinks._sigterm import install_sigterm_flush
from agent_finops.sinks._wire import decode, encode
from agent_finops.sinks._writer_child import BOOTSTRAP

__all__ = ["PIPE_SIZE", "ProcessLedgerWriter"]

log = logging.getLogger("agent_finops")

PIPE_SIZE: Final = 1 << 20
"""Bytes the pipe to the child holds (Linux `F_SETPIPE_SZ`, best effort): room for bursts."""
_F_SETPIPE_SZ: Final = 1031
_ATOMIC: Final = select.PIPE_BUF
"""A non-blocking write this small to a pipe is all or nothing (POSIX)."""
_ALREADY_KEPT: Final = b""
"""A queued frame whose group is in `_unacked` already (the rest of a partial write)."""


class ProcessLedgerWriter:
    """Writes the ledger from a child process; the tracker's first sink with `writer="process"`.

    Needs a ledger opened with `SQLLedger.from_url` on a SQLite file or a database server
    (the child opens the same URL with the same options) and a POSIX system. The counters
    (`errors`, `dead_lettered`, `batches`) are the child's as of its last acknowledgement
    (every flush, about every 0.5 s while it writes, and when it goes idle).
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
        why = self.unavailable(ledger)
        if why is not None:
            raise ConfigurationError(
                why,
                source="CostTracker",
                field="writer",
                value="process",
                expected="a file or server ledger on POSIX, or writer='thread'",
            )
        from agent_finops import __version__

        source: Any = getattr(ledger, "source", None)
        self.ledger = ledger
        self.max_queued = max_queued
        self._dead_letter = Path(
            dead_letter if dead_letter is not None else default_dead_letter_path(ledger)
        ).resolve()
        opened = {"create": source.create, "auto_setup": source.auto_setup}
        try:
            options = pickle.dumps(
                {
                    "version": __version__,
                    "url": source.url,
                    "open": {**opened, **source.engine_kwargs},
                    "dead_letter": str(self._dead_letter),
                }
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
        self._kept = 0  # records this process kept in the dead-letter file itself
        self._dropped = 0
        self._cond = threading.Condition()
        # Frames waiting for room in the pipe, in order: (seq, group or _ALREADY_KEPT, frame).
        self._queued: deque[tuple[int, bytes, bytes]] = deque()
        self._feeding = False  # the feeder holds a frame it has not fully written
        self._unacked: deque[tuple[int, bytes]] = deque()  # in the pipe, not yet written
        self._emitted = 0  # sequence number of the last group emitted
        self._acked = 0
        self._counters: dict[str, int] = {}
        self._closed = False
        self._fallback: LedgerWriter | None = None
        self._failure: str | None = None
        self._forked = False
        self._ready = threading.Event()
        self._child = subprocess.Popen(
            [sys.executable, "-P", "-c", BOOTSTRAP],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            close_fds=True,
            start_new_session=True,  # a Ctrl-C of the terminal does not reach it
            env=_child_environment(),
        )
        assert self._child.stdin is not None and self._child.stdout is not None
        self._pipe = self._child.stdin.fileno()
        try:
            with contextlib.suppress(OSError):
                fcntl.fcntl(self._pipe, _F_SETPIPE_SZ, PIPE_SIZE)
            write_frame(self._pipe, OPEN, 0, options)
            os.set_blocking(self._pipe, False)
            self._feeder = threading.Thread(
                target=self._feed, name="agent-finops-process-feeder", daemon=True
            )
            self._reader = threading.Thread(
                target=self._read_acks,
                args=(self._child.stdout.fileno(),),
                name="agent-finops-process-acks",
                daemon=True,
            )
            self._feeder.start()
            self._reader.start()
        except BaseException:
            self._child.kill()
            self._child.wait()
            raise
        _live.add(self)
        register_writer(self)
        if flush_on_sigterm:
            install_sigterm_flush(flush_all_writers)

    @staticmethod
    def unavailable(ledger: Ledger) -> str | None:
        """Why a child process could not write `ledger` here (None: it can)."""
        if getattr(ledger, "source", None) is None:
            return (
                "writer='process' needs a ledger opened with SQLLedger.from_url on a SQLite "
                "file or a database server (the child process opens the same URL)"
            )
        if os.name != "posix":  # pragma: no cover - POSIX CI only
            return "writer='process' is available on POSIX systems only"
        if getattr(sys, "frozen", False):  # pragma: no cover - PyInstaller and the like
            return "writer='process' cannot start a child of a frozen interpreter"
        return None

    # -- what the tracker reads -------------------------------------------------------

    @property
    def pid(self) -> int:
        """The child process's id."""
        return self._child.pid

    def ready(self, timeout: float | None = 30.0) -> bool:
        """Wait until the child has opened the ledger (True), or has failed (False).

        Never needed: groups emitted before are in the pipe. For benchmarks, and for a
        deployment that wants the writer's start-up (about half a second, on its own core)
        out of the way first.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._ready.is_set() and self._fallback is None:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            self._ready.wait(0.05 if remaining is None else min(0.05, remaining))
        return self._ready.is_set() and self._fallback is None

    @property
    def backlog(self) -> int:
        """Record groups emitted and not yet acknowledged as written."""
        if self._fallback is not None:
            return self._fallback.backlog
        return self._emitted - self._acked

    @property
    def errors(self) -> int:
        """Failed write attempts (the child's, as of its last acknowledgement)."""
        return self._count("errors")

    @property
    def dead_lettered(self) -> int:
        """Records kept in the dead-letter file (the child's, as of its last acknowledgement)."""
        return self._count("dead_lettered") + self._kept

    @property
    def dropped(self) -> int:
        """Records neither the ledger nor the dead-letter file took (each logged)."""
        return self._count("dropped") + self._dropped

    def _count(self, name: str) -> int:
        """The child's counter `name`, plus the fallback writer's if there is one."""
        own = getattr(self._fallback, name) if self._fallback is not None else 0
        return int(self._counters.get(name, 0) + own)

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
        if fallback is not None or self._forked:
            (fallback or self._fork_writer()).emit(records)
            return
        try:
            data = encode(records)
        except Exception as exc:  # a value neither marshal nor pickle takes: keep it on disk
            self._keep_on_disk(records, f"the record group could not be encoded: {exc!r}")
            return
        with self._cond:
            if self._fallback is not None:  # the child failed meanwhile (or this is a fork)
                self._fallback.emit(records)
                return
            if self._closed:
                self._keep_on_disk(records, "emitted after the writer process was closed")
                return
            if not self._queued and not self._feeding:
                seq = self._emitted + 1
                frame = HEADER.pack(RECORDS, seq, len(data)) + data
                try:
                    # Up to PIPE_BUF bytes: all or nothing; more: what fits, the rest queued.
                    written = os.write(self._pipe, frame)
                except BlockingIOError:
                    written = 0
                except OSError as exc:
                    self._child_failed(f"the writer process stopped reading: {exc}").emit(records)
                    return
                if written:
                    self._emitted = seq
                    self._unacked.append((seq, data))
                    if written < len(frame):
                        self._queued.append((seq, _ALREADY_KEPT, frame[written:]))
                        self._cond.notify_all()
                    return
            if len(self._queued) >= self.max_queued and not self._wait_for_room():
                self.overflowed += 1
                self._keep_on_disk(records, queue_full(self.max_queued, self._dead_letter))
                return
            if self._fallback is not None:
                self._fallback.emit(records)
                return
            self._emitted += 1
            frame = HEADER.pack(RECORDS, self._emitted, len(data)) + data
            self._queued.append((self._emitted, data, frame))
            self._cond.notify_all()

    def _wait_for_room(self) -> bool:
        deadline = time.monotonic() + FULL_WAIT
        while len(self._queued) >= self.max_queued and not self._closed:
            if not self._cond.wait(max(0.0, deadline - time.monotonic())):
                break
        return len(self._queued) < self.max_queued

    def _keep_on_disk(self, records: Records, reason: str) -> None:
        kept = _Batch.of((records,)).records()
        if self._keep.append(kept, reason, sync=False):
            self._kept += len(kept)
        else:  # the file logged why
            self._dropped += len(kept)

    def flush(self, timeout: float | None = 30.0) -> None:
        """Block until the child has written everything emitted so far."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            target = self._emitted
            if self._acked < target and self._fallback is None and not self._closed:
                # Not in a fork: its `_acked` is `_emitted` (everything was its parent's).
                self._queued.append((target, _ALREADY_KEPT, HEADER.pack(FLUSH, target, 0)))
                self._cond.notify_all()
            while (
                self._acked < target
                and self._fallback is None
                and not (self._closed or self._forked)
            ):
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
        """Flush (within `timeout` in all), then close the pipe; the child writes what is left."""
        deadline = time.monotonic() + timeout
        try:
            self.flush(timeout=timeout)
        except LedgerError as exc:
            log.error("agent-finops: %s", exc)
        finally:
            self._stop("closed", deadline)

    def _stop(self, reason: str, deadline: float | None = None) -> None:
        deadline = deadline if deadline is not None else time.monotonic() + 5.0
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        if self._forked:  # a fork's copy: the pipe and the child are the parent's
            if self._fallback is not None:
                self._fallback.close(timeout=max(0.0, deadline - time.monotonic()))
            return
        # The feeder hands over what is queued, then closes the pipe: the child writes what
        # it has and exits (on its own, if it outlives this deadline).
        self._feeder.join(timeout=max(0.0, deadline - time.monotonic()))
        if not self._feeder.is_alive():  # it stopped early (the child failed): close here
            with contextlib.suppress(OSError):
                self._child.stdin.close()  # type: ignore[union-attr]
        try:
            self._child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning(
                "agent-finops: the writer process (pid %d) is still writing; it finishes on "
                "its own",
                self._child.pid,
            )
        self._reader.join(timeout=max(0.1, deadline - time.monotonic()))
        if not self._reader.is_alive():
            with contextlib.suppress(OSError):
                self._child.stdout.close()  # type: ignore[union-attr]
        unregister_writer(self)
        _live.discard(self)
        if self._fallback is not None:
            self._fallback.close(timeout=max(0.0, deadline - time.monotonic()))

    # -- threads ----------------------------------------------------------------------

    def _feed(self) -> None:
        """Hand queued frames over in order, waiting for room in the pipe; close it at the end."""
        try:
            while True:
                with self._cond:
                    self._feeding = False
                    while not self._queued and not self._closed:
                        self._cond.wait()
                    if not self._queued or self._fallback is not None:
                        return  # closed and drained, or the fallback took everything
                    seq, data, frame = self._queued.popleft()
                    self._feeding = True
                    if data:
                        self._unacked.append((seq, data))
                    self._cond.notify_all()  # room for producers waiting on a full queue
                try:
                    _write_when_ready(self._pipe, frame)
                except OSError as exc:
                    with self._cond:
                        self._child_failed(f"the writer process stopped reading: {exc}")
                    return
        finally:
            with self._cond:
                self._feeding = False
                if self._closed:
                    with contextlib.suppress(OSError):
                        self._child.stdin.close()  # type: ignore[union-attr]

    def _read_acks(self, fd: int) -> None:
        """Take the child's acknowledgements until its pipe closes."""
        try:
            while True:
                frame = read_frame(fd)
                if frame is None:
                    break
                kind, seq, payload = frame
                if kind == FAILED:
                    with self._cond:
                        self._child_failed(
                            "the writer process could not start: "
                            + payload.decode(errors="replace")
                        )
                    break
                if kind == ACK:
                    self._ready.set()  # its first acknowledgement: the ledger is open
                    counters: dict[str, int] = pickle.loads(payload)  # our child's pipe
                    with self._cond:
                        self._counters = counters
                        self._acked = max(self._acked, seq)
                        while self._unacked and self._unacked[0][0] <= seq:
                            self._unacked.popleft()
                        self._cond.notify_all()
        except Exception as exc:  # never leave the flushers waiting on a reader that died
            with self._cond:
                self._child_failed(f"the writer process's answers could not be read: {exc!r}")
        code = self._child.wait()
        with self._cond:
            if self._fallback is not None:
                return
            if not self._closed:
                self._child_failed(f"the writer process exited (status {code})")
            elif code != 0:
                # After close: groups it acknowledged are written; the others go in-process.
                self._child_failed(f"the writer process exited (status {code}) after close")

    def _child_failed(self, reason: str) -> LedgerWriter:
        """Hand everything not acknowledged to an in-process writer (once). Under _cond."""
        if self._fallback is not None:
            return self._fallback
        self._failure = reason
        log.error("agent-finops: %s; writing the ledger in-process instead", reason)
        handed = [data for _, data in self._unacked]
        handed += [data for _, data, _ in self._queued if data]
        # Room for the hand-over on top of the usual bound: feeding it (under this lock,
        # to keep the order) never waits for a full queue.
        fallback = LedgerWriter(
            self.ledger,
            dead_letter=self._dead_letter,
            flush_on_sigterm=False,
            max_queued=self.max_queued + len(handed),
        )
        for data in handed:
            try:
                fallback.emit(decode(data))
            except LedgerError as exc:  # pragma: no cover - encode made it
                log.error("agent-finops: a record group could not be decoded: %s", exc)
        self._unacked.clear()
        self._queued.clear()
        self._acked = self._emitted
        self._fallback = fallback
        self._cond.notify_all()
        return fallback

    def _after_fork(self) -> None:
        """In a forked child: this copy must not touch the parent's pipe or child."""
        self._cond = threading.Condition()
        self._queued.clear()
        self._unacked.clear()
        self._acked = self._emitted
        self._feeding = False
        self._forked = True
        self._failure = "this process was forked from the one that started the writer process"

    def _fork_writer(self) -> LedgerWriter:
        """A forked copy's own in-process writer, made at its first record."""
        with self._cond:
            if self._fallback is None:
                self._fallback = LedgerWriter(
                    self.ledger,
                    dead_letter=self._dead_letter,
                    flush_on_sigterm=False,
                    max_queued=self.max_queued,
                )
            return self._fallback


_live: weakref.WeakSet[ProcessLedgerWriter] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for writer in list(_live):
        writer._after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _child_environment() -> dict[str, str]:
    """This environment, with this `agent_finops`'s directory first on the child's path.

    So the child imports the same code (a source checkout, or a `sys.path` entry the
    parent added); its version is checked when it opens.
    """
    root = str(Path(__file__).resolve().parents[2])
    inherited = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([root, inherited] if inherited else [root])}


def _write_when_ready(fd: int, frame: bytes) -> None:
    """Write all of `frame` to the non-blocking pipe `fd`, waiting for room as needed."""
    view = memoryview(frame)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            select.select([], [fd], [], 1.0)
