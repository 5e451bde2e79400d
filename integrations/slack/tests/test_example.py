"""examples/slack_approval.py runs as documented: paused, clicked (emulator), completed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "slack_approval.py"
pytestmark = pytest.mark.slow


def test_the_example_pauses_and_completes_after_the_click() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLACK_")}
    result = subprocess.run(
        [sys.executable, str(EXAMPLE)], env=env, capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "paused: approval" in out and "HTTP 200" in out
    assert "message now: Approved by slack:U0DEMO" in out and "extra $1" in out
    assert "approved by slack:U0DEMO; the resumed run is ok" in out
    assert "total cost of the thread: $0.00063 over 2 invocations" in out
