"""The process writer's child: reads record batches from its parent and writes the ledger.

    python -m agent_finops.sinks._writer_child     # started by ProcessLedgerWriter only

Single-threaded: it reads what has arrived (up to `BATCH_MAX` groups) and delivers it in
one transaction with the `LedgerWriter`'s rules (retried while the ledger is unreachable,
a refused record isolated and kept in the dead-letter file), acknowledging what it has
written when a flush asks and about every `ACK_EVERY` seconds. It ignores SIGINT and
SIGTERM: it runs until its parent closes the pipe (at exit, or because it was killed),
writes what it has read, and exits; so a parent killed with SIGKILL loses only what it had
not yet handed to the pipe.
"""

from __future__ import annotations

import logging
import os
import pickle
import select
import signal
import sys
import time
from typing import Any, Final

from agent_finops.ledger import SQLLedger
from agent_finops.sinks._frames import ACK, FAILED, FLUSH, OPEN, RECORDS, read_frame, write_frame
from agent_finops.sinks._ledger_writer import BATCH_MAX, _Batch, _Delivery
from agent_finops.sinks._wire import decode

log = logging.getLogger("agent_finops")

RETRY_DELAYS: Final = (0.05, 0.2, 1.0)
ACK_EVERY: Final = 0.5
"""Seconds between the acknowledgements the child sends while it writes (besides those a
flush asks for): the parent keeps what is unacknowledged, to rewrite it if the child dies."""
GIVE_UP_AFTER_EXIT: Final = 30.0
"""Seconds the child keeps retrying an unreachable ledger once its parent is gone; then
what it holds goes to the dead-letter file (an orphan never retries forever)."""


class _ChildDelivery(_Delivery):
    """Delivery that retries while the parent lives, and for a bounded time after."""

    def __init__(self, ledger: SQLLedger, dead_letter: str) -> None:
        super().__init__(ledger, dead_letter, sync=False)
        self.orphaned_at: float | None = None
        self.batches = 0

    def _give_up(self, attempt: int) -> bool:
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
                "dead_lettered": self.dead_lettered,
                "dropped": self.dropped,
                "batches": self.batches,
            }
        )


def main() -> int:
    """Serve one parent: open its ledger, write its batches until the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    inbox, outbox = sys.stdin.fileno(), sys.stdout.fileno()
    first = read_frame(inbox)
    if first is None or first[0] != OPEN:
        return 2
    options: dict[str, Any] = pickle.loads(first[2])  # our parent's pipe
    try:
        ledger = SQLLedger.from_url(options["url"], **options["engine_kwargs"])
    except Exception as exc:  # reported to the parent, which writes in-process instead
        write_frame(outbox, FAILED, 0, f"{type(exc).__name__}: {exc}".encode())
        return 1
    delivery = _ChildDelivery(ledger, options["dead_letter"])
    try:
        _serve(inbox, outbox, delivery)
    finally:
        ledger.close()
    return 0


def _serve(inbox: int, outbox: int, delivery: _ChildDelivery) -> None:
    ended = False
    acked_at = time.monotonic()
    last = 0  # sequence number of the last group read
    while not ended:
        groups, seq, flush, ended = _read_batch(inbox)
        last = max(last, seq)
        if ended:
            delivery.orphaned_at = time.monotonic()
        if groups:
            delivery._deliver(_Batch.of(decode(data) for data in groups))
            delivery.batches += 1
        now = time.monotonic()
        if flush or (groups and now - acked_at >= ACK_EVERY):
            acked_at = now
            try:
                write_frame(outbox, ACK, max(last, flush), delivery.counters())
            except OSError:  # the parent is gone: keep writing what it sent
                delivery.orphaned_at = delivery.orphaned_at or now


def _read_batch(inbox: int) -> tuple[list[bytes], int, int, bool]:
    """Block for one frame, then take what else is waiting.

    Returns (encoded groups, last group's sequence number, the last flush's sequence number
    or 0, whether the pipe ended).
    """
    groups: list[bytes] = []
    seq = flush = 0
    while True:
        frame = read_frame(inbox)
        if frame is None:
            return groups, seq, flush, True
        kind, frame_seq, payload = frame
        if kind == RECORDS:
            groups.append(payload)
            seq = frame_seq
        elif kind == FLUSH:
            flush = frame_seq
        if len(groups) >= BATCH_MAX or not select.select([inbox], [], [], 0)[0]:
            return groups, seq, flush, False


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    os._exit(main())
