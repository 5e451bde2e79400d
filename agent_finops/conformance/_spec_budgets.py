"""Checks of the budget store (`budgets`, base): all-or-none, idempotent, never over a limit."""

from __future__ import annotations

import pickle
import time
from datetime import UTC, datetime, timedelta

from agent_finops.conformance._capabilities import Capability
from agent_finops.conformance._fixtures import D, event, leased, raises, run, usd
from agent_finops.conformance._registry import T0, Subject, spec
from agent_finops.exceptions import BudgetExceeded, ConfigurationError, LedgerError
from agent_finops.ledger import Claim, LeaseCharge, Overrun, Settlement

budgets = spec(Capability.BUDGETS)

# -- reserve --------------------------------------------------------------------------------


@budgets
def reserve_holds_the_estimate_and_reports_the_fraction_used(s: Subject) -> None:
    """A granted reservation holds its estimate on the counter and reports how full it is."""
    store = s.store()
    result = store.reserve("c1", [usd("team", "1.00", "0.25")], trace_id="t1")
    assert result.granted and not result.replayed and result.state == "reserved"
    assert result.usage[0].used == D("0.25")
    assert result.usage[0].fraction == D("0.25")
    assert store.counter("team") == (D(0), D("0.25"), D(1))
    assert store.reservation_state("c1") == "reserved"
    assert store.counter("unknown") is None


@budgets
def reserve_is_all_or_none_across_claims(s: Subject) -> None:
    """If one claim does not fit, nothing is reserved anywhere."""
    store = s.store()
    assert store.reserve("fill", [usd("run", "1.00", "0.70")], trace_id="t1").granted
    claims = [usd("team", "10.00", "0.50"), usd("run", "1.00", "0.50")]
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


@budgets
def every_refusing_claim_is_reported(s: Subject) -> None:
    """Every enforced claim that does not fit is a refusal, in claim order."""
    claims = [usd("a", "0.10", "0.20"), usd("b", "1.00", "0.20"), usd("c", "0.10", "0.20")]
    result = s.store().reserve("c1", claims, trace_id="t1")
    assert [r.counter_key for r in result.refusals] == ["a", "c"]


@budgets
def a_refusal_raises_budget_exceeded_with_its_facts(s: Subject) -> None:
    """`raise_if_refused` raises a `BudgetExceeded` that pickles with its facts."""
    result = s.store().reserve("c1", [usd("run", "0.10", "0.25", rule="run-cap")], trace_id="t1")
    with raises(BudgetExceeded, match="run-cap") as info:
        result.raise_if_refused(trace_id="t1")
    error = pickle.loads(pickle.dumps(info.value))
    assert (error.rule_id, error.limit, error.observed, error.trace_id, error.unit) == (
        "run-cap",
        D("0.10"),
        D(0),
        "t1",
        "usd",
    )


@budgets
def the_limit_itself_is_reachable_but_not_crossable(s: Subject) -> None:
    """spent + reserved may equal the limit, never exceed it, by even 1e-18."""
    store = s.store()
    assert store.reserve("c1", [usd("k", "1.00", "0.60")], trace_id="t").granted
    assert store.reserve("c2", [usd("k", "1.00", "0.40")], trace_id="t").granted
    assert not store.reserve("c3", [usd("k", "1.00", "0.000000000000000001")], trace_id="t").granted
    assert store.reserve("c4", [usd("k", "1.00", "0")], trace_id="t").granted


@budgets
def reserve_is_idempotent_by_call_id(s: Subject) -> None:
    """Reserving a granted call id again returns the original result, in its state now."""
    store = s.store()
    claims = [usd("k", "1.00", "0.30")]
    first = store.reserve("c1", claims, trace_id="t")
    again = store.reserve("c1", claims, trace_id="t")
    assert again.replayed and again.granted and again.usage == first.usage
    assert store.counter("k") == (D(0), D("0.30"), D(1))
    store.settle("c1", {"usd": D("0.10")})
    after = store.reserve("c1", claims, trace_id="t")
    assert after.replayed and after.state == "settled"
    assert store.counter("k") == (D("0.10"), D(0), D(1))


@budgets
def a_refused_call_id_is_evaluated_again_later(s: Subject) -> None:
    """A refusal reserves nothing, so the same call id may be granted later."""
    store = s.store()
    assert store.reserve("fill", [usd("k", "1.00", "0.90")], trace_id="t").granted
    assert not store.reserve("c1", [usd("k", "1.00", "0.50")], trace_id="t").granted
    store.release("fill")
    assert store.reserve("c1", [usd("k", "1.00", "0.50")], trace_id="t").granted


