"""Cost policy: budgets, per-run and per-task cost caps, rate limits and loop guards.

A `Policy` describes limits (usually loaded from YAML with `load_policy`); it never
counts. `window_for` / `counter_key` name the bucket a call is charged to, and
`LoopDetector` watches runs for repeated tool calls, model-call bursts and ping-pong.
"""

from agent_finops.policy._engine import Decision, PolicyEngine
from agent_finops.policy._load import load_policy
from agent_finops.policy._loops import LoopDetector, LoopHit, tool_call_signature
from agent_finops.policy._model import (
    CRITICAL_TAG,
    DEFAULT_FALLBACK_RESERVATION_USD,
    DEFAULT_MAX_OUTPUT_TOKENS,
    DEFAULT_TIMEZONE,
    POLICY_FORMAT_VERSION,
    Action,
    ApprovalSettings,
    ApproverRule,
    Budget,
    LoopKind,
    LoopRule,
    MandatoryTags,
    ModelCallBurstRule,
    PingPongRule,
    Policy,
    RateLimit,
    RateLimitAction,
    RepeatedToolCallRule,
    Rule,
    TagSelector,
    Unit,
)
from agent_finops.policy._periods import (
    PeriodKind,
    counter_key,
    format_duration,
    parse_duration,
    window_for,
)

__all__ = [
    # enforcement
    "PolicyEngine",
    "Decision",
    # the policy file
    "Policy",
    "load_policy",
    "Budget",
    "RateLimit",
    "LoopRule",
    "RepeatedToolCallRule",
    "ModelCallBurstRule",
    "PingPongRule",
    "MandatoryTags",
    "ApprovalSettings",
    "ApproverRule",
    "TagSelector",
    "Rule",
    "Action",
    "RateLimitAction",
    "Unit",
    "PeriodKind",
    "LoopKind",
    # defaults
    "POLICY_FORMAT_VERSION",
    "DEFAULT_TIMEZONE",
    "DEFAULT_FALLBACK_RESERVATION_USD",
    "DEFAULT_MAX_OUTPUT_TOKENS",
    "CRITICAL_TAG",
    # periods and counter keys
    "window_for",
    "counter_key",
    "parse_duration",
    "format_duration",
    # loop detection
    "LoopDetector",
    "LoopHit",
    "tool_call_signature",
]
