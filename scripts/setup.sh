#!/usr/bin/env bash
# Create ./.venv (if missing) and install agent-finops, its LangGraph and Slack integrations
# and, with --dev, the test and lint tools. Safe to run again: it only installs what changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
    .venv/bin/python -m pip install --quiet --upgrade pip
fi
core="." integration="integrations/langgraph" slack="integrations/slack"
extras=()
if [ "${1:-}" = "--dev" ]; then
    core=".[dev]" integration="integrations/langgraph[test]" slack="integrations/slack[test]"
    extras=(-e "integrations/otel[test]")  # the OpenTelemetry exporter and its test receiver
    bash scripts/install-chromium.sh        # Debian's chromium for tests/browser
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check \
    -e "$core" -e "$integration" -e "$slack" "${extras[@]}"
