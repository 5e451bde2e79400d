"""The run guard: the one object every integration drives, at named moments of a run.

An integration (the LangGraph callback handler and node guard, CrewAI's event listener and
hooks, your own loop) only translates its framework's events into these moments:

```
start_run ─┬─ open_step / close_step          (nodes, agents, tasks, crews, chains)
           ├─ before_model_call ─ after_model_call | model_call_failed
           ├─ before_tool_call  ─ after_tool_call  | tool_call_failed
           └─ close_step(root)                  (the run ends: stranded reservations released)
```

The guard owns run identity (trace, thread), pricing (through the tracker), the policy
checks and the reservation of each call, its settlement from the tracker's priced event,
loop observation, and asking for approval (`guarded` / `aguarded`: the only ask/retry/stop
loop, one sync and one async). Without a policy it only tracks, and never lets its own
failure break the user's run.
"""

from agent_finops.guard._outcome import STOPPED_KIND, stop_payload
from agent_finops.guard._run_guard import Asker, RunGuard, RunRef, undecided

__all__ = ["STOPPED_KIND", "Asker", "RunGuard", "RunRef", "stop_payload", "undecided"]
