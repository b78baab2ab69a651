"""``PrometheusMetrics``: the ``operations.metrics.Metrics`` port on prometheus-client.

One registry per instance (never the library's global one), so a test or a demo
can hold several and scrape each (``exposition``). The age of the newest change
is computed at scrape time from its timestamp and the injected wall clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import datetime

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

__all__ = ["COMMIT_TO_APPLIED_BUCKETS", "MOODLE_CALL_BUCKETS", "PrometheusMetrics"]

#: Seconds from a PowerCampus commit to Moodle: the target is p99 <= 2 s.
COMMIT_TO_APPLIED_BUCKETS = (
    0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
)  # fmt: skip
#: Seconds of one web-service call (real Moodle: ~34 ms a call + ~7 ms a row).
MOODLE_CALL_BUCKETS = (
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip


class PrometheusMetrics:
    """Every metric of ``poll`` and ``consume`` in one registry of its own."""

    def __init__(
        self, *, version: str = "", clock: Callable[[], float] = time.time
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._clock = clock
        self._newest: float | None = None
        r = self.registry
        Gauge(
            "enrolstream_build_info", "enrolstream's version.", ["version"], registry=r
        ).labels(version=version).set(1)
        # capture
        self.changes = Counter(
            "enrolstream_changes_read", "Change-tracking rows read.", registry=r
        )
        self.published = Counter(
            "enrolstream_events_published",
            "Events Kafka acknowledged, by kind (change, snapshot).",
            ["kind"],
            registry=r,
        )
        self.source_version = Gauge(
            "enrolstream_source_version",
            "The source's CHANGE_TRACKING_CURRENT_VERSION at the last poll.",
            registry=r,
        )
        self.saved_version = Gauge(
            "enrolstream_saved_version",
            "The version the poller saved (its changes are published).",
            registry=r,
        )
        self.newest_change = Gauge(
            "enrolstream_newest_change_timestamp_seconds",
            "Commit time of the newest change seen (Unix seconds).",
            registry=r,
        )
        Gauge(
            "enrolstream_newest_change_age_seconds",
            "Seconds since the newest change seen was committed (NaN before one).",
            registry=r,
        ).set_function(self._newest_age)
        self.polls = Counter(
            "enrolstream_polls",
            "Poll iterations by outcome (ok, reinitialised, retry).",
            ["outcome"],
            registry=r,
        )
        # apply
        self.events = Counter(
            "enrolstream_events_applied",
            "Events done with (applied, parked or dead-lettered) and committed.",
            registry=r,
        )
        self.actions = Counter(
            "enrolstream_moodle_actions",
            "Moodle actions applied, by action (enrol, remove_role, suspend, ...).",
            ["action"],
            registry=r,
        )
        self.in_state = Counter(
            "enrolstream_already_in_state",
            "Decisions needing no call: Moodle already held the desired state.",
            registry=r,
        )
        self.latency = Histogram(
            "enrolstream_commit_to_applied_seconds",
            "From the PowerCampus commit to the change applied in Moodle.",
            buckets=COMMIT_TO_APPLIED_BUCKETS,
            registry=r,
        )
        self.calls = Histogram(
            "enrolstream_moodle_call_duration_seconds",
            "Moodle web-service calls by function and outcome, and their duration.",
            ["function", "outcome"],
            buckets=MOODLE_CALL_BUCKETS,
            registry=r,
        )
        self.unknown = Counter(
            "enrolstream_unknown_outcomes",
            "Actions whose outcome was lost (read back before the next decision).",
            registry=r,
        )
        self.read_backs = Counter(
            "enrolstream_read_backs",
            "(course, user) pairs read from Moodle after an unknown outcome.",
            registry=r,
        )
        self.retries = Counter(
            "enrolstream_batch_retries",
            "Batches rewound and read again after a retriable failure.",
            registry=r,
        )
        self.parked_now = Gauge(
            "enrolstream_parked_persons",
            "Person-terms waiting for a Moodle user, by reason code.",
            ["reason"],
            registry=r,
        )
        self.letters = Counter(
            "enrolstream_dead_letters",
            "Records written to the dead-letter topic, by error type.",
            ["error_type"],
            registry=r,
        )
        self.letters_waiting = Gauge(
            "enrolstream_dead_letters_waiting",
            "Dead letters not redriven yet.",
            registry=r,
        )
        self.lag = Gauge(
            "enrolstream_consumer_lag_records",
            "Events not yet read, per partition of the event topic.",
            ["partition"],
            registry=r,
        )
        self.lag_seconds = Gauge(
            "enrolstream_consumer_lag_seconds",
            "How long the oldest event not yet applied has waited.",
            registry=r,
        )
        # alarm
        self.alarms = Gauge(
            "enrolstream_alarm_active",
            "1 while the named alarm is raised.",
            ["alarm"],
            registry=r,
        )
        self.notifications = Counter(
            "enrolstream_alarm_notifications",
            "Alarm notifications by channel (email, webhook) and outcome.",
            ["channel", "outcome"],
            registry=r,
        )

    def exposition(self) -> tuple[bytes, str]:
        """The registry in Prometheus' text format, and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def _newest_age(self) -> float:
        if self._newest is None:
            return float("nan")
        return max(0.0, self._clock() - self._newest)

    # -- the Metrics port ----------------------------------------------------------
    def changes_read(self, count: int) -> None:
        """Counted."""
        self.changes.inc(count)

    def events_published(self, kind: str, count: int) -> None:
        """Counted by kind."""
        self.published.labels(kind=kind).inc(count)

    def versions(self, *, source: int, saved: int) -> None:
        """Both gauges set."""
        self.source_version.set(source)
        self.saved_version.set(saved)

    def change_seen(self, committed_at: datetime) -> None:
        """The newest commit time kept (an older one changes nothing)."""
        stamp = committed_at.timestamp()
        if self._newest is None or stamp > self._newest:
            self._newest = stamp
            self.newest_change.set(stamp)

    def poll_finished(self, outcome: str) -> None:
        """Counted by outcome."""
        self.polls.labels(outcome=outcome).inc()

    def events_done(self, count: int) -> None:
        """Counted."""
        self.events.inc(count)

    def actions_applied(self, kind: str, count: int) -> None:
        """Counted by action."""
        self.actions.labels(action=kind).inc(count)

    def already_in_state(self, count: int) -> None:
        """Counted."""
        self.in_state.inc(count)

    def commit_to_applied(self, seconds: float) -> None:
        """Observed (negative clock skew counts as 0)."""
        self.latency.observe(max(0.0, seconds))

    def moodle_call(self, function: str, outcome: str, seconds: float) -> None:
        """Observed by function and outcome."""
        self.calls.labels(function=function, outcome=outcome).observe(seconds)

    def unknown_outcomes(self, count: int) -> None:
        """Counted."""
        self.unknown.inc(count)

    def read_back(self, count: int) -> None:
        """Counted."""
        self.read_backs.inc(count)

    def retried(self) -> None:
        """Counted."""
        self.retries.inc()

    def parked(self, by_reason: Mapping[str, int]) -> None:
        """Every reason seen so far set; reasons no longer present go to 0."""
        for labels in list(self._label_values(self.parked_now)):
            if labels not in by_reason:
                self.parked_now.labels(reason=labels).set(0)
        for reason, count in by_reason.items():
            self.parked_now.labels(reason=reason).set(count)

    def dead_lettered(self, error_type: str, count: int) -> None:
        """Counted by error type."""
        self.letters.labels(error_type=error_type).inc(count)

    def dead_letters_waiting(self, count: int) -> None:
        """Set."""
        self.letters_waiting.set(count)

    def consumer_lag(self, by_partition: Mapping[int, int]) -> None:
        """Set per partition."""
        for partition, records in by_partition.items():
            self.lag.labels(partition=str(partition)).set(records)

    def lag_age(self, seconds: float) -> None:
        """Set."""
        self.lag_seconds.set(max(0.0, seconds))

    def alarm_active(self, alarm: str, active: bool) -> None:
        """Set to 1 or 0."""
        self.alarms.labels(alarm=alarm).set(1 if active else 0)

    def notification(self, channel: str, outcome: str) -> None:
        """Counted by channel and outcome."""
        self.notifications.labels(channel=channel, outcome=outcome).inc()

    @staticmethod
    def _label_values(gauge: Gauge) -> list[str]:
        return [
            sample.labels["reason"]
            for metric in gauge.collect()
            for sample in metric.samples
            if "reason" in sample.labels
        ]
