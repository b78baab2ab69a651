"""Pure translation from change-tracking rows to enrolment events.

No I/O, no clock, no logging: time and the source name come in as arguments.

One event per changed TRANSCRIPTDETAIL row, in SYS_CHANGE_VERSION order, each
carrying the person's complete term state as of the batch's version (and one
more for the person-term a row left, when it moved to another person or term),
and the commit time of its row's version when the source knows it.
Person-terms compare as the PowerCampus collation does: case and trailing spaces
do not make two persons or terms. A delete
carries only the key, so its person and section come from the shadow map; a
delete the shadow map never saw (a row inserted and deleted between two polls)
touched no state anyone was told about, and yields no event.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from cdc.ports import (
    ChangeBatch,
    ChangeRow,
    CtOperation,
    PersonTerm,
    ShadowEntry,
    Snapshot,
    TranscriptRow,
)
from schemas.collation import person_term_key
from schemas.events import (
    EnrolmentEvent,
    Operation,
    Registration,
    RowChange,
    SectionKey,
    TermKey,
    change_event_id,
    snapshot_event_id,
)

OPERATIONS: Mapping[CtOperation, Operation] = {
    "I": "insert",
    "U": "update",
    "D": "delete",
}


@dataclass(frozen=True, slots=True)
class Translation:
    """The events of one batch, and what the shadow map must learn once they are acked."""

    events: list[EnrolmentEvent]
    shadow_upserts: list[ShadowEntry] = field(default_factory=list)
    shadow_deletes: list[int] = field(default_factory=list)
    unresolved_deletes: list[int] = field(default_factory=list)


def to_registration(row: TranscriptRow) -> Registration:
    """The event's view of one TRANSCRIPTDETAIL row.

    ``model_construct``: the row is already typed and normalised by the adapter,
    and a burst builds hundreds of thousands of these.
    """
    return Registration.model_construct(
        transcript_detail_id=row.transcript_detail_id,
        section=row.section,
        add_drop_wait=row.add_drop_wait,
        final_grade=row.final_grade,
        mid_grade=row.mid_grade,
        credit_type=row.credit_type,
    )


def shadow_entry(row: TranscriptRow) -> ShadowEntry:
    """What the shadow map keeps of a row so that a later delete can be resolved."""
    return ShadowEntry(
        transcript_detail_id=row.transcript_detail_id,
        people_code_id=row.people_code_id,
        section=row.section,
    )


def _registrations(rows: Sequence[TranscriptRow]) -> tuple[Registration, ...]:
    ordered = sorted(rows, key=lambda row: row.transcript_detail_id)
    return tuple(to_registration(row) for row in ordered)


def fold(people_code_id: str, term: TermKey) -> tuple[str, str, str]:
    """A person-term as PowerCampus's collation compares it (``schemas.collation``)."""
    return person_term_key(people_code_id, term)


def _fold_state(
    term_state: Mapping[PersonTerm, Sequence[TranscriptRow]],
) -> dict[tuple[str, str, str], list[TranscriptRow]]:
    """Term states keyed by the folded person-term, case variants merged."""
    folded: dict[tuple[str, str, str], dict[int, TranscriptRow]] = {}
    for key, rows in term_state.items():
        merged = folded.setdefault(fold(key.people_code_id, key.term), {})
        for row in rows:
            merged[row.transcript_detail_id] = row
    return {key: list(rows.values()) for key, rows in folded.items()}


def _moved_from(change: ChangeRow, section: SectionKey) -> SectionKey | None:
    if change.shadow is None or change.shadow.section == section:
        return None
    return change.shadow.section


@dataclass(slots=True)
class _Builder:
    """Builds one batch's events; each person-term's registrations built once."""

    source: str
    state_version: int
    captured_at: datetime
    term_state: dict[tuple[str, str, str], list[TranscriptRow]]
    commit_times: Mapping[int, datetime] = field(default_factory=dict)
    translation: Translation = field(default_factory=lambda: Translation(events=[]))
    built: dict[tuple[str, str, str], tuple[Registration, ...]] = field(
        default_factory=dict
    )

    def event(
        self,
        change: ChangeRow,
        person: str,
        section: SectionKey,
        operation: Operation,
        previous: SectionKey | None = None,
    ) -> None:
        key = fold(person, section.term)
        if key not in self.built:
            rows = self.term_state.get(key, [])
            self.built[key] = _registrations(rows)
            self.translation.shadow_upserts.extend(shadow_entry(row) for row in rows)
        self.translation.events.append(
            EnrolmentEvent(
                event_id=change_event_id(
                    self.source,
                    change.transcript_detail_id,
                    change.change_version,
                    operation,
                ),
                kind="change",
                source=self.source,
                people_code_id=person,
                term=section.term,
                state_version=self.state_version,
                registrations=self.built[key],
                change=RowChange(
                    transcript_detail_id=change.transcript_detail_id,
                    operation=operation,
                    change_version=change.change_version,
                    creation_version=change.creation_version,
                    section=section,
                    previous_section=previous,
                ),
                captured_at=self.captured_at,
                committed_at=self.commit_times.get(change.change_version),
            )
        )


