"""Pause in one process, approve from the console in another, resume from the checkpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent_finops import SQLLedger
from agent_finops.approvals import Approver
from agent_finops.cli import main as cli

APP = Path(__file__).with_name("approval_app.py")
TARGETS = f"{APP}:targets"
ME = Approver.console().id  # the console approver decides as the OS user it runs as
pytestmark = pytest.mark.slow


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    values = {
        "AGENT_FINOPS_DB_URL": f"sqlite:///{tmp_path}/ledger.sqlite",
        "APPROVAL_APP_CHECKPOINTS": str(tmp_path / "checkpoints.sqlite"),
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return {**os.environ, **values}


def start_paused_run(env: dict[str, str], thread: str) -> str:
    result = subprocess.run(
        [sys.executable, str(APP), thread], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def test_approve_from_console_resumes_after_restart(
    env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    approval_id = start_paused_run(env, "thread-A")  # that process has exited: a restart
    assert cli(["approvals", "list", "--json"]) == 0
    (pending,) = json.loads(capsys.readouterr().out)
    assert pending["approval_id"] == approval_id and pending["thread_id"] == "thread-A"
    assert pending["rule_id"] == "run-cap"
    assert (
        cli(
            [
                "approvals",
                "approve",
                approval_id[:10],
                "--extra",
                "1",
                "--resume",
                "--targets",
                TARGETS,
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert f"{approval_id} approved by {ME} (extra 1 usd)" in out
    assert "messages=4 interrupted=False" in out  # go + a + b + c, run finished
    with SQLLedger.from_url(env["AGENT_FINOPS_DB_URL"]) as ledger:
        request = ledger.get_approval(approval_id)
        assert request is not None and request.status == "approved" and request.decided_by == ME
        runs = ledger.list_runs()
        statuses = [r.run.status for r in sorted(runs, key=lambda r: r.run.started_at)]
        assert statuses == ["interrupted", "ok"]  # paused run, then its resumption
        assert sum(r.model_calls for r in runs) == 3
        first = min(runs, key=lambda r: r.run.started_at)
        assert cli(["report", first.run.trace_id]) == 0
        text = capsys.readouterr().out
        assert "pause" in text and f"approved by {ME}" in text


def test_deny_from_console_stops_the_run(
    env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    approval_id = start_paused_run(env, "thread-B")
    assert (
        cli(
            [
                "approvals",
                "deny",
                approval_id,
                "--reason",
                "too dear",
                "--resume",
                "--targets",
                TARGETS,
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert f"denied by {ME}: too dear" in out and "interrupted=True" in out  # halted cleanly
    assert cli(["approvals", "approve", approval_id]) == 1  # decided once
    assert "already denied" in capsys.readouterr().err
    assert cli(["approvals", "list"]) == 0
    assert "no pending approval requests" in capsys.readouterr().out


def test_a_resume_target_the_app_did_not_register_is_refused_and_nothing_is_imported(
    env: dict[str, str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    approval_id = start_paused_run(env, "thread-C")
    marker = tmp_path / "imported"
    evil = tmp_path / "evil.py"
    evil.write_text(f"open({str(marker)!r}, 'w').write('pwned')\ndef run(*a):\n    pass\n")
    # Whoever can write the ledger points the request at their own code.
    with SQLLedger.from_url(env["AGENT_FINOPS_DB_URL"]) as ledger, ledger.engine.begin() as conn:
        conn.exec_driver_sql(
            "update finops_approvals set resume_target = ? where approval_id = ?",
            (f"{evil}:run", approval_id),
        )
    assert cli(["approvals", "approve", approval_id, "--resume", "--targets", TARGETS]) == 1
    err = capsys.readouterr().err
    assert f"no registered resume target '{evil}:run'" in err and "approval-app" in err
    assert not marker.exists()  # nothing named by the database was imported


def test_an_approver_not_on_the_list_is_refused_and_nothing_resumes(
    env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    approval_id = start_paused_run(env, "thread-D")
    # The policy's approvers for this scope, as stored with the request when it was filed.
    with SQLLedger.from_url(env["AGENT_FINOPS_DB_URL"]) as ledger, ledger.engine.begin() as conn:
        conn.exec_driver_sql(
            "update finops_approvals set approvers = ? where approval_id = ?",
            ('["console:someone-else", "slack:U0001"]', approval_id),
        )
    assert cli(["approvals", "approve", approval_id, "--resume", "--targets", TARGETS]) == 1
    assert f"{ME} may not decide approval {approval_id}" in capsys.readouterr().err
    with SQLLedger.from_url(env["AGENT_FINOPS_DB_URL"]) as ledger:
        request = ledger.get_approval(approval_id)
        assert request is not None and request.status == "pending"  # nothing changed
        refused = [d for d in ledger.decisions_for(request.trace_id) if d.action == "refused"]
        assert [d.actor for d in refused] == [ME]  # the attempt is in the audit trail
        assert [r.run.status for r in ledger.list_runs()] == ["interrupted"]  # not resumed