@budgets
def shadow_claims_are_counted_but_never_refuse(s: Subject) -> None:
    """A claim with `enforce=False` is counted (fraction above 1) and never refuses."""
    store = s.store()
    shadow = usd("shadow", "0.10", "0.50", enforce=False)
    result = store.reserve("c1", [shadow, usd("hard", "1.00", "0.50")], trace_id="t")
    assert result.granted
    assert result.usage[0].fraction == D(5)
    assert store.counter("shadow") == (D(0), D("0.50"), D("0.10"))
    # With a hard claim that does not fit, only the hard one is reported.
    refused = store.reserve("c2", [shadow, usd("hard", "1.00", "0.60")], trace_id="t")
    assert [r.counter_key for r in refused.refusals] == ["hard"]


@budgets
def tokens_and_calls_counters(s: Subject) -> None:
    """Counters in tokens and calls settle to the actual amount of their unit."""
    store = s.store()
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


@budgets
def a_call_without_claims_is_granted_and_settles(s: Subject) -> None:
    """A call no budget applies to is granted, replayed and settled like any other."""
    store = s.store()
    result = store.reserve("c1", [], trace_id="t")
    assert result.granted and result.usage == ()
    assert store.reserve("c1", [], trace_id="t").replayed
    assert store.settle("c1", {"usd": D(1)})


@budgets
def a_zero_limit_reports_infinite_use(s: Subject) -> None:
    """The fraction used of a zero limit is infinite once anything is used."""
    result = s.store().reserve("c1", [usd("k", "0", "0.01", enforce=False)], trace_id="t")
    assert result.usage[0].fraction == D("Infinity")


@budgets
def stores_of_one_ledger_share_their_counters(s: Subject) -> None:
    """Two stores from `ledger.budget_store()` see one budget, as two workers would."""
    first, second = s.store(), s.store()
    assert first.reserve("c1", [usd("k", "1.00", "0.60")], trace_id="t").granted
    assert not second.reserve("c2", [usd("k", "1.00", "0.60")], trace_id="t").granted
    # A lease store settles the calls it reserved (a call lives in one process).
    assert (first if leased(s) else second).settle("c1", {"usd": D("0.10")})
    assert first.counter("k") == (D("0.10"), D(0), D(1))


# -- settle, release ------------------------------------------------------------------------


@budgets
def settle_charges_the_actual_amount_once(s: Subject) -> None:
    """Settling twice charges once; the second `Settlement` is falsy."""
    store = s.store()
    store.reserve("c1", [usd("k", "1.00", "0.50")], trace_id="t")
    first = store.settle("c1", {"usd": D("0.123456789012345678")})
    assert first and isinstance(first, Settlement) and first.overruns == ()
    assert first.call_id == "c1"
    again = store.settle("c1", {"usd": D("0.123456789012345678")})
    assert not again and not again.settled
    assert store.counter("k") == (D("0.123456789012345678"), D(0), D(1))
    assert store.reservation_state("c1") == "settled"


@budgets
def settle_above_the_estimate_is_recorded_and_then_refuses(s: Subject) -> None:
    """An actual above the estimate is charged in full; the budget then refuses."""
    store = s.store()
    store.reserve("c1", [usd("k", "1.00", "0.10")], trace_id="t")
    assert store.settle("c1", {"usd": D("1.35")})
    assert store.counter("k") == (D("1.35"), D(0), D(1))
    refused = store.reserve("c2", [usd("k", "1.00", "0")], trace_id="t")
    assert refused.refused is not None and refused.refused.observed == D("1.35")


@budgets
def overruns_are_reported_per_claim(s: Subject) -> None:
    """A settlement names each claim whose actual amount exceeded its reservation."""
    store = s.store()
    claims = [
        usd("team", "10", "0.10", rule="team-daily"),
        Claim("tok", "tok-cap", "tokens", D(10_000), D(500)),
        Claim("calls", "rpm", "calls", D(10), D(1)),
        usd("run", "5", "0.50", rule="run-cap"),
    ]
    store.reserve("c1", claims, trace_id="t")
    settled = store.settle("c1", {"usd": D("0.25"), "tokens": 400, "calls": D(1)})
    assert settled
    assert settled.overruns == (Overrun("team", "team-daily", "usd", D("0.10"), D("0.25")),)
    (over,) = settled.overruns
    assert over.excess == D("0.15")
    store.reserve("c2", [usd("team", "10", "0.10", rule="team-daily")], trace_id="t")
    assert store.settle("c2", {"usd": None}).overruns == ()  # unknown: charged the estimate
    store.reserve("c3", claims, trace_id="t")
    both = store.settle("c3", {"usd": D("0.60"), "tokens": 501})
    assert [(o.counter_key, o.rule_id, o.unit, o.actual) for o in both.overruns] == [
        ("team", "team-daily", "usd", D("0.60")),
        ("tok", "tok-cap", "tokens", D(501)),
        ("run", "run-cap", "usd", D("0.60")),
    ]
    assert store.settle("c3", {"usd": D(9)}).overruns == ()  # not settled again