def to_events(batch: ChangeBatch, *, source: str, captured_at: datetime) -> Translation:
    """The events of one poll, in change order, and the shadow-map changes to save.

    A row that moved to another person or term also yields a ``delete`` event for
    the person-term it left. Every row an event carries enters the shadow map, so
    a later delete of any of them can be resolved.
    """
    builder = _Builder(
        source,
        batch.to_version,
        captured_at,
        _fold_state(batch.term_state),
        batch.commit_times,
    )
    translation = builder.translation
    for change in sorted(
        batch.changes, key=lambda c: (c.change_version, c.transcript_detail_id)
    ):
        current = change.current if change.operation != "D" else None
        shadow = change.shadow
        if current is not None:
            builder.event(
                change,
                current.people_code_id,
                current.section,
                OPERATIONS[change.operation],
                _moved_from(change, current.section),
            )
            translation.shadow_upserts.append(shadow_entry(current))
            if shadow is not None and fold(
                shadow.people_code_id, shadow.section.term
            ) != fold(current.people_code_id, current.section.term):
                builder.event(change, shadow.people_code_id, shadow.section, "delete")
        elif shadow is not None:
            builder.event(change, shadow.people_code_id, shadow.section, "delete")
            translation.shadow_deletes.append(change.transcript_detail_id)
        else:
            translation.unresolved_deletes.append(change.transcript_detail_id)
    gone = set(translation.shadow_deletes)
    latest = {e.transcript_detail_id: e for e in translation.shadow_upserts}
    translation.shadow_upserts[:] = [
        entry for key, entry in latest.items() if key not in gone
    ]
    return translation


def _group(
    rows: Sequence[TranscriptRow],
) -> dict[tuple[str, str, str], list[TranscriptRow]]:
    grouped: dict[tuple[str, str, str], list[TranscriptRow]] = {}
    for row in rows:
        grouped.setdefault(fold(row.people_code_id, row.term), []).append(row)
    return grouped


def snapshot_events(
    snapshot: Snapshot, *, source: str, captured_at: datetime, snapshot_id: str
) -> list[EnrolmentEvent]:
    """One snapshot event per person and term, consistent with the snapshot's version."""
    events = []
    for rows in _group(snapshot.rows).values():
        person, term = rows[0].people_code_id, rows[0].term
        events.append(
            EnrolmentEvent(
                event_id=snapshot_event_id(source, person, term, snapshot.version),
                kind="snapshot",
                source=source,
                people_code_id=person,
                term=term,
                state_version=snapshot.version,
                registrations=_registrations(rows),
                snapshot_id=snapshot_id,
                captured_at=captured_at,
            )
        )
    return sorted(events, key=lambda e: (e.people_code_id, e.term.label()))


def vanished_events(
    previous: Sequence[ShadowEntry],
    snapshot: Snapshot,
    *,
    source: str,
    captured_at: datetime,
) -> list[EnrolmentEvent]:
    """Deletes for rows the shadow map knew that a re-initialisation no longer finds.

    While incremental sync was impossible (history cleaned up), rows may have been
    deleted or moved; snapshot events only speak for persons who still have rows,
    and only for their current sections. Each vanished row becomes a ``delete``
    for the person-term it was in, carrying that person-term's snapshot state.
    """
    now = {row.transcript_detail_id: row for row in snapshot.rows}
    grouped = _group(snapshot.rows)
    builder = _Builder(source, snapshot.version, captured_at, grouped)
    for entry in sorted(previous, key=lambda e: e.transcript_detail_id):
        row = now.get(entry.transcript_detail_id)
        if (
            row is not None
            and row.section == entry.section
            and fold(row.people_code_id, row.term)
            == fold(entry.people_code_id, entry.section.term)
        ):
            continue
        change = ChangeRow(
            entry.transcript_detail_id, "D", snapshot.version, None, None, entry
        )
        builder.event(change, entry.people_code_id, entry.section, "delete")
    return builder.translation.events
