"""Enforcement through CrewAI's hooks: caps, loops, ping-pong, mandatory tags, approvals."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest
from crewai import LLM
from crews import DELEGATE, RESEARCHER_SCRIPT, SEARCH, WRITER_SCRIPT, final, team

from agent_finops import CostTracker, SQLLedger
from agent_finops.approvals import ApprovalService, ConsoleChannel
from agent_finops.exceptions import (
    ApprovalDenied,
    BudgetExceeded,
    LoopDetected,
    MissingTags,
    RateLimitExceeded,
)
from agent_finops.policy import Policy
from agent_finops_crewai import STOPPED_KIND, CrewPaused, CrewStopped, FinOpsListener
from agent_finops_crewai.testing import Reply, ScriptedLLM, crewai_usage
from tests.fakes.openai_server import FakeOpenAIServer, ScriptedReply, ScriptedToolCall


def policy(text: str) -> Policy:
    import yaml

    return Policy.from_mapping(yaml.safe_load(text))


@pytest.fixture
def plain_tracker(ledger: SQLLedger) -> Iterator[CostTracker]:
    """A tracker without tool fees."""
    tracker = CostTracker(ledger, tags={"team": "research"})
    yield tracker
    tracker.close()


def last_run(tracker: CostTracker) -> Any:
    (summary,) = tracker.ledger.list_runs(limit=1)
    return tracker.report(summary.run.trace_id)


# -- a per-task cap stops the crew before the crossing request is sent -------------------------


def test_task_cap_stops_before_the_crossing_request_reaches_the_server(
    plain_tracker: CostTracker, make_listener: Callable[..., FinOpsListener]
) -> None:
    caps = policy("version: 1\nbudgets:\n  - {id: task-cap, limit: '0.005', period: task}\n")
    make_listener(plain_tracker, policy=caps)
    with FakeOpenAIServer(
        [
            # research: delegate (writer answers), search, answer: small calls
            ScriptedReply(
                tool_calls=(
                    ScriptedToolCall(
                        name="delegate_work_to_coworker",
                        arguments={"task": "one line", "context": "gpus", "coworker": "Writer"},
                        id="c1",
                    ),
                ),
                prompt_tokens=800,
                completion_tokens=30,
            ),
            ScriptedReply(content="GPUs got cheaper.", prompt_tokens=300, completion_tokens=20),
            ScriptedReply(
                tool_calls=(ScriptedToolCall(name="search", arguments={"query": "gpu"}, id="c2"),),
                prompt_tokens=900,
                completion_tokens=30,
            ),
            ScriptedReply(content="prices fell 8%", prompt_tokens=1000, completion_tokens=50),
            # write: one search that alone spends $0.006 of the task's $0.005 ...
            ScriptedReply(
                tool_calls=(ScriptedToolCall(name="search", arguments={"query": "more"}, id="c3"),),
                prompt_tokens=40_000,
                completion_tokens=10,
            ),
            # ... so this reply is never asked for
            ScriptedReply(content="never sent", prompt_tokens=10, completion_tokens=1),
        ]
    ) as server:

        def llm() -> LLM:
            return LLM(
                model="gpt-4o-mini", base_url=server.base_url, api_key="test", max_tokens=200
            )

        crew = team(llm(), llm())
        with pytest.raises(CrewStopped) as stopped:
            crew.kickoff()
        assert len(server.bodies) == 5 and server.pending == 1
    error = stopped.value.error
    assert isinstance(error, BudgetExceeded) and error.rule_id == "task-cap"
    assert error.limit == Decimal("0.005") and error.observed is not None
    assert error.observed > error.limit
    assert stopped.value.outcome["kind"] == STOPPED_KIND
    assert [o.raw for o in stopped.value.outputs] == ["prices fell 8%"]  # research kept
    report = last_run(plain_tracker)
    assert report.run.status == "stopped"
    assert report.decision_counts().get("deny") == 1
    by_task = {r.key: r.totals.cost for r in report.by_task}
    assert by_task["write"] > Decimal("0.005") > by_task["research"]


def test_rate_limit_and_daily_budget_from_the_same_policy_file(
    tracker: CostTracker, make_listener: Callable[..., FinOpsListener]
) -> None:
    limits = policy(
        """
