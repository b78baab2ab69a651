"""Read one complete snapshot from the snapshot topic.

A snapshot is a ``begin`` marker, one ``EnrolmentEvent`` per person and term
carrying the snapshot's id, and an ``end`` marker with the event count
(``schemas.snapshot``). Events spread over partitions, so a reader cannot rely on
order: it groups every record by ``snapshot_id`` and calls a snapshot complete
when its end marker was seen and exactly ``end.events`` distinct events carry
its id. A snapshot still being written, or one whose publisher died half-way,
is incomplete and is never used: acting on part of the campus would drop
everyone in the missing part.

``pick_snapshot`` is pure (records in, snapshot out); ``read_snapshot`` adds
the topic read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from pydantic import ValidationError

from consumers.errors import ConsumerError
from consumers.ports import RawMessage
from schemas.events import EnrolmentEvent, parse_event
from schemas.snapshot import MARKER_KEY, SnapshotMarker

__all__ = [
    "LoadedSnapshot",
    "SnapshotUnavailable",
    "pick_snapshot",
]


class SnapshotUnavailable(ConsumerError):
    """No usable snapshot: none on the topic, the named one missing or incomplete.

    Not retriable by waiting alone: publish a (new) snapshot first.
    """

    retriable = False


@dataclass(frozen=True, slots=True)
class LoadedSnapshot:
    """A complete snapshot: its end marker and its events (one per person and term)."""

    marker: SnapshotMarker
    events: tuple[EnrolmentEvent, ...]

    @property
    def snapshot_id(self) -> str:
        """The snapshot's id."""
        return self.marker.snapshot_id


@dataclass(slots=True)
class _Group:
    begin: SnapshotMarker | None = None
    end: SnapshotMarker | None = None
    end_offset: tuple[int, int] = (-1, -1)
    events: dict[str, EnrolmentEvent] = field(default_factory=dict)

    def complete(self) -> bool:
        return self.end is not None and self.end.events == len(self.events)

    def describe(self, snapshot_id: str) -> str:
        if self.end is None:
            return (
                f"snapshot {snapshot_id} is incomplete: no end marker "
                f"({len(self.events)} events so far; still being written, or its "
                "publisher stopped)"
            )
        return (
            f"snapshot {snapshot_id} is incomplete: its end marker announces "
            f"{self.end.events} events, the topic holds {len(self.events)}"
        )


def _group(records: Sequence[RawMessage]) -> dict[str, _Group]:
    groups: dict[str, _Group] = {}
    for record in records:
        if record.value is None:
            continue
        try:
            if record.key == MARKER_KEY:
                marker = SnapshotMarker.model_validate_json(record.value)
                group = groups.setdefault(marker.snapshot_id, _Group())
                if marker.marker == "begin":
                    group.begin = marker
                else:
                    group.end = marker
                    group.end_offset = (record.timestamp_ms, record.offset)
                continue
            event = parse_event(record.value)
        except ValidationError:
            continue  # not ours to judge here; an unreadable record is not counted
        if event.snapshot_id is not None:
            group = groups.setdefault(event.snapshot_id, _Group())
            group.events[event.event_id] = event
    return groups


def pick_snapshot(
    records: Sequence[RawMessage], snapshot_id: str | None = None
) -> LoadedSnapshot:
    """The named snapshot, or the latest complete one (by end marker time).

    Raises ``SnapshotUnavailable`` with the reason when there is none, or when
    the named one is incomplete. Records that are not valid markers or events
    are ignored (they cannot belong to a complete snapshot's count).
    """
    groups = _group(records)
    if snapshot_id is not None:
        group = groups.get(snapshot_id)
        if group is None:
            raise SnapshotUnavailable(f"no snapshot {snapshot_id} on the topic")
        if not group.complete():
            raise SnapshotUnavailable(group.describe(snapshot_id))
        return _loaded(group)
    complete = [g for g in groups.values() if g.complete()]
    if not complete:
        reasons = "; ".join(g.describe(i) for i, g in groups.items())
        raise SnapshotUnavailable(
            "no complete snapshot on the topic"
            + (f" ({reasons})" if reasons else "")
            + ": run `enrolstream snapshot` first"
        )
    latest = max(complete, key=lambda g: (_created(g), g.end_offset))
    return _loaded(latest)


def _created(group: _Group) -> str:
    assert group.end is not None  # noqa: S101 - only complete groups get here
    return group.end.created_at.isoformat()


def _loaded(group: _Group) -> LoadedSnapshot:
    assert group.end is not None  # noqa: S101 - only complete groups get here
    events = sorted(
        group.events.values(), key=lambda e: (e.people_code_id, e.term.label())
    )
    return LoadedSnapshot(marker=group.end, events=tuple(events))
