"""The top cost drivers of an anomaly: which tag values (or models, tools, nodes) grew most.

Each value's cost in the anomalous window is compared with its median over the baseline
windows (a value absent from a window cost nothing there); the drivers are the values whose
cost grew most, at most three. Tags are summed by the ledger (`aggregate`); the pseudo
dimensions `model`, `tool` and `node` (an event's model name, tool name and LangGraph node
path) are read from the window's events, so they are only used for short windows.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Final

from agent_finops.anomalies._baseline import median
from agent_finops.ledger import CostEvent, Ledger, Window

__all__ = ["DEFAULT_DRIVERS", "EVENT_DIMENSIONS", "MAX_DRIVERS", "top_drivers"]

MAX_DRIVERS: Final = 3
EVENT_DIMENSIONS: Final = ("model", "tool", "node")
"""Dimensions taken from the events themselves rather than from tags."""
DEFAULT_DRIVERS: Final = ("agent", "model", "tool", "node", "task_type", "user", "project")
"""What the drivers of an anomaly are looked for in, by default."""
_RESERVED: Final = frozenset({"cost", "expected"})

_Key = tuple[str, str]


def top_drivers(
    ledger: Ledger,
    *,
    scope: Mapping[str, str],
    window: Window,
    baseline: Sequence[Window] = (),
    dimensions: Sequence[str] = DEFAULT_DRIVERS,
    from_events: bool = True,
    count: int = MAX_DRIVERS,
) -> list[dict[str, str]]:
    """The values that drove the cost of `scope` in `window` up, most first.

    Each driver is `{<dimension>: <value>, "cost": <USD in window>, "expected": <median USD
    over the baseline windows>}` (no `expected` without a baseline: the biggest spenders
    then). Dimensions already fixed by the scope are skipped; `from_events=False` skips the
    event dimensions (for long windows).
    """
    where = {k: [v] for k, v in scope.items()}
    wanted = [d for d in dimensions if d not in scope and d not in _RESERVED]
    tags = [d for d in wanted if d not in EVENT_DIMENSIONS]
    fields = [d for d in wanted if d in EVENT_DIMENSIONS] if from_events else []
    windows = [window, *baseline]
    costs: list[dict[_Key, Decimal]] = [defaultdict(Decimal) for _ in windows]
    for tag in tags:
        for found in ledger.aggregate(by=[tag], windows=windows, where=where, distinct=False):
            value = found.group[0]
            if value is not None:
                costs[found.window][(tag, value)] += found.totals.cost
    if fields:
        for index, (start, end) in enumerate(windows):
            for event in ledger.iter_events(start, end, where=where, batch_size=5000):
                if event.cost is None:
                    continue
                for name in fields:
                    value = _event_value(event, name)
                    if value is not None:
                        costs[index][(name, value)] += event.cost
    ranked: list[tuple[Decimal, int, _Key, Decimal, Decimal | None]] = []
    order = {d: i for i, d in enumerate(wanted)}
    for key, observed in costs[0].items():
        expected = median([c.get(key, Decimal(0)) for c in costs[1:]]) if baseline else None
        growth = observed - (expected or Decimal(0))
        if growth > 0:
            ranked.append((growth, order[key[0]], key, observed, expected))
    ranked.sort(key=lambda r: (-r[0], r[1], r[2][1]))
    drivers = []
    for _, _, (name, value), observed, expected in ranked[:count]:
        driver = {name: value, "cost": _plain(observed)}
        if expected is not None:
            driver["expected"] = _plain(expected)
        drivers.append(driver)
    return drivers


def _event_value(event: CostEvent, name: str) -> str | None:
    if name == "node":
        return event.node_path
    if name == "model":
        return event.name if event.kind == "model" else None
    return event.name if event.kind == "tool" else None


def _plain(amount: Decimal) -> str:
    """`40`, `0.5372`: exact, without the trailing zeros a NUMERIC column pads with."""
    return format(amount.normalize(), "f")
