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
echo "== pytest"
.venv/bin/python -m pytest -n "${PYTEST_WORKERS:-2}" "$@"
