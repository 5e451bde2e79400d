"""`SlackStore`: what the Slack channel must remember durably, in the ledger's database.

Three small tables of this package's own (its own SQLAlchemy `MetaData`, so the ledger's
schema and migrations are untouched; `setup()` creates them and is safe to call again):

* `finops_slack_posts`: one row per Slack message we own. For a request, the approval id
  with the channel and `ts` Slack gave the message (so any process, after any restart, can
  update it in place) and the status it shows; for a threshold alert, the bucket and
  threshold (so an alert is sent once, also across restarts). Inserting the row is the
  claim to post: of several processes, one posts. A failed post keeps its error and when
  to retry.
* `finops_slack_seen`: interactions already handled (replay rejection).
* `finops_slack_resumes`: which decided request a service is resuming, so a click is
  resumed once and a resume cut short by a crash is taken over.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from agent_finops.exceptions import LedgerError

__all__ = ["SlackPost", "SlackStore"]

STALE_CLAIM: Final = timedelta(minutes=5)
"""A post claimed this long ago and never finished is retried (its process died)."""

metadata = MetaData()

posts = Table(
    "finops_slack_posts",
    metadata,
    Column("key", String(200), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("approval_id", String(64), nullable=True, index=True),
    Column("channel", String(80), nullable=True),
    Column("ts", String(40), nullable=True),
    Column("state", String(16), nullable=False),
    Column("shown", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("retry_at", DateTime(timezone=True), nullable=True),
    Column("error", Text, nullable=True),
    Column("owner", String(120), nullable=False),
    Column("text", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
seen = Table(
    "finops_slack_seen",
    metadata,
    Column("key", String(200), primary_key=True),
    Column("seen_at", DateTime(timezone=True), nullable=False, index=True),
)
resumes = Table(
    "finops_slack_resumes",
    metadata,
    Column("approval_id", String(64), primary_key=True),
    Column("state", String(16), nullable=False),
    Column("owner", String(120), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    Column("error", Text, nullable=True),
)


@dataclass(frozen=True, slots=True)
class SlackPost:
    """One Slack message we own (or tried to post)."""

    key: str
    kind: str
    """`request` or `alert`."""
    approval_id: str | None
    channel: str | None
    ts: str | None
    """Slack's id of the message in its channel (None until posted)."""
    state: str
    """`posting` (claimed), `posted` or `failed`."""
    shown: str
    """The request status the message shows (`pending`, `approved`, ...)."""
    attempts: int
    retry_at: datetime | None
    error: str | None
    owner: str
    text: str | None
    created_at: datetime
    updated_at: datetime


def request_key(approval_id: str) -> str:
    """The post key of an approval request's message."""
    return f"request:{approval_id}"


def _aware(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)  # SQLite hands back naive datetimes: they are UTC


def _post(row: Any) -> SlackPost:
    data = dict(row._mapping)
    for name in ("retry_at", "created_at", "updated_at"):
        data[name] = _aware(data[name])
    return SlackPost(**data)


