"""Pure translation from change-tracking rows to enrolment events.

No I/O, no clock, no logging: time and the source name come in as arguments.

One event per changed TRANSCRIPTDETAIL row, in SYS_CHANGE_VERSION order, each
carrying the person's complete term state as of the batch's version. A delete
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
from schemas.events import (
    EnrolmentEvent,
    Operation,
    Registration,
    RowChange,
    SectionKey,
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


def _moved_from(change: ChangeRow, section: SectionKey) -> SectionKey | None:
    if change.shadow is None or change.shadow.section == section:
        return None
    return change.shadow.section


def to_events(batch: ChangeBatch, *, source: str, captured_at: datetime) -> Translation:
    """The events of one poll, in change order, and the shadow-map changes to save."""
    translation = Translation(events=[])
    # A person changed in several rows carries the same state in each event.
    states: dict[PersonTerm, tuple[Registration, ...]] = {}
    for change in sorted(
        batch.changes, key=lambda c: (c.change_version, c.transcript_detail_id)
    ):
        current = change.current if change.operation != "D" else None
        if current is not None:
            person, section = current.people_code_id, current.section
            previous = _moved_from(change, section)
            translation.shadow_upserts.append(shadow_entry(current))
        elif change.shadow is not None:
            person, section, previous = (
                change.shadow.people_code_id,
                change.shadow.section,
                None,
            )
            translation.shadow_deletes.append(change.transcript_detail_id)
        else:
            translation.unresolved_deletes.append(change.transcript_detail_id)
            continue
        operation = OPERATIONS[change.operation]
        key = PersonTerm(person, section.term)
        if key not in states:
            states[key] = _registrations(batch.term_state.get(key, ()))
        translation.events.append(
            EnrolmentEvent(
                event_id=change_event_id(
                    source,
                    change.transcript_detail_id,
                    change.change_version,
                    operation,
                ),
                kind="change",
                source=source,
                people_code_id=person,
                term=section.term,
                state_version=batch.to_version,
                registrations=states[key],
                change=RowChange(
                    transcript_detail_id=change.transcript_detail_id,
                    operation=operation,
                    change_version=change.change_version,
                    creation_version=change.creation_version,
                    section=section,
                    previous_section=previous,
                ),
                captured_at=captured_at,
            )
        )
    return translation


def snapshot_events(
    snapshot: Snapshot, *, source: str, captured_at: datetime, snapshot_id: str
) -> list[EnrolmentEvent]:
    """One snapshot event per person and term, consistent with the snapshot's version."""
    by_person: dict[PersonTerm, list[TranscriptRow]] = {}
    for row in snapshot.rows:
        by_person.setdefault(PersonTerm(row.people_code_id, row.term), []).append(row)
    return [
        EnrolmentEvent(
            event_id=snapshot_event_id(
                source, key.people_code_id, key.term, snapshot.version
            ),
            kind="snapshot",
            source=source,
            people_code_id=key.people_code_id,
            term=key.term,
            state_version=snapshot.version,
            registrations=_registrations(rows),
            snapshot_id=snapshot_id,
            captured_at=captured_at,
        )
        for key, rows in sorted(
            by_person.items(),
            key=lambda item: (item[0].people_code_id, item[0].term.label()),
        )
    ]
