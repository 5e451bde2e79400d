"""The `agent-finops` command line: list runs and read per-run cost reports."""

from agent_finops.cli._main import main

__all__ = ["main"]
