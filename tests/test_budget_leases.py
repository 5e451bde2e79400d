"""`LeasedBudgetStore`: what per-worker budget leases must never do (overspend, leak, lose).

The conformance suite runs every budget check on leased stores too; these are the cases
particular to leases (a reviewer's reproductions): overruns with calls in flight, slices
near the limit, a paused worker whose leases were reaped, fork, use after close.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Sequence
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from agent_finops import CostTracker, SQLLedger
from agent_finops.exceptions import LedgerError
from agent_finops.ledger import (
    BudgetStore,
    Claim,
    LeaseCharge,
    LeasedBudgetStore,
    Ledger,
)

D = Decimal


def tokens(n: int, key: str = "k", limit: int = 1000) -> list[Claim]:
    return [Claim(key, "r", "tokens", D(limit), D(n))]


@pytest.fixture
def ledger(memory_or_file_ledger: Ledger) -> Ledger:
    return memory_or_file_ledger


def leased(ledger: Ledger, **options: object) -> LeasedBudgetStore:
    store = ledger.budget_store(leases=True, **options)  # type: ignore[arg-type]
    assert isinstance(store, LeasedBudgetStore)
    return store


def test_slices_are_a_fraction_of_the_headroom_and_exact_near_the_limit(ledger: Ledger) -> None:
    store = leased(ledger)
    assert store.reserve("a", tokens(10), trace_id=None).granted
    assert store.leased() == {"k": D(125)}  # 1/8 of 1,000 left
    other = leased(ledger)
    granted = 0
    while other.reserve(f"b{granted}", tokens(10), trace_id=None).granted:
        granted += 1
    # Every grow took 1/8 of what was left, then exactly one call's shortfall: the other
    # worker got all of the headroom the first one does not lease.
    assert granted == (1000 - 125) // 10
    # Its own view: the first worker's lease, and its own calls in flight.
    assert other.counter("k") == (D(0), D(125 + granted * 10), D(1000))
    store.close()
    other.close()


def test_an_overrun_never_frees_what_other_calls_in_flight_hold(ledger: Ledger) -> None:
    first, second = leased(ledger), leased(ledger)
    assert first.reserve("a", tokens(100), trace_id=None).granted  # a slice of 125
    assert first.reserve("b", tokens(25), trace_id=None).granted  # fits the slice
    assert first.settle("b", {"tokens": 900}).overruns  # an estimate far too low
    # "a" still holds 100 of the lease: the database must still count it.
    assert first.counter("k") == (D(900), D(100), D(1000))
    n = 0
    while second.reserve(f"x{n}", tokens(10), trace_id=None).granted:
        n += 1
    assert n == 0  # 900 spent + 100 in flight: nothing left
    assert first.settle("a", {"tokens": 100})
    assert not first.reserve("c", tokens(1), trace_id=None).granted  # refused, not raised
    first.close()
    second.close()
    final = ledger.budget_store().counter("k")
    assert final == (D(1000), D(0), D(1000))


def test_close_gives_back_only_unused_headroom_and_a_late_settle_is_still_charged(
    ledger: Ledger,
) -> None:
    store = leased(ledger, lease_idle=None)
    assert store.reserve("long", tokens(60, limit=100), trace_id=None).granted
    assert store.reserve("short", tokens(1, limit=100), trace_id=None).granted
    assert store.settle("short", {"tokens": 1})
    store.close()
    check = ledger.budget_store()
    spent, reserved, _ = check.counter("k") or (None, None, None)
    assert spent == 1 and reserved == 60  # the call in flight keeps what it holds
    with pytest.raises(LedgerError, match="closed"):
        store.reserve("again", tokens(1, limit=100), trace_id=None)


def test_idle_slices_come_back(ledger: Ledger) -> None:
    store = leased(ledger, lease_idle=timedelta(milliseconds=100))
    assert store.reserve("a", tokens(10), trace_id=None).granted
    assert store.settle("a", {"tokens": 10})
    deadline = time.monotonic() + 10
    while store.leased() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert store.leased() == {}
    assert ledger.budget_store().counter("k") == (D(10), D(0), D(1000))
    store.close()


def test_a_forked_child_never_gives_back_the_parents_leases(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/l.sqlite"
    with SQLLedger.from_url(url) as ledger:
        store = leased(ledger, lease_fraction=D(1), lease_idle=None)
        assert store.reserve("a", tokens(1, limit=100), trace_id=None).granted
        store.release("a")
        pid = os.fork()
        if pid == 0:  # a child that never reserves, and closes its ledger
            ledger.close()
            os._exit(0)
        os.waitpid(pid, 0)
        with SQLLedger.from_url(url) as again:
            other = again.budget_store()
            assert other.counter("k") == (D(0), D(100), D(100))
            assert not other.reserve("o", tokens(1, limit=100), trace_id=None).granted
            other.close()
        store.close()


CHILD = textwrap.dedent(
    """
    import sys
    from datetime import timedelta
    from decimal import Decimal
    from agent_finops.ledger import Claim, SQLLedger
    ledger = SQLLedger.from_url(sys.argv[1])
    store = ledger.budget_store(leases=True, worker_lease=timedelta(seconds=1),
                                lease_fraction=Decimal(1), lease_idle=None)
    claim = [Claim("k", "r", "tokens", Decimal(100), Decimal(1))]
    assert store.reserve("c0", claim, trace_id=None).granted
    store.release("c0")
    print("ready", flush=True)
    sys.stdin.readline()
    n = sum(store.reserve(f"a{i}", claim, trace_id=None).granted for i in range(200))
    print(n, flush=True)
    sys.stdin.readline()
    store.close()
    ledger.close()
    """
)


def test_a_paused_worker_whose_leases_were_reaped_does_not_spend_them(tmp_path: Path) -> None:
    """A worker paused past its lease is reaped; resumed, it drops the reaped slice.

    After SIGCONT its upkeep thread renews the lease first: the renewal sees the lapse.
    """
    url = f"sqlite:///{tmp_path}/l.sqlite"
    with SQLLedger.from_url(url) as ledger:
        ledger.setup()
        other = ledger.budget_store(worker_lease=timedelta(seconds=1))
        with subprocess.Popen(
            [sys.executable, "-c", CHILD, url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        ) as child:
            _race_a_paused_worker(child, other)
        other.close()


def _race_a_paused_worker(child: subprocess.Popen[str], other: BudgetStore) -> None:
    try:
        assert child.stdout is not None and child.stdin is not None
        assert child.stdout.readline().strip() == "ready"
        os.kill(child.pid, signal.SIGSTOP)
        time.sleep(2.5)
        other.expire()  # the reaper gives the paused worker's lease back
        assert other.counter("k") == (D(0), D(0), D(100))
        os.kill(child.pid, signal.SIGCONT)
        time.sleep(1.0)  # its upkeep thread renews its worker lease first
        mine = sum(
            other.reserve(f"b{i}", tokens(1, limit=100), trace_id=None).granted for i in range(60)
        )
        child.stdin.write("go\n")
        child.stdin.flush()
        theirs = int(child.stdout.readline())
        assert mine == 60 and mine + theirs <= 100, (mine, theirs)
        child.stdin.write("done\n")
        child.stdin.flush()
        assert child.wait(timeout=30) == 0
    finally:
        if child.poll() is None:
            child.kill()


class _HeldSink:
    """A charge sink whose first emit waits, writing through a synchronous tracker.

    The wait stands for a thread switch between a settle's bookkeeping and its emit.
    """

    def __init__(self, ledger: Ledger) -> None:
        self.tracker = CostTracker(ledger, background=False)
        self.emitting = threading.Event()
        self.go_on = threading.Event()
        self.emitted: list[LeaseCharge] = []

    def emit_charges(self, charges: Sequence[LeaseCharge]) -> None:
        if not self.emitted:
            self.emitting.set()
            self.go_on.wait(10)
        self.emitted.extend(charges)
        self.tracker.emit_charges(charges)

    def flush(self, timeout: float | None = None) -> None:
        self.tracker.flush(timeout)


def test_a_grow_waits_for_an_overrun_being_emitted_and_sees_its_spend(ledger: Ledger) -> None:
    sink = _HeldSink(ledger)
    first = ledger.budget_store(leases=True, charges_to=sink, lease_idle=None)
    assert first.reserve("a", tokens(100), trace_id=None).granted  # a slice of 125
    settling = threading.Thread(target=first.settle, args=("a", {"tokens": 950}))
    settling.start()  # the overrun goes beyond the slice; its emit is held
    assert sink.emitting.wait(10)
    results: list[bool] = []
    reserving = threading.Thread(
        target=lambda: results.append(first.reserve("b", tokens(100), trace_id=None).granted)
    )
    reserving.start()
    reserving.join(0.3)  # a grow that does not wait for the emit decides meanwhile
    sink.go_on.set()
    settling.join(10)
    reserving.join(10)
    # 950 spent: 100 more does not fit. Deciding before the charge was written, the grow
    # would have seen 0 spent and granted it.
    assert results == [False]
    first.close()
    assert ledger.budget_store().counter("k") == (D(950), D(0), D(1000))


def test_spend_no_lease_held_is_written_before_the_next_grow(ledger: Ledger) -> None:
    """A call that failed open (`on_ledger_error: allow`) is charged outside any lease."""
    tracker = CostTracker(ledger)  # a background writer: charges wait in its queue
    store = ledger.budget_store(leases=True, charges_to=tracker, lease_idle=None)
    assert store.reserve("a", tokens(10), trace_id=None).granted  # a slice of 125
    assert store.settle("a", {"tokens": 10})
    store.emit_charges([LeaseCharge("", "k", "tokens", D(1000), D(980), D(0), event_id="x1")])
    # 990 spent: a call of 20 must not fit, from the slice (115 left in it) or a grow.
    assert not store.reserve("b", tokens(20), trace_id=None).granted
    store.close()
    tracker.close()
    assert ledger.budget_store().counter("k") == (D(990), D(0), D(1000))


def test_an_overrun_still_in_an_open_record_group_is_counted_by_a_grow(tmp_path: Path) -> None:
    """The `RunGuard` settles inside `tracker.grouped()`: the charge waits for the block's end."""
    with SQLLedger.from_url(f"sqlite:///{tmp_path}/l.sqlite") as ledger:
        tracker = CostTracker(ledger)
        store = ledger.budget_store(leases=True, charges_to=tracker, lease_idle=None)
        assert store.reserve("a", tokens(100), trace_id=None).granted  # a slice of 125
        settled, go_on = threading.Event(), threading.Event()

        def settle_in_a_group() -> None:
            with tracker.grouped():
                store.settle("a", {"tokens": 950})  # beyond the slice
                settled.set()
                go_on.wait(10)  # the rest of the group: the event, the span...

        settling = threading.Thread(target=settle_in_a_group)
        settling.start()
        assert settled.wait(10)
        refused = not store.reserve("b", tokens(100), trace_id=None).granted
        go_on.set()
        settling.join(10)
        store.close()
        tracker.close()
        assert refused  # 950 spent: 100 more does not fit
        assert ledger.budget_store().counter("k") == (D(950), D(0), D(1000))


