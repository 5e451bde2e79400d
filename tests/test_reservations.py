"""Budget reservations: all-or-none, idempotent, never over a hard limit, on every backend.

The `store` fixture runs each test on a SQLite file, in-memory SQLite and PostgreSQL (the
conftest `ledger` params). The race tests prove the point of the module: concurrent callers
(threads, and processes sharing one database) never push spend past a hard limit, and the
counter sums the settled actual amounts exactly.
"""

from __future__ import annotations

import multiprocessing
import pickle
import random
import sys
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import create_engine, create_mock_engine, inspect, text
from sqlmodel import SQLModel

from agent_finops.exceptions import BudgetExceeded, ConfigurationError
from agent_finops.ledger import SQLLedger
from agent_finops.ledger._reservations import BudgetStore, Claim

T0 = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
D = Decimal


def _usd(key: str, limit: str, amount: str, *, enforce: bool = True, rule: str = "") -> Claim:
    return Claim(key, rule or f"rule-{key}", "usd", D(limit), D(amount), enforce=enforce)


@pytest.fixture
def store(ledger: SQLLedger, request: pytest.FixtureRequest) -> Iterator[BudgetStore]:
    """A budget store on the ledger's database (every backend of the `ledger` fixture)."""
    budgets = BudgetStore(ledger.engine, clock=lambda: T0)
    try:
        yield budgets
    finally:
        budgets.close()
        checked_out = getattr(ledger.engine.pool, "checkedout", lambda: 0)()
        assert checked_out == 0, "the store kept a connection after close()"
        if ledger.dialect == "postgresql":
            _drop_schema(ledger)


def _drop_schema(ledger: SQLLedger) -> None:
    options = str(ledger.engine.url.query.get("options", ""))
    schema = options.partition("search_path=")[2]
    if not schema.startswith("t_"):
        return
    base = ledger.engine.url.difference_update_query(["options"])
    ledger.close()
    engine = create_engine(base)
    with engine.begin() as conn:
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    engine.dispose()


# -- reserve --------------------------------------------------------------------------------


def test_reserve_holds_the_estimate_and_reports_the_fraction_used(store: BudgetStore) -> None:
    result = store.reserve("c1", [_usd("team", "1.00", "0.25")], trace_id="t1")
    assert result.granted and not result.replayed and result.state == "reserved"
    assert result.usage[0].used == D("0.25")
    assert result.usage[0].fraction == D("0.25")
    assert store.counter("team") == (D(0), D("0.25"), D(1))
    assert store.reservation_state("c1") == "reserved"
    assert store.counter("unknown") is None


def test_reserve_is_all_or_none_across_claims(store: BudgetStore) -> None:
    assert store.reserve("fill", [_usd("run", "1.00", "0.70")], trace_id="t1").granted
    claims = [_usd("team", "10.00", "0.50"), _usd("run", "1.00", "0.50")]
    result = store.reserve("c1", claims, trace_id="t1")
    assert not result.granted and result.state is None
    refusal = result.refused
    assert refusal is not None
    assert (refusal.counter_key, refusal.rule_id) == ("run", "rule-run")
    assert (refusal.observed, refusal.limit, refusal.amount) == (D("0.70"), D("1.00"), D("0.50"))
    # Nothing was reserved anywhere, not even on the claim that fit.
    assert store.counter("team") in (None, (D(0), D(0), D(10)))
    assert store.counter("run") == (D(0), D("0.70"), D(1))
    assert store.reservation_state("c1") is None
    # Usage of a refusal is what is used now, without this call.
    assert [u.used for u in result.usage] == [D(0), D("0.70")]


def test_every_refusing_claim_is_reported(store: BudgetStore) -> None:
    claims = [_usd("a", "0.10", "0.20"), _usd("b", "1.00", "0.20"), _usd("c", "0.10", "0.20")]
    result = store.reserve("c1", claims, trace_id="t1")
    assert [r.counter_key for r in result.refusals] == ["a", "c"]


