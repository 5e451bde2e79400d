"""`AlertService`: keep each alert once and deliver it once to every channel.

`publish(alerts)` adds each alert to the ledger (`Ledger.add_alert`: True only the first
time its deterministic id is seen, in any process, before or after any restart) and
delivers the new ones to every channel, marking each delivery in the ledger
(`mark_alert_delivered`). A channel that fails is logged and left unmarked; every later
`publish` (or `retry`) delivers the stored alerts of the last `retry_within` to the
channels they have not reached, and only to those, so a channel that failed is retried
and the others are never posted twice.

Delivery is at least once, not exactly once, in one case: a process that dies between a
channel's post and its mark posts again on the next run. Alerts another process has just
raised are left to it for `grace` (default 5 minutes) before this one retries them, so two
scanners running at once do not both deliver.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import UTC, timedelta
from typing import Final

from agent_finops.alerts._channel import AlertChannel
from agent_finops.clock import Clock, utcnow
from agent_finops.exceptions import ConfigurationError
from agent_finops.ledger import AlertRecord, Ledger

__all__ = ["DEFAULT_GRACE", "DEFAULT_RETRY_WITHIN", "AlertService"]

log = logging.getLogger("agent_finops.alerts")

DEFAULT_RETRY_WITHIN: Final = timedelta(days=2)
"""Stored alerts younger than this are retried on the channels they have not reached."""
DEFAULT_GRACE: Final = timedelta(minutes=5)
"""Alerts raised less than this long ago are left to the process that raised them."""
RETRY_BATCH: Final = 500


class AlertService:
    """Raises alerts once and delivers them to every channel once.

    ```python
    service = AlertService(ledger, [LogChannel(), SlackAlertChannel.from_env(settings)])
    service.publish(AnomalyScanner(ledger, policy=policy).scan())
    ```
    """

    def __init__(
        self,
        ledger: Ledger,
        channels: Sequence[AlertChannel],
        *,
        retry_within: timedelta = DEFAULT_RETRY_WITHIN,
        grace: timedelta = DEFAULT_GRACE,
        clock: Clock = utcnow,
    ) -> None:
        """Deliver to `channels` (names must differ), keeping alerts in `ledger`.

        Args:
            ledger: where alerts and their deliveries are kept.
            channels: each alert goes to every one of them.
            retry_within: how far back stored alerts are retried on channels they missed
                (a channel added later also gets the alerts of this span).
            grace: how long an alert raised by another process is left to it.
            clock: "now", for those two spans.
        """
        names = [c.name for c in channels]
        if len(set(names)) != len(names):
            raise ConfigurationError(
                "two alert channels have the same name",
                field="channels",
                value=",".join(names),
                expected="distinct names (deliveries are recorded by name)",
            )
        self.ledger = ledger
        self.channels = tuple(channels)
        self.retry_within = retry_within
        self.grace = grace
        self._clock = clock

    def publish(self, alerts: Iterable[AlertRecord]) -> list[AlertRecord]:
        """Keep and deliver the new ones among `alerts`, then retry missed deliveries.

        Returns the alerts that were new (with `delivered` as it now stands). An alert
        already known is not delivered again, except to the channels it has not reached.
        """
        raised = []
        for alert in alerts:
            if self.ledger.add_alert(alert):
                self._deliver(alert)
                raised.append(alert)
        self.retry(skip={a.alert_id for a in raised})
        return raised

    def retry(self, *, skip: Iterable[str] = ()) -> int:
        """Deliver stored alerts of the last `retry_within` to the channels they missed.

        Alerts raised less than `grace` ago, and the ids in `skip`, are left alone.
        Returns the number of deliveries made.
        """
        now = self._clock()
        left_alone = set(skip)
        made = 0
        for alert in self.ledger.list_alerts(since=now - self.retry_within, limit=RETRY_BATCH):
            created = alert.created_at
            if created.tzinfo is None:  # a backend that returns naive UTC
                created = created.replace(tzinfo=UTC)
            if alert.alert_id in left_alone or created > now - self.grace:
                continue
            made += self._deliver(alert)
        return made

    def _deliver(self, alert: AlertRecord) -> int:
        made = 0
        for channel in self.channels:
            if channel.name in alert.delivered:
                continue
            try:
                channel.deliver(alert)
            except Exception as exc:  # one channel's failure never stops the others
                log.error(
                    "agent-finops: could not deliver alert %s to %s: %s; retried on the next run",
                    alert.alert_id,
                    channel.name,
                    exc,
                )
                continue
            self.ledger.mark_alert_delivered(alert.alert_id, channel.name)
            alert.delivered = [*alert.delivered, channel.name]
            made += 1
        return made