class SlackStore:
    """Durable Slack state on a SQLAlchemy engine (the ledger's, by default)."""

    def __init__(self, engine: Engine, *, auto_setup: bool = True) -> None:
        """Keep state in `engine`'s database; creates the tables unless `auto_setup=False`."""
        self.engine = engine
        self.dialect = engine.dialect.name
        self._ready = False
        self._lock = threading.Lock()
        if auto_setup:
            self.setup()

    @classmethod
    def for_ledger(cls, ledger: Any) -> SlackStore:
        """The store in the same database as `ledger` (any ledger with an `engine`)."""
        engine = getattr(ledger, "engine", None)
        if not isinstance(engine, Engine):
            raise LedgerError(
                "this ledger has no SQL engine to keep Slack messages in; "
                "pass SlackStore(engine) explicitly"
            )
        return cls(engine)

    def setup(self) -> None:
        """Create the tables if missing; safe to call any number of times, from any process."""
        if self._ready:
            return
        with self._lock:
            if self._ready:
                return
            try:
                metadata.create_all(self.engine)
            except SQLAlchemyError as exc:
                text = str(exc).lower()
                if "already exists" not in text and "duplicate" not in text:
                    raise LedgerError(f"cannot create the Slack tables: {exc}") from exc
            self._ready = True

    # -- posts ----------------------------------------------------------------------------

    def claim_post(
        self,
        key: str,
        *,
        kind: str,
        owner: str,
        now: datetime,
        approval_id: str | None = None,
        channel: str | None = None,
        text: str | None = None,
    ) -> bool:
        """Claim the right to post `key`; False if someone has (posted or is posting) it."""
        row = {
            "key": key,
            "kind": kind,
            "approval_id": approval_id,
            "channel": channel,
            "ts": None,
            "state": "posting",
            "shown": "pending",
            "attempts": 1,
            "retry_at": None,
            "error": None,
            "owner": owner,
            "text": text,
            "created_at": now,
            "updated_at": now,
        }
        return self._inserted(posts, row)

    def reclaim_post(self, post: SlackPost, *, owner: str, now: datetime) -> bool:
        """Claim a failed (or abandoned) post to try again; False if another process did."""
        query = (
            update(posts)
            .where(posts.c.key == post.key, posts.c.attempts == post.attempts)
            .where(posts.c.state.in_(["failed", "posting"]))
            .values(state="posting", owner=owner, attempts=post.attempts + 1, updated_at=now)
        )
        return bool(self._run(lambda conn: conn.execute(query).rowcount) == 1)

    def posted(self, key: str, *, channel: str, ts: str, now: datetime) -> None:
        """The message is in Slack: remember where."""
        query = (
            update(posts)
            .where(posts.c.key == key)
            .values(
                state="posted", channel=channel, ts=ts, error=None, retry_at=None, updated_at=now
            )
        )
        self._run(lambda conn: conn.execute(query))

    def post_failed(self, key: str, *, error: str, retry_at: datetime, now: datetime) -> None:
        """Posting failed; the sweep retries from `retry_at`."""
        query = (
            update(posts)
            .where(posts.c.key == key)
            .values(state="failed", error=error[:2000], retry_at=retry_at, updated_at=now)
        )
        self._run(lambda conn: conn.execute(query))

    def get_post(self, key: str) -> SlackPost | None:
        """The post with this key, if any."""
        row = self._run(lambda conn: conn.execute(select(posts).where(posts.c.key == key)).first())
        return None if row is None else _post(row)

    def posts_due(self, now: datetime, *, limit: int = 100) -> list[SlackPost]:
        """Failed posts whose retry time has come, and claims abandoned by a dead process."""
        query = (
            select(posts)
            .where(
                ((posts.c.state == "failed") & (posts.c.retry_at <= now))
                | ((posts.c.state == "posting") & (posts.c.updated_at <= now - STALE_CLAIM))
            )
            .order_by(posts.c.created_at)
            .limit(limit)
        )
        return [_post(r) for r in self._run(lambda conn: conn.execute(query).all())]

    def showing(self, shown: str, *, limit: int = 500) -> list[SlackPost]:
        """Posted request messages that show `shown` (the sweep checks them against the ledger)."""
        query = (
            select(posts)
            .where(posts.c.kind == "request", posts.c.state == "posted", posts.c.shown == shown)
            .order_by(posts.c.created_at)
            .limit(limit)
        )
        return [_post(r) for r in self._run(lambda conn: conn.execute(query).all())]

    def request_keys(self, approval_ids: list[str]) -> set[str]:
        """Which of these requests have a post row (posted, posting or failed)."""
        if not approval_ids:
            return set()
        keys = [request_key(a) for a in approval_ids]
        query = select(posts.c.key).where(posts.c.key.in_(keys))
        return {r[0] for r in self._run(lambda conn: conn.execute(query).all())}

    def set_shown(self, key: str, *, shown: str, expect: str | None, now: datetime) -> bool:
        """Record what the message shows; with `expect`, only if it showed that (a claim)."""
        query = update(posts).where(posts.c.key == key)
        if expect is not None:
            query = query.where(posts.c.shown == expect)
        query = query.values(shown=shown, updated_at=now)
        return bool(self._run(lambda conn: conn.execute(query).rowcount) == 1)

    # -- replay rejection ------------------------------------------------------------------

    def first_sight(self, key: str, *, now: datetime) -> bool:
        """Record an interaction; False if it was seen before (a replay or a retry)."""
        row = {"key": key[:200], "seen_at": now}
        return self._inserted(seen, row)

    def forget_seen(self, before: datetime) -> int:
        """Drop interactions seen before `before` (older ones fail the signature window)."""
        query = delete(seen).where(seen.c.seen_at < before)
        return int(self._run(lambda conn: conn.execute(query).rowcount))

    # -- resumes ---------------------------------------------------------------------------

    def claim_resume(self, approval_id: str, *, owner: str, now: datetime) -> bool:
        """Claim resuming this decided request; False if it is (or was) resumed already."""
        row = {
            "approval_id": approval_id,
            "state": "resuming",
            "owner": owner,
            "started_at": now,
            "finished_at": None,
            "error": None,
        }
        return self._inserted(resumes, row)

    def resume_finished(self, approval_id: str, *, now: datetime, error: str | None) -> None:
        """The resume returned (`done`) or raised (`failed`, with the error)."""
        query = (
            update(resumes)
            .where(resumes.c.approval_id == approval_id)
            .values(
                state="failed" if error else "done",
                finished_at=now,
                error=error[:2000] if error else None,
            )
        )
        self._run(lambda conn: conn.execute(query))

    def resume_state(self, approval_id: str) -> tuple[str, str] | None:
        """(state, owner) of a resume claim, if any."""
        query = select(resumes.c.state, resumes.c.owner).where(resumes.c.approval_id == approval_id)
        row = self._run(lambda conn: conn.execute(query).first())
        return None if row is None else (row[0], row[1])

    def abandoned_resumes(self, *, owner: str, before: datetime) -> list[tuple[str, str]]:
        """(approval id, owner) of resumes another process began before `before` and never ended."""
        query = select(resumes.c.approval_id, resumes.c.owner).where(
            resumes.c.state == "resuming",
            resumes.c.owner != owner,
            resumes.c.started_at <= before,
        )
        return [(r[0], r[1]) for r in self._run(lambda conn: conn.execute(query).all())]

    def take_over_resume(
        self, approval_id: str, *, old_owner: str, owner: str, now: datetime
    ) -> bool:
        """Take over an abandoned resume; False if another process took it first."""
        query = (
            update(resumes)
            .where(
                resumes.c.approval_id == approval_id,
                resumes.c.owner == old_owner,
                resumes.c.state == "resuming",
            )
            .values(owner=owner, started_at=now)
        )
        return bool(self._run(lambda conn: conn.execute(query).rowcount) == 1)

    # -- internals -------------------------------------------------------------------------

    def _inserted(self, table: Table, row: dict[str, Any]) -> bool:
        """Insert `row` unless its key exists; whether it was inserted (atomic).

        `RETURNING` says it on every backend (psycopg reports no rowcount for an
        `ON CONFLICT DO NOTHING`).
        """
        key = next(iter(table.primary_key.columns))
        stmt: Any
        if self.dialect == "sqlite":
            stmt = sqlite.insert(table).on_conflict_do_nothing()
        elif self.dialect == "postgresql":
            stmt = postgresql.insert(table).on_conflict_do_nothing()
        else:  # pragma: no cover - other databases: a duplicate raises
            stmt = insert(table)
        stmt = stmt.returning(key)
        return bool(self._run(lambda conn: conn.execute(stmt, row).first() is not None))

    def _run(self, work: Callable[[Any], Any]) -> Any:
        self.setup()
        try:
            with self.engine.begin() as conn:
                return work(conn)
        except SQLAlchemyError as exc:
            raise LedgerError(f"Slack state store failed: {exc}", retryable=True) from exc
