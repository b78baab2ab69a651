"""The one-shot commands' results as a node-exporter textfile.

``snapshot``, ``reconcile`` and ``replay`` end before Prometheus could scrape them:
each writes its figures to ``<textfile_dir>/enrolstream_<job>.prom`` (atomically:
a temporary file renamed into place, as node-exporter's textfile collector
expects), overwriting the previous run's. Gauges, not counters: each file says
what the last run did, with ``enrolstream_<job>_last_success_timestamp_seconds``
to alarm on a run that stopped happening.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge, write_to_textfile

__all__ = ["BatchMetrics"]

Job = str


class BatchMetrics:
    """The gauges of one batch job, written once it finished."""

    def __init__(self, job: Job, *, clock: Callable[[], float] = time.time) -> None:
        self.job = job
        self.registry = CollectorRegistry(auto_describe=True)
        self._clock = clock

    def _gauge(self, name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
        return Gauge(
            f"enrolstream_{self.job}_{name}", doc, list(labels), registry=self.registry
        )

    def _succeeded(self) -> None:
        self._gauge(
            "last_success_timestamp_seconds", "When the last run finished (Unix s)."
        ).set(self._clock())

    def snapshot(
        self, *, events: int, persons: int, registrations: int, state_version: int
    ) -> None:
        """What ``snapshot`` published."""
        self._gauge("events", "Events of the last snapshot.").set(events)
        self._gauge("persons", "Persons of the last snapshot.").set(persons)
        self._gauge("registrations", "Registrations of the last snapshot.").set(
            registrations
        )
        self._gauge("state_version", "Its change-tracking version.").set(state_version)
        self._succeeded()

    def reconcile(
        self,
        *,
        planned: Mapping[str, int],
        outcomes: Mapping[str, int],
        guard_trips: Mapping[str, int],
        guard_blocked: bool,
        unowned: int,
        unresolved: int,
        needs_attention: int,
    ) -> None:
        """What ``reconcile`` planned and did, and whether the guard tripped."""
        planned_gauge = self._gauge(
            "planned_changes", "Changes planned, by action.", ("action",)
        )
        for action, count in planned.items():
            planned_gauge.labels(action=action).set(count)
        outcome_gauge = self._gauge(
            "outcomes", "Planned changes by outcome.", ("outcome",)
        )
        for outcome, count in outcomes.items():
            outcome_gauge.labels(outcome=outcome).set(count)
        trips = self._gauge(
            "guard_trips", "Mass-drop guard trips, by scope.", ("scope",)
        )
        for scope in ("course", "overall", "empty_term"):
            trips.labels(scope=scope).set(guard_trips.get(scope, 0))
        self._gauge("guard_blocked", "1 when the guard stopped the run.").set(
            1 if guard_blocked else 0
        )
        self._gauge("unowned_differences", "Differences left alone.").set(unowned)
        self._gauge("unresolved_persons", "Persons without one account.").set(
            unresolved
        )
        self._gauge("needs_attention", "Findings a person must look at.").set(
            needs_attention
        )
        self._succeeded()

    def replay(self, *, events: int, partitions: int, dry_run: bool) -> None:
        """What ``replay`` moved (or would move)."""
        self._gauge("events", "Events the consumer reads again.").set(events)
        self._gauge("partitions", "Partitions moved.").set(partitions)
        self._gauge("dry_run", "1 for a dry run.").set(1 if dry_run else 0)
        self._succeeded()

    def write(self, directory: Path) -> Path:
        """Write ``enrolstream_<job>.prom`` into ``directory`` (created); its path."""
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"enrolstream_{self.job}.prom"
        write_to_textfile(str(path), self.registry)
        return path