def test_a_refusal_raises_budget_exceeded_with_its_facts(store: BudgetStore) -> None:
    result = store.reserve("c1", [_usd("run", "0.10", "0.25", rule="run-cap")], trace_id="t1")
    with pytest.raises(BudgetExceeded, match="run-cap") as info:
        result.raise_if_refused(trace_id="t1")
    error = pickle.loads(pickle.dumps(info.value))
    assert (error.rule_id, error.limit, error.observed, error.trace_id, error.unit) == (
        "run-cap",
        D("0.10"),
        D(0),
        "t1",
        "usd",
    )


def test_the_limit_itself_is_reachable_but_not_crossable(store: BudgetStore) -> None:
    assert store.reserve("c1", [_usd("k", "1.00", "0.60")], trace_id="t").granted
    assert store.reserve("c2", [_usd("k", "1.00", "0.40")], trace_id="t").granted
    assert not store.reserve(
        "c3", [_usd("k", "1.00", "0.000000000000000001")], trace_id="t"
    ).granted
    assert store.reserve("c4", [_usd("k", "1.00", "0")], trace_id="t").granted


def test_reserve_is_idempotent_by_call_id(store: BudgetStore) -> None:
    claims = [_usd("k", "1.00", "0.30")]
    first = store.reserve("c1", claims, trace_id="t")
    again = store.reserve("c1", claims, trace_id="t")
    assert again.replayed and again.granted and again.usage == first.usage
    assert store.counter("k") == (D(0), D("0.30"), D(1))
    store.settle("c1", {"usd": D("0.10")})
    after = store.reserve("c1", claims, trace_id="t")
    assert after.replayed and after.state == "settled"
    assert store.counter("k") == (D("0.10"), D(0), D(1))


def test_a_refused_call_id_is_evaluated_again_later(store: BudgetStore) -> None:
    assert store.reserve("fill", [_usd("k", "1.00", "0.90")], trace_id="t").granted
    assert not store.reserve("c1", [_usd("k", "1.00", "0.50")], trace_id="t").granted
    store.release("fill")
    assert store.reserve("c1", [_usd("k", "1.00", "0.50")], trace_id="t").granted


def test_shadow_claims_are_counted_but_never_refuse(store: BudgetStore) -> None:
    shadow = _usd("shadow", "0.10", "0.50", enforce=False)
    result = store.reserve("c1", [shadow, _usd("hard", "1.00", "0.50")], trace_id="t")
    assert result.granted
    assert result.usage[0].fraction == D(5)
    assert store.counter("shadow") == (D(0), D("0.50"), D("0.10"))
    # With a hard claim that does not fit, only the hard one is reported.
    refused = store.reserve("c2", [shadow, _usd("hard", "1.00", "0.60")], trace_id="t")
    assert [r.counter_key for r in refused.refusals] == ["hard"]


def test_tokens_and_calls_counters(store: BudgetStore) -> None:
    claims = [
        Claim("usd", "r1", "usd", D("1"), D("0.02")),
        Claim("tok", "r2", "tokens", D(10_000), D(4_000)),
        Claim("calls", "r3", "calls", D(3), D(1)),
    ]
    assert store.reserve("c1", claims, trace_id="t").granted
    assert store.settle("c1", {"usd": D("0.013"), "tokens": 1_234, "calls": D(1)})
    assert store.counter("usd") == (D("0.013"), D(0), D(1))
    assert store.counter("tok") == (D(1234), D(0), D(10000))
    assert store.counter("calls") == (D(1), D(0), D(3))


def test_a_call_without_claims_is_granted_and_settles(store: BudgetStore) -> None:
    result = store.reserve("c1", [], trace_id="t")
    assert result.granted and result.usage == ()
    assert store.reserve("c1", [], trace_id="t").replayed
    assert store.settle("c1", {"usd": D(1)})


def test_a_zero_limit_reports_infinite_use(store: BudgetStore) -> None:
    result = store.reserve("c1", [_usd("k", "0", "0.01", enforce=False)], trace_id="t")
    assert result.usage[0].fraction == D("Infinity")


# -- settle, release ------------------------------------------------------------------------


def test_settle_charges_the_actual_amount_once(store: BudgetStore) -> None:
    store.reserve("c1", [_usd("k", "1.00", "0.50")], trace_id="t")
    assert store.settle("c1", {"usd": D("0.123456789012345678")})
    assert not store.settle("c1", {"usd": D("0.123456789012345678")})
    assert store.counter("k") == (D("0.123456789012345678"), D(0), D(1))
    assert store.reservation_state("c1") == "settled"