@budgets
def an_unknown_cost_is_charged_its_estimate_never_zero(s: Subject) -> None:
    """A unit given as None, or missing, is charged its reserved estimate."""
    store = s.store()
    store.reserve("c1", [usd("k", "1.00", "0.40")], trace_id="t")
    store.reserve("c2", [usd("k", "1.00", "0.30")], trace_id="t")
    assert store.settle("c1", {"usd": None})
    assert store.settle("c2", {})
    assert store.counter("k") == (D("0.70"), D(0), D(1))


@budgets
def release_gives_the_estimate_back_once(s: Subject) -> None:
    """Releasing twice gives back once; a released call cannot be charged."""
    store = s.store()
    store.reserve("c1", [usd("k", "1.00", "0.40")], trace_id="t")
    assert store.release("c1")
    assert not store.release("c1")
    assert not store.settle("c1", {"usd": D("0.40")})  # a released call cannot be charged
    assert store.counter("k") == (D(0), D(0), D(1))
    assert store.reservation_state("c1") == "released"


@budgets
def unknown_calls_settle_and_release_as_no_ops(s: Subject) -> None:
    """Settling or releasing a call id never reserved does nothing."""
    store = s.store()
    assert not store.settle("never", {"usd": D(1)})
    assert not store.release("never")


@budgets
def reservation_block_releases_on_error(s: Subject) -> None:
    """`with store.reservation(...)`: an error in the block releases the reservation."""
    store = s.store()
    claims = [usd("k", "1.00", "0.40")]
    with raises(RuntimeError), store.reservation("c1", claims, trace_id="t"):
        assert store.counter("k") == (D(0), D("0.40"), D(1))
        raise RuntimeError("the model call failed")
    assert store.counter("k") == (D(0), D(0), D(1))
    assert store.reservation_state("c1") == "released"


@budgets
def reservation_block_settles_once(s: Subject) -> None:
    """A block that settles is charged once; one that does not is charged its estimate."""
    store = s.store()
    claims = [usd("k", "1.00", "0.40")]
    with store.reservation("c1", claims, trace_id="t"):
        store.settle("c1", {"usd": D("0.05")})
    with store.reservation("c2", claims, trace_id="t"):
        pass  # no actual cost reported: charged the estimate
    assert store.counter("k") == (D("0.45"), D(0), D(1))


@budgets
def reservation_block_raises_when_refused_without_running(s: Subject) -> None:
    """A refused `reservation` block raises `BudgetExceeded` before running."""
    store = s.store()
    ran = False
    with (
        raises(BudgetExceeded),
        store.reservation("c1", [usd("k", "0.10", "0.40")], trace_id="t"),
    ):
        ran = True
    assert not ran


# -- expiry ---------------------------------------------------------------------------------
# Expiry is judged on the database's clock, which these checks take to read about
# `datetime.now(UTC)` (the same host; a remote database within a few seconds of it). The
# stores' clocks are fixed at T0 (in the past) unless given: only record stamps follow them.


def _db_now() -> datetime:
    return datetime.now(UTC)


@budgets
def expire_gives_back_reservations_of_crashed_workers(s: Subject) -> None:
    """Reservations past their TTL are given back once; live ones stay."""
    store = s.store()
    base = _db_now()
    store.reserve("crashed", [usd("k", "1.00", "0.80")], trace_id="t", ttl=timedelta(minutes=1))
    store.reserve("alive", [usd("k", "1.00", "0.10")], trace_id="t", ttl=timedelta(hours=1))
    assert store.expire(base + timedelta(seconds=30)) == []
    assert store.expire(base + timedelta(minutes=3)) == ["crashed"]
    assert store.expire(base + timedelta(minutes=4)) == []
    assert store.counter("k") == (D(0), D("0.10"), D(1))
    assert store.reservation_state("crashed") == "expired"