class _QueueSink:
    """A writer's queue: a flush writes what was queued when it began (the first one waits)."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.pending: list[LeaseCharge] = []
        self.lock = threading.Lock()
        self.flushing, self.go_on = threading.Event(), threading.Event()

    def emit_charges(self, charges: Sequence[LeaseCharge]) -> None:
        with self.lock:
            self.pending.extend(charges)

    def flush(self, timeout: float | None = None) -> None:
        with self.lock:
            target = list(self.pending)
        if not self.flushing.is_set():
            self.flushing.set()
            self.go_on.wait(10)
        with self.lock:
            self.pending = [c for c in self.pending if c not in target]
        self.ledger.write(charges=target)


def test_an_overrun_during_a_grows_flush_is_still_counted(ledger: Ledger) -> None:
    sink = _QueueSink(ledger)
    store = ledger.budget_store(leases=True, charges_to=sink, lease_idle=None)
    assert store.reserve("a", tokens(100), trace_id=None).granted  # a slice of 125
    assert store.reserve("c", tokens(10), trace_id=None).granted
    assert store.settle("a", {"tokens": 300})  # an overrun
    out: list[bool] = []
    growing = threading.Thread(
        target=lambda: out.append(store.reserve("b", tokens(150), trace_id=None).granted)
    )
    growing.start()
    assert sink.flushing.wait(10)  # the grow writes the first overrun...
    assert store.settle("c", {"tokens": 600})  # ...while a second one is settled
    sink.go_on.set()
    growing.join(10)
    assert out == [False]  # 900 spent: 150 more does not fit
    sink.flush()
    store.close()
    sink.flush()
    assert ledger.budget_store().counter("k") == (D(900), D(0), D(1000))
