"""The soak's checks (bench/soak.py), run after every worker exited and the reaper ran.

What the workers' journals say they saw is compared with the ledger and the budget counters.
Counters are read through the public `ledger.budget_store().counter(key)`; the tables are
read directly only to list what exists (counter keys, cost events, reservation states).
"""

from __future__ import annotations

import math
import time
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import inspect, text

from agent_finops import SQLLedger
from agent_finops.policy import Budget, Policy, RateLimit
from agent_finops.sinks import read_dead_letters

__all__ = ["Incarnation", "Outcome", "run_checks"]

LOSS_WINDOW = 0.050
"""Non-durable mode: a SIGKILL may lose the calls a worker returned in its last 50 ms."""
EVENTS, COUNTERS, RESERVATIONS = (
    "finops_cost_events",
    "finops_budget_counters",
    "finops_reservations",
)
LEASES = "finops_budget_leases"
"""Budget leases (a store that leases headroom to workers): must be empty at the end."""


@dataclass
class Incarnation:
    """One worker process as its journal tells it, and how it ended."""

    name: str
    ended: str = "exit 0"
    """`exit N`, `SIGKILL` or `SIGTERM` (sent by the soak)."""
    ok: list[str] = field(default_factory=list)
    refused: Counter[str] = field(default_factory=Counter)
    failed: int = 0
    poison: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    exhausted: dict[str, float] = field(default_factory=dict)
    """Team -> when this process saw its first team-budget refusal (epoch seconds)."""
    first: float = math.inf
    last: float = 0.0

    def read(self, path: Path) -> None:
        """Take in the journal's lines (a torn last line is ignored)."""
        for line in path.read_text().splitlines():
            parts = line.split(" ", 2)
            if len(parts) < 3:
                continue
            stamp, what, rest = float(parts[0]), parts[1], parts[2]
            self.first, self.last = min(self.first, stamp), max(self.last, stamp)
            if what == "ok":
                self.ok.append(rest)
            elif what == "refused":
                rule, _, team = rest.split(" ")
                self.refused[rule] += 1
                if rule == "team-daily":
                    self.exhausted.setdefault(team, stamp)
            elif what == "failed":
                self.failed += 1
            elif what == "poison":
                self.poison.append(rest)
            elif what == "error":
                self.errors.append(rest)

    @property
    def allowed_loss(self) -> int:
        """Returned calls this process may lose (non-durable): its last 50 ms when killed."""
        if self.ended == "exit 0" or not self.ok:
            return 0
        rate = len(self.ok) / max(self.last - self.first, 1.0)
        return math.ceil(rate * LOSS_WINDOW)


@dataclass
class Outcome:
    """The figures and each check's verdict."""

    figures: dict[str, Any] = field(default_factory=dict)
    passed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def check(self, name: str, ok: bool, detail: str = "") -> None:
        """Record one check."""
        (self.passed if ok else self.failed).append(name + (f": {detail}" if detail else ""))


@dataclass(frozen=True)
class Event:
    """A cost event as the checks need it."""

    event_id: str
    call_id: str
    trace_id: str
    kind: str
    cost: Decimal | None
    tokens: int
    tags: dict[str, str]
    created_at: datetime


def load_events(ledger: SQLLedger) -> list[Event]:
    """Every cost event in the ledger (read as records: the rows store some values once)."""
    utc = ZoneInfo("UTC")
    everything = (datetime(1, 1, 2, tzinfo=utc), datetime(9999, 12, 30, tzinfo=utc))
    return [
        Event(
            e.event_id,
            e.span_id,
            e.trace_id,
            e.kind,
            e.cost,
            e.uncached_input_tokens + e.cache_read_tokens + e.cache_write_tokens + e.output_tokens,
            e.tags,
            e.created_at,
        )
        for e in ledger.iter_events(*everything, batch_size=5000)
    ]


def _scalars(ledger: SQLLedger, sql: str) -> list[Any]:
    with ledger.engine.connect() as conn:
        return list(conn.execute(text(sql)).all())


def group_of(key: str) -> str:
    """A counter key without its time bucket: `rule|scope` (windows are summed)."""
    return key.rsplit("|", 1)[0]


def charged(event: Event, unit: str) -> Decimal:
    """What a settled call charges a counter of `unit`."""
    if unit == "usd":
        return event.cost if event.cost is not None else Decimal(0)
    if unit == "tokens":
        return Decimal(event.tokens)
    return Decimal(1)


