"""agent-finops for CrewAI: cost tracking through the event bus, cost policy through the hooks.

Install with `pip install agent-finops-crewai` (from this repo:
`pip install -e . -e integrations/crewai`).

```python
from agent_finops import CostTracker, SQLLedger
from agent_finops_crewai import FinOpsListener

listener = FinOpsListener(CostTracker(SQLLedger.from_url("sqlite:///agent-finops.sqlite")))
crew.kickoff()
```
"""

try:
    import crewai  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised by tests/test_exports.py
    from agent_finops.exceptions import MissingDependencyError

    raise MissingDependencyError(
        "agent_finops_crewai needs CrewAI: pip install agent-finops-crewai  "
        "(or: pip install 'crewai>=1.15,<1.16')"
    ) from exc

from agent_finops.approvals import APPROVAL_KIND, approval_payload
from agent_finops.guard import STOPPED_KIND
from agent_finops_crewai._hooks import ApprovalWait
from agent_finops_crewai._listener import FinOpsListener, usage_of
from agent_finops_crewai._outcome import CrewPaused, CrewStopped

__all__ = [
    "APPROVAL_KIND",
    "STOPPED_KIND",
    "ApprovalWait",
    "CrewPaused",
    "CrewStopped",
    "FinOpsListener",
    "approval_payload",
    "usage_of",
]
