"""The command line as a new user types it: options anywhere, clear errors, no tracebacks."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent_finops.cli import main as cli


def test_db_is_accepted_before_and_after_every_sub_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path}/l.sqlite"
    assert cli(["--db", url, "runs"]) == 0
    assert cli(["runs", "--db", url]) == 0
    assert cli(["approvals", "--db", url, "list"]) == 0
    assert cli(["approvals", "list", "--db", url]) == 0
    assert cli(["--db", url, "approvals", "list", "--status", "expired"]) == 0
    assert "no expired approval requests" in capsys.readouterr().out


@pytest.mark.parametrize("bad", ["0", "-5", "abc", "10000000000"])
def test_bad_limits_are_refused_without_a_traceback(
    bad: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli(["--db", f"sqlite:///{tmp_path}/l.sqlite", "runs", "--limit", bad])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--limit" in err and "Traceback" not in err


def test_resume_needs_the_apps_targets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path}/l.sqlite"
    assert cli(["--db", url, "approvals", "approve", "abc", "--resume"]) == 1
    assert "--resume needs your app's resume targets" in capsys.readouterr().err
    assert cli(["--db", url, "approvals", "approve", "abc", "--resume", "--targets", "x"]) == 1
    assert "module:attribute" in capsys.readouterr().err
    missing = "no_such_module_here:targets"
    assert cli(["--db", url, "approvals", "approve", "abc", "--resume", "--targets", missing]) == 1
    assert "cannot import resume targets" in capsys.readouterr().err


def test_bad_extra_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path}/l.sqlite"
    assert cli(["--db", url, "approvals", "approve", "abc", "--extra", "lots"]) == 1
    assert "--extra" in capsys.readouterr().err