version: 1
budgets:
  - {id: team-daily, scope: {team: research}, limit: '100', period: daily}
rate_limits:
  - {id: agent-rpm, scope: {agent: "*"}, window: 1m, max_calls: 2}
"""
    )
    make_listener(tracker, policy=limits)
    researcher = ScriptedLLM(model="gpt-4o-mini", script=RESEARCHER_SCRIPT)
    with pytest.raises(CrewStopped) as stopped:
        team(researcher, ScriptedLLM(model="gpt-4o-mini", script=WRITER_SCRIPT)).kickoff()
    assert isinstance(stopped.value.error, RateLimitExceeded)
    assert stopped.value.error.scope == {"agent": "Researcher"}
    assert researcher.calls == 2  # the researcher's third call in the minute was not sent
    report = last_run(tracker)
    assert report.decision_counts()["deny"] == 1
    assert report.decision_counts()["allow"] >= 3  # the daily budget reserved every call


# -- loops --------------------------------------------------------------------------------------


def test_same_tool_same_input_is_caught(
    tracker: CostTracker, make_listener: Callable[..., FinOpsListener]
) -> None:
    loops = policy(
        "version: 1\nloops:\n  - {id: same-search, kind: repeated_tool_call, max_repeats: 2}\n"
    )
    make_listener(tracker, policy=loops)
    researcher = ScriptedLLM(model="gpt-4o-mini", script=[Reply(SEARCH)] * 3 + [Reply(final("x"))])
    writer = ScriptedLLM(model="gpt-4o-mini", script=WRITER_SCRIPT)
    crew = team(researcher, writer)
    with pytest.raises(CrewStopped) as stopped:
        crew.kickoff()
    assert isinstance(stopped.value.error, LoopDetected)
    assert stopped.value.error.rule_id == "same-search"
    # The second identical search was blocked; the crew stopped at the next model call.
    assert researcher.calls == 2
    report = last_run(tracker)
    assert report.run.status == "stopped"
    searches = [
        e for e in tracker.ledger.load_trace(report.run.trace_id).events if e.name == "search"
    ]
    assert len(searches) == 1


def test_delegation_ping_pong_between_two_agents_is_caught(
    tracker: CostTracker, make_listener: Callable[..., FinOpsListener]
) -> None:
    loops = policy("version: 1\nloops:\n  - {id: ping-pong, kind: ping_pong, max_cycles: 2}\n")
    make_listener(tracker, policy=loops)
    # The researcher keeps handing work to the writer and getting it back: R, W, R, W...
    asks = [Reply(DELEGATE.replace("one line", f"line {i}")) for i in range(6)]
    researcher = ScriptedLLM(model="gpt-4o-mini", script=[*asks, Reply(final("done"))])
    writer = ScriptedLLM(model="gpt-4o-mini", script=[Reply(final("a line"))])
    with pytest.raises(CrewStopped) as stopped:
        team(researcher, writer).kickoff()
    assert isinstance(stopped.value.error, LoopDetected)
    assert stopped.value.error.rule_id == "ping-pong"
    # R, W, R, W: the second hand-over to the writer trips the rule before its model call
    # is sent; the researcher's next call stops the crew.
    assert (researcher.calls, writer.calls) == (2, 1)


# -- mandatory tags -------------------------------------------------------------------------------


def test_missing_mandatory_tags_refuse_the_crew_before_any_request(
    tracker: CostTracker, make_listener: Callable[..., FinOpsListener]
) -> None:
    tags = policy("version: 1\nmandatory_tags:\n  - require: [cost_center]\n")
    make_listener(tracker, policy=tags)
    researcher = ScriptedLLM(model="gpt-4o-mini", script=RESEARCHER_SCRIPT)
    with pytest.raises(CrewStopped) as stopped:
        team(researcher, ScriptedLLM(model="gpt-4o-mini", script=WRITER_SCRIPT)).kickoff()
    assert isinstance(stopped.value.error, MissingTags)
    assert researcher.calls == 0
    report = last_run(tracker)
    assert report.run.status == "stopped" and report.total_cost == 0


# -- approvals ------------------------------------------------------------------------------------

PAUSE_WRITER = """
version: 1
budgets:
  - {id: writer-cap, scope: {task: write}, limit: '0.012', period: run, action: pause}
