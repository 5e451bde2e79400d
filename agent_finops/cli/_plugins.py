"""Sub-commands other packages add to `agent-finops`, found through entry points.

A package declares, in its `pyproject.toml`:

```toml
[project.entry-points."agent_finops.commands"]
serve = "agent_finops_slack._cli:register"
```

`register(subparsers, common)` adds its parser with `subparsers.add_parser(name,
parents=[common], ...)` (`common` carries `--db`) and sets `plugin=run` on it
(`parser.set_defaults(plugin=run)`), where `run(args) -> int` is the command. The core
imports nothing of a plugin until the CLI starts; a plugin that fails to load (its
framework missing) still gets its command, which then prints why and exits 1.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Final

__all__ = ["ENTRY_POINT_GROUP", "add_plugin_commands"]

ENTRY_POINT_GROUP: Final = "agent_finops.commands"
"""Entry point group of `agent-finops` sub-commands other packages provide."""


def add_plugin_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add every installed plugin's sub-command (a built-in command of the same name wins)."""
    for point in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda p: p.name):
        if point.name in sub.choices:
            continue
        try:
            point.load()(sub, common)
        except Exception as exc:  # a broken plugin must not break `runs` and `report`
            # Takes any arguments (no option is known: prefix "+" is never typed).
            cmd = sub.add_parser(
                point.name, prefix_chars="+", help=f"(unavailable: {_first_line(exc)})"
            )
            cmd.add_argument("rest", nargs="*", help=argparse.SUPPRESS)
            cmd.set_defaults(plugin=_unavailable(point, exc))


def _unavailable(point: EntryPoint, exc: Exception) -> Callable[[argparse.Namespace], int]:
    def run(_args: argparse.Namespace) -> int:
        print(
            f"agent-finops: error: the {point.name!r} command ({point.value}) cannot load: {exc}",
            file=sys.stderr,
        )
        return 1

    return run


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:120]
