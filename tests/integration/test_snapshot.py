"""On-demand snapshots on the real broker: markers, counts, one version, completeness."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from cdc.errors import PublishFailed
from cdc.snapshot import publish_snapshot
from connectors.kafka import read_topic
from connectors.kafka.publisher import (
    KafkaEventPublisher,
    KafkaSnapshotSink,
    ensure_topics,
)
from consumers.ports import RawMessage
from enrolstream.cli.capture import describe
from enrolstream.settings import (
    KafkaSettings,
    PollerSettings,
    SandboxSettings,
    Settings,
    SourceSettings,
)
from enrolstream.wiring.capture import run_snapshot
from schemas.events import EnrolmentEvent
from schemas.snapshot import MARKER_KEY, SnapshotMarker
from tests.integration.conftest import TERM, CaptureStack, registration, set_status

pytestmark = pytest.mark.integration

ALICE, BOB, CAROL = "P000000001", "P000000002", "P000000003"


@dataclass(frozen=True)
class Seen:
    """What a reader of the snapshot topic saw of one snapshot."""

    begin: tuple[RawMessage, SnapshotMarker] | None
    end: tuple[RawMessage, SnapshotMarker] | None
    events: list[tuple[RawMessage, EnrolmentEvent]]

    @property
    def complete(self) -> bool:
        """The reader's rule (schemas/snapshot.py): end seen, exactly end.events events."""
        return self.end is not None and self.end[1].events == len(self.events)


def read_snapshots(records: Sequence[RawMessage]) -> dict[str, Seen]:
    """Group the snapshot topic's records by snapshot id."""
    begins: dict[str, tuple[RawMessage, SnapshotMarker]] = {}
    ends: dict[str, tuple[RawMessage, SnapshotMarker]] = {}
    events: dict[str, list[tuple[RawMessage, EnrolmentEvent]]] = {}
    for record in records:
        if record.key == MARKER_KEY:
            marker = SnapshotMarker.model_validate_json(record.value or b"")
            (begins if marker.marker == "begin" else ends)[marker.snapshot_id] = (
                record,
                marker,
            )
        else:
            event = EnrolmentEvent.model_validate_json(record.value or b"")
            events.setdefault(event.snapshot_id or "", []).append((record, event))
    ids = begins.keys() | ends.keys() | events.keys()
    return {
        sid: Seen(begins.get(sid), ends.get(sid), events.get(sid, [])) for sid in ids
    }