def _groups(policy: Policy, event: Event) -> Iterable[tuple[str, str]]:
    """(counter group, unit) of every limit the call was charged to."""
    tz = ZoneInfo(policy.timezone)
    rules: list[Budget | RateLimit] = [*policy.budgets, *policy.rate_limits]
    for rule in rules:
        if isinstance(rule, Budget):
            key = rule.counter_key(event.tags, now=event.created_at, tz=tz, run_id=event.trace_id)
        else:
            key = rule.counter_key(event.tags, now=event.created_at, tz=tz)
        if key is not None:
            yield group_of(key), rule.unit


def run_checks(
    url: str,
    policy: Policy,
    incarnations: list[Incarnation],
    dead_letter: Path,
    *,
    durable: bool,
    lease: float,
    per_call_bound: dict[str, Decimal],
    started: float,
    strict_settlement: bool = False,
) -> Outcome:
    """Reap past the worker lease, then check everything (all workers have exited)."""
    out = Outcome()
    ok_ids = [c for inc in incarnations for c in inc.ok]
    refused: Counter[str] = Counter()
    for inc in incarnations:
        refused.update(inc.refused)
    errors = [e for inc in incarnations for e in inc.errors]
    out.check("no worker error", not errors, "; ".join(errors[:3]))
    bad_exits = [
        f"{i.name}: {i.ended}"
        for i in incarnations
        if i.ended.startswith("exit ") and i.ended != "exit 0"
    ]
    out.check("every worker the soak did not kill exited 0", not bad_exits, ", ".join(bad_exits))
    time.sleep(lease * 1.5)  # every killed worker's lease runs out
    with SQLLedger.from_url(url) as ledger, ledger.budget_store() as store:
        expired = store.expire()
        keys = [k for (k,) in _scalars(ledger, f"SELECT counter_key FROM {COUNTERS}")]
        counters = {k: store.counter(k) for k in keys}
        states = dict(_scalars(ledger, f"SELECT call_id, state FROM {RESERVATIONS}"))
        tables = set(inspect(ledger.engine).get_table_names())
        leases = _scalars(ledger, f"SELECT count(*) FROM {LEASES}")[0][0] if LEASES in tables else 0
        events = load_events(ledger)
    out.figures["reaped at the end"] = len(expired)

    # 1. no hard limit exceeded
    over = [f"{k}: {c.spent} > {c.limit}" for k, c in counters.items() if c and c.spent > c.limit]
    out.check(
        "no budget exceeded (spent <= limit on every deny counter)", not over, "; ".join(over[:3])
    )
    # 3. nothing left reserved
    open_rows = [c for c, s in states.items() if s == "reserved"]
    held = [f"{k}: {c.reserved}" for k, c in counters.items() if c and c.reserved != 0]
    out.check("no reservation open after the reaper", not open_rows, f"{len(open_rows)} open")
    out.check("every counter's reserved is 0", not held, "; ".join(held[:3]))
    out.check(f"{LEASES} empty", leases == 0, f"{leases} rows")

    # 4. no duplicate
    ids = Counter(e.event_id for e in events)
    model = [e for e in events if e.kind == "model"]
    per_call = Counter(e.call_id for e in model)
    dup_ids = [i for i, n in ids.items() if n > 1]
    dup_calls = [c for c, n in per_call.items() if n > 1]
    out.check("event ids unique", not dup_ids, ", ".join(dup_ids[:3]))
    out.check("at most one model event per call", not dup_calls, ", ".join(dup_calls[:3]))

    # loss window: every returned call in the ledger
    in_ledger = set(per_call)
    lost_by = {i.name: sum(c not in in_ledger for c in i.ok) for i in incarnations}
    lost = sum(lost_by.values())
    out.figures["returned calls missing from the ledger"] = lost
    if durable:
        out.check("durable: every returned call is in the ledger", lost == 0, f"{lost} missing")
    else:
        over_window = [
            f"{i.name} ({i.ended}) lost {lost_by[i.name]} > {i.allowed_loss}"
            for i in incarnations
            if lost_by[i.name] > i.allowed_loss
        ]
        out.check(
            f"loss within {LOSS_WINDOW * 1000:.0f} ms of calls per killed worker",
            not over_window,
            "; ".join(over_window[:3]),
        )

    # 5. poison records: each in the dead-letter file or the ledger
    poison = [p for inc in incarnations for p in inc.poison]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a line torn by SIGKILL is skipped with a warning
        kept = {getattr(d.record, "event_id", None) for d in read_dead_letters(dead_letter)}
    missing_poison = [p for p in poison if p not in kept and p not in ids]
    out.figures["poison records"] = len(poison)
    out.check(
        "every poison record is in the dead-letter file or the ledger",
        not missing_poison
        or (not durable and len(missing_poison) <= sum(i.allowed_loss > 0 for i in incarnations)),
        f"{len(missing_poison)} missing",
    )

    check_totals(
        out,
        policy,
        model,
        counters,
        states,
        durable=durable,
        per_call_bound=per_call_bound,
        strict_settlement=strict_settlement,
    )
    out.figures["returned calls"] = len(ok_ids)
    out.figures["model events in the ledger"] = sum(not e.trace_id.endswith("p") for e in model)
    out.figures["failed calls (released)"] = sum(i.failed for i in incarnations)
    out.figures["refusals"] = dict(sorted(refused.items()))
    first_refusal: dict[str, float] = {}
    for inc in incarnations:
        for team, at in inc.exhausted.items():
            first_refusal[team] = min(first_refusal.get(team, at), at)
    out.figures["team budget ran out at (s after start)"] = {
        t: round(at - started, 1) for t, at in sorted(first_refusal.items())
    }
    out.check("the team budget was exhausted (refusals happened)", refused.get("team-daily", 0) > 0)
    return out


