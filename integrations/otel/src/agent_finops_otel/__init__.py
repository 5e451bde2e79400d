"""agent-finops for OpenTelemetry: a record sink that exports spans with GenAI and cost attributes.

Install with `pip install agent-finops-otel` (from this repo:
`pip install -e . -e integrations/otel`).

    from agent_finops import CostTracker, SQLLedger
    from agent_finops_otel import OTelSink

    tracker = CostTracker(ledger, sinks=[OTelSink(tracer_provider=provider)])
"""

try:
    import opentelemetry.sdk.trace  # noqa: F401
except ImportError as exc:  # exercised by tests/test_import.py
    from agent_finops.exceptions import MissingDependencyError

    raise MissingDependencyError(
        "agent_finops_otel needs the OpenTelemetry SDK: pip install agent-finops-otel  "
        "(or: pip install opentelemetry-sdk)"
    ) from exc

from agent_finops_otel._convert import (
    COST_SOURCE,
    CURRENCY,
    DEFAULT_METRIC_TAGS,
    otel_span_id,
    otel_trace_id,
)
from agent_finops_otel._sink import OTelSink

__all__ = [
    "COST_SOURCE",
    "CURRENCY",
    "DEFAULT_METRIC_TAGS",
    "OTelSink",
    "otel_span_id",
    "otel_trace_id",
]
