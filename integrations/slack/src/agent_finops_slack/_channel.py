"""`SlackChannel`: approval requests and threshold alerts in Slack, updated in place.

The approval service calls a channel on the thread that paused (or decided), so by default
everything here runs on one background thread: a notification only queues work and never
raises. A post that fails is logged with what to do about it and kept in the store with
when to retry; the request itself stays pending in the ledger (`agent-finops approvals
list`) and the approver service's sweep posts it once Slack takes it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, Final
from urllib.error import URLError

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from agent_finops.approvals import ApprovalChannel, Approver, ThresholdAlert
from agent_finops.ledger import ApprovalRecord
from agent_finops_slack._client import bot_client, error_code, retry_after
from agent_finops_slack._config import SlackSettings
from agent_finops_slack._message import (
    alert_message,
    cost_drivers,
    decided_message,
    request_message,
    routing_tags,
)
from agent_finops_slack._store import SlackPost, SlackStore, request_key

__all__ = ["SlackChannel"]

log = logging.getLogger("agent_finops.slack")

MAX_BACKOFF: Final = timedelta(hours=1)
"""The longest wait between two tries of a failed post."""
GROUP_PREFIX: Final = "slack-group:"
HINTS: Final = {
    "channel_not_found": "invite the app to the channel, or fix slack.default_channel/routes",
    "not_in_channel": "invite the app to the channel (/invite @agent-finops)",
    "is_archived": "the channel is archived: route this scope elsewhere",
    "token_revoked": "the bot token was revoked: reinstall the app and update the token",
    "invalid_auth": "the bot token is not valid: check the token environment variable",
    "not_authed": "no bot token was sent: set the token environment variable",
    "account_inactive": "the bot token's app was deleted or deactivated",
    "missing_scope": "the app lacks a scope: see docs/slack-app-manifest.yaml",
    "ratelimited": "Slack rate-limited the app; retried after its Retry-After",
}
_DELIVERY_ERRORS = (SlackApiError, SlackClientError, URLError, OSError, ValueError)
"""Failures of a Web API call (ValueError: an unreadable response)."""


def _utcnow() -> datetime:
    return datetime.now(UTC)


def default_owner() -> str:
    """This process, as stored with the posts and resumes it claims."""
    return f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:8]}"[:120]


class SlackChannel(ApprovalChannel):
    """Posts approval requests and threshold alerts to Slack, and updates them in place.

    ```python
    slack = SlackChannel.from_env(ledger, settings, flush=tracker.flush)
    approvals = ApprovalService.from_settings(ledger, policy.approvals, channels=[slack])
    handler = FinOpsCallbackHandler(tracker, policy=policy, approvals=approvals,
                                    resume_target="support-graph")
    ```
    """

    name = "slack"

    def __init__(
        self,
        ledger: Any,
        *,
        client: WebClient,
        settings: SlackSettings,
        store: SlackStore | None = None,
        flush: Callable[[], None] | None = None,
        background: bool = True,
        clock: Callable[[], datetime] = _utcnow,
        owner: str | None = None,
    ) -> None:
        """Post to Slack through `client`, routed and configured by `settings`.

        Args:
            ledger: the ledger requests live in (read for the run's cost drivers).
            client: a `slack_sdk.WebClient` (see `web_client` for the retry policy).
            settings: channel routing, raise options, retry limits.
            store: where message ids and sent alerts are kept (default: the ledger's
                database).
            flush: called before reading the run's cost drivers (pass `tracker.flush`, so
                the calls just made are in the ledger).
            background: do Slack calls on a background thread (default). False: inline,
                as the approver service does on its own worker threads.
            clock: returns the current aware datetime.
            owner: this process's name in the store (default: host, pid and a random tag).
        """
        self.ledger = ledger
        self.client = client
        self.settings = settings
        self.store = store or SlackStore.for_ledger(ledger)
        self.owner = owner or default_owner()
        self._flush = flush
        self._clock = clock
        self._groups: dict[str, tuple[float, frozenset[str]]] = {}
        self._groups_lock = threading.Lock()
        self._queue: queue.Queue[Callable[[], object] | None] | None = None
        self._worker: threading.Thread | None = None
        if background:
            self._queue = queue.Queue()
            self._worker = threading.Thread(
                target=self._work, name="agent-finops-slack", daemon=True
            )
            self._worker.start()

    @classmethod
    def from_env(
        cls,
        ledger: Any,
        settings: SlackSettings,
        **kwargs: Any,
    ) -> SlackChannel:
        """A channel whose bot token comes from `settings.token_env` (`SLACK_BOT_TOKEN`)."""
        client = bot_client(
            settings.token_env, base_url=settings.base_url, max_retry_wait=settings.max_retry_wait
        )
        return cls(ledger, client=client, settings=settings, **kwargs)

    # -- ApprovalChannel ------------------------------------------------------------------

    def request_opened(self, request: ApprovalRecord) -> None:
        """Post the request with its buttons (in the background)."""
        approval_id = request.approval_id
        self._submit(lambda: self.post_request(approval_id))

    def request_decided(self, request: ApprovalRecord) -> None:
        """Replace the buttons with who decided, when, and the extra granted."""
        approval_id = request.approval_id
        self._submit(lambda: self.refresh(approval_id))

    def request_expired(self, request: ApprovalRecord) -> None:
        """Say the request expired and what that meant for the run."""
        approval_id = request.approval_id
        self._submit(lambda: self.refresh(approval_id))

    def threshold_crossed(self, alert: ThresholdAlert) -> None:
        """Post a plain alert, once per budget bucket and threshold."""
        self._submit(lambda: self.post_alert(alert))

    # -- background work ------------------------------------------------------------------

    def _submit(self, job: Callable[[], object]) -> None:
        if self._queue is None:
            self._safely(job)
        else:
            self._queue.put(job)

    def _work(self) -> None:
        assert self._queue is not None
        while True:
            job = self._queue.get()
            try:
                if job is None:
                    return
                self._safely(job)
            finally:
                self._queue.task_done()

    @staticmethod
    def _safely(job: Callable[[], object]) -> None:
        try:
            job()
        except Exception:  # never let one failure stop the worker or reach the run
            log.exception("agent-finops-slack: a Slack job failed; the ledger is unaffected")

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until queued Slack work is done; False if `timeout` seconds passed first."""
        if self._queue is None:
            return True
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)
        return True

    def close(self, timeout: float = 30.0) -> None:
        """Finish queued work (up to `timeout` seconds) and stop the background thread."""
        if self._queue is not None and self._worker is not None:
            self.flush(timeout)
            self._queue.put(None)
            self._worker.join(timeout)
            self._queue = None

    # -- requests -------------------------------------------------------------------------

    def post_request(self, approval_id: str) -> SlackPost | None:
        """Post a pending request once (of all processes, the one that claims it posts)."""
        request = self.ledger.find_approval(approval_id)
        if request is None or request.approval_id != approval_id or request.status != "pending":
            return None
        key = request_key(approval_id)
        channel = self.settings.channel_for(routing_tags(request))
        if not self.store.claim_post(
            key,
            kind="request",
            owner=self.owner,
            now=self._clock(),
            approval_id=approval_id,
            channel=channel,
        ):
            return self.store.get_post(key)
        return self._deliver_request(request, key, channel)

    def _deliver_request(self, request: ApprovalRecord, key: str, channel: str) -> SlackPost | None:
        if self._flush is not None:
            try:
                self._flush()
            except Exception:
                log.warning("agent-finops-slack: flushing the tracker failed", exc_info=True)
        text, blocks = request_message(
            request,
            drivers=cost_drivers(self.ledger, request.trace_id),
            raise_options=self.settings.raise_options,
        )
        try:
            response = self.client.chat_postMessage(
                channel=channel, text=text, blocks=blocks, unfurl_links=False, unfurl_media=False
            )
        except _DELIVERY_ERRORS as exc:
            self._failed(key, exc, what=f"post approval {request.approval_id} to {channel}")
            return None
        self.store.posted(
            key,
            channel=str(response.get("channel") or channel),
            ts=str(response["ts"]),
            now=self._clock(),
        )
        log.info("agent-finops-slack: posted approval %s to %s", request.approval_id, channel)
        current = self.ledger.find_approval(request.approval_id)
        if current is not None and current.status != "pending":  # decided while we posted
            self.update_message(current)
        return self.store.get_post(key)

    def refresh(self, approval_id: str) -> bool:
        """Bring a request's message up to date with the ledger (True if it shows it now)."""
        request = self.ledger.find_approval(approval_id)
        if request is None or request.approval_id != approval_id:
            return False
        return self.update_message(request)

    def update_message(self, request: ApprovalRecord) -> bool:
        """Show `request`'s current status in its message, in place (True if it does now)."""
        key = request_key(request.approval_id)
        post = self.store.get_post(key)
        if post is None or post.state != "posted" or not post.channel or not post.ts:
            return False  # never shown in Slack: nothing to update
        if post.shown == request.status:
            return True
        if not self.store.set_shown(
            key, shown=request.status, expect=post.shown, now=self._clock()
        ):
            return False  # another process is updating it
        drivers = cost_drivers(self.ledger, request.trace_id)
        if request.status == "pending":
            text, blocks = request_message(
                request, drivers=drivers, raise_options=self.settings.raise_options
            )
        else:
            text, blocks = decided_message(request, drivers=drivers)
        try:
            self.client.chat_update(channel=post.channel, ts=post.ts, text=text, blocks=blocks)
        except _DELIVERY_ERRORS as exc:
            # Give the claim back so the sweep tries again.
            self.store.set_shown(key, shown=post.shown, expect=request.status, now=self._clock())
            code = error_code(exc)
            log.error(
                "agent-finops-slack: could not update the message of approval %s in %s: %s%s; "
                "the decision stands (it is in the ledger); the sweep retries the update",
                request.approval_id,
                post.channel,
                code,
                _hint(code),
            )
            return False
        return True

    # -- alerts ---------------------------------------------------------------------------

    def post_alert(self, alert: ThresholdAlert) -> bool:
        """Post a threshold alert unless this bucket's threshold was announced before."""
        digest = hashlib.sha256(
            f"{alert.counter_key}|{alert.percent.normalize():f}".encode()
        ).hexdigest()[:48]
        key = f"alert:{alert.rule_id[:64]}:{digest}"
        channel = self.settings.channel_for({**alert.tags, **alert.scope})
        text = alert_message(alert)
        if not self.store.claim_post(
            key, kind="alert", owner=self.owner, now=self._clock(), channel=channel, text=text
        ):
            return False
        return self._deliver_alert(key, channel, text)

    def _deliver_alert(self, key: str, channel: str, text: str) -> bool:
        try:
            response = self.client.chat_postMessage(channel=channel, text=text)
        except _DELIVERY_ERRORS as exc:
            self._failed(
                key,
                exc,
                what=f"post a threshold alert to {channel}",
                kept="the alert is kept and sent once Slack takes it",
            )
            return False
        self.store.posted(
            key,
            channel=str(response.get("channel") or channel),
            ts=str(response["ts"]),
            now=self._clock(),
        )
        return True

    # -- catching up (the approver service's sweep) ---------------------------------------

    def catch_up(self, now: datetime | None = None) -> None:
        """Post what nobody posted, retry failed posts that are due, refresh stale messages."""
        now = now or self._clock()
        pending = self.ledger.list_approvals(status="pending", limit=500)
        have = self.store.request_keys([r.approval_id for r in pending])
        since = now - self.settings.catch_up_within
        for request in reversed(pending):  # oldest first
            created = request.created_at
            if created.tzinfo is None:  # stored naive (SQLite): UTC
                created = created.replace(tzinfo=UTC)
            if request_key(request.approval_id) not in have and created >= since:
                self._safely(partial(self.post_request, request.approval_id))
        for post in self.store.posts_due(now):
            if self.store.reclaim_post(post, owner=self.owner, now=now):
                self._safely(partial(self._redeliver, post))
        for post in self.store.showing("pending"):
            if post.approval_id is not None:
                self._safely(partial(self.refresh, post.approval_id))

    def _redeliver(self, post: SlackPost) -> None:
        channel = post.channel or self.settings.default_channel
        if post.kind == "alert":
            self._deliver_alert(post.key, channel, post.text or "")
            return
        request = self.ledger.find_approval(post.approval_id or "")
        if request is None:
            return
        if request.status != "pending":
            # Decided before it was ever shown: nobody needs the buttons any more.
            self.store.post_failed(
                post.key,
                error=f"not posted: already {request.status}",
                retry_at=datetime.max.replace(tzinfo=UTC),
                now=self._clock(),
            )
            return
        self._deliver_request(request, post.key, self.settings.channel_for(routing_tags(request)))

    # -- approvers --------------------------------------------------------------------------

    def approver(
        self, user_id: str, *, allowed: Iterable[str], name: str | None = None
    ) -> Approver:
        """The Slack user as an `Approver`, with the listed Slack user groups they are in."""
        groups = set()
        for entry in allowed:
            if entry.startswith(GROUP_PREFIX) and user_id in self._members(
                entry[len(GROUP_PREFIX) :]
            ):
                groups.add(entry)
        return Approver(id=f"slack:{user_id}", groups=frozenset(groups), name=name)

    def _members(self, group_id: str) -> frozenset[str]:
        now = time.monotonic()
        with self._groups_lock:
            cached = self._groups.get(group_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            response = self.client.usergroups_users_list(usergroup=group_id)
            members = frozenset(str(u) for u in response.get("users") or ())
        except _DELIVERY_ERRORS as exc:
            code = error_code(exc)
            log.error(
                "agent-finops-slack: cannot read the members of user group %s: %s%s; "
                "its members are treated as not on the list",
                group_id,
                code,
                _hint(code),
            )
            return frozenset()
        with self._groups_lock:
            self._groups[group_id] = (now + self.settings.group_cache.total_seconds(), members)
        return members

    def tell(self, channel: str | None, user: str, text: str) -> None:
        """An ephemeral reply only `user` sees (logged if Slack refuses it)."""
        if not channel:
            log.warning("agent-finops-slack: no channel to answer %s in: %s", user, text)
            return
        try:
            self.client.chat_postEphemeral(channel=channel, user=user, text=text)
        except _DELIVERY_ERRORS as exc:
            code = error_code(exc)
            log.error(
                "agent-finops-slack: could not tell %s (%s): %s%s", user, text, code, _hint(code)
            )

    # -- internals --------------------------------------------------------------------------

    def _failed(
        self,
        key: str,
        exc: Exception,
        *,
        what: str,
        kept: str = "the request stays pending (agent-finops approvals list)",
    ) -> None:
        now = self._clock()
        post = self.store.get_post(key)
        attempts = post.attempts if post is not None else 1
        code = error_code(exc)
        wait: float | None = None
        if isinstance(exc, SlackApiError):
            wait = retry_after(getattr(exc.response, "headers", None))
        delay = (
            timedelta(seconds=wait)
            if wait is not None
            else min(self.settings.retry_backoff * 2 ** min(attempts - 1, 12), MAX_BACKOFF)
        )
        retry_at = now + delay
        self.store.post_failed(key, error=f"{code}: {exc}", retry_at=retry_at, now=now)
        log.error(
            "agent-finops-slack: could not %s: %s%s; %s; retried from %s",
            what,
            code,
            _hint(code),
            kept,
            f"{retry_at:%Y-%m-%d %H:%M:%S} UTC",
        )


def _hint(code: str) -> str:
    hint = HINTS.get(code)
    return f" ({hint})" if hint else ""
