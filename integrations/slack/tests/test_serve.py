"""`agent-finops serve` end to end: signed clicks on its HTTP endpoint resume paused runs.

The app pauses in one process (posting to the Slack emulator); the approver service runs as
another (`agent-finops serve`, waitress + Bolt, the real WebClient); clicks are signed
`block_actions` POSTs.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from slack_helpers import ALICE, BOB, CHANNEL, LEAD, MALLORY, ServeProcess, World

from agent_finops import SQLLedger
from agent_finops_slack import SlackStore
from agent_finops_slack.testing import SlackEmulator, block_actions, post_interaction
from tests.conftest import drop_postgres_schema, postgres_url_or_skip

pytestmark = pytest.mark.slow
CALL = Decimal("0.00021")
RAISE = "finops_approve_raise:1"  # approve with $1 more: the run completes


@pytest.fixture
def slack() -> Iterator[SlackEmulator]:
    with SlackEmulator(channels={CHANNEL}, groups={"S0LEADS": [LEAD]}) as emulator:
        yield emulator


@pytest.fixture
def world(tmp_path: Path, slack: SlackEmulator) -> World:
    return World(tmp_path, slack)


def serve(world: World, *extra: str) -> ServeProcess:
    return ServeProcess(world.write(), world.env(), *extra)


def ledger_of(world: World) -> SQLLedger:
    return SQLLedger.from_url(world.db_url)


def thread_cost(ledger: SQLLedger) -> Decimal:
    return sum((s.cost for s in ledger.list_runs(limit=100)), Decimal(0))


def test_approve_resumes_the_run_and_it_completes_with_the_right_total(world: World) -> None:
    world.write()
    (approval_id,) = world.pause("chain-1")
    message = world.message_of(approval_id)
    assert any(b["type"] == "actions" for b in message.blocks)
    with serve(world) as server:  # started after the pause: nothing in memory carries over
        # Approve: the default extra (the paused call's estimate) lets b run; c pauses again.
        status, _, seconds = world.click(server, approval_id, ALICE, action_id="finops_approve")
        assert status == 200 and seconds < 3.0  # Slack waits 3 s for the ack
        (outcome,) = world.wait_outcomes("chain-1", 1)
        assert outcome == {**outcome, "decision": "approve", "messages": 3, "interrupted": True}
        assert world.slack.wait(lambda: "Approved by <@U0ALICE>" in str(message.blocks), 10)
        assert not any(b["type"] == "actions" for b in message.blocks)  # replaced in place
        assert world.slack.wait(lambda: len(world.slack.messages) == 2, 10)  # c asks anew
        with ledger_of(world) as ledger:
            (again,) = [a.approval_id for a in ledger.list_approvals(status="pending")]
        assert world.click(server, again, BOB)[0] == 200  # approve, raise cap by $1
        outcomes = world.wait_outcomes("chain-1", 2)
        assert outcomes[1] == {**outcomes[1], "messages": 4, "interrupted": False}
    assert len(world.slack.calls_to("chat.postMessage", ok=True)) == 2
    with ledger_of(world) as ledger:
        request = ledger.get_approval(approval_id)
        assert request is not None and request.status == "approved"
        assert request.decided_by == f"slack:{ALICE}" and request.applied_at is not None
        audit = [d for d in ledger.decisions_for(request.trace_id) if d.action == "approved"]
        assert [d.actor for d in audit] == [f"slack:{ALICE}"]
        runs = sorted(ledger.list_runs(), key=lambda r: r.run.started_at)
        assert [r.run.status for r in runs] == ["interrupted", "interrupted", "ok"]
        assert sum(r.model_calls for r in runs) == 3
        assert thread_cost(ledger) == 3 * CALL  # every call priced once, nothing lost


@pytest.mark.postgres
def test_the_ledger_on_postgresql(world: World) -> None:
    world.ledger_url = postgres_url_or_skip()
    try:
        world.write()
        (approval_id,) = world.pause("chain-9")
        with serve(world) as server:
            assert world.click(server, approval_id, ALICE)[0] == 200
            (outcome,) = world.wait_outcomes("chain-9", 1)
            assert outcome["messages"] == 4
        with ledger_of(world) as ledger:
            assert thread_cost(ledger) == 3 * CALL
            post = SlackStore.for_ledger(ledger).get_post(f"request:{approval_id}")
            assert post is not None and post.shown == "approved"
    finally:
        drop_postgres_schema(world.db_url)


def test_deny_stops_the_run_cleanly(world: World) -> None:
    world.write()
    (approval_id,) = world.pause("chain-2")
    with serve(world) as server:
        status, _, _ = world.click(server, approval_id, BOB, action_id="finops_deny")
        assert status == 200
        (outcome,) = world.wait_outcomes("chain-2", 1)
        assert outcome["decision"] == "deny" and outcome["stopped"] is True
        message = world.message_of(approval_id)
        assert world.slack.wait(lambda: "Denied by <@U0BOB>" in str(message.blocks), 10)
    with ledger_of(world) as ledger:
        statuses = sorted((r.run.started_at, r.run.status) for r in ledger.list_runs())
        assert [s for _, s in statuses] == ["interrupted", "stopped"]
        assert sum(r.model_calls for r in ledger.list_runs()) == 2  # the third never ran


def test_bad_requests_change_nothing_and_a_good_click_still_works(world: World) -> None:
    world.write()
    (approval_id,) = world.pause("chain-3")
    message = world.message_of(approval_id)
    with serve(world) as server:
        click = block_actions(approval_id, user=ALICE, channel=CHANNEL, message_ts=message.ts)
        assert post_interaction(server.url, click, secret="not-the-secret")[0] == 401
        stale = int(time.time()) - 6 * 60
        assert post_interaction(server.url, click, timestamp=stale)[0] == 401
        assert post_interaction(server.url, click, headers={})[0] == 401  # unsigned
        assert post_interaction(server.url, body="payload=%7Bnot+json")[0] in (400, 404)
        assert post_interaction(server.url, body="garbage")[0] in (400, 404)
        odd = block_actions(approval_id, user=ALICE, action_id="finops_approve_raise:1000")
        assert post_interaction(server.url, odd)[0] == 200  # not an offered amount
        unknown = block_actions("f" * 32, user=ALICE)
        assert post_interaction(server.url, unknown)[0] == 200
        intruder = block_actions(approval_id, user=MALLORY)
        assert post_interaction(server.url, intruder)[0] == 200
        assert world.slack.wait(lambda: len(world.slack.ephemerals()) == 3, 10)
        replies = world.slack.ephemerals()
        assert any("is not offered" in r for r in replies)
        assert any("no approval request" in r.lower() for r in replies)
        assert world.slack.ephemerals(MALLORY) == [
            next(r for r in replies if "not on the approvers list" in r)
        ]
        with ledger_of(world) as ledger:
            request = ledger.get_approval(approval_id)
            assert request is not None and request.status == "pending"  # nothing changed
            refused = [d for d in ledger.decisions_for(request.trace_id) if d.action == "refused"]
            assert [d.actor for d in refused] == [f"slack:{MALLORY}"]  # audited
        assert world.outcomes("chain-3") == []  # nothing resumed

        # A user group member on the list approves; the same delivery replayed is ignored.
        good = block_actions(approval_id, user=LEAD, action_id=RAISE, message_ts=message.ts)
        assert post_interaction(server.url, good)[0] == 200
        assert post_interaction(server.url, good)[0] == 200  # a replay (or a Slack retry)
        (outcome,) = world.wait_outcomes("chain-3", 1)
        assert outcome["messages"] == 4
        late = block_actions(approval_id, user=BOB, channel=CHANNEL, message_ts=message.ts)
        assert post_interaction(server.url, late)[0] == 200
        assert world.slack.wait(lambda: bool(world.slack.ephemerals(BOB)), 10)
        assert "Already approved by <@U0LEAD>" in world.slack.ephemerals(BOB)[0]
        time.sleep(0.5)  # nothing else may happen: give a wrong second resume time to show
    assert len(world.outcomes("chain-3")) == 1
    assert "ignored a replayed interaction" in server.logs()
    with ledger_of(world) as ledger:
        request = ledger.get_approval(approval_id)
        assert request is not None and request.decided_by == f"slack:{LEAD}"
        decided = [d for d in ledger.decisions_for(request.trace_id) if d.action == "approved"]
        assert len(decided) == 1


def test_two_approvers_and_a_double_click_at_once_give_one_decision_and_one_resume(
    world: World,
) -> None:
    world.write()
    (approval_id,) = world.pause("chain-4")
    message = world.message_of(approval_id)
    with serve(world) as server:
        clicks = [
            block_actions(approval_id, user=user, action_id=RAISE, message_ts=message.ts)
            for user in (ALICE, ALICE, BOB, BOB)
        ]
        answers: list[int] = []
        gate = threading.Barrier(len(clicks))

        def send(payload: dict[str, object]) -> None:
            gate.wait()
            answers.append(post_interaction(server.url, payload)[0])

        threads = [threading.Thread(target=send, args=(c,)) for c in clicks]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert answers == [200] * 4
        (outcome,) = world.wait_outcomes("chain-4", 1)
        assert outcome["messages"] == 4
        assert world.slack.wait(lambda: len(world.slack.ephemerals()) == 3, 10)
        assert all("Already approved by <@" in r for r in world.slack.ephemerals())
        time.sleep(0.5)
    assert len(world.outcomes("chain-4")) == 1
    with ledger_of(world) as ledger:
        request = ledger.get_approval(approval_id)
        assert request is not None
        assert (
            len([d for d in ledger.decisions_for(request.trace_id) if d.action == "approved"]) == 1
        )
        assert thread_cost(ledger) == 3 * CALL


def test_parallel_pauses_get_one_message_each_and_are_decided_separately(world: World) -> None:
    world.limit = "0.00001"  # both branches' first calls are over it
    world.write()
    first, second = world.pause("parallel-1")
    m1, m2 = world.message_of(first), world.message_of(second)
    assert m1.ts != m2.ts and len(world.slack.messages) == 2
    with serve(world) as server:
        assert world.click(server, first, ALICE)[0] == 200
        (outcome,) = world.wait_outcomes("parallel-1", 1)
        assert outcome["approval_id"] == first and outcome["interrupted"] is True  # b waits
        assert any(b["type"] == "actions" for b in m2.blocks)  # still asking
        assert "extra $1" in m1.text
        assert world.click(server, second, BOB)[0] == 200
        outcomes = world.wait_outcomes("parallel-1", 2)
        assert outcomes[1]["approval_id"] == second and outcomes[1]["interrupted"] is False
        assert outcomes[1]["messages"] == 3  # go + a + b
    with ledger_of(world) as ledger:
        assert thread_cost(ledger) == 2 * CALL
        assert {ledger.get_approval(a).status for a in (first, second)} == {"approved"}  # type: ignore[union-attr]


def test_create_agent_with_the_middleware_pauses_and_completes_after_the_click(
    world: World,
) -> None:
    world.limit = "0.0105"
    world.write()
    (approval_id,) = world.pause("agent-1")
    with serve(world) as server:
        assert world.click(server, approval_id, ALICE)[0] == 200
        (outcome,) = world.wait_outcomes("agent-1", 1)
        assert outcome["interrupted"] is False and outcome["last"] == "done"
    with ledger_of(world) as ledger:
        assert thread_cost(ledger) == 3 * CALL + 2 * Decimal("0.01")
        request = ledger.get_approval(approval_id)
        assert request is not None and request.extra == Decimal(1)


def test_a_restart_between_pause_and_click_loses_nothing(world: World) -> None:
    world.write()
    (approval_id,) = world.pause_in_subprocess("chain-5")  # that process has exited too
    first = serve(world)
    assert first.stop(kill=True) != 0  # killed, not stopped: nothing was flushed on exit
    with serve(world) as second:
        assert world.click(second, approval_id, ALICE)[0] == 200
        (outcome,) = world.wait_outcomes("chain-5", 1)
        assert outcome["messages"] == 4


def test_an_unanswered_request_expires_and_the_run_is_stopped(world: World) -> None:
    world.expire_after = "1s"
    world.write()
    (approval_id,) = world.pause("chain-6")
    message = world.message_of(approval_id)
    assert "<!date^" in str(message.blocks)  # says when it expires
    with serve(world):
        (outcome,) = world.wait_outcomes("chain-6", 1, timeout=30)
        assert outcome["decision"] == "deny" and outcome["stopped"] is True
        assert world.slack.wait(lambda: "Expired undecided" in str(message.blocks), 10)
    with ledger_of(world) as ledger:
        request = ledger.get_approval(approval_id)
        assert (
            request is not None and request.status == "expired" and request.decided_by == "expiry"
        )


def test_slack_failures_keep_the_request_pending_and_visible_until_slack_takes_it(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    from agent_finops.cli import main as cli

    world.write()
    world.slack.fail("chat.postMessage", "channel_not_found")
    (approval_id,) = world.pause("chain-7")
    assert not world.slack.messages
    assert cli(["--db", world.db_url, "approvals", "list", "--json"]) == 0
    (listed,) = json.loads(capsys.readouterr().out)
    assert listed["approval_id"] == approval_id and listed["status"] == "pending"
    world.slack.rate_limit("chat.postMessage", retry_after=0)  # the sweep's first retry
    with serve(world) as server:
        message = world.message_of(approval_id)  # the sweep posted it after the back-off
        world.slack.rate_limit("chat.update", retry_after=0)
        assert world.click(server, approval_id, ALICE)[0] == 200
        (outcome,) = world.wait_outcomes("chain-7", 1)
        assert outcome["messages"] == 4
        assert world.slack.wait(lambda: "Approved by" in str(message.blocks), 10)
        updates = world.slack.calls_to("chat.update")
        assert [c.status for c in updates][:2] == [429, 200]
    posts = world.slack.calls_to("chat.postMessage")
    assert [c.answer.get("error") for c in posts] == ["channel_not_found", "ratelimited", None]
    assert len(world.slack.messages) == 1  # posted once, once Slack took it


def test_socket_mode_acks_and_resumes(tmp_path: Path) -> None:
    with SlackEmulator(channels={CHANNEL}, socket_mode=True) as slack:
        world = World(tmp_path, slack, extra_config={"serve": {"mode": "socket"}})
        world.write()
        (approval_id,) = world.pause("chain-8")
        message = world.message_of(approval_id)
        with ServeProcess(world.write(), world.env()) as server:
            assert slack.socket_connected(30), server.logs()
            seconds = slack.send_interactive(
                block_actions(approval_id, user=ALICE, action_id=RAISE, message_ts=message.ts)
            )
            assert seconds < 3.0
            (outcome,) = world.wait_outcomes("chain-8", 1)
            assert outcome["messages"] == 4