@budgets
def expire_uses_the_database_clock_not_the_store_clock(s: Subject) -> None:
    """`expire()` judges by the database's clock; several expire at once, sorted."""
    ahead = s.store(clock=lambda: _db_now() + timedelta(hours=2))
    for call_id in ("b", "a"):
        ahead.reserve(call_id, [usd("k", "1.00", "0.10")], trace_id="t", ttl=timedelta(minutes=1))
    assert ahead.expire() == []  # its clock is 2 h ahead; the TTLs have not run out
    quick = timedelta(milliseconds=300)
    for call_id in ("d", "c"):
        ahead.reserve(call_id, [usd("k", "1.00", "0.10")], trace_id="t", ttl=quick)
    time.sleep(0.6)
    assert ahead.expire() == ["c", "d"]
    assert ahead.counter("k") == (D(0), D("0.20"), D(1))


@budgets
def a_worker_whose_clock_runs_ahead_never_expires_live_reservations(s: Subject) -> None:
    """A store 2 h ahead (more than the TTL) neither expires nor takes another's live call.

    One hard limit of 1 call: the live worker holds it; the skewed one is refused (its
    refusal's reaper, and its `expire()`, judge by the database's clock, not its own).
    """
    live = s.store(clock=_db_now)
    skewed = s.store(clock=lambda: _db_now() + timedelta(hours=2))
    one = Claim("calls", "one-call", "calls", D(1), D(1))
    ttl = timedelta(minutes=30)
    assert live.reserve("first", [one], trace_id="t", ttl=ttl).granted
    assert skewed.expire() == []
    assert not skewed.reserve("second", [one], trace_id="t", ttl=ttl).granted
    assert skewed.expire() == []
    assert live.reservation_state("first") == "reserved"
    assert skewed.counter("calls") == (D(0), D(1), D(1))
    assert live.settle("first", {"calls": 1})
    assert skewed.counter("calls") == (D(1), D(0), D(1))


@budgets
def a_late_answer_after_expiry_is_still_charged(s: Subject) -> None:
    """Settling an expired reservation charges the actual amount (the spend is real)."""
    store = s.store()
    store.reserve("slow", [usd("k", "1.00", "0.50")], trace_id="t", ttl=timedelta(minutes=1))
    store.expire(_db_now() + timedelta(minutes=5))
    assert store.settle("slow", {"usd": D("0.20")})
    assert not store.settle("slow", {"usd": D("0.20")})
    assert store.counter("k") == (D("0.20"), D(0), D(1))


@budgets
def release_after_expiry_changes_nothing(s: Subject) -> None:
    """Releasing an expired reservation only changes its state."""
    store = s.store()
    store.reserve("gone", [usd("k", "1.00", "0.50")], trace_id="t", ttl=timedelta(minutes=1))
    store.expire(_db_now() + timedelta(minutes=5))
    assert not store.release("gone")
    assert store.reservation_state("gone") == "released"
    assert not store.settle("gone", {"usd": D("0.20")})
    assert store.counter("k") == (D(0), D(0), D(1))


@budgets
def a_refusal_first_reclaims_expired_reservations(s: Subject) -> None:
    """Before refusing, `reserve` gives back expired reservations and tries again."""
    store = s.store()
    ttl = timedelta(milliseconds=300)
    assert store.reserve("crashed", [usd("k", "1.00", "0.90")], trace_id="t", ttl=ttl).granted
    claims = [usd("k", "1.00", "0.50")]
    assert not store.reserve("early", claims, trace_id="t").granted
    time.sleep(0.6)
    later = store.reserve("later", claims, trace_id="t", now=T0 - timedelta(days=1))
    assert later.granted  # whatever the caller's `now`: the database's clock decides
    assert store.counter("k") == (D(0), D("0.50"), D(1))


@budgets
def purge_keeps_open_and_recent_reservations(s: Subject) -> None:
    """`purge` deletes finished reservations older than the moment, never open ones."""
    store = s.store()
    store.reserve("open", [usd("k", "1.00", "0.10")], trace_id="t")
    store.reserve("done", [usd("k", "1.00", "0.10")], trace_id="t")
    store.settle("done", {"usd": D("0.05")})
    assert store.purge(T0) == 0
    assert store.purge(T0 + timedelta(seconds=1)) == 1
    assert store.reservation_state("done") is None
    assert store.reservation_state("open") == "reserved"
    assert store.counter("k") == (D("0.05"), D("0.10"), D(1))


# -- validation -----------------------------------------------------------------------------