"""


def pausing_team() -> tuple[Any, ScriptedLLM]:
    """The writer's own task: a $0.006 search call, then an answer the cap pauses."""
    writer = ScriptedLLM(
        model="gpt-4o-mini",
        script=[
            WRITER_SCRIPT[0],
            Reply(SEARCH.replace("gpu prices", "summary facts"), crewai_usage(40_000, 10)),
            WRITER_SCRIPT[1],
        ],
    )
    return team(ScriptedLLM(model="gpt-4o-mini", script=RESEARCHER_SCRIPT), writer), writer


def decide_when_asked(
    tracker: CostTracker, listener: FinOpsListener, approve: bool
) -> threading.Thread:
    """A human in another thread: decides the first request as soon as it is filed."""

    def human() -> None:
        service = listener.guard.approvals
        assert service is not None
        for _ in range(400):
            pending = service.requests(status="pending")
            if pending:
                service.decide(
                    pending[0].approval_id,
                    approve=approve,
                    by="alice",
                    extra=Decimal("1.00") if approve else None,
                    reason=None if approve else "not worth it",
                )
                return
            time.sleep(0.025)

    thread = threading.Thread(target=human, daemon=True)
    thread.start()
    return thread


def test_pause_approved_while_the_hook_waits_completes_the_crew(
    tracker: CostTracker, make_listener: Callable[..., FinOpsListener]
) -> None:
    console = io.StringIO()
    service = ApprovalService(tracker.ledger, channels=[ConsoleChannel(console)])
    listener = make_listener(
        tracker, policy=policy(PAUSE_WRITER), approvals=service, approval_wait=20
    )
    crew, _writer = pausing_team()
    human = decide_when_asked(tracker, listener, approve=True)
    output = crew.kickoff()
    human.join(5)
    said = console.getvalue()
    assert "needed: cost cap 'writer-cap'" in said and "approved by alice" in said
    assert output.raw == "Summary: GPUs are 8% cheaper."
    report = last_run(tracker)
    assert report.run.status == "ok"
    assert [(a.status, a.decided_by) for a in report.approvals] == [("approved", "alice")]
    assert report.decision_counts().get("pause") == 1


def test_pause_denied_stops_the_crew_and_keeps_finished_outputs(
    tracker: CostTracker, make_listener: Callable[..., FinOpsListener]
) -> None:
    listener = make_listener(tracker, policy=policy(PAUSE_WRITER), approval_wait=20)
    crew, writer = pausing_team()
    human = decide_when_asked(tracker, listener, approve=False)
    with pytest.raises(CrewStopped) as stopped:
        crew.kickoff()
    human.join(5)
    assert isinstance(stopped.value.error, ApprovalDenied)
    assert [o.raw for o in stopped.value.outputs] == ["gpu prices fell 8%"]
    assert writer.calls == 3 - 1  # the paused call was never sent
    report = last_run(tracker)
    assert report.run.status == "stopped"
    assert [a.status for a in report.approvals] == ["denied"]


def test_undecided_pause_ends_the_crew_resumably(
    tracker: CostTracker, make_listener: Callable[..., FinOpsListener]
) -> None:
    make_listener(tracker, policy=policy(PAUSE_WRITER), approval_wait=0)
    crew, _writer = pausing_team()
    with pytest.raises(CrewPaused) as paused:
        crew.kickoff()
    assert paused.value.approval.status == "pending"
    assert paused.value.payload["kind"] == "agent_finops.approval"
    assert paused.value.thread_id is not None
    assert [o.raw for o in paused.value.outputs] == ["gpu prices fell 8%"]
    report = last_run(tracker)
    assert report.run.status == "interrupted"
    assert report.run.thread_id == paused.value.thread_id
