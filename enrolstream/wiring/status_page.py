"""The status page's backend in ``consume`` (and the demo): the running consumer's view.

``ConsumerStatusPage`` implements ``connectors.web.StatusBackend``. Before the
consumer is ready (waiting for Kafka or Moodle at start-up) it shows what can be
read from outside; once ``attach``\\ ed it adds what the consumer holds in memory:
lag per partition and its age, the parked persons, the newest change seen, the
alarms raised, and the last hour's latencies (``StatusMetrics`` records them as
it counts them for Prometheus).

Dead letters are read from their topic at most every ``letters_max_age_s`` (the
page) and refreshed after a redrive.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import structlog

from cdc.errors import CdcError
from cdc.ports import ChangeSource
from connectors.kafka import read_topic
from connectors.prometheus import PrometheusMetrics
from connectors.web import PageView
from consumers.dead_letters import pending_letters
from consumers.errors import ConsumerError
from consumers.runner import ApplyRunner
from enrolstream.settings import Settings
from enrolstream.wiring.apply import redrive
from enrolstream.wiring.common import kafka_options
from enrolstream.wiring.reprocess import run_reprocess
from enrolstream.wiring.status import (
    Facts,
    gather_status,
    latest_reconcile,
    letter_rows,
    parked_rows,
)
from operations.latency import LatencyWindow
from operations.watch import AlarmWatch
from schemas.dead_letter import DeadLetter

__all__ = ["ConsumerStatusPage", "StatusMetrics"]

log = structlog.get_logger()


class StatusMetrics(PrometheusMetrics):
    """Prometheus metrics that also keep the last hour's latencies for the chart."""

    def __init__(
        self,
        window: LatencyWindow,
        *,
        version: str = "",
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        super().__init__(version=version)
        self.window = window
        self._now = now

    def commit_to_applied(self, seconds: float) -> None:
        """Counted for Prometheus and kept for the chart."""
        super().commit_to_applied(seconds)
        self.window.add(self._now(), max(0.0, seconds))


@dataclass(slots=True)
class _Letters:
    letters: list[tuple[str, DeadLetter]]
    read_at: float


class ConsumerStatusPage:
    """``StatusBackend`` over a (soon) running consumer."""

    def __init__(
        self,
        settings: Settings,
        bootstrap_servers: str,
        *,
        source: ChangeSource | None,
        window: LatencyWindow,
        letters_max_age_s: float = 5.0,
    ) -> None:
        self.settings = settings
        self.bootstrap_servers = bootstrap_servers
        self.source = source
        self.window = window
        self.letters_max_age_s = letters_max_age_s
        self.runner: ApplyRunner | None = None
        self.watch: AlarmWatch | None = None
        self._letters: _Letters | None = None

    def attach(self, runner: ApplyRunner, watch: AlarmWatch | None) -> None:
        """The consumer is ready: show what it holds."""
        self.runner, self.watch = runner, watch

    async def letters(
        self, max_age_s: float | None = None
    ) -> list[tuple[str, DeadLetter]]:
        """The dead letters waiting, read again when older than ``max_age_s``.

        ``ConsumerError`` when Kafka does not answer and nothing was read before.
        """
        age = self.letters_max_age_s if max_age_s is None else max_age_s
        cached = self._letters
        if cached is not None and time.monotonic() - cached.read_at < age:
            return cached.letters
        try:
            records = await read_topic(
                kafka_options(self.settings, self.bootstrap_servers),
                self.settings.kafka.dead_letter_topic,
            )
        except ConsumerError:
            if cached is None:
                raise
            return cached.letters
        self._letters = _Letters(pending_letters(records), time.monotonic())
        return self._letters.letters

    def _facts(self) -> Facts:
        runner = self.runner
        if runner is None:
            return Facts()
        return Facts(
            lags=runner.last_lags,
            lag_age_s=runner.lag_age_s(),
            parked=runner.parked.all(),
            newest_change_at=runner.newest_change_at,
            alarms=tuple(self.watch.active()) if self.watch is not None else None,
        )

    async def view(self) -> PageView:
        """The page's content now."""
        notes: list[str] = []
        try:
            letters: Sequence[tuple[str, DeadLetter]] | None = await self.letters()
        except ConsumerError as exc:
            letters = None
            notes.append(f"Dead letters could not be read: {exc}")
        now = datetime.now(UTC)
        status = await gather_status(
            self.settings,
            self.bootstrap_servers,
            source=self.source,
            facts=self._facts(),
            letters=letters,
            now=now,
        )
        if self.runner is None:
            notes.append("The consumer is starting: it waits for Kafka and Moodle.")
            parked = []
        else:
            parked = parked_rows(self.runner.parked.all())
        return PageView(
            status=status,
            latency=self.window.minutes(now),
            parked=parked,
            dead_letters=letter_rows(letters or []),
            report_available=self._report_path() is not None,
            reprocess_per_minute=self.settings.operations.reprocess_per_minute,
            notes=notes,
        )

    async def redrive(self, positions: Sequence[str]) -> str:
        """Redrive the letters at ``positions`` (``["all"]``: every one waiting)."""
        chosen = None if list(positions) == ["all"] else list(positions)
        try:
            count = await redrive(
                self.settings, self.bootstrap_servers, positions=chosen
            )
        except ConsumerError as exc:
            return f"redrive failed: {exc}"
        finally:
            self._letters = None
        if not count.letters:
            return "nothing redriven: the letter was redriven already, or has no event"
        return (
            f"re-queued {count.events} events for {count.letters} dead letters; the "
            "consumer decides them again"
        )

    async def reprocess(self, *, person: str | None, course: str | None) -> str:
        """Publish the person's or course's state as PowerCampus holds it now."""
        try:
            result = await run_reprocess(
                self.settings,
                self.bootstrap_servers,
                person=person,
                course=course,
                source=self.source,
            )
        except (CdcError, ConsumerError) as exc:
            return f"reprocess failed: {exc}"
        return result.describe(f"person {person}" if person else f"course {course}")

    def _report_path(self) -> Path | None:
        found = latest_reconcile(self.settings.reconcile.report_dir)
        if found is None:
            return None
        path = found[1] / "report.html"
        return path if path.is_file() else None

    def report_html(self) -> str | None:
        """The newest reconcile's ``report.html``."""
        path = self._report_path()
        return None if path is None else path.read_text(encoding="utf-8")
