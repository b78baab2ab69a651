"""The ``Metrics`` port: what the poller, the consumer and the alarm report as they go.

Method names are the domain's; the adapter (``connectors.prometheus``) owns the
metric names, units and label sets. Labels are closed vocabularies only (a Moodle
function, an outcome, an action kind, a reason code, a partition, a term): never a
person or a course, so the series stay few whatever the data.

Every method is cheap and never raises; ``NO_METRICS`` (the default everywhere)
does nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Protocol

__all__ = ["NO_METRICS", "Metrics", "NoMetrics"]


class Metrics(Protocol):
    """Counters, gauges and histograms, by what happened."""

    # -- capture ----------------------------------------------------------------
    def changes_read(self, count: int) -> None:
        """Change-tracking rows one poll read."""
        ...

    def events_published(self, kind: str, count: int) -> None:
        """Events acknowledged by Kafka (``kind``: change or snapshot)."""
        ...

    def versions(self, *, source: int, saved: int) -> None:
        """The source's current version at the poll and the version saved after it."""
        ...

    def change_seen(self, committed_at: datetime) -> None:
        """A change committed at ``committed_at`` was read (the newest one counts)."""
        ...

    def poll_finished(self, outcome: str) -> None:
        """One poll iteration ended: ``ok``, ``reinitialised`` or ``retry``."""
        ...

    # -- apply ------------------------------------------------------------------
    def events_done(self, count: int) -> None:
        """Events applied, parked or dead-lettered, and committed."""
        ...

    def actions_applied(self, kind: str, count: int) -> None:
        """Moodle actions applied, by kind (enrol, remove_role, suspend, ...)."""
        ...

    def already_in_state(self, count: int) -> None:
        """Decisions that needed no call: Moodle already held the desired state."""
        ...

    def commit_to_applied(self, seconds: float) -> None:
        """One change applied in Moodle this long after PowerCampus committed it."""
        ...

    def moodle_call(self, function: str, outcome: str, seconds: float) -> None:
        """One web-service call, its outcome (ok, rejected, unavailable, ...) and time."""
        ...

    def unknown_outcomes(self, count: int) -> None:
        """Actions whose outcome was lost (read back before the next decision)."""
        ...

    def read_back(self, count: int) -> None:
        """(course, user) pairs read from Moodle because an outcome was unknown."""
        ...

    def retried(self) -> None:
        """A batch was rewound to be read again after a retriable failure."""
        ...

    def parked(self, by_reason: Mapping[str, int]) -> None:
        """Persons parked now, by reason code (no_user, several_users, ...)."""
        ...

    def dead_lettered(self, error_type: str, count: int) -> None:
        """Records written to the dead-letter topic, by error type."""
        ...

    def dead_letters_waiting(self, count: int) -> None:
        """Dead letters on the topic not redriven yet."""
        ...

    def consumer_lag(self, by_partition: Mapping[int, int]) -> None:
        """Records not yet read, per partition of the event topic."""
        ...

    def lag_age(self, seconds: float) -> None:
        """How long the oldest event not yet applied has waited (0: none waits)."""
        ...

    # -- alarm ------------------------------------------------------------------
    def alarm_active(self, alarm: str, active: bool) -> None:
        """Whether the named alarm is raised now."""
        ...

    def notification(self, channel: str, outcome: str) -> None:
        """One alarm notification sent (or failed) on a channel (email, webhook)."""
        ...


class NoMetrics:
    """A ``Metrics`` that records nothing: the default of every loop."""

    def changes_read(self, count: int) -> None:
        """Nothing."""

    def events_published(self, kind: str, count: int) -> None:
        """Nothing."""

    def versions(self, *, source: int, saved: int) -> None:
        """Nothing."""

    def change_seen(self, committed_at: datetime) -> None:
        """Nothing."""

    def poll_finished(self, outcome: str) -> None:
        """Nothing."""

    def events_done(self, count: int) -> None:
        """Nothing."""

    def actions_applied(self, kind: str, count: int) -> None:
        """Nothing."""

    def already_in_state(self, count: int) -> None:
        """Nothing."""

    def commit_to_applied(self, seconds: float) -> None:
        """Nothing."""

    def moodle_call(self, function: str, outcome: str, seconds: float) -> None:
        """Nothing."""

    def unknown_outcomes(self, count: int) -> None:
        """Nothing."""

    def read_back(self, count: int) -> None:
        """Nothing."""

    def retried(self) -> None:
        """Nothing."""

    def parked(self, by_reason: Mapping[str, int]) -> None:
        """Nothing."""

    def dead_lettered(self, error_type: str, count: int) -> None:
        """Nothing."""

    def dead_letters_waiting(self, count: int) -> None:
        """Nothing."""

    def consumer_lag(self, by_partition: Mapping[int, int]) -> None:
        """Nothing."""

    def lag_age(self, seconds: float) -> None:
        """Nothing."""

    def alarm_active(self, alarm: str, active: bool) -> None:
        """Nothing."""

    def notification(self, channel: str, outcome: str) -> None:
        """Nothing."""


NO_METRICS: Metrics = NoMetrics()