def check_totals(
    out: Outcome,
    policy: Policy,
    model: list[Event],
    counters: dict[str, Any],
    states: dict[str, str],
    *,
    durable: bool,
    per_call_bound: dict[str, Decimal],
    strict_settlement: bool,
) -> None:
    """Check 2: per rule and scope, the ledger's events sum to the counters' spent exactly."""
    per_call = {e.call_id for e in model}
    guarded = [e for e in model if not e.trace_id.endswith("p")]
    ledger_sum: dict[str, Decimal] = defaultdict(Decimal)
    uncharged: dict[str, Decimal] = defaultdict(Decimal)
    units: dict[str, str] = {}
    never_charged = [e for e in guarded if states.get(e.call_id) == "expired"]
    never_charged_ids = {e.call_id for e in never_charged}
    for e in guarded:
        for group, unit in _groups(policy, e):
            units[group] = unit
            ledger_sum[group] += charged(e, unit)
            if e.call_id in never_charged_ids:
                uncharged[group] += charged(e, unit)
    spent: dict[str, Decimal] = defaultdict(Decimal)
    limit_of: dict[str, Decimal] = {}
    for key, state in counters.items():
        if state is not None:
            spent[group_of(key)] += state.spent
            limit_of[key] = state.limit
    settled_unrecorded = sum(1 for c, s in states.items() if s == "settled" and c not in per_call)
    out.figures["calls recorded but never charged (killed between record and settle)"] = len(
        never_charged
    )
    out.figures["calls charged but not recorded (killed before the write)"] = settled_unrecorded
    mismatch = []
    for group in sorted(set(ledger_sum) | set(spent)):
        expected = ledger_sum[group] - uncharged[group]
        slack = settled_unrecorded * per_call_bound[units.get(group, "usd")]
        got = spent[group]
        if not (expected <= got <= expected + (0 if durable else slack)):
            mismatch.append(
                f"{group}: counters {got} vs ledger {ledger_sum[group]} - never charged {uncharged[group]}"
            )
    out.figures["counter groups compared"] = len(set(ledger_sum) | set(spent))
    out.check(
        "ledger totals == counters' spent (exact Decimal, per rule and scope)",
        not mismatch,
        "; ".join(mismatch[:3]),
    )
    if strict_settlement:
        out.check("every recorded call was charged", not never_charged, f"{len(never_charged)} not")
    elif never_charged:
        out.notes.append(
            f"{len(never_charged)} call(s) in the ledger were never charged to their budgets (their process was killed between writing the event and settling; the reaper then gave their reservation back): {', '.join(sorted(never_charged_ids)[:3])}"
        )
    team = [g for g in ledger_sum if g.startswith("team-daily|")]
    real_over = [
        f"{g}: ledger {ledger_sum[g]}"
        for g in team
        if ledger_sum[g]
        > max((v for k, v in limit_of.items() if group_of(k) == g), default=Decimal(0))
    ]
    if real_over:
        out.notes.append("real spend (ledger) above a team limit: " + "; ".join(real_over))
