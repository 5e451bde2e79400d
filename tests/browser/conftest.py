"""Fixtures for the browser tests: one headless Chromium per test process (see browser_harness.py)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# --import-mode=importlib puts no test directory on sys.path: make the harness importable.
_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from browser_harness import Browser  # noqa: E402


@pytest.fixture
def browser() -> Iterator[Browser]:
    """Headless Chromium, started for each test.

    Not once per session: while playwright's sync driver runs, its event loop counts as
    running on the test thread, and the async tests that pytest-xdist schedules on the
    same worker in between would fail ("Cannot run the event loop while another loop is
    running").
    """
    chromium = Browser()
    try:
        yield chromium
    finally:
        chromium.close()
