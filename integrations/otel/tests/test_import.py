"""Without the OpenTelemetry SDK, importing the exporter names the install command."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_import_without_the_sdk_names_the_pip_command() -> None:
    code = textwrap.dedent(
        """
        import sys, importlib.abc
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "opentelemetry":
                    raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
                return None
        sys.meta_path.insert(0, Block())
        try:
            import agent_finops_otel
        except ImportError as exc:
            from agent_finops import MissingDependencyError
            assert isinstance(exc, MissingDependencyError), type(exc)
            print(exc)
        else:
            raise SystemExit("imported without the SDK")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "pip install agent-finops-otel" in result.stdout
    assert "pip install opentelemetry-sdk" in result.stdout
