"""agent-finops: cost attribution and mid-run cost control for AI-agent workflows.

The framework-free core. Integrations live in their own packages (for LangGraph/LangChain:
`agent_finops_langgraph`) and import this one, never the reverse.
"""

from importlib.metadata import PackageNotFoundError as _PackageNotFoundError
from importlib.metadata import version as _version

from agent_finops.attribution import STANDARD_TAGS, attribute, current_tags
from agent_finops.estimate import TokenCounter, estimate_input_tokens, utf8_bytes
from agent_finops.exceptions import (
    AlertNotFound,
    AlreadyDecided,
    ApprovalDenied,
    ApprovalNotFound,
    ApprovalRequired,
    ApproverNotAllowed,
    BudgetExceeded,
    ConfigurationError,
    FinOpsError,
    FinOpsWarning,
    HandlerError,
    HandlerWarning,
    LedgerError,
    LedgerNotFound,
    LoopDetected,
    MissingDependencyError,
    MissingTags,
    NotFound,
    PolicyViolation,
    PolicyWarning,
    PriceNotFound,
    RateLimitExceeded,
    RunNotFound,
    UnknownResumeTarget,
    UnpricedWarning,
)
from agent_finops.ledger import (
    BudgetStore,
    CostEvent,
    InMemoryLedger,
    Ledger,
    RunRecord,
    SpanRecord,
    SQLLedger,
)
from agent_finops.pricing import Cost, ModelPrice, PriceBook, PricingConfig, ToolFee
from agent_finops.reports import RunReport, build_report
from agent_finops.tracker import CostTracker
from agent_finops.usage import TokenUsage, normalize_usage

try:
    __version__ = _version("agent-finops")
except _PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"

__all__ = [
    # tracking
    "CostTracker",
    "attribute",
    "current_tags",
    "STANDARD_TAGS",
    # usage and pricing
    "TokenUsage",
    "normalize_usage",
    "PriceBook",
    "PricingConfig",
    "ModelPrice",
    "ToolFee",
    "Cost",
    # worst-case estimates
    "estimate_input_tokens",
    "utf8_bytes",
    "TokenCounter",
    # ledger
    "Ledger",
    "BudgetStore",
    "InMemoryLedger",
    "SQLLedger",
    "RunRecord",
    "SpanRecord",
    "CostEvent",
    # reports
    "RunReport",
    "build_report",
    # errors and warnings
    "FinOpsError",
    "ConfigurationError",
    "MissingDependencyError",
    "UnknownResumeTarget",
    "PriceNotFound",
    "NotFound",
    "RunNotFound",
    "AlertNotFound",
    "ApprovalNotFound",
    "LedgerNotFound",
    "AlreadyDecided",
    "ApproverNotAllowed",
    "LedgerError",
    "HandlerError",
    "PolicyViolation",
    "BudgetExceeded",
    "RateLimitExceeded",
    "LoopDetected",
    "MissingTags",
    "ApprovalRequired",
    "ApprovalDenied",
    "FinOpsWarning",
    "UnpricedWarning",
    "PolicyWarning",
    "HandlerWarning",
    "__version__",
]
