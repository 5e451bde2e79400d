"""agent-finops for LangGraph and LangChain: cost callback handler (and, later, guards).

Install with `pip install agent-finops-langgraph` (from this repo:
`pip install -e . -e integrations/langgraph`).
"""

try:
    import langchain_core  # noqa: F401
    import langgraph  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised by tests/test_optional_imports.py
    from agent_finops.exceptions import MissingDependencyError

    raise MissingDependencyError(
        "agent_finops_langgraph needs LangGraph and LangChain: "
        "pip install agent-finops-langgraph  (or: pip install langgraph langchain-core)"
    ) from exc

from agent_finops_langgraph._handler import FinOpsCallbackHandler, usage_from_llm_result

__all__ = ["FinOpsCallbackHandler", "usage_from_llm_result"]
