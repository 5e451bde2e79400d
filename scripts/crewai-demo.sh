#!/usr/bin/env bash
# Run the offline CrewAI demo (examples/crewai_team.py) in the CrewAI venv, with HOME in a
# temp dir and CrewAI's telemetry off. Run scripts/test-crewai.sh once first to create it.
set -euo pipefail
cd "$(dirname "$0")/.."
home=$(mktemp -d)
trap 'rm -rf "$home"' EXIT
HOME="$home" CREWAI_DISABLE_TELEMETRY=true CREWAI_TRACING_ENABLED=false OTEL_SDK_DISABLED=true \
    exec integrations/crewai/.venv/bin/python examples/crewai_team.py "$@"
