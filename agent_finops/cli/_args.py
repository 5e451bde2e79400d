"""Argument types the `agent-finops` commands share: bounded numbers, text, dates."""

from __future__ import annotations

import argparse

from agent_finops.approvals._answer import check_text

__all__ = ["MAX_ARGUMENT", "MAX_LIMIT", "limit_arg", "text_arg"]

MAX_LIMIT = 100_000
MAX_ARGUMENT = 2000
"""Longest id, thread, reason or path argument accepted."""


def limit_arg(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{ascii(text)[:40]} is not a whole number") from None
    if not 1 <= value <= MAX_LIMIT:
        raise argparse.ArgumentTypeError(f"{value} is not between 1 and {MAX_LIMIT}")
    return value


def text_arg(text: str) -> str:
    """A text argument, else a usage error (exit 2).

    Bounded, UTF-8 encodable (argv bytes that were not UTF-8 arrive as lone surrogates) and
    free of NUL and control characters.
    """
    if len(text) > MAX_ARGUMENT:
        raise argparse.ArgumentTypeError(f"longer than {MAX_ARGUMENT} characters")
    try:
        return check_text(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{ascii(text)[:100]} is not {exc}") from None
