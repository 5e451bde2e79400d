"""agent-finops for LangGraph and LangChain: cost callback handler, node guard, agent middleware.

Install with `pip install agent-finops-langgraph` (from this repo:
`pip install -e . -e integrations/langgraph`).
"""

try:
    import langchain_core  # noqa: F401
    import langgraph  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised by tests/test_exports.py
    from agent_finops.exceptions import MissingDependencyError

    raise MissingDependencyError(
        "agent_finops_langgraph needs LangGraph and LangChain: "
        "pip install agent-finops-langgraph  (or: pip install langgraph langchain-core langchain)"
    ) from exc

from agent_finops.approvals import APPROVAL_KIND, approval_payload
from agent_finops.guard import STOPPED_KIND
from agent_finops_langgraph._guard import STOP_PREFIX, guard_node
from agent_finops_langgraph._handler import FinOpsCallbackHandler, usage_from_llm_result
from agent_finops_langgraph._request import RequestEstimate, estimate_request, reservation_tokens

__all__ = [
    "APPROVAL_KIND",
    "STOPPED_KIND",
    "STOP_PREFIX",
    "FinOpsCallbackHandler",
    "FinOpsMiddleware",
    "approval_payload",
    "RequestEstimate",
    "estimate_request",
    "reservation_tokens",
    "guard_node",
    "usage_from_llm_result",
]


def __getattr__(name: str) -> object:
    # The middleware needs the `langchain` package (create_agent); import it on first use.
    if name == "FinOpsMiddleware":
        from agent_finops_langgraph._middleware import FinOpsMiddleware

        return FinOpsMiddleware
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
