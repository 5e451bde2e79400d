"""Loop detection on its own: feed a `LoopDetector` steps and calls, read its `LoopHit`s.

The `PolicyEngine` uses one per policy; this module is for code that wants the same
detection without enforcement (an offline audit of recorded runs, a custom agent loop).
"""

from agent_finops.policy._loops import LoopDetector, LoopHit, tool_call_signature

__all__ = ["LoopDetector", "LoopHit", "tool_call_signature"]
