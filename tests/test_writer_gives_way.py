"""The SQLite ledger writer gives way to budget transactions, and loses or doubles nothing.

A budget grow waits for the database's write lock; a ledger write of many events (and their
lease charges) in progress rolls back between statements when one waits, and is retried
once the grow has the lock. Racing both for a while: every event is written once, every
charge applied once (the counter equals their exact sum), and the grows all land.
"""

from __future__ import annotations

import threading
from decimal import Decimal
from pathlib import Path

from agent_finops import SQLLedger
from agent_finops.ledger import Claim, LeaseCharge, LeasedBudgetStore
from tests.conftest import model_event

D = Decimal
BATCHES, PER_BATCH = 120, 40


def test_writes_racing_budget_grows_write_everything_once(tmp_path: Path) -> None:
    with SQLLedger.from_url(f"sqlite:///{tmp_path}/l.sqlite") as ledger:
        store = ledger.budget_store(leases=True)
        assert isinstance(store, LeasedBudgetStore)
        done = threading.Event()
        errors: list[BaseException] = []

        def write() -> None:
            try:
                for b in range(BATCHES):
                    ids = range(b * PER_BATCH, (b + 1) * PER_BATCH)
                    events = [model_event(n) for n in ids]
                    charges = [
                        LeaseCharge("", "spend", "usd", D(1000), D("0.000279"), D(0), f"e-{n}")
                        for n in ids
                    ]
                    ledger.write(events=events, charges=charges)
            except BaseException as exc:
                errors.append(exc)
            finally:
                done.set()

        writer = threading.Thread(target=write)
        writer.start()
        grows = 0
        while not done.is_set():  # a new counter each time: every reserve is a grow
            claim = Claim(f"task-{grows}", "task", "usd", D(1), D("0.01"))
            assert store.reserve(f"c-{grows}", [claim], trace_id=None).granted
            grows += 1
        writer.join()
        assert errors == []
        assert grows > 0
        total = BATCHES * PER_BATCH
        with ledger.engine.connect() as conn:
            count = conn.exec_driver_sql("SELECT count(*) FROM finops_cost_events").scalar_one()
        assert count == total
        counter = store.counter("spend")
        assert counter is not None and counter.spent == D("0.000279") * total
        for n in range(grows):
            assert store.reservation_state(f"c-{n}") == "reserved"
        store.close()
