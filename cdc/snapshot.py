"""On-demand snapshots: the full enrolment state of some terms, bracketed by markers.

``publish_snapshot`` reads the terms once (``ChangeSource.read_snapshot``: one
consistent change-tracking version), then publishes, each step acknowledged
before the next begins:

1. a ``begin`` marker (key ``MARKER_KEY``);
2. one snapshot ``EnrolmentEvent`` per person and term, carrying ``snapshot_id``;
3. an ``end`` marker with the counts (events, persons, registrations).

Markers share one key, so they share one partition and ``end`` always follows
``begin`` there; events spread over partitions by person. Because each step
waits for its acknowledgements, every event's record is written after the
``begin`` and before the ``end`` marker. The contract for readers is in
``schemas/snapshot.py``: complete = end marker seen and exactly ``end.events``
events with its id. A failure part-way leaves no end marker, so readers see an
incomplete snapshot rather than a short one; publishing again makes a new one.

Unlike the poller's (re-)initialisation, an on-demand snapshot does not touch
the poller's checkpoint or shadow map: it is a read-only copy for reconcile and
``ledger adopt``, published on the snapshot topic, not the event topic.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Literal, Protocol

import structlog

from cdc.changes import snapshot_events
from cdc.ports import ChangeSource
from schemas.events import EnrolmentEvent, TermKey
from schemas.snapshot import SnapshotMarker

log = structlog.get_logger()

#: Events per acknowledged publish call: bounds memory in flight and keeps the
#: publisher's ack timeout meaningful for a large snapshot.
CHUNK_EVENTS = 5000


class SnapshotSink(Protocol):
    """Where a snapshot goes: events and markers, each call acknowledged."""

    async def publish(self, events: Sequence[EnrolmentEvent]) -> None:
        """Send the events keyed by person; return once all are acknowledged."""
        ...

    async def publish_marker(self, marker: SnapshotMarker) -> None:
        """Send one marker keyed ``MARKER_KEY``; return once acknowledged."""
        ...


def new_snapshot_id(source: str, version: int) -> str:
    """A unique, readable snapshot id: source, version and a random suffix."""
    return f"snapshot-{source}-v{version}-{uuid.uuid4().hex[:8]}"


def snapshot_marker(
    which: Literal["begin", "end"],
    *,
    snapshot_id: str,
    source: str,
    state_version: int,
    terms: Sequence[TermKey],
    events: Sequence[EnrolmentEvent] | None,
    created_at: datetime,
) -> SnapshotMarker:
    """A begin marker (``events`` None) or an end marker counting ``events``."""
    counts: dict[str, int | None] = {
        "events": None,
        "persons": None,
        "registrations": None,
    }
    if events is not None:
        counts = {
            "events": len(events),
            "persons": len({event.people_code_id for event in events}),
            "registrations": sum(len(event.registrations) for event in events),
        }
    return SnapshotMarker(
        marker=which,
        snapshot_id=snapshot_id,
        source=source,
        state_version=state_version,
        terms=tuple(terms),
        created_at=created_at,
        **counts,
    )


async def publish_snapshot(
    source: ChangeSource,
    sink: SnapshotSink,
    *,
    terms: Sequence[TermKey],
    snapshot_id: str | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    chunk_events: int = CHUNK_EVENTS,
) -> SnapshotMarker:
    """Publish the state of ``terms`` as one bracketed snapshot; returns the end marker.

    Raises ``ValueError`` for no terms, and whatever the source (``SourceUnavailable``)
    or the sink (``PublishFailed``) raises; after a sink failure no end marker was
    written, so readers treat the snapshot as incomplete.
    """
    if not terms:
        raise ValueError("no terms to snapshot")
    snapshot = await source.read_snapshot(terms)
    chosen_id = snapshot_id or new_snapshot_id(source.name, snapshot.version)
    events = snapshot_events(
        snapshot, source=source.name, captured_at=clock(), snapshot_id=chosen_id
    )
    return await publish_bracketed(
        sink,
        events,
        snapshot_id=chosen_id,
        source=source.name,
        state_version=snapshot.version,
        terms=terms,
        clock=clock,
        chunk_events=chunk_events,
    )


async def publish_bracketed(
    sink: SnapshotSink,
    events: Sequence[EnrolmentEvent],
    *,
    snapshot_id: str,
    source: str,
    state_version: int,
    terms: Sequence[TermKey],
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    chunk_events: int = CHUNK_EVENTS,
) -> SnapshotMarker:
    """Publish ready-made snapshot events between a begin and an end marker.

    Any source's snapshot goes through here (PowerCampus above, Banner's LMB
    in ``enrolstream lmb snapshot``), so every snapshot on the topic has the
    one shape readers rely on. ``PublishFailed`` from the sink leaves no end marker.
    """

    def marker(
        which: Literal["begin", "end"], counted: Sequence[EnrolmentEvent] | None
    ) -> SnapshotMarker:
        return snapshot_marker(
            which,
            snapshot_id=snapshot_id,
            source=source,
            state_version=state_version,
            terms=terms,
            events=counted,
            created_at=clock(),
        )

    with structlog.contextvars.bound_contextvars(
        snapshot_id=snapshot_id, state_version=state_version
    ):
        await sink.publish_marker(marker("begin", None))
        for start in range(0, len(events), chunk_events):
            await sink.publish(events[start : start + chunk_events])
        end = marker("end", events)
        await sink.publish_marker(end)
        log.info(
            "snapshot_published",
            terms=[term.label() for term in terms],
            events=end.events,
            persons=end.persons,
            registrations=end.registrations,
        )
    return end
