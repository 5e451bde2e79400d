"""`agent_finops_crewai` without CrewAI installed (this venv has none): the exact pip command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "integrations" / "crewai" / "src"


def test_crewai_integration_without_crewai_names_the_install_command() -> None:
    code = f"""
import sys, importlib.abc
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "crewai":
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked by test)", name=name)
        return None
sys.meta_path.insert(0, Block())
sys.path.insert(0, {str(SRC)!r})
try:
    import agent_finops_crewai
except ImportError as exc:
    from agent_finops import MissingDependencyError
    assert isinstance(exc, MissingDependencyError), type(exc)
    print(exc)
else:
    raise SystemExit("imported without crewai")
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "pip install agent-finops-crewai" in result.stdout
    assert "crewai>=1.15,<1.16" in result.stdout
