"""Loop detection: repeated tool calls, model-call bursts, ping-pong; exact thresholds."""

from __future__ import annotations

import pickle
import threading
from datetime import UTC, datetime, timedelta

import pytest

from agent_finops.exceptions import LoopDetected
from agent_finops.policy import ModelCallBurstRule, PingPongRule, Policy, RepeatedToolCallRule
from agent_finops.policy.loops import LoopDetector, tool_call_signature

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def repeated(max_repeats: int = 3, **kw: object) -> RepeatedToolCallRule:
    return RepeatedToolCallRule.model_validate(
        {"id": "same-tool", "max_repeats": max_repeats, **kw}
    )


def burst(max_calls: int = 3, window: str = "10s") -> ModelCallBurstRule:
    return ModelCallBurstRule.model_validate(
        {"id": "burst", "max_calls": max_calls, "window": window}
    )


def ping_pong(max_cycles: int = 3) -> PingPongRule:
    return PingPongRule.model_validate({"id": "ping-pong", "max_cycles": max_cycles})


# -- repeated tool calls --------------------------------------------------------------------


def test_nth_identical_tool_call_trips_not_before() -> None:
    detector = LoopDetector([repeated(3)])
    args = {"query": "refund policy", "k": 5}
    assert detector.observe_tool_call("t1", "search", args) == []
    assert detector.observe_tool_call("t1", "search", args) == []  # N-1
    hits = detector.observe_tool_call("t1", "search", args)  # N
    assert len(hits) == 1
    hit = hits[0]
    assert (hit.rule_id, hit.kind, hit.observed, hit.limit) == (
        "same-tool",
        "repeated_tool_call",
        3,
        3,
    )
    assert hit.trace_id == "t1" and hit.action == "deny" and not hit.shadow
    assert "'search'" in hit.detail and "3 times" in hit.detail
    assert detector.observe_tool_call("t1", "search", args)[0].observed == 4  # still looping


def test_argument_key_order_and_json_strings_are_the_same_call() -> None:
    detector = LoopDetector([repeated(3)])
    assert detector.observe_tool_call("t", "search", {"a": 1, "b": [1, 2]}) == []
    assert detector.observe_tool_call("t", "search", {"b": [1, 2], "a": 1}) == []
    assert detector.observe_tool_call("t", "search", '{"b": [1, 2], "a": 1}') != []
    assert tool_call_signature("x", {"a": 1}) != tool_call_signature("y", {"a": 1})
    assert tool_call_signature("x", "plain text") == tool_call_signature("x", "plain text")


def test_different_arguments_tools_and_traces_count_apart() -> None:
    detector = LoopDetector([repeated(2)])
    assert detector.observe_tool_call("t", "search", {"q": "a"}) == []
    assert detector.observe_tool_call("t", "search", {"q": "b"}) == []
    assert detector.observe_tool_call("t", "fetch", {"q": "a"}) == []
    assert detector.observe_tool_call("other", "search", {"q": "a"}) == []
    assert detector.observe_tool_call("t", "search", {"q": "a"}) != []


def test_several_rules_trip_at_their_own_limits() -> None:
    detector = LoopDetector([repeated(2, id="warn-2", action="warn"), repeated(4, id="deny-4")])
    detector.observe_tool_call("t", "x", {})
    assert [(h.rule_id, h.action) for h in detector.observe_tool_call("t", "x", {})] == [
        ("warn-2", "warn")
    ]
    detector.observe_tool_call("t", "x", {})
    assert [h.rule_id for h in detector.observe_tool_call("t", "x", {})] == ["warn-2", "deny-4"]


def test_unserialisable_arguments_do_not_crash() -> None:
    detector = LoopDetector([repeated(2)])
    marker = object()
    detector.observe_tool_call("t", "x", {"obj": marker})
    assert detector.observe_tool_call("t", "x", {"obj": marker}) != []


def test_forget_starts_over() -> None:
    detector = LoopDetector([repeated(2)])
    detector.observe_tool_call("t", "x", {})
    detector.forget("t")
    detector.forget("never-seen")
    assert detector.observe_tool_call("t", "x", {}) == []
    assert len(detector) == 1


# -- model-call bursts -----------------------------------------------------------------------


def test_burst_trips_on_call_max_plus_one_within_window() -> None:
    detector = LoopDetector([burst(max_calls=3, window="10s")])
    for second in range(3):
        assert detector.observe_model_call("t", T0 + timedelta(seconds=second)) == []
    hits = detector.observe_model_call("t", T0 + timedelta(seconds=9))
    assert len(hits) == 1
    assert (hits[0].observed, hits[0].limit, hits[0].kind) == (4, 3, "model_call_burst")
    assert "4 model calls within 10s" in hits[0].detail


def test_calls_spread_over_more_than_the_window_do_not_trip() -> None:
    detector = LoopDetector([burst(max_calls=3, window="10s")])
    for second in (0, 4, 8):
        assert detector.observe_model_call("t", T0 + timedelta(seconds=second)) == []
    # the call at t=0 is exactly one window old at t=10: out of the window
    assert detector.observe_model_call("t", T0 + timedelta(seconds=10)) == []
    assert detector.observe_model_call("t", T0 + timedelta(seconds=11)) != []  # 4, 8, 10, 11


