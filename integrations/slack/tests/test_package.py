"""The package's front door: lazy public names, the missing-dependency error, the CLI plugin."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import agent_finops_slack


def test_public_names_resolve() -> None:
    for name in agent_finops_slack.__all__:
        assert getattr(agent_finops_slack, name) is not None, name
    assert set(agent_finops_slack.__all__) <= set(dir(agent_finops_slack))


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120
    )


BLOCK_SLACK = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("slack_sdk", "slack_bolt"):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by test)", name=name)
        return None
sys.meta_path.insert(0, Block())
"""


def test_without_slack_the_import_names_the_pip_command() -> None:
    result = _run(
        BLOCK_SLACK
        + """
try:
    import agent_finops_slack
except ImportError as exc:
    from agent_finops import MissingDependencyError
    assert isinstance(exc, MissingDependencyError), type(exc)
    print(exc)
else:
    raise SystemExit("imported without slack_sdk")
"""
    )
    assert result.returncode == 0, result.stderr
    assert "pip install agent-finops-slack" in result.stdout


def test_without_slack_the_core_cli_works_and_serve_says_why(tmp_path: object) -> None:
    result = _run(
        BLOCK_SLACK
        + f"""
from agent_finops import SQLLedger
from agent_finops.cli import main
SQLLedger.from_url("sqlite:///{tmp_path}/l.sqlite").close()
assert main(["--db", "sqlite:///{tmp_path}/l.sqlite", "runs"]) == 0
print("serve exit", main(["serve", "--config", "x.yaml"]))
assert not any(m.split(".")[0] in ("slack_sdk", "slack_bolt") for m in sys.modules)
"""
    )
    assert result.returncode == 0, result.stderr
    assert "no runs recorded yet" in result.stdout and "serve exit 1" in result.stdout
    assert "pip install agent-finops-slack" in result.stderr


def test_the_core_cli_does_not_import_slack_until_serve_runs() -> None:
    result = _run(
        """
import sys
from agent_finops.cli import main
try:
    main(["serve", "--help"])
except SystemExit:
    pass
assert "slack_sdk" not in sys.modules and "slack_bolt" not in sys.modules, "imported"
"""
    )
    assert result.returncode == 0, result.stderr
    assert "approver service" in result.stdout