class FailingSink:
    """A sink whose events publish fails after the begin marker went out."""

    def __init__(self, inner: KafkaSnapshotSink) -> None:
        self.inner = inner

    async def publish(self, events: Sequence[EnrolmentEvent]) -> None:
        """Send half the events, then fail as a broker outage would."""
        await self.inner.publish(events[: len(events) // 2])
        raise PublishFailed("broker went away")

    async def publish_marker(self, marker: SnapshotMarker) -> None:
        """Markers go through."""
        await self.inner.publish_marker(marker)


@pytest.fixture(name="snapshot_topic")
async def _snapshot_topic(capture: CaptureStack) -> str:
    """A fresh snapshot topic with 4 partitions."""
    name = f"snap-{uuid.uuid4().hex[:12]}"
    await ensure_topics(capture.options, [name], partitions=4, replication_factor=1)
    return name


def seed(capture: CaptureStack) -> None:
    """Three persons, five registrations (one dropped) in the term."""
    capture.sql(
        registration(1, ALICE, "BSC5102"),
        registration(2, ALICE, "COUN6552", "02"),
        registration(3, BOB, "BSC5102"),
        registration(4, CAROL, "BSC5102", adw="W"),
        registration(5, CAROL, "COUN6552", "02"),
    )
    capture.sql(set_status(5, "D"))


class TestPublishSnapshot:
    """A snapshot is the term's state at one version, bracketed by counted markers."""

    async def test_markers_bracket_the_events(
        self, capture: CaptureStack, snapshot_topic: str
    ) -> None:
        """Begin is written before every event and end after every event."""
        seed(capture)
        async with KafkaEventPublisher(capture.options, snapshot_topic) as publisher:
            end = await publish_snapshot(
                capture.source, KafkaSnapshotSink(publisher), terms=[TERM]
            )
        seen = read_snapshots(await read_topic(capture.options, snapshot_topic))
        snap = seen[end.snapshot_id]
        assert snap.begin is not None
        assert snap.end is not None
        assert snap.begin[0].partition == snap.end[0].partition
        assert snap.begin[0].offset < snap.end[0].offset
        stamps = [record.timestamp_ms for record, _ in snap.events]
        assert snap.begin[0].timestamp_ms <= min(stamps)
        assert max(stamps) <= snap.end[0].timestamp_ms

    async def test_counts_and_content(
        self, capture: CaptureStack, snapshot_topic: str
    ) -> None:
        """The end marker counts events, persons and registrations; events carry all rows."""
        seed(capture)
        async with KafkaEventPublisher(capture.options, snapshot_topic) as publisher:
            end = await publish_snapshot(
                capture.source,
                KafkaSnapshotSink(publisher),
                terms=[TERM],
                snapshot_id="snap-1",
            )
        assert (end.snapshot_id, end.events, end.persons, end.registrations) == (
            "snap-1",
            3,
            3,
            5,
        )
        snap = read_snapshots(await read_topic(capture.options, snapshot_topic))[
            "snap-1"
        ]
        assert snap.complete
        carried = {
            (e.people_code_id, r.section.event_id, r.add_drop_wait)
            for _, e in snap.events
            for r in e.registrations
        }
        assert carried == {
            (ALICE, "BSC5102", "A"),
            (ALICE, "COUN6552", "A"),
            (BOB, "BSC5102", "A"),
            (CAROL, "BSC5102", "W"),
            (CAROL, "COUN6552", "D"),
        }

    async def test_one_version(
        self, capture: CaptureStack, snapshot_topic: str
    ) -> None:
        """Markers and events share the version of the last change, which they include."""
        seed(capture)
        last = capture.sql(set_status(4, "A"))
        async with KafkaEventPublisher(capture.options, snapshot_topic) as publisher:
            end = await publish_snapshot(
                capture.source, KafkaSnapshotSink(publisher), terms=[TERM]
            )
        snap = read_snapshots(await read_topic(capture.options, snapshot_topic))[
            end.snapshot_id
        ]
        assert snap.begin is not None
        versions = {e.state_version for _, e in snap.events}
        assert versions == {end.state_version} == {snap.begin[1].state_version}
        assert end.state_version == last
        assert all(e.kind == "snapshot" and e.change is None for _, e in snap.events)
        carol = next(e for _, e in snap.events if e.people_code_id == CAROL)
        assert {r.add_drop_wait for r in carol.registrations} == {"A", "D"}

    async def test_failure_leaves_an_incomplete_snapshot(
        self, capture: CaptureStack, snapshot_topic: str
    ) -> None:
        """A publish failure part-way leaves begin and some events but no end marker."""
        seed(capture)
        async with KafkaEventPublisher(capture.options, snapshot_topic) as publisher:
            sink = KafkaSnapshotSink(publisher)
            with pytest.raises(PublishFailed):
                await publish_snapshot(
                    capture.source, FailingSink(sink), terms=[TERM], snapshot_id="bad"
                )
            await publish_snapshot(
                capture.source, sink, terms=[TERM], snapshot_id="good"
            )
        seen = read_snapshots(await read_topic(capture.options, snapshot_topic))
        assert seen["bad"].begin is not None
        assert seen["bad"].events
        assert not seen["bad"].complete
        assert seen["good"].complete

    async def test_no_terms(self, capture: CaptureStack, snapshot_topic: str) -> None:
        """Asking for no terms is refused before anything is published."""
        async with KafkaEventPublisher(capture.options, snapshot_topic) as publisher:
            with pytest.raises(ValueError, match="no terms"):
                await publish_snapshot(
                    capture.source, KafkaSnapshotSink(publisher), terms=[]
                )
        assert await read_topic(capture.options, snapshot_topic) == []


class TestRunSnapshot:
    """The CLI's wiring publishes the configured live terms to the snapshot topic."""

    async def test_configured_live_terms(
        self, capture: CaptureStack, snapshot_topic: str, tmp_path: Path
    ) -> None:
        """Without --term the configured live terms are used, and the report names them."""
        seed(capture)
        bootstrap = str(capture.options["bootstrap_servers"])
        config = Settings(
            kafka=KafkaSettings(snapshot_topic=snapshot_topic, request_timeout_s=4),
            source=SourceSettings(
                name="pc", sandbox=SandboxSettings(path=capture.path)
            ),
            poller=PollerSettings(live_terms=("2021/Winter",)),
        )
        end = await run_snapshot(config, bootstrap)
        assert end.terms == (TERM,)
        assert describe(end).endswith(
            "terms 2021/Winter: 3 events, 3 persons, 5 registrations"
        )
        seen = read_snapshots(await read_topic(capture.options, snapshot_topic))
        assert seen[end.snapshot_id].complete
