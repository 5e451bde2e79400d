"""The Slack Web API client: `slack_sdk.WebClient` with the retries Slack asks for.

* `ratelimited` (HTTP 429): wait `Retry-After` seconds and retry, when that is at most
  `max_retry_wait`; a longer wait is not spent on a worker thread: the error surfaces and the
  caller schedules a retry (the post keeps `retry_at`).
* connection resets and 500/503 answers: one quick retry (slack_sdk's own handlers).
* anything else (`channel_not_found`, `token_revoked`, ...) is not retried here: retrying
  cannot help until someone fixes the cause.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any, Final

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry import RetryHandler
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    ServerErrorRetryHandler,
)
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState

from agent_finops.exceptions import ConfigurationError

__all__ = ["RetryAfterHandler", "error_code", "retry_after", "web_client"]

DEFAULT_BASE_URL: Final = "https://slack.com/api/"
DEFAULT_TIMEOUT: Final = 10
"""Seconds for one Web API call."""


def retry_after(headers: Any) -> float | None:
    """The `Retry-After` seconds of a response's headers (any case), if given."""
    if not headers:
        return None
    for key, value in dict(headers).items():
        if str(key).lower() == "retry-after":
            raw = value[0] if isinstance(value, list | tuple) else value
            try:
                return max(0.0, float(raw))
            except (TypeError, ValueError):
                return None
    return None


class RetryAfterHandler(RetryHandler):
    """Retries a rate-limited call after Slack's `Retry-After`, if that is short enough."""

    def __init__(
        self,
        *,
        max_retry_count: int = 3,
        max_wait: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """Retry up to `max_retry_count` times, each wait at most `max_wait` seconds."""
        super().__init__(max_retry_count=max_retry_count)
        self.max_wait = max_wait
        self._sleep = sleep

    def _can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if response is None or response.status_code != 429:
            return False
        wait = retry_after(response.headers)
        return wait is None or wait <= self.max_wait

    def prepare_for_next_attempt(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> None:
        """Sleep for `Retry-After` (plus up to 10% jitter), then let the client retry."""
        wait = retry_after(response.headers if response is not None else None)
        wait = 1.0 if wait is None else wait
        self._sleep(wait + random.uniform(0, wait / 10 if wait else 0.05))
        state.next_attempt_requested = True
        state.increment_current_attempt()


def web_client(
    token: str,
    *,
    base_url: str | None = None,
    max_retry_wait: timedelta = timedelta(seconds=30),
    timeout: int = DEFAULT_TIMEOUT,
) -> WebClient:
    """A `WebClient` for `token` with the retry policy above."""
    return WebClient(
        token=token,
        base_url=base_url or DEFAULT_BASE_URL,
        timeout=timeout,
        retry_handlers=[
            ConnectionErrorRetryHandler(max_retry_count=1),
            RetryAfterHandler(max_wait=max_retry_wait.total_seconds()),
            ServerErrorRetryHandler(max_retry_count=1),
        ],
    )


def error_code(exc: BaseException) -> str:
    """Slack's error code of a failed call (`channel_not_found`, ...), or the exception type."""
    if isinstance(exc, SlackApiError):
        try:
            return str(exc.response.get("error") or exc.response.status_code)
        except Exception:  # a response that is not JSON
            return "unreadable_response"
    return type(exc).__name__


def bot_client(token_env: str, *, base_url: str | None, max_retry_wait: timedelta) -> WebClient:
    """A `web_client` whose bot token comes from the environment variable `token_env`.

    `ConfigurationError` naming the variable when it is unset or empty.
    """
    token = os.environ.get(token_env, "").strip()
    if not token:
        raise ConfigurationError(
            "the Slack bot token is not set",
            source="environment",
            field=token_env,
            expected="a bot token (xoxb-...)",
        )
    return web_client(token, base_url=base_url, max_retry_wait=max_retry_wait)
