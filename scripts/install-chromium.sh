#!/usr/bin/env bash
# Install Debian's chromium for the browser tests (tests/browser), if it is missing.
# Idempotent and quiet: does nothing when $AGENT_FINOPS_CHROMIUM (default /usr/bin/chromium)
# exists. Needs root (CI and the dev machines run as root) or sudo. Playwright drives this
# browser; `playwright install` (which downloads its own build) is never used.
set -euo pipefail
CHROMIUM=${AGENT_FINOPS_CHROMIUM:-/usr/bin/chromium}
[ -x "$CHROMIUM" ] && exit 0
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "installing chromium (Debian package) for the browser tests" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
[ -x "$CHROMIUM" ] || { echo "chromium not found at $CHROMIUM after install" >&2; exit 1; }
