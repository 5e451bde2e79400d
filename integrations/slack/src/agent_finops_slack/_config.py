"""The approver service's YAML config: Slack routing, approvals, serving; validated with names.

```yaml
ledger: sqlite:///agent-finops.sqlite      # default: --db, $AGENT_FINOPS_DB_URL, then this
targets: myapp.finops:targets              # the app's ResumeTargets (or --targets)
policy: policy.yaml                        # take `approvals:` (approvers, expiry) from it...
# approvals: {expire_after: 30m, on_expiry: deny, approvers: [...]}   # ...or give it here
slack:
  default_channel: C0APPROVALS
  routes:
    - {scope: {team: search}, channel: C0SEARCH}
  raise_options: ["5", "25"]               # extra "Approve +$5" buttons (usd rules)
serve:
  mode: http                               # or socket (needs SLACK_APP_TOKEN)
  port: 3000
```

Every mistake is a `ConfigurationError` naming the file, the field path, the bad value and
what was expected. Secrets never live in the file: tokens are read from the environment
variables it names (`SLACK_BOT_TOKEN`, `SLACK_SIGNING_SECRET`, `SLACK_APP_TOKEN`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Final, Literal, TypeAlias

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from agent_finops.exceptions import ConfigurationError
from agent_finops.policy import ApprovalSettings, TagSelector, load_policy
from agent_finops.policy.periods import parse_duration

__all__ = [
    "DEFAULT_PATH",
    "ChannelRoute",
    "ServeSettings",
    "ServiceConfig",
    "SlackSettings",
    "load_config",
]

DEFAULT_PATH: Final = "/slack/events"
"""Where Slack posts interactions (the app manifest's Request URL ends with it)."""
DEFAULT_PORT: Final = 3000
DEFAULT_SWEEP: Final = timedelta(seconds=10)
"""How often the service expires due requests, catches up on posts and updates messages."""
DEFAULT_RECOVER_AFTER: Final = timedelta(seconds=60)
"""A resume begun by a service that died is taken over after this long."""
DEFAULT_MAX_RETRY_WAIT: Final = timedelta(seconds=30)
"""The longest `Retry-After` waited for inline; longer ones are retried by the sweep."""
DEFAULT_GROUP_CACHE: Final = timedelta(seconds=60)
"""How long a Slack user group's members are remembered."""
DEFAULT_CATCH_UP: Final = timedelta(days=1)
"""How old a pending request nobody posted may be for the sweep to post it."""
DEFAULT_RETRY_BACKOFF: Final = timedelta(seconds=60)
"""The first wait before a failed post is tried again (then doubling, up to an hour)."""
_CHANNEL: Final = re.compile(r"^(#[a-z0-9][a-z0-9._-]{0,79}|[CGD][A-Z0-9]{2,30})$")
_ENV_NAME: Final = re.compile(r"^[A-Z_][A-Z0-9_]{0,63}$")


def _seconds(value: object) -> object:
    """A duration: `"90s"`, `"30m"`, `"2h"`, or a number of seconds (fractions allowed)."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError("a duration such as '10s' or a number of seconds")
    if isinstance(value, int | float | Decimal):
        if not value > 0:
            raise ValueError("a duration longer than zero")
        return timedelta(seconds=float(value))
    if isinstance(value, str):
        try:
            return timedelta(seconds=float(value)) if _is_number(value) else parse_duration(value)
        except ConfigurationError:
            pass
    raise ValueError("a duration such as '10s', '5m', '1h' or a number of seconds")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _channel(value: str) -> str:
    if not _CHANNEL.match(value):
        raise ValueError("a Slack channel id such as 'C0123ABCD' or a name such as '#finops'")
    return value


def _env_name(value: str) -> str:
    if not _ENV_NAME.match(value):
        raise ValueError("an environment variable name such as 'SLACK_BOT_TOKEN'")
    return value


def _raise_amount(value: Decimal) -> Decimal:
    if not value.is_finite() or not 0 < value <= Decimal(10) ** 9:
        raise ValueError('a positive amount (quote money: "25")')
    return value.normalize()


Seconds: TypeAlias = Annotated[timedelta, BeforeValidator(_seconds)]
ChannelId: TypeAlias = Annotated[str, AfterValidator(_channel)]
EnvName: TypeAlias = Annotated[str, AfterValidator(_env_name)]
RaiseAmount: TypeAlias = Annotated[Decimal, AfterValidator(_raise_amount)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class ChannelRoute(_Strict):
    """Requests and alerts of runs whose tags match `scope` go to `channel`."""

    scope: TagSelector
    """Which runs, by tags (`{team: search}`, `{tenant: acme, project: "*"}`)."""
    channel: ChannelId
    """Slack channel id (`C0123ABCD`) or name (`#finops`)."""


class SlackSettings(_Strict):
    """Where requests and alerts are posted, and how the Slack Web API is reached."""

    default_channel: ChannelId
    """Where a request or alert goes when no route matches."""
    routes: tuple[ChannelRoute, ...] = ()
    """Checked in order; the first whose scope matches the run's tags wins."""
    raise_options: tuple[RaiseAmount, ...] = Field(default=(), max_length=3)
    """Extra approve buttons granting this much overspend (USD rules only), at most 3."""
    token_env: EnvName = "SLACK_BOT_TOKEN"
    """Environment variable holding the bot token (`xoxb-...`)."""
    signing_secret_env: EnvName = "SLACK_SIGNING_SECRET"
    """Environment variable holding the signing secret (HTTP mode)."""
    app_token_env: EnvName = "SLACK_APP_TOKEN"
    """Environment variable holding the app-level token (`xapp-...`, Socket Mode)."""
    base_url: str | None = Field(default=None, pattern=r"^https?://[^\s]+/$")
    """Slack Web API base URL (default `https://slack.com/api/`; tests use an emulator)."""
    max_retry_wait: Seconds = DEFAULT_MAX_RETRY_WAIT
    """The longest `Retry-After` waited for inline; a longer one is retried by the sweep."""
    group_cache: Seconds = DEFAULT_GROUP_CACHE
    """How long a user group's members are remembered."""
    retry_backoff: Seconds = DEFAULT_RETRY_BACKOFF
    """Wait before retrying a failed post (doubling per try, at most an hour)."""
    catch_up_within: Seconds = DEFAULT_CATCH_UP
    """The sweep posts pending requests nobody posted if filed within this (older ones
    stay in `agent-finops approvals list`, so a first start does not flood the channel)."""

    def channel_for(self, tags: Mapping[str, str]) -> str:
        """The channel for a run with these tags: the first matching route, else the default."""
        for route in self.routes:
            if route.scope.matches(tags):
                return route.channel
        return self.default_channel


class ServeSettings(_Strict):
    """How `agent-finops serve` receives Slack interactions."""

    mode: Literal["http", "socket"] = "http"
    """`http` (Slack posts to `host:port` + `path`) or `socket` (Socket Mode, no public URL)."""
    host: str = "127.0.0.1"
    """Address to listen on (HTTP mode); put a TLS-terminating proxy in front for Slack."""
    port: int = Field(default=DEFAULT_PORT, ge=0, le=65535)
    """Port to listen on (HTTP mode; 0 picks a free one and prints it)."""
    path: str = Field(default=DEFAULT_PATH, pattern=r"^/[A-Za-z0-9/_.-]*$")
    """URL path of the interaction endpoint."""
    threads: int = Field(default=8, ge=1, le=256)
    """HTTP server threads (each answers one request at a time; acks are quick)."""
    workers: int = Field(default=4, ge=1, le=64)
    """Threads deciding clicks and resuming runs after the ack."""
    sweep_every: Seconds = DEFAULT_SWEEP
    """How often to expire due requests, post what was not posted and refresh messages."""
    recover_after: Seconds = DEFAULT_RECOVER_AFTER
    """A resume begun by a service that died is taken over after this long."""


class ServiceConfig(_Strict):
    """The whole approver-service config file."""

    ledger: str | None = None
    """Ledger URL (default: `--db`, then `$AGENT_FINOPS_DB_URL`, then the SQLite default)."""
    targets: str | None = None
    """The application's `ResumeTargets` as `module:attr` or `file.py:attr` (or `--targets`)."""
    policy: str | None = None
    """A policy file whose `approvals:` section (approvers, expiry) this service applies."""
    approvals: ApprovalSettings | None = None
    """The `approvals:` section inline (same form as in a policy file)."""
    slack: SlackSettings
    serve: ServeSettings = Field(default_factory=ServeSettings)

    @model_validator(mode="after")
    def _one_approvals_source(self) -> ServiceConfig:
        if self.policy is not None and self.approvals is not None:
            raise ValueError("either 'policy' or 'approvals', not both")
        return self

    def approval_settings(self, *, base: Path | None = None) -> ApprovalSettings:
        """The `approvals:` settings in force (from the policy file, inline, or defaults)."""
        if self.policy is not None:
            path = Path(self.policy)
            if base is not None and not path.is_absolute():
                path = base / path
            return load_policy(path).approvals
        return self.approvals or ApprovalSettings()

    def secret(self, env_name: str, *, what: str, source: str = "environment") -> str:
        """A secret from the environment, or a `ConfigurationError` saying which variable."""
        value = os.environ.get(env_name, "").strip()
        if not value:
            raise ConfigurationError(
                f"{what} is not set", source=source, field=env_name, expected=f"${env_name}"
            )
        return value


def load_config(path: str | Path) -> ServiceConfig:
    """Read and validate the approver service's YAML config file."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(
            f"cannot read config: {exc.strerror or exc}", source=source
        ) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"invalid YAML: {exc}", source=source) from exc
    return config_from_mapping({} if data is None else data, source=source)


def config_from_mapping(data: Any, *, source: str = "config") -> ServiceConfig:
    """Validate parsed data as a `ServiceConfig`; `source` names it in error messages."""
    try:
        return ServiceConfig.model_validate(data)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        field = ".".join(str(p) for p in err["loc"] if not str(p).startswith("function-"))
        value = err.get("input")
        kind = err["type"]
        message = {"missing": "missing required key", "extra_forbidden": "unknown key"}.get(
            kind, "invalid value"
        )
        expected = err["msg"]
        if expected.startswith("Value error, "):
            expected = expected[len("Value error, ") :]
        if kind == "missing" or isinstance(value, Mapping):
            value = None
        raise ConfigurationError(
            message, source=source, field=field or "<config>", value=value, expected=expected
        ) from None
