"""Pure translation from change-tracking rows to enrolment events.

No I/O, no clock, no logging: time and the source name come in as arguments.

One event per changed row, in SYS_CHANGE_VERSION order, each carrying the
person's complete state for one term as of the batch's version: their
TRANSCRIPTDETAIL rows, and when tracked their SECTIONPER rows, ACADEMIC rows and
account details. A TRANSCRIPTDETAIL row yields one more event for the
person-term it left, when it moved to another person or term; a SECTIONPER or
ACADEMIC change one event for its person-term; a person-table change (PEOPLE,
EmailAddress, PersonUser) one event per term of the person (``person_terms``).
Each event carries the commit time of its row's version when the source
knows it. Person-terms compare as the PowerCampus collation does: case and
trailing spaces do not make two persons or terms.

A TRANSCRIPTDETAIL delete carries only the key, so its person and section come
from the shadow map; a delete the shadow map never saw (a row inserted and
deleted between two polls) touched no state anyone was told about, and yields
no event. The same holds for a person-table delete no row owner is known for.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from cdc.ports import ChangeBatch, ChangeRow, KeyChange, RowOwner, ShadowEntry, Snapshot
from cdc.state import (
    OPERATIONS,
    EventBuilder,
    PersonTermKey,
    TermStates,
    Translation,
    fold,
    group,
    shadow_entry,
    to_registration,
)
from schemas.collation import collate
from schemas.events import EnrolmentEvent, SectionKey, TermKey, snapshot_event_id

__all__ = [
    "OPERATIONS",
    "Translation",
    "fold",
    "shadow_entry",
    "snapshot_events",
    "to_events",
    "to_registration",
    "vanished_events",
]


def _moved_from(change: ChangeRow, section: SectionKey) -> SectionKey | None:
    if change.shadow is None or change.shadow.section == section:
        return None
    return change.shadow.section


def _transcript_events(builder: EventBuilder, changes: Sequence[ChangeRow]) -> None:
    translation = builder.translation
    for change in sorted(
        changes, key=lambda c: (c.change_version, c.transcript_detail_id)
    ):
        current = change.current if change.operation != "D" else None
        shadow = change.shadow
        if current is not None:
            builder.transcript_event(
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
                builder.transcript_event(
                    change, shadow.people_code_id, shadow.section, "delete"
                )
        elif shadow is not None:
            builder.transcript_event(
                change, shadow.people_code_id, shadow.section, "delete"
            )
            translation.shadow_deletes.append(change.transcript_detail_id)
        else:
            translation.unresolved_deletes.append(change.transcript_detail_id)


def _key_events(
    builder: EventBuilder,
    changes: Sequence[KeyChange],
    person_terms: Mapping[str, Sequence[TermKey]],
) -> None:
    translation = builder.translation
    terms_of = {collate(p): terms for p, terms in person_terms.items()}
    for change in sorted(changes, key=lambda c: (c.change_version, c.table, c.key)):
        person = change.people_code_id
        if person is None:
            translation.unresolved_keys.append((change.table, "|".join(change.key)))
            continue
        if change.term is not None:
            builder.key_event(change, person, change.term)
            continue
        if change.operation == "D":
            translation.owners_gone.append((change.table, "|".join(change.key)))
        elif change.table != "PEOPLE":
            translation.owners.append(
                RowOwner(change.table, "|".join(change.key), person)
            )
        for term in terms_of.get(collate(person), ()):
            builder.key_event(change, person, term)


def to_events(batch: ChangeBatch, *, source: str, captured_at: datetime) -> Translation:
    """The events of one poll, in change order, and the shadow-map changes to save.

    TRANSCRIPTDETAIL changes come first (in change order), then the other
    tables' (in change order): every event of the batch carries the state as of
    its version, so their order among each other does not change what they say.
    Every row an event carries enters the shadow map, so a later delete of any
    of them can be resolved.
    """
    builder = EventBuilder(
        source,
        batch.to_version,
        captured_at,
        TermStates.of(batch),
        commit_times=batch.commit_times,
    )
    translation = builder.translation
    _transcript_events(builder, batch.changes)
    _key_events(builder, batch.key_changes, batch.person_terms)
    translation.owners.extend(batch.owners)
    gone = set(translation.shadow_deletes)
    latest = {e.transcript_detail_id: e for e in translation.shadow_upserts}
    translation.shadow_upserts[:] = [
        entry for key, entry in latest.items() if key not in gone
    ]
    return translation


def _snapshot_state(
    snapshot: Snapshot,
) -> tuple[TermStates, dict[PersonTermKey, tuple[str, TermKey]]]:
    """The snapshot's state per person-term, and who and which term each one is."""
    registrations = group(snapshot.rows)
    teaching = None if snapshot.teaching is None else group(snapshot.teaching)
    standing = None if snapshot.standing is None else group(snapshot.standing)
    people = None
    if snapshot.people is not None:
        people = {collate(p): d for p, d in snapshot.people.items()}
    # Persons with registrations or teaching have something to decide.
    who: dict[PersonTermKey, tuple[str, TermKey]] = {}
    for rows in (snapshot.rows, snapshot.teaching or ()):
        for row in rows:
            who.setdefault(
                fold(row.people_code_id, row.term), (row.people_code_id, row.term)
            )
    return TermStates(registrations, teaching, standing, people), who


def snapshot_events(
    snapshot: Snapshot, *, source: str, captured_at: datetime, snapshot_id: str
) -> list[EnrolmentEvent]:
    """One snapshot event per person and term, consistent with the snapshot's version.

    A person-term has one when the person has TRANSCRIPTDETAIL or SECTIONPER
    rows there.
    """
    state, who = _snapshot_state(snapshot)
    builder = EventBuilder(source, snapshot.version, captured_at, state)
    events = []
    for person, term in who.values():
        events.append(
            EnrolmentEvent(
                event_id=snapshot_event_id(source, person, term, snapshot.version),
                kind="snapshot",
                source=source,
                people_code_id=person,
                term=term,
                state_version=snapshot.version,
                snapshot_id=snapshot_id,
                captured_at=captured_at,
                **builder.parts(person, term),
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
    state, _ = _snapshot_state(snapshot)
    builder = EventBuilder(source, snapshot.version, captured_at, state)
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
        builder.transcript_event(change, entry.people_code_id, entry.section, "delete")
    return builder.translation.events
