"""Checks under concurrent threads (`threads`, extended): races have exactly one winner."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from decimal import Decimal

from agent_finops.conformance._capabilities import Capability
from agent_finops.conformance._fixtures import D, approval, event, run, usd
from agent_finops.conformance._registry import T0, Subject, spec
from agent_finops.exceptions import AlreadyDecided, LedgerError
from agent_finops.ledger import ApprovalRecord, ReserveResult

threads = spec(Capability.THREADS)


def _together(count: int, work: Callable[[int], None]) -> list[str]:
    """Run `work(n)` on `count` threads started at once; the errors they raised."""
    barrier = threading.Barrier(count)
    errors: list[str] = []

    def main(n: int) -> None:
        try:
            barrier.wait()
            work(n)
        except Exception as exc:
            errors.append(f"thread {n}: {exc!r}")

    pool = [threading.Thread(target=main, args=(n,)) for n in range(count)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return errors


@threads
def racing_approvers_one_wins(s: Subject) -> None:
    """Six approvers deciding one request at once: one wins, five get `AlreadyDecided`."""
    s.ledger.add_approval(approval())
    results: list[str] = []

    def decide(n: int) -> None:
        try:
            s.ledger.decide_approval("ap-1", status="approved", by=f"u{n}", at=T0, extra=D(1))
            results.append("won")
        except AlreadyDecided:
            results.append("lost")

    assert _together(6, decide) == []
    assert sorted(results) == ["lost"] * 5 + ["won"]
    (approved,) = s.ledger.list_approvals(status="approved")
    assert approved.extra == Decimal(1)


@threads
def a_decision_is_taken_up_by_exactly_one_worker(s: Subject) -> None:
    """Six workers resuming one thread: exactly one takes the decision."""
    ledger = s.ledger
    ledger.add_approval(approval())
    assert ledger.take_decision(thread_id="thread-9", trace_id=None, at=T0) is None  # pending
    ledger.decide_approval("ap-1", status="denied", by="bob", at=T0)
    taken: list[ApprovalRecord] = []

    def take(_n: int) -> None:
        got = ledger.take_decision(thread_id="thread-9", trace_id=None, at=T0)
        if got is not None:
            taken.append(got)

    assert _together(6, take) == []
    assert len(taken) == 1
    assert ledger.take_decision(thread_id="thread-9", trace_id=None, at=T0) is None


@threads
def concurrent_writes_of_the_same_records_count_once(s: Subject) -> None:
    """Eight writers of overlapping batches: every event is stored once."""

    def write(n: int) -> None:
        for i in range(10):
            events = [event(f"e{(n + i) % 12}", "0.01"), event(f"e{i}", "0.01")]
            for attempt in range(5):  # contention is a retryable fault, as the tracker treats it
                try:
                    s.ledger.write(runs=[run()], events=events)
                    break
                except LedgerError as exc:
                    if not exc.retryable or attempt == 4:
                        raise

    assert _together(8, write) == []
    (summary,) = s.ledger.list_runs()
    assert (summary.model_calls, summary.cost) == (12, D("0.12"))


@threads
def threads_racing_one_budget_never_cross_it(s: Subject) -> None:
    """Eight threads x 25 calls on one $1.00 budget: never over; spent = settled, exactly."""
    store = s.store()
    limit = D("1.00")
    settled: list[Decimal] = []
    problems: list[str] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        rng = random.Random(n)
        for i in range(25):
            estimate = D("0.01") * rng.randint(1, 8)
            call_id = f"t{n}-{i}"
            granted = store.reserve(call_id, [usd("k", "1.00", str(estimate))], trace_id="t")
            seen = store.counter("k")
            if seen is not None and seen.spent + seen.reserved > limit:
                problems.append(f"over the limit after {call_id}: {seen}")
            if granted.granted:
                actual = (estimate * D(rng.random())).quantize(D("0.000001"))
                assert store.settle(call_id, {"usd": actual})
                with lock:
                    settled.append(actual)

    problems += _together(8, worker)
    assert problems == []
    spent, reserved, _ = store.counter("k") or (None, None, None)
    assert spent == sum(settled) and reserved == 0
    assert spent is not None and D("0.5") < spent <= limit


@threads
def a_call_id_raced_by_threads_is_reserved_once(s: Subject) -> None:
    """Eight threads reserving one call id: one reservation, seven replays."""
    store = s.store()
    results: list[ReserveResult] = []

    def worker(_n: int) -> None:
        results.append(store.reserve("same", [usd("k", "1.00", "0.30")], trace_id="t"))

    assert _together(8, worker) == []
    assert all(r.granted for r in results)
    assert sum(not r.replayed for r in results) == 1
    assert store.counter("k") == (D(0), D("0.30"), D(1))


@threads
def racing_settle_and_release_finish_once(s: Subject) -> None:
    """Settles and releases of one call racing: exactly one of them finishes it."""
    store = s.store()
    store.reserve("c1", [usd("k", "1.00", "0.40")], trace_id="t")
    wins: list[str] = []

    def finish(n: int) -> None:
        if n % 2:
            if store.settle("c1", {"usd": D("0.25")}):
                wins.append("settled")
        elif store.release("c1"):
            wins.append("released")

    assert _together(8, finish) == []
    assert len(wins) == 1
    state = store.reservation_state("c1")
    assert state == wins[0]
    expected = (D("0.25"), D(0), D(1)) if state == "settled" else (D(0), D(0), D(1))
    assert store.counter("k") == expected
