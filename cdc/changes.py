"""Pure translation from change-tracking rows to enrolment events.

No I/O, no clock, no logging: time and the source name come in as arguments.

One event per changed row, in SYS_CHANGE_VERSION order, each carrying the
person's complete state for one term as of the batch's version: their
TRANSCRIPTDETAIL rows, and when tracked their SECTIONPER rows, ACADEMIC rows and
account details. A TRANSCRIPTDETAIL row yields one more event for the
person-term it left, when it moved to another person or term; a SECTIONPER or
ACADEMIC change one event for its person-term; a person-table change (PEOPLE,
EmailAddress, PersonUser) one event per term of the person (``person_terms``).
Person-terms compare as the PowerCampus collation does: case and trailing
spaces do not make two persons or terms.

A TRANSCRIPTDETAIL delete carries only the key, so its person and section come
from the shadow map; a delete the shadow map never saw (a row inserted and
deleted between two polls) touched no state anyone was told about, and yields
no event. The same holds for a person-table delete no row owner is known for.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from cdc.ports import (
    ChangeBatch,
    ChangeRow,
    CtOperation,
    KeyChange,
    PersonTerm,
    RowOwner,
    ShadowEntry,
    Snapshot,
    StandingRow,
    TeachingRow,
    TrackedTable,
    TranscriptRow,
)
from schemas.collation import collate, person_term_key
from schemas.events import (
    EnrolmentEvent,
    Operation,
    PersonDetails,
    Registration,
    SectionKey,
    Standing,
    TableChange,
    Teaching,
    TermKey,
    change_event_id,
    snapshot_event_id,
    table_change_event_id,
)

OPERATIONS: Mapping[CtOperation, Operation] = {
    "I": "insert",
    "U": "update",
    "D": "delete",
}
PersonTermKey = tuple[str, str, str]
R = TypeVar("R", TranscriptRow, TeachingRow, StandingRow)


@dataclass(frozen=True, slots=True)
class Translation:
    """The events of one batch, and what the shadow map must learn once they are acked."""

    events: list[EnrolmentEvent]
    shadow_upserts: list[ShadowEntry] = field(default_factory=list)
    shadow_deletes: list[int] = field(default_factory=list)
    unresolved_deletes: list[int] = field(default_factory=list)
    owners: list[RowOwner] = field(default_factory=list)
    owners_gone: list[tuple[TrackedTable, str]] = field(default_factory=list)
    #: Person-table deletes no row owner was known for (nothing to undo).
    unresolved_keys: list[tuple[TrackedTable, str]] = field(default_factory=list)


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
        transcript_seq=row.transcript_seq,
    )


def to_teaching(row: TeachingRow) -> Teaching:
    """The event's view of one SECTIONPER row."""
    return Teaching.model_construct(section=row.section, percentage=row.percentage)


def to_standing(row: StandingRow) -> Standing:
    """The event's view of one ACADEMIC row."""
    return Standing.model_construct(
        academic_session=row.academic_session,
        transcript_seq=row.transcript_seq,
        enroll_separation=row.enroll_separation,
        separation=row.separation,
    )


def shadow_entry(row: TranscriptRow) -> ShadowEntry:
    """What the shadow map keeps of a row so that a later delete can be resolved."""
    return ShadowEntry(
        transcript_detail_id=row.transcript_detail_id,
        people_code_id=row.people_code_id,
        section=row.section,
    )


def fold(people_code_id: str, term: TermKey) -> tuple[str, str, str]:
    """A person-term as PowerCampus's collation compares it (``schemas.collation``)."""
    return person_term_key(people_code_id, term)


def _fold_rows(
    state: Mapping[PersonTerm, Sequence[R]] | None,
) -> dict[PersonTermKey, list[R]] | None:
    """Rows keyed by the folded person-term, case variants merged."""
    if state is None:
        return None
    folded: dict[PersonTermKey, list[R]] = {}
    for key, rows in state.items():
        merged = folded.setdefault(fold(key.people_code_id, key.term), [])
        merged.extend(row for row in rows if row not in merged)
    return folded


def _moved_from(change: ChangeRow, section: SectionKey) -> SectionKey | None:
    if change.shadow is None or change.shadow.section == section:
        return None
    return change.shadow.section


@dataclass(slots=True)
class _State:
    """Every table's rows of a batch per folded person-term, and account details."""

    registrations: dict[PersonTermKey, list[TranscriptRow]]
    teaching: dict[PersonTermKey, list[TeachingRow]] | None = None
    standing: dict[PersonTermKey, list[StandingRow]] | None = None
    people: dict[str, PersonDetails] | None = None

    @classmethod
    def of(cls, batch: ChangeBatch | None = None) -> _State:
        """The state a change batch carries."""
        if batch is None:
            return cls({})
        people = None
        if batch.people is not None:
            people = {collate(p): d for p, d in batch.people.items()}
        return cls(
            _fold_rows(batch.term_state) or {},
            _fold_rows(batch.teaching),
            _fold_rows(batch.standing),
            people,
        )