@budgets
def claims_and_amounts_are_validated(s: Subject) -> None:
    """Inexact, negative, unknown-unit or duplicate claims and amounts are refused."""
    store = s.store()
    with raises(TypeError, match="inexact"):
        Claim("k", "r", "usd", D(1), 0.1)  # type: ignore[arg-type]
    with raises(ValueError, match=">= 0"):
        Claim("k", "r", "usd", D(1), D("-0.1"))
    with raises(ValueError, match="unit"):
        Claim("k", "r", "eur", D(1), D(1))  # type: ignore[arg-type]
    assert Claim("k", "r", "tokens", 100, "5").amount == D(5)  # type: ignore[arg-type]
    with raises(ValueError, match="more than once"):
        store.reserve("c1", [usd("k", "1", "0.1"), usd("k", "1", "0.1")], trace_id="t")
    with raises(ValueError, match="call_id"):
        store.reserve("", [usd("k", "1", "0.1")], trace_id="t")
    store.reserve("c1", [usd("k", "1", "0.1")], trace_id="t")
    with raises(TypeError):
        store.settle("c1", {"usd": 0.1})  # type: ignore[dict-item]
    with raises(ValueError, match=">= 0"):
        store.settle("c1", {"usd": D(-1)})
    with raises(ValueError, match="below"):
        Claim("k", "r", "usd", D("1e20"), D(1))


@budgets
def a_counter_keeps_its_unit(s: Subject) -> None:
    """A counter counts one unit; a claim in another unit is a configuration error."""
    store = s.store()
    store.reserve("c1", [Claim("k", "r", "tokens", D(100), D(10))], trace_id="t")
    with raises(ConfigurationError, match="counts tokens"):
        store.reserve("c2", [Claim("k", "r", "usd", D(100), D(10))], trace_id="t")
    assert store.counter("k") == (D(0), D(10), D(100))


@budgets
def sums_are_exact_beyond_28_digits(s: Subject) -> None:
    """Counters sum 38-digit amounts exactly (the default decimal context keeps 28)."""
    store = s.store()
    big = D("12345678901234567890.123456789012345678")  # 38 digits: NUMERIC(38, 18)
    store.reserve("c1", [usd("k", "99999999999999999999", "0.000000000000000001")], trace_id="t")
    store.settle("c1", {"usd": big})
    store.reserve("c2", [usd("k2", "1", "0.000000000000000001")], trace_id="t")
    store.settle("c2", {"usd": D("0.000000000000000001")})
    store.reserve("c3", [usd("k", "99999999999999999999", "0")], trace_id="t")
    store.settle("c3", {"usd": D("0.000000000000000001")})
    exact = D("12345678901234567890.123456789012345679")  # `big + 1e-18` would round here
    assert store.counter("k") == (exact, D(0), D("99999999999999999999"))


@budgets
def amounts_beyond_18_decimals_round_alike(s: Subject) -> None:
    """Claims and actuals are held to 18 decimals (half-even) by every store."""
    store = s.store()
    claim = usd("k", "1", "0.0000000000000000015")
    assert claim.amount == D("0.000000000000000002")
    store.reserve("c1", [claim], trace_id="t")
    assert store.counter("k") == (D(0), D("0.000000000000000002"), D(1))
    store.settle("c1", {"usd": D("0.0000000000000000025")})
    assert store.counter("k") == (D("0.000000000000000002"), D(0), D(1))


# -- budget-lease charges, written with their events -------------------------------------------


@budgets
def a_charge_is_applied_once_with_its_event(s: Subject) -> None:
    """`write(events, charges)`: one transaction; a replayed write charges nothing twice."""
    store = s.store()
    assert store.reserve("seed", [usd("k", "1.00", "0")], trace_id="t").granted
    store.release("seed")
    s.ledger.write(runs=[run()])
    charge = LeaseCharge("w-1", "k", "usd", D("1.00"), D("0.30"), D(0), event_id="e1")
    s.ledger.write(events=[event("e1", "0.30")], charges=[charge])
    assert store.counter("k") == (D("0.30"), D(0), D(1))
    s.ledger.write(events=[event("e1", "0.30")], charges=[charge])  # a retried batch
    assert store.counter("k") == (D("0.30"), D(0), D(1))
    with raises(LedgerError):  # the event is refused: its charge is not applied either
        s.ledger.write(
            events=[event("e2", "0.10", created_at=datetime(2026, 1, 1))],  # naive: refused
            charges=[LeaseCharge("w-1", "k", "usd", D("1.00"), D("0.10"), D(0), event_id="e2")],
        )
    assert store.counter("k") == (D("0.30"), D(0), D(1))
    # A charge without its event in the write (a settle outside a tracker group) applies.
    s.ledger.write(charges=[LeaseCharge("w-1", "k", "usd", D("1.00"), D("0.05"), D(0))])
    assert store.counter("k") == (D("0.35"), D(0), D(1))
