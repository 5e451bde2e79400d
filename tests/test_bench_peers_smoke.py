"""bench/bench_peers.py's peer adapters still export, to its no-op endpoint, for a few calls.

Skipped, with the reason, when the peer's package is missing (`pip install -e '.[bench]'`).
The endpoint runs in its own process on 127.0.0.1; nothing reaches the real services.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

pytest.importorskip("langgraph")

BENCH = Path(__file__).resolve().parents[1] / "bench" / "bench_peers.py"
CALLS = 2 * 20  # two graph runs of bench_tracking's 20 model calls


def _bench_peers() -> ModuleType:
    module = sys.modules.get("bench_peers")
    if module is None:
        spec = importlib.util.spec_from_file_location("bench_peers", BENCH)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["bench_peers"] = module
        spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.parametrize(
    ("adapter", "package"), [("LangfusePeer", "langfuse"), ("LangSmithPeer", "langsmith")]
)
def test_peer_exports_every_call_to_the_noop_endpoint(adapter: str, package: str) -> None:
    if importlib.util.find_spec(package) is None:
        pytest.skip(f"{package} is not installed: pip install -e '.[bench]'")
    bench = _bench_peers()
    graph = sys.modules["bench_tracking"].build_graph()
    with bench.NoopEndpoint() as endpoint:
        peer = getattr(bench, adapter)(endpoint.url)
        try:
            callbacks = peer.callbacks()
            for _ in range(CALLS // 20):
                graph.invoke({"calls": 0}, config={"callbacks": callbacks, "recursion_limit": 25})
            peer.flush()
            received = endpoint.stats()
        finally:
            peer.close()
    exported = sum(row["items"] for row in received.values())
    assert exported >= CALLS, received  # a span (Langfuse) or a run (LangSmith) per call, at least
    assert all(path.startswith(("/api/public/otel/", "/runs/")) for path in received), received
