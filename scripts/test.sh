#!/usr/bin/env bash
# Set up (first run only) and run everything CI runs: lint, strict type check, all tests.
# PostgreSQL tests run when AGENT_FINOPS_TEST_POSTGRES_URL is set (CI sets it) and skip
# with the reason otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --dev
echo "== ruff"
.venv/bin/ruff check .
echo "== mypy --strict"
.venv/bin/mypy
echo "== core alone: import agent_finops in a venv with no agent framework installed"
core_venv=$(mktemp -d)
trap 'rm -rf "$core_venv"' EXIT
"${PYTHON:-python3}" -m venv "$core_venv"
"$core_venv/bin/python" -m pip install --quiet --disable-pip-version-check .
"$core_venv/bin/python" - <<'PY'
import importlib.util, sys
for framework in ("langchain_core", "langgraph", "crewai", "slack_sdk"):
    assert importlib.util.find_spec(framework) is None, f"{framework} is installed"
from agent_finops import CostTracker, SQLLedger, TokenUsage
from agent_finops.policy import Policy, PolicyEngine
tracker = CostTracker(SQLLedger.from_url("sqlite://"), background=False)
tracker.start_span("r", parent_span_id=None, name="run", kind="chain")
tracker.record_model_call("r", model="gpt-4o-mini", provider="openai", usage=TokenUsage(output_tokens=10))
tracker.end_span("r")
assert str(tracker.report("r").total_cost) == "0.000006"
PolicyEngine(Policy.from_mapping({"budgets": [{"id": "b", "limit": "1", "period": "run"}]}), tracker)
print("core OK without any framework:", sys.version.split()[0])
try:
    import agent_finops_langgraph  # noqa: F401  (not installed here at all)
except ImportError:
    pass
PY
echo "== CrewAI integration (its own venv: crewai pins pydantic<2.13 and adds about 1 GB)"
bash scripts/test-crewai.sh -q -p no:cacheprovider
echo "== pytest"
.venv/bin/python -m pytest -n "${PYTEST_WORKERS:-2}" "$@"
