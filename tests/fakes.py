"""In-memory stand-ins for the ports, for driving the loops without I/O."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import date

from cdc.errors import PublishFailed
from cdc.ports import ChangeBatch, ShadowLookup, Snapshot
from schemas.events import EnrolmentEvent, TermKey


class RecordingPublisher:
    """An ``EventPublisher`` that keeps what it was given; can be told to fail."""

    def __init__(self) -> None:
        self.published: list[EnrolmentEvent] = []
        self.fail_next = 0
        self.on_publish: Callable[[], None] = lambda: None

    async def publish(self, events: Sequence[EnrolmentEvent]) -> None:
        """Record the events, or raise ``PublishFailed`` while ``fail_next`` > 0."""
        if self.fail_next:
            self.fail_next -= 1
            raise PublishFailed("broker unreachable (fake)")
        self.published.extend(events)
        self.on_publish()


class ScriptedChangeSource:
    """A ``ChangeSource`` that answers from a script of batches, snapshots and errors."""

    name = "fake"

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        self.batches: dict[int, ChangeBatch] = {}
        self.errors: list[Exception] = []
        self.fetched_from: list[int] = []

    async def fetch_since(self, last_version: int, shadow: ShadowLookup) -> ChangeBatch:
        """The scripted batch after ``last_version`` (an empty one if none), or an error."""
        self.fetched_from.append(last_version)
        if self.errors:
            raise self.errors.pop(0)
        scripted = self.batches.get(last_version)
        if scripted is None:
            return ChangeBatch(last_version, last_version, (), {})
        known = shadow.lookup(
            [change.transcript_detail_id for change in scripted.changes]
        )
        return replace(
            scripted,
            changes=[
                replace(change, shadow=known.get(change.transcript_detail_id))
                for change in scripted.changes
            ],
        )

    async def read_snapshot(self, terms: Sequence[TermKey]) -> Snapshot:
        """The scripted snapshot."""
        return self.snapshot

    async def live_terms(self, today: date) -> Sequence[TermKey]:
        """The snapshot's terms."""
        return self.snapshot.terms

    async def close(self) -> None:
        """Nothing to release."""
