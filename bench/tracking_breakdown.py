"""Where tracking overhead comes from, layer by layer, on bench_tracking's graph.

    python bench/tracking_breakdown.py

Each line adds one layer over the no-callback run: a do-nothing LangChain handler (the
framework's own dispatch), LangChain's UsageMetadataCallbackHandler, our handler with a
ledger that discards writes (inline, then through the background writer).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_tracking as b
from langchain_core.callbacks import BaseCallbackHandler, UsageMetadataCallbackHandler

from agent_finops import CostTracker
from agent_finops_langgraph import FinOpsCallbackHandler


class Null:
    """A ledger that discards writes."""

    def write(self, **kw: object) -> None:
        """Discard."""


class Noop(BaseCallbackHandler):
    """A handler that does nothing."""


class NoopInline(BaseCallbackHandler):
    """A handler that does nothing, inline."""

    run_inline = True


g = b.build_graph()


def t(cbs):
    best = 9e9
    for _ in range(3):
        s = time.perf_counter()
        b.run_all(g, cbs)
        best = min(best, time.perf_counter() - s)
    return best / 2000 * 1e6


base = t([])
for name, cbs in [
    ("noop handler", [Noop()]),
    ("noop inline", [NoopInline()]),
    ("usage", [UsageMetadataCallbackHandler()]),
    ("ours, null ledger inline", [FinOpsCallbackHandler(CostTracker(Null(), background=False))]),
    ("ours, null ledger bg", [FinOpsCallbackHandler(CostTracker(Null()))]),
]:
    v = t(cbs)
    print(f"{name:28s} {v:7.1f} us/call  +{v - base:6.1f}")
print(f"{'none':28s} {base:7.1f}")