def test_settle_above_the_estimate_is_recorded_and_then_refuses(store: BudgetStore) -> None:
    store.reserve("c1", [_usd("k", "1.00", "0.10")], trace_id="t")
    assert store.settle("c1", {"usd": D("1.35")})
    assert store.counter("k") == (D("1.35"), D(0), D(1))
    refused = store.reserve("c2", [_usd("k", "1.00", "0")], trace_id="t")
    assert refused.refused is not None and refused.refused.observed == D("1.35")


def test_an_unknown_cost_is_charged_its_estimate_never_zero(store: BudgetStore) -> None:
    store.reserve("c1", [_usd("k", "1.00", "0.40")], trace_id="t")
    store.reserve("c2", [_usd("k", "1.00", "0.30")], trace_id="t")
    assert store.settle("c1", {"usd": None})
    assert store.settle("c2", {})
    assert store.counter("k") == (D("0.70"), D(0), D(1))


def test_release_gives_the_estimate_back_once(store: BudgetStore) -> None:
    store.reserve("c1", [_usd("k", "1.00", "0.40")], trace_id="t")
    assert store.release("c1")
    assert not store.release("c1")
    assert not store.settle("c1", {"usd": D("0.40")})  # a released call cannot be charged
    assert store.counter("k") == (D(0), D(0), D(1))
    assert store.reservation_state("c1") == "released"


def test_unknown_calls_settle_and_release_as_no_ops(store: BudgetStore) -> None:
    assert not store.settle("never", {"usd": D(1)})
    assert not store.release("never")


def test_reservation_block_releases_on_error(store: BudgetStore) -> None:
    claims = [_usd("k", "1.00", "0.40")]
    with pytest.raises(RuntimeError), store.reservation("c1", claims, trace_id="t"):
        assert store.counter("k") == (D(0), D("0.40"), D(1))
        raise RuntimeError("the model call failed")
    assert store.counter("k") == (D(0), D(0), D(1))
    assert store.reservation_state("c1") == "released"


def test_reservation_block_settles_once(store: BudgetStore) -> None:
    claims = [_usd("k", "1.00", "0.40")]
    with store.reservation("c1", claims, trace_id="t"):
        store.settle("c1", {"usd": D("0.05")})
    with store.reservation("c2", claims, trace_id="t"):
        pass  # no actual cost reported: charged the estimate
    assert store.counter("k") == (D("0.45"), D(0), D(1))


def test_reservation_block_raises_when_refused_without_running(store: BudgetStore) -> None:
    ran = False
    with (
        pytest.raises(BudgetExceeded),
        store.reservation("c1", [_usd("k", "0.10", "0.40")], trace_id="t"),
    ):
        ran = True
    assert not ran


# -- expiry ---------------------------------------------------------------------------------


def test_expire_gives_back_reservations_of_crashed_workers(store: BudgetStore) -> None:
    store.reserve("crashed", [_usd("k", "1.00", "0.80")], trace_id="t", ttl=timedelta(minutes=1))
    store.reserve("alive", [_usd("k", "1.00", "0.10")], trace_id="t", ttl=timedelta(hours=1))
    assert store.expire(T0 + timedelta(seconds=30)) == []
    assert store.expire(T0 + timedelta(minutes=2)) == ["crashed"]
    assert store.expire(T0 + timedelta(minutes=3)) == []
    assert store.counter("k") == (D(0), D("0.10"), D(1))
    assert store.reservation_state("crashed") == "expired"


def test_a_late_answer_after_expiry_is_still_charged(store: BudgetStore) -> None:
    store.reserve("slow", [_usd("k", "1.00", "0.50")], trace_id="t", ttl=timedelta(minutes=1))
    store.expire(T0 + timedelta(minutes=5))
    assert store.settle("slow", {"usd": D("0.20")})
    assert not store.settle("slow", {"usd": D("0.20")})
    assert store.counter("k") == (D("0.20"), D(0), D(1))


