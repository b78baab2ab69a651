"""One batch's state per person-term, and the builder of its events (pure).

What ``cdc.changes`` (changes of a poll) and its snapshot functions share: the
port rows as the event's values, the person-term key under PowerCampus's
collation, every table's rows of a batch per folded person-term
(``TermStates``), and ``EventBuilder``, which builds each person-term's state
once and stamps the events of one batch.
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


def fold_rows(
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


@dataclass(slots=True)
class TermStates:
    """Every table's rows of a batch per folded person-term, and account details."""

    registrations: dict[PersonTermKey, list[TranscriptRow]]
    teaching: dict[PersonTermKey, list[TeachingRow]] | None = None
    standing: dict[PersonTermKey, list[StandingRow]] | None = None
    people: dict[str, PersonDetails] | None = None

    @classmethod
    def of(cls, batch: ChangeBatch | None = None) -> TermStates:
        """The state a change batch carries."""
        if batch is None:
            return cls({})
        people = None
        if batch.people is not None:
            people = {collate(p): d for p, d in batch.people.items()}
        return cls(
            fold_rows(batch.term_state) or {},
            fold_rows(batch.teaching),
            fold_rows(batch.standing),
            people,
        )


@dataclass(slots=True)
class EventBuilder:
    """Builds one batch's events; each person-term's state built once."""

    source: str
    state_version: int
    captured_at: datetime
    state: TermStates
    commit_times: Mapping[int, datetime] = field(default_factory=dict)
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
                committed_at=self.commit_times.get(change.change_version),
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


def group(rows: Sequence[R]) -> dict[PersonTermKey, list[R]]:
    grouped: dict[PersonTermKey, list[R]] = {}
    for row in rows:
        grouped.setdefault(fold(row.people_code_id, row.term), []).append(row)
    return grouped
