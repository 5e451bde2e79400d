#!/usr/bin/env bash
# The CrewAI integration in its own venv: crewai adds about 1 GB and pins pydantic<2.13, so
# it never shares a venv with the core or the LangGraph integration. Creates
# integrations/crewai/.venv (first run only; later runs only install what changed), then runs
# mypy --strict on the package and its tests, with HOME in a temp dir and CrewAI's
# telemetry and tracing off (importing crewai writes under ~ and phones home otherwise).
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=integrations/crewai/.venv
started=$(date +%s)
if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
    -e . -e "integrations/crewai[test]"
installed=$(date +%s)
echo "== crewai venv ready in $((installed - started))s ($("$VENV/bin/python" -c \
    'import importlib.metadata as m; print("crewai", m.version("crewai"), "pydantic", m.version("pydantic"))'))"

home=$(mktemp -d)
trap 'rm -rf "$home"' EXIT
export HOME="$home" AGENT_FINOPS_CREWAI_TEST_HOME="$home"
export CREWAI_DISABLE_TELEMETRY=true CREWAI_TRACING_ENABLED=false OTEL_SDK_DISABLED=true

echo "== mypy --strict (integrations/crewai)"
(cd integrations/crewai && .venv/bin/mypy)
echo "== pytest (integrations/crewai)"
(cd integrations/crewai && .venv/bin/python -m pytest "$@")
echo "== crewai integration: $(($(date +%s) - installed))s after install"