def test_release_after_expiry_changes_nothing(store: BudgetStore) -> None:
    store.reserve("gone", [_usd("k", "1.00", "0.50")], trace_id="t", ttl=timedelta(minutes=1))
    store.expire(T0 + timedelta(minutes=5))
    assert not store.release("gone")
    assert store.reservation_state("gone") == "released"
    assert not store.settle("gone", {"usd": D("0.20")})
    assert store.counter("k") == (D(0), D(0), D(1))


def test_a_refusal_first_reclaims_expired_reservations(store: BudgetStore) -> None:
    ttl = timedelta(minutes=1)
    assert store.reserve("crashed", [_usd("k", "1.00", "0.90")], trace_id="t", ttl=ttl).granted
    claims = [_usd("k", "1.00", "0.50")]
    assert not store.reserve("early", claims, trace_id="t", now=T0 + timedelta(seconds=10)).granted
    later = store.reserve("later", claims, trace_id="t", now=T0 + timedelta(minutes=2))
    assert later.granted
    assert store.counter("k") == (D(0), D("0.50"), D(1))


def test_purge_keeps_open_and_recent_reservations(store: BudgetStore) -> None:
    store.reserve("open", [_usd("k", "1.00", "0.10")], trace_id="t")
    store.reserve("done", [_usd("k", "1.00", "0.10")], trace_id="t")
    store.settle("done", {"usd": D("0.05")})
    assert store.purge(T0) == 0
    assert store.purge(T0 + timedelta(seconds=1)) == 1
    assert store.reservation_state("done") is None
    assert store.reservation_state("open") == "reserved"
    assert store.counter("k") == (D("0.05"), D("0.10"), D(1))


# -- validation -----------------------------------------------------------------------------


def test_claims_and_amounts_are_validated(store: BudgetStore) -> None:
    with pytest.raises(TypeError, match="inexact"):
        Claim("k", "r", "usd", D(1), 0.1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=">= 0"):
        Claim("k", "r", "usd", D(1), D("-0.1"))
    with pytest.raises(ValueError, match="unit"):
        Claim("k", "r", "eur", D(1), D(1))  # type: ignore[arg-type]
    assert Claim("k", "r", "tokens", 100, "5").amount == D(5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="more than once"):
        store.reserve("c1", [_usd("k", "1", "0.1"), _usd("k", "1", "0.1")], trace_id="t")
    with pytest.raises(ValueError, match="call_id"):
        store.reserve("", [_usd("k", "1", "0.1")], trace_id="t")
    store.reserve("c1", [_usd("k", "1", "0.1")], trace_id="t")
    with pytest.raises(TypeError):
        store.settle("c1", {"usd": 0.1})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match=">= 0"):
        store.settle("c1", {"usd": D(-1)})


def test_a_counter_keeps_its_unit(store: BudgetStore) -> None:
    store.reserve("c1", [Claim("k", "r", "tokens", D(100), D(10))], trace_id="t")
    with pytest.raises(ConfigurationError, match="counts tokens"):
        store.reserve("c2", [Claim("k", "r", "usd", D(100), D(10))], trace_id="t")
    assert store.counter("k") == (D(0), D(10), D(100))


def test_sums_are_exact_beyond_28_digits(store: BudgetStore) -> None:
    big = D("12345678901234567890.123456789012345678")  # 38 digits: NUMERIC(38, 18)
    store.reserve("c1", [_usd("k", "99999999999999999999", "0.000000000000000001")], trace_id="t")
    store.settle("c1", {"usd": big})
    store.reserve("c2", [_usd("k2", "1", "0.000000000000000001")], trace_id="t")
    store.settle("c2", {"usd": D("0.000000000000000001")})
    store.reserve("c3", [_usd("k", "99999999999999999999", "0")], trace_id="t")
    store.settle("c3", {"usd": D("0.000000000000000001")})
    exact = D("12345678901234567890.123456789012345679")  # `big + 1e-18` would round here
    assert store.counter("k") == (exact, D(0), D("99999999999999999999"))


# -- setup ----------------------------------------------------------------------------------


def test_tables_come_with_the_sqlmodel_metadata(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path}/meta.sqlite")
    SQLModel.metadata.create_all(engine)
    tables = set(inspect(engine).get_table_names())
    assert {"finops_budget_counters", "finops_reservations"} <= tables
    with BudgetStore(engine) as again:  # setup() on existing tables is a no-op
        again.setup()
        assert again.reserve("c1", [_usd("k", "1", "0.1")], trace_id="t").granted
    engine.dispose()


