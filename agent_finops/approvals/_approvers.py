"""Who may decide an approval request: approvers per policy scope (an allow-list)."""

from __future__ import annotations

import getpass
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

__all__ = ["ANYONE", "SYSTEM_ACTORS", "Approver", "Approvers"]

ANYONE: Final = "*"
"""An allow-list entry that admits every approver."""
SYSTEM_ACTORS: Final = frozenset({"expiry"})
"""Actors the approval service itself decides as (not people, never on a list)."""


@dataclass(frozen=True, slots=True)
class Approver:
    """Who is deciding, as the channel that carries the decision knows them.

    `id` is channel-qualified: `console:alice` (the OS user running the console approver),
    `slack:U012AB3CD` (a Slack user id), `resume:ops-bot` (a resume value in the app's own
    code). `groups` are the approver's memberships the channel resolved, in the same form
    (`slack-group:S0614TZR7`).
    """

    id: str
    groups: frozenset[str] = field(default_factory=frozenset)
    name: str | None = None
    """Display name for messages (default: the id)."""

    @classmethod
    def console(cls) -> Approver:
        """The identity the console approver runs as: `console:<OS user>`."""
        try:
            user = getpass.getuser()
        except (KeyError, OSError):  # no passwd entry (containers)
            user = os.environ.get("USER") or str(os.getuid())
        return cls(id=f"console:{user}", name=user)

    @classmethod
    def of(cls, who: Approver | str) -> Approver:
        """An `Approver` from itself or a plain id."""
        return who if isinstance(who, Approver) else cls(id=who)

    def __str__(self) -> str:
        """The display name, or the id."""
        return self.name or self.id


ScopeMatcher = Callable[[Mapping[str, str]], bool]


class Approvers:
    """Allow-lists by scope.

    A request may be decided by anyone listed on any rule whose scope matches the request's
    tags.
    With no rules at all, anyone who can reach the ledger may decide (the default, so a
    first console approval needs no set-up); once a list exists, a request whose scope no
    rule matches can be decided by nobody but the expiry.
    """

    def __init__(self, rules: Iterable[tuple[ScopeMatcher, Iterable[str]]] = ()) -> None:
        """`rules`: (scope matcher, allowed ids and groups) pairs."""
        self._rules = [(matches, frozenset(allowed)) for matches, allowed in rules]

    @property
    def configured(self) -> bool:
        """Whether any allow-list exists (False: anyone may decide)."""
        return bool(self._rules)

    def allowed_for(self, tags: Mapping[str, str]) -> frozenset[str]:
        """Every id or group that may decide a request with these tags."""
        out: set[str] = set()
        for matches, allowed in self._rules:
            if matches(tags):
                out |= allowed
        return frozenset(out)

    def allows(self, approver: Approver, tags: Mapping[str, str]) -> bool:
        """Whether `approver` may decide a request with these tags."""
        if approver.id in SYSTEM_ACTORS or not self._rules:
            return True
        allowed = self.allowed_for(tags)
        return ANYONE in allowed or approver.id in allowed or bool(approver.groups & allowed)
