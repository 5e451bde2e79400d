"""Records and claims the checks build (one place, so every check writes the same shapes)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from decimal import Decimal
from typing import Any, Generic, TypeVar

from agent_finops.conformance._registry import T0, Subject
from agent_finops.ledger import (
    DEFAULT_BUCKETS,
    ApprovalRecord,
    BudgetStore,
    Claim,
    CostEvent,
    LeasedBudgetStore,
    RunRecord,
    SpanRecord,
)

__all__ = ["D", "Raised", "approval", "event", "raises", "run", "span", "usd"]

D = Decimal
_E = TypeVar("_E", bound=BaseException)


class Raised(Generic[_E]):
    """The exception a `raises` block caught (`value`)."""

    value: _E


@contextmanager
def raises(kind: type[_E], match: str | None = None) -> Iterator[Raised[_E]]:
    """Like `pytest.raises` (the suite also runs without pytest): the block must raise `kind`."""
    caught: Raised[_E] = Raised()
    try:
        yield caught
    except kind as exc:
        if match is not None and not re.search(match, str(exc)):
            raise AssertionError(f"{exc!r} does not match {match!r}") from exc
        caught.value = exc
        return
    raise AssertionError(f"did not raise {kind.__name__}")


def run(trace: str = "trace-1", **kw: Any) -> RunRecord:
    """A run of graph `graph` started at T0, tagged team=t."""
    fields: dict[str, Any] = {"name": "graph", "started_at": T0, "tags": {"team": "t"}}
    fields.update(kw)
    return RunRecord(trace_id=trace, **fields)


def span(span_id: str, parent: str | None, trace: str = "trace-1", **kw: Any) -> SpanRecord:
    """A finished node span (or the run span when `parent` is None)."""
    fields: dict[str, Any] = {
        "name": span_id,
        "kind": "node" if parent else "run",
        "node_path": span_id if parent else None,
        "started_at": T0,
        "ended_at": T0 + timedelta(seconds=1),
        "status": "ok",
    }
    fields.update(kw)
    return SpanRecord(span_id=span_id, trace_id=trace, parent_span_id=parent, **fields)


def event(event_id: str, cost: str | None, trace: str = "trace-1", **kw: Any) -> CostEvent:
    """A model call of node n1 with usage of every kind."""
    fields: dict[str, Any] = {
        "span_id": "n1",
        "kind": "model",
        "name": "gpt-4o-mini",
        "provider": "openai",
        "created_at": T0,
        "node_path": "n1",
        "tags": {"team": "t", "project": "p", "custom": "x"},
        "cost": None if cost is None else Decimal(cost),
        "price_source": "genai-prices",
        "price_version": "genai-prices 0.2.3",
        "uncached_input_tokens": 600,
        "cache_read_tokens": 400,
        "output_tokens": 50,
        "reasoning_tokens": 20,
    }
    fields.update(kw)
    fields.setdefault("bucket", DEFAULT_BUCKETS[fields["kind"]])  # as a ledger returns it
    return CostEvent(event_id=event_id, trace_id=trace, **fields)


def approval(approval_id: str = "ap-1", trace: str = "trace-1", **kw: Any) -> ApprovalRecord:
    """A pending request of thread-9 on the support-daily budget."""
    fields: dict[str, Any] = {
        "thread_id": "thread-9",
        "rule_id": "support-daily",
        "scope": {"team": "support"},
        "unit": "usd",
        "spent": Decimal("24.9"),
        "limit": Decimal(25),
        "estimate": Decimal("0.35"),
        "policy_version": "abc",
        "created_at": T0,
    }
    fields.update(kw)
    return ApprovalRecord(approval_id=approval_id, trace_id=trace, **fields)


def usd(key: str, limit: str, amount: str, *, enforce: bool = True, rule: str = "") -> Claim:
    """A USD claim on counter `key` (its rule is `rule-<key>` unless given)."""
    return Claim(key, rule or f"rule-{key}", "usd", D(limit), D(amount), enforce=enforce)


def held_here(store: BudgetStore, key: str) -> Decimal:
    """What `store` itself holds of a counter's `reserved` (its budget lease; 0 for others)."""
    if isinstance(store, LeasedBudgetStore):
        return store.leased().get(key, Decimal(0))
    return Decimal(0)


def leased(s: Subject) -> bool:
    """Whether the checks of this subject run on `LeasedBudgetStore`s."""
    return bool(s.backend.store_options.get("leases"))
