"""The soak (bench/soak.py), short: worker processes killed at random, then nothing is wrong.

Durable mode, so every call a worker saw return must be in the ledger. PostgreSQL (at
AGENT_FINOPS_TEST_POSTGRES_URL, skipped when unset) and a SQLite file. Each run is a
subprocess of 15-25 s on 2 cores.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import POSTGRES_ENV

SOAK = Path(__file__).resolve().parents[1] / "bench" / "soak.py"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals"),
]
SHORT = ["--workers", "4", "--threads", "2", "--kill-every", "4"]
SHORT += ["--lease", "1", "--team-usd", "0.001", "--durable"]


def soak(db: str, seconds: int) -> dict[str, Any]:
    """Run the short soak against `db`; its verdict (the SOAK-JSON line)."""
    done = subprocess.run(
        [sys.executable, str(SOAK), "--db", db, "--seconds", str(seconds), *SHORT],
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = [x for x in done.stdout.splitlines() if x.startswith("SOAK-JSON ")]
    assert lines, (
        f"no verdict (exit {done.returncode}): {done.stdout[-2000:]} {done.stderr[-2000:]}"
    )
    verdict: dict[str, Any] = json.loads(lines[-1].removeprefix("SOAK-JSON "))
    assert not verdict["failed"], (verdict["failed"], done.stdout[-3000:])
    assert done.returncode == 0
    return verdict


def check_meaningful(verdict: dict[str, Any]) -> None:
    """Kills happened, calls returned, the team budget ran out, poison went through."""
    figures = verdict["figures"]
    assert sum(figures["kills"].values()) >= 2
    assert figures["returned calls"] >= 3
    assert figures["refusals"].get("team-daily", 0) > 0
    assert figures["returned calls missing from the ledger"] == 0
    assert len(verdict["passed"]) >= 11


@pytest.mark.postgres
def test_soak_postgres() -> None:
    """One PostgreSQL ledger (the soak makes and drops its own schema)."""
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        pytest.skip(f"the PostgreSQL soak needs {POSTGRES_ENV}")
    check_meaningful(soak(url, 30))


def test_soak_sqlite_file(tmp_path: Path) -> None:
    """One SQLite file shared by every worker process."""
    check_meaningful(soak(f"sqlite:///{tmp_path / 'ledger.sqlite'}", 24))
