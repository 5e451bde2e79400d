#!/usr/bin/env bash
# Set up (first run only) and run the offline multi-agent demo; prints the per-run cost report.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python examples/supervisor_demo.py "$@"