def test_bursts_count_per_trace() -> None:
    detector = LoopDetector([burst(max_calls=1, window="1m")])
    assert detector.observe_model_call("a", T0) == []
    assert detector.observe_model_call("b", T0) == []
    assert detector.observe_model_call("a", T0 + timedelta(seconds=1)) != []


def test_model_call_needs_an_aware_time() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        LoopDetector([burst()]).observe_model_call("t", datetime(2026, 11, 22))


# -- ping-pong -------------------------------------------------------------------------------


def test_ping_pong_trips_on_the_last_step_of_max_cycles() -> None:
    detector = LoopDetector([ping_pong(3)])
    for node in ["A", "B", "A", "B", "A"]:  # 2.5 round trips
        assert detector.observe_step("t", node) == []
    hits = detector.observe_step("t", "B")  # A,B,A,B,A,B: 3 round trips
    assert len(hits) == 1
    assert (hits[0].rule_id, hits[0].kind, hits[0].observed, hits[0].limit) == (
        "ping-pong",
        "ping_pong",
        3,
        3,
    )
    assert "'A' and 'B'" in hits[0].detail
    assert detector.observe_step("t", "A") != []  # still alternating


def test_ping_pong_after_a_lead_in() -> None:
    detector = LoopDetector([ping_pong(2)])
    for node in ["start", "planner", "X", "Y", "X"]:
        assert detector.observe_step("t", node) == []
    assert detector.observe_step("t", "Y") != []


def test_a_third_node_breaks_the_alternation() -> None:
    detector = LoopDetector([ping_pong(3)])
    for node in ["A", "B", "A", "B", "C", "B", "C", "A", "B", "C", "A", "B", "C"]:
        assert detector.observe_step("t", node) == []


def test_staying_on_one_node_is_not_a_hand_over() -> None:
    detector = LoopDetector([ping_pong(2)])
    assert all(detector.observe_step("t", "A") == [] for _ in range(10))
    for node in ["B", "B", "A"]:
        assert detector.observe_step("t", node) == []
    assert detector.observe_step("t", "B") != []  # A,B,A,B once repeats are collapsed


def test_rules_of_each_kind_only_watch_their_events() -> None:
    detector = LoopDetector([ping_pong(2)])
    assert detector.observe_tool_call("t", "x", {}) == []
    assert detector.observe_model_call("t", T0) == []
    assert len(detector) == 0  # nothing was remembered for kinds without rules


# -- hits, policies, memory, threads ------------------------------------------------------


def test_hit_becomes_a_picklable_loop_detected() -> None:
    detector = LoopDetector([repeated(2, shadow=True)])
    detector.observe_tool_call("trace-9", "search", {})
    hit = detector.observe_tool_call("trace-9", "search", {})[0]
    assert hit.shadow
    error = hit.to_exception()
    assert isinstance(error, LoopDetected)
    assert (error.rule_id, error.limit, error.observed, error.trace_id) == (
        "same-tool",
        2,
        2,
        "trace-9",
    )
    assert "same-tool" in str(error) and "trace-9" in str(error)
    clone = pickle.loads(pickle.dumps(error))
    assert (str(clone), clone.rule_id, clone.observed) == (str(error), "same-tool", 2)


def test_detector_from_a_policy() -> None:
    policy = Policy.from_mapping(
        {
            "loops": [
                {"id": "same-tool", "kind": "repeated_tool_call", "max_repeats": 3},
                {"id": "burst", "kind": "model_call_burst", "max_calls": 20, "window": "10s"},
                {"id": "ping-pong", "kind": "ping_pong", "max_cycles": 3},
            ]
        }
    )
    detector = LoopDetector(policy.loops)
    hits = [h for _ in range(3) for h in detector.observe_tool_call("t", "x", {"a": 1})]
    assert [h.rule_id for h in hits] == ["same-tool"]


def test_trace_count_is_bounded() -> None:
    detector = LoopDetector([repeated(2)], max_traces=2)
    detector.observe_tool_call("a", "x", {})
    detector.observe_tool_call("b", "x", {})
    detector.observe_tool_call("a", "y", {})  # touches a: b is now the oldest
    detector.observe_tool_call("c", "x", {})
    assert len(detector) == 2
    assert detector.observe_tool_call("b", "x", {}) == []  # b was forgotten
    assert detector.observe_tool_call("c", "x", {}) != []


def test_signatures_per_trace_are_bounded() -> None:
    detector = LoopDetector([repeated(2)], max_signatures_per_trace=2)
    detector.observe_tool_call("t", "x", {"n": 1})
    detector.observe_tool_call("t", "x", {"n": 2})
    detector.observe_tool_call("t", "x", {"n": 3})  # evicts n=1
    assert detector.observe_tool_call("t", "x", {"n": 1}) == []
    assert detector.observe_tool_call("t", "x", {"n": 3}) != []


def test_invalid_bounds() -> None:
    with pytest.raises(ValueError):
        LoopDetector([], max_traces=0)


def test_concurrent_observations_are_counted_exactly() -> None:
    detector = LoopDetector([repeated(2)])
    observed: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(200):
            hits = detector.observe_tool_call("shared", "search", {"q": "same"})
            with lock:
                observed.extend(h.observed for h in hits)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(observed) == list(range(2, 1601))