@dataclass(slots=True)
class _Builder:
    """Builds one batch's events; each person-term's state built once."""

    source: str
    state_version: int
    captured_at: datetime
    state: _State
    translation: Translation = field(default_factory=lambda: Translation(events=[]))
    built: dict[PersonTermKey, dict[str, object]] = field(default_factory=dict)

    def parts(self, person: str, term: TermKey) -> dict[str, object]:
        key = fold(person, term)
        if key not in self.built:
            state = self.state
            rows = state.registrations.get(key, [])
            self.translation.shadow_upserts.extend(shadow_entry(row) for row in rows)
            ordered = sorted(rows, key=lambda row: row.transcript_detail_id)
            parts: dict[str, object] = {
                "registrations": tuple(to_registration(row) for row in ordered)
            }
            if state.teaching is not None:
                taught = state.teaching.get(key, [])
                parts["teaching"] = tuple(
                    to_teaching(t) for t in sorted(taught, key=_teaching_order)
                )
            if state.standing is not None:
                standing = state.standing.get(key, [])
                parts["standing"] = tuple(
                    to_standing(s) for s in sorted(standing, key=_standing_order)
                )
            if state.people is not None:
                parts["person"] = state.people.get(collate(person))
            self.built[key] = parts
        return self.built[key]

    def event(
        self, person: str, term: TermKey, change: TableChange, event_id: str
    ) -> None:
        self.translation.events.append(
            EnrolmentEvent(
                event_id=event_id,
                kind="change",
                source=self.source,
                people_code_id=person,
                term=term,
                state_version=self.state_version,
                change=change,
                captured_at=self.captured_at,
                **self.parts(person, term),
            )
        )

    def transcript_event(
        self,
        change: ChangeRow,
        person: str,
        section: SectionKey,
        operation: Operation,
        previous: SectionKey | None = None,
    ) -> None:
        table_change = TableChange(
            table="TRANSCRIPTDETAIL",
            key=str(change.transcript_detail_id),
            operation=operation,
            change_version=change.change_version,
            creation_version=change.creation_version,
            section=section,
            previous_section=previous,
        )
        event_id = change_event_id(
            self.source, change.transcript_detail_id, change.change_version, operation
        )
        self.event(person, section.term, table_change, event_id)

    def key_event(self, change: KeyChange, person: str, term: TermKey) -> None:
        table_change = TableChange(
            table=change.table,
            key="|".join(change.key),
            operation=OPERATIONS[change.operation],
            change_version=change.change_version,
            creation_version=change.creation_version,
            section=change.section,
        )
        event_id = table_change_event_id(self.source, table_change, person, term)
        self.event(person, term, table_change, event_id)


def _teaching_order(row: TeachingRow) -> tuple[str, ...]:
    return row.section.key()


def _standing_order(row: StandingRow) -> tuple[str, str]:
    return (collate(row.academic_session), collate(row.transcript_seq))


def _transcript_events(builder: _Builder, changes: Sequence[ChangeRow]) -> None:
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
    builder: _Builder,
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
    builder = _Builder(source, batch.to_version, captured_at, _State.of(batch))
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


def _group(rows: Sequence[R]) -> dict[PersonTermKey, list[R]]:
    grouped: dict[PersonTermKey, list[R]] = {}
    for row in rows:
        grouped.setdefault(fold(row.people_code_id, row.term), []).append(row)
    return grouped


def _snapshot_state(
    snapshot: Snapshot,
) -> tuple[_State, dict[PersonTermKey, tuple[str, TermKey]]]:
    """The snapshot's state per person-term, and who and which term each one is."""
    registrations = _group(snapshot.rows)
    teaching = None if snapshot.teaching is None else _group(snapshot.teaching)
    standing = None if snapshot.standing is None else _group(snapshot.standing)
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
    return _State(registrations, teaching, standing, people), who


def snapshot_events(
    snapshot: Snapshot, *, source: str, captured_at: datetime, snapshot_id: str
) -> list[EnrolmentEvent]:
    """One snapshot event per person and term, consistent with the snapshot's version.

    A person-term has one when the person has TRANSCRIPTDETAIL or SECTIONPER
    rows there.
    """
    state, who = _snapshot_state(snapshot)
    builder = _Builder(source, snapshot.version, captured_at, state)
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
    builder = _Builder(source, snapshot.version, captured_at, state)
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
