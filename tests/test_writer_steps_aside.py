"""The ledger writer steps aside for budget calls in flight, and is never held by one.

While a budget call waits on its database, the background writer pauses between its units
of Python work so the call's answer does not wait for the GIL (agent_finops' foreground
rule; the latency it saves is measured by bench/bench_grow.py). The pause is bounded per
batch: a budget call blocked for long (here a grow waiting on a counter row another
connection has locked) must not hold the writer back, and both finish once the lock goes.
"""

from __future__ import annotations

import threading
import time
from decimal import Decimal

import pytest
from sqlalchemy import create_engine, text

from agent_finops import SQLLedger
from agent_finops.ledger import Claim, LeasedBudgetStore, ReserveResult, RunRecord
from agent_finops.sinks import LedgerWriter, Records
from tests.conftest import drop_postgres_schema, model_event, postgres_url_or_skip

D = Decimal
KEY = "cap|*|task=blocked"


@pytest.mark.postgres
def test_a_budget_call_blocked_on_the_database_does_not_hold_the_writer() -> None:
    url = postgres_url_or_skip()
    try:
        with SQLLedger.from_url(url) as ledger:
            store = ledger.budget_store(leases=True)
            assert isinstance(store, LeasedBudgetStore)
            claim = Claim(KEY, "cap", "usd", D(100), D(1))
            assert store.reserve("c0", [claim], trace_id="t").granted  # the counter exists
            store.settle("c0", {"usd": D(1)})
            locker = create_engine(url)
            with locker.connect() as other:
                other.execute(
                    text("SELECT 1 FROM finops_budget_counters WHERE counter_key = :k FOR UPDATE"),
                    {"k": KEY},
                )  # held until `other` ends its transaction
                results: list[ReserveResult | BaseException] = []

                def grow() -> None:  # needs more than the slice left: a grow, which blocks
                    try:
                        big = Claim(KEY, "cap", "usd", D(100), D(60))
                        results.append(store.reserve("c1", [big], trace_id="t"))
                    except BaseException as exc:
                        results.append(exc)

                blocked = threading.Thread(target=grow)
                blocked.start()
                time.sleep(0.3)
                assert blocked.is_alive() and not results  # waiting on the row lock

                writer = LedgerWriter(ledger, flush_on_sigterm=False)
                try:
                    run = RunRecord(trace_id="t-0", name="g", started_at=model_event(0).created_at)
                    writer.emit(Records(runs=[run]))
                    for n in range(300):
                        writer.emit(Records(events=[model_event(n)]))
                    writer.flush(timeout=5.0)  # a writer held by the grow would time out
                finally:
                    writer.close()
                assert blocked.is_alive()  # the grow is still waiting: the writer went on
                assert len(ledger.load_trace("t-0").events) == 20
                other.rollback()  # the lock goes: the grow lands
            blocked.join(timeout=10)
            assert len(results) == 1
            granted = results[0]
            assert isinstance(granted, ReserveResult) and granted.granted
            store.close()
            locker.dispose()
    finally:
        drop_postgres_schema(url)
