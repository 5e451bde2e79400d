"""Helpers shared by the Slack tests (importable: conftest puts this folder on sys.path)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from agent_finops import SQLLedger
from agent_finops.ledger import CostEvent, RunRecord

CHANNEL = "C0APPROVALS"
SEARCH_CHANNEL = "C0SEARCH"


def seed_run(ledger: SQLLedger, trace_id: str, costs: dict[tuple[str, str], str]) -> None:
    """A run with cost events: {(node, model or tool name): cost}."""
    now = datetime.now(UTC)
    ledger.write(
        runs=[RunRecord(trace_id=trace_id, name="graph", started_at=now, tags={"team": "qa"})],
        events=[
            CostEvent(
                event_id=f"{trace_id}-{i}",
                trace_id=trace_id,
                span_id=f"s{i}",
                kind="tool" if name.startswith("tool:") else "model",
                name=name.removeprefix("tool:"),
                provider="openai",
                created_at=now,
                node_path=node,
                tags={},
                cost=Decimal(cost),
                price_source="test",
                price_version="1",
            )
            for i, ((node, name), cost) in enumerate(costs.items())
        ],
    )