def test_other_databases_are_refused() -> None:
    engine = create_mock_engine("mysql://", executor=lambda *_a, **_k: None)
    with pytest.raises(ConfigurationError, match="SQLite or PostgreSQL"):
        BudgetStore(engine, auto_setup=False)  # type: ignore[arg-type]


# -- concurrency ----------------------------------------------------------------------------


def _skip_shared_memory(ledger: SQLLedger) -> None:
    if ledger.engine.url.database in (None, "", ":memory:") and ledger.dialect == "sqlite":
        pytest.skip("in-memory SQLite is one shared connection: a single-threaded reference")


def test_threads_racing_one_budget_never_cross_it(store: BudgetStore, ledger: SQLLedger) -> None:
    _skip_shared_memory(ledger)
    limit = D("1.00")
    settled: list[Decimal] = []
    problems: list[str] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        rng = random.Random(n)
        try:
            for i in range(25):
                estimate = D("0.01") * rng.randint(1, 8)
                call_id = f"t{n}-{i}"
                granted = store.reserve(call_id, [_usd("k", "1.00", str(estimate))], trace_id="t")
                seen = store.counter("k")
                if seen is not None and seen.spent + seen.reserved > limit:
                    problems.append(f"over the limit after {call_id}: {seen}")
                if granted.granted:
                    actual = (estimate * D(rng.random())).quantize(D("0.000001"))
                    assert store.settle(call_id, {"usd": actual})
                    with lock:
                        settled.append(actual)
        except Exception as exc:
            problems.append(repr(exc))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert problems == []
    spent, reserved, _ = store.counter("k") or (None, None, None)
    assert spent == sum(settled) and reserved == 0
    assert spent is not None and D("0.5") < spent <= limit


def test_a_call_id_raced_by_threads_is_reserved_once(store: BudgetStore, ledger: SQLLedger) -> None:
    _skip_shared_memory(ledger)
    barrier = threading.Barrier(8)
    results = []

    def worker() -> None:
        barrier.wait()
        results.append(store.reserve("same", [_usd("k", "1.00", "0.30")], trace_id="t"))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(r.granted for r in results)
    assert sum(not r.replayed for r in results) == 1
    assert store.counter("k") == (D(0), D("0.30"), D(1))


@pytest.mark.slow
def test_processes_racing_one_budget_never_cross_it(store: BudgetStore, ledger: SQLLedger) -> None:
    """4 processes x 4 threads, started together, on one hard $1.00 budget in one database."""
    _skip_shared_memory(ledger)
    here = str(Path(__file__).resolve().parent)
    if here not in sys.path:
        sys.path.insert(0, here)  # spawned children inherit sys.path and import the worker
    import reservation_race_worker as worker

    key, limit = f"race-{uuid.uuid4().hex[:8]}", D("1.00")
    # Create the counter up front so the race is about the limit, not about creating it.
    assert store.reserve("seed", [_usd(key, str(limit), "0")], trace_id="t").granted
    store.release("seed")
    url = ledger.engine.url.render_as_string(hide_password=False)
    spawn = multiprocessing.get_context("spawn")
    start, queue = spawn.Barrier(4), spawn.Queue()
    processes = [
        spawn.Process(target=worker.main, args=(start, queue, url, {}, key, str(limit), 4, 25, n))
        for n in range(4)
    ]
    for process in processes:
        process.start()
    try:
        reports = [queue.get(timeout=120) for _ in processes]
    finally:
        for process in processes:
            process.join(timeout=30)

    settled = [D(a) for r in reports for a in r["settled"]]
    assert [e for r in reports for e in r["errors"]] == []
    assert [v for r in reports for v in r["violations"]] == []
    assert sum(r["refused"] for r in reports) > 0, "the race never reached the limit"
    store.expire(datetime.now(UTC) + timedelta(days=1))  # reservations of "crashed" calls
    spent, reserved, _ = store.counter(key) or (None, None, None)
    assert spent == sum(settled), "the counter must equal the settled actuals exactly"
    assert reserved == 0
    assert spent is not None and D("0.5") < spent <= limit
