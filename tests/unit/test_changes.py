"""The pure translation from change-tracking rows to enrolment events."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from cdc.changes import Translation, snapshot_events, to_events, vanished_events
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
from schemas.events import PersonDetails, SectionKey, TermKey, change_event_id

NOW = datetime(2021, 1, 11, 9, 0, tzinfo=UTC)
TERM = TermKey(academic_year="2021", academic_term="Winter")


def section(event_id: str, number: str = "01") -> SectionKey:
    return SectionKey(
        academic_year="2021",
        academic_term="Winter",
        academic_session="01",
        event_id=event_id,
        event_sub_type="LEC",
        section=number,
    )


COUN6552 = section("COUN6552", "02")
COUN8552 = section("COUN8552", "02")
BSC5102 = section("BSC5102")


def row(
    row_id: int,
    person: str,
    where: SectionKey,
    adw: str = "A",
    grade: str | None = None,
) -> TranscriptRow:
    return TranscriptRow(
        transcript_detail_id=row_id,
        people_code_id=person,
        section=where,
        add_drop_wait=adw,
        final_grade=grade,
    )


def shadow(row_id: int, person: str, where: SectionKey) -> ShadowEntry:
    return ShadowEntry(
        transcript_detail_id=row_id, people_code_id=person, section=where
    )


def batch(
    changes: list[ChangeRow],
    state: dict[str, list[TranscriptRow]],
    to_version: int = 20,
) -> ChangeBatch:
    return ChangeBatch(
        from_version=10,
        to_version=to_version,
        changes=changes,
        term_state={PersonTerm(person, TERM): rows for person, rows in state.items()},
    )


A1 = row(1, "P000000001", BSC5102)
D1 = row(1, "P000000001", BSC5102, adw="D")

# case, changes, term state, expected events (operation, person, ADW of each registration),
# shadow upserts, shadow deletes, unresolved deletes
CASES = [
    (
        "enroll",
        [ChangeRow(1, "I", 11, 11, A1)],
        {"P000000001": [A1]},
        [("insert", "P000000001", ("A",))],
        [1],
        [],
        [],
    ),
    (
        "drop by update",
        [ChangeRow(1, "U", 12, None, D1, shadow(1, "P000000001", BSC5102))],
        {"P000000001": [D1]},
        [("update", "P000000001", ("D",))],
        [1],
        [],
        [],
    ),
    (
        "waitlist",
        [ChangeRow(2, "I", 11, 11, row(2, "P000000002", BSC5102, adw="W"))],
        {"P000000002": [row(2, "P000000002", BSC5102, adw="W")]},
        [("insert", "P000000002", ("W",))],
        [2],
        [],
        [],
    ),
    (
        "delete resolved by the shadow map",
        [ChangeRow(1, "D", 13, None, None, shadow(1, "P000000001", BSC5102))],
        {"P000000001": []},
        [("delete", "P000000001", ())],
        [],
        [1],
        [],
    ),
    (
        "insert then delete between polls: never seen",
        [ChangeRow(9, "D", 13, 12, None)],
        {},
        [],
        [],
        [],
        [9],
    ),
    (
        "a delete ignores a stale current row",
        [ChangeRow(1, "D", 13, None, A1, shadow(1, "P000000001", BSC5102))],
        {"P000000001": []},
        [("delete", "P000000001", ())],
        [],
        [1],
        [],
    ),
]


class TestToEvents:
    """One event per net change, with the person's complete term state."""

    @pytest.mark.parametrize(
        ("case", "changes", "state", "expected", "upserts", "deletes", "unresolved"),
        CASES,
        ids=[case[0] for case in CASES],
    )
    def test_translation_table(
        self,
        case: str,
        changes: list[ChangeRow],
        state: dict[str, list[TranscriptRow]],
        expected: list[tuple[str, str, tuple[str, ...]]],
        upserts: list[int],
        deletes: list[int],
        unresolved: list[int],
    ) -> None:
        """Each change row becomes the expected event and shadow-map change."""
        result = to_events(batch(changes, state), source="pc", captured_at=NOW)
        assert [
            (
                event.change.operation if event.change else None,
                event.people_code_id,
                tuple(reg.add_drop_wait for reg in event.registrations),
            )
            for event in result.events
        ] == expected
        assert [
            entry.transcript_detail_id for entry in result.shadow_upserts
        ] == upserts
        assert result.shadow_deletes == deletes
        assert result.unresolved_deletes == unresolved

    def test_cross_list_swap_carries_final_state_in_both_events(self) -> None:
        """A swap in one transaction gives two events that both show the new section added."""
        dropped = row(5, "P000000005", COUN6552, adw="D")
        added = row(6, "P000000005", COUN8552)
        result = to_events(
            batch(
                [
                    ChangeRow(6, "I", 15, 15, added),
                    ChangeRow(
                        5, "U", 15, None, dropped, shadow(5, "P000000005", COUN6552)
                    ),
                ],
                {"P000000005": [added, dropped]},
            ),
            source="pc",
            captured_at=NOW,
        )
        assert [e.change.transcript_detail_id for e in result.events if e.change] == [
            5,
            6,
        ]
        for event in result.events:
            assert {
                (r.section.event_id, r.add_drop_wait) for r in event.registrations
            } == {("COUN6552", "D"), ("COUN8552", "A")}
            assert event.state_version == 20

    def test_events_follow_change_version_order(self) -> None:
        """Events are ordered by SYS_CHANGE_VERSION so one person's changes stay in order."""
        later, earlier = row(2, "P1", BSC5102), row(1, "P1", COUN6552)
        result = to_events(
            batch(
                [ChangeRow(2, "I", 17, 17, later), ChangeRow(1, "I", 14, 14, earlier)],
                {"P1": [earlier, later]},
            ),
            source="pc",
            captured_at=NOW,
        )
        assert [e.change.change_version for e in result.events if e.change] == [14, 17]

    def test_update_that_moved_the_row_names_the_previous_section(self) -> None:
        """An update to another section carries the section the shadow map held before."""
        moved = row(3, "P3", COUN8552)
        result = to_events(
            batch(
                [ChangeRow(3, "U", 12, None, moved, shadow(3, "P3", COUN6552))],
                {"P3": [moved]},
            ),
            source="pc",
            captured_at=NOW,
        )
        change = result.events[0].change
        assert change is not None
        assert change.previous_section == COUN6552
        assert change.section == COUN8552

    def test_events_carry_their_version_commit_time(self) -> None:
        """Each change event carries its row version's commit time; unknown ones None."""
        committed = datetime(2021, 1, 11, 8, 30, tzinfo=UTC)
        a2 = row(2, "P2", BSC5102)
        changes = [ChangeRow(1, "I", 14, 14, A1), ChangeRow(2, "I", 15, 15, a2)]
        result = to_events(
            replace(
                batch(changes, {"P000000001": [A1], "P2": [a2]}),
                commit_times={14: committed},
            ),
            source="pc",
            captured_at=NOW,
        )
        assert [e.committed_at for e in result.events] == [committed, None]

    def test_event_ids_are_deterministic(self) -> None:
        """The same change re-polled has the same id; another row version has another."""
        first = to_events(
            batch([ChangeRow(1, "I", 11, 11, A1)], {"P000000001": [A1]}),
            source="pc",
            captured_at=NOW,
        )
        again = to_events(
            batch([ChangeRow(1, "I", 11, 11, A1)], {"P000000001": [A1]}, to_version=25),
            source="pc",
            captured_at=NOW,
        )
        other = to_events(
            batch([ChangeRow(1, "U", 12, None, D1)], {"P000000001": [D1]}),
            source="pc",
            captured_at=NOW,
        )
        assert first.events[0].event_id == again.events[0].event_id
        assert first.events[0].event_id != other.events[0].event_id


class TestSnapshotEvents:
    """Snapshot events: one per person and term, consistent with one version."""

    def test_one_event_per_person_with_all_rows(self) -> None:
        """Rows are grouped by person; each event is marked as a snapshot."""
        rows = [
            row(1, "P2", BSC5102),
            row(2, "P1", BSC5102, adw="W"),
            row(3, "P1", COUN6552),
        ]
        events = snapshot_events(
            Snapshot(version=42, terms=[TERM], rows=rows),
            source="pc",
            captured_at=NOW,
            snapshot_id="init-42",
        )
        assert [(e.people_code_id, len(e.registrations)) for e in events] == [
            ("P1", 2),
            ("P2", 1),
        ]
        assert {(e.kind, e.state_version, e.snapshot_id, e.change) for e in events} == {
            ("snapshot", 42, "init-42", None)
        }


SPRING_BSC = SectionKey(
    academic_year="2021",
    academic_term="Spring",
    academic_session="01",
    event_id="BSC5102",
    event_sub_type="LEC",
    section="01",
)
SPRING = TermKey(academic_year="2021", academic_term="Spring")


def changes_of(
    result: Translation,
) -> list[tuple[str, str, str, tuple[int | None, ...]]]:
    """(operation, person, term, registration ids) of each event."""
    return [
        (
            e.change.operation if e.change else "-",
            e.people_code_id,
            e.term.academic_term,
            tuple(r.transcript_detail_id for r in e.registrations),
        )
        for e in result.events
    ]


class TestMovedRows:
    """A row that leaves a person-term tells that person-term too."""

    def test_row_moved_to_another_person(self) -> None:
        """The old person gets a delete with their remaining state."""
        moved = row(1, "P000000002", BSC5102)
        kept = row(5, "P000000001", COUN6552)
        batch_ = ChangeBatch(
            10,
            20,
            [ChangeRow(1, "U", 12, None, moved, shadow(1, "P000000001", BSC5102))],
            {
                PersonTerm("P000000002", TERM): [moved],
                PersonTerm("P000000001", TERM): [kept],
            },
        )
        result = to_events(batch_, source="pc", captured_at=NOW)
        assert changes_of(result) == [
            ("update", "P000000002", "Winter", (1,)),
            ("delete", "P000000001", "Winter", (5,)),
        ]
        assert len({e.event_id for e in result.events}) == 2

    def test_row_moved_to_another_term(self) -> None:
        """The term the row left is re-decided with what is left there."""
        moved = row(1, "P000000001", SPRING_BSC)
        batch_ = ChangeBatch(
            10,
            20,
            [ChangeRow(1, "U", 12, None, moved, shadow(1, "P000000001", BSC5102))],
            {
                PersonTerm("P000000001", SPRING): [moved],
                PersonTerm("P000000001", TERM): [],
            },
        )
        assert changes_of(to_events(batch_, source="pc", captured_at=NOW)) == [
            ("update", "P000000001", "Spring", (1,)),
            ("delete", "P000000001", "Winter", ()),
        ]


class TestCollation:
    """Person-terms compare as PowerCampus does: case and padding do not split them."""

    def test_case_variants_share_one_state(self) -> None:
        """Rows stored as 'WINTER ' and 'Winter' are one term with both rows."""
        upper = SectionKey(
            academic_year="2021",
            academic_term="WINTER ",
            academic_session="01",
            event_id="COUN6552",
            event_sub_type="LEC",
            section="02",
        )
        first, second = row(1, "P1", upper), row(2, "P1", BSC5102)
        batch_ = ChangeBatch(
            10,
            20,
            [ChangeRow(1, "U", 12, None, first), ChangeRow(2, "I", 13, 13, second)],
            {PersonTerm("P1", upper.term): [first], PersonTerm("P1", TERM): [second]},
        )
        result = to_events(batch_, source="pc", captured_at=NOW)
        assert [ids for *_, ids in changes_of(result)] == [(1, 2), (1, 2)]

    def test_every_carried_row_enters_the_shadow_map(self) -> None:
        """Rows an event carries can be deleted later: the shadow map must know them."""
        changed, other = row(1, "P1", BSC5102), row(7, "P1", COUN6552)
        batch_ = ChangeBatch(
            10,
            20,
            [ChangeRow(1, "U", 12, None, changed)],
            {PersonTerm("P1", TERM): [changed, other]},
        )
        result = to_events(batch_, source="pc", captured_at=NOW)
        assert sorted(e.transcript_detail_id for e in result.shadow_upserts) == [1, 7]


class TestVanishedEvents:
    """Re-initialisation: rows the shadow map knew that are gone or moved."""

    def test_deleted_and_moved_rows_become_deletes(self) -> None:
        """Gone rows and rows now elsewhere yield deletes carrying the snapshot state."""
        previous = [
            shadow(1, "P1", BSC5102),
            shadow(2, "P1", COUN6552),
            shadow(3, "P2", BSC5102),
        ]
        now = [row(2, "P1", COUN6552), row(3, "P2", COUN8552)]
        events = vanished_events(
            previous,
            Snapshot(version=40, terms=[TERM], rows=now),
            source="pc",
            captured_at=NOW,
        )
        assert changes_of(Translation(events=events)) == [
            ("delete", "P1", "Winter", (2,)),
            ("delete", "P2", "Winter", (3,)),
        ]
        assert [
            e.change.section.event_id for e in events if e.change and e.change.section
        ] == [
            "BSC5102",
            "BSC5102",
        ]

    def test_nothing_vanished(self) -> None:
        """A shadow map that matches the snapshot yields nothing."""
        events = vanished_events(
            [shadow(1, "P1", BSC5102)],
            Snapshot(version=40, terms=[TERM], rows=[row(1, "P1", BSC5102)]),
            source="pc",
            captured_at=NOW,
        )
        assert events == []


SPRING = TermKey(academic_year="2021", academic_term="Spring")
ALICE_DETAILS = PersonDetails(first_name="Alice", last_name="Ng", email="a@x.edu")


def key_change(
    table: TrackedTable,
    key: tuple[str, ...],
    person: str | None,
    *,
    operation: CtOperation = "U",
    term: TermKey | None = None,
    where: SectionKey | None = None,
) -> KeyChange:
    return KeyChange(table, key, operation, 15, None, person, term, where)


def related_batch(
    changes: list[KeyChange],
    *,
    person_terms: dict[str, list[TermKey]] | None = None,
) -> ChangeBatch:
    """A batch of other tables' changes, with every table's state of P1 in Winter."""
    winter = PersonTerm("P1", TERM)
    return ChangeBatch(
        from_version=10,
        to_version=20,
        changes=[],
        term_state={winter: [row(1, "P1", BSC5102)]},
        key_changes=changes,
        teaching={winter: [TeachingRow("P1", COUN6552, 0.0)]},
        standing={winter: [StandingRow("P1", TERM, "01", "001", "WITH", True)]},
        people={"p1": ALICE_DETAILS},
        person_terms=person_terms or {},
    )


class TestOtherTables:
    """SECTIONPER, ACADEMIC and person-table changes become person-term events."""

    def test_every_table_state_is_carried(self) -> None:
        """An event carries registrations, teaching, standing and account details."""
        change = key_change(
            "SECTIONPER", ("2021", "Winter", "01", "COUN6552", "LEC", "02", "P1"),
            "P1", term=TERM, where=COUN6552,
        )  # fmt: skip
        (event,) = to_events(
            related_batch([change]), source="pc", captured_at=NOW
        ).events
        assert [r.transcript_detail_id for r in event.registrations] == [1]
        assert event.teaching is not None
        assert [t.percentage for t in event.teaching] == [0.0]
        assert event.standing is not None
        assert [s.enroll_separation for s in event.standing] == ["WITH"]
        assert event.person == ALICE_DETAILS
        assert event.change is not None
        assert (event.change.table, event.change.section) == ("SECTIONPER", COUN6552)

    def test_academic_change_has_no_section(self) -> None:
        """A term record's change decides the whole person-term."""
        change = key_change(
            "ACADEMIC", ("P1", "2021", "Winter", "01", "001"), "P1", term=TERM
        )
        (event,) = to_events(
            related_batch([change]), source="pc", captured_at=NOW
        ).events
        assert event.change is not None
        assert (event.change.table, event.change.section) == ("ACADEMIC", None)

    def test_person_change_once_per_term(self) -> None:
        """A name change is published for each term the source named, with its own id."""
        change = key_change("PEOPLE", ("P1",), "P1")
        events = to_events(
            related_batch([change], person_terms={"P1": [TERM, SPRING]}),
            source="pc",
            captured_at=NOW,
        ).events
        assert [e.term for e in events] == [TERM, SPRING]
        assert len({e.event_id for e in events}) == 2
        assert events[1].registrations == ()  # no Spring state in the batch

    def test_person_rows_learn_and_forget_owners(self) -> None:
        """An e-mail row's owner is kept; a resolved delete forgets it."""
        upsert = key_change("EmailAddress", ("41",), "P1")
        gone = key_change("PersonUser", ("7",), "P1", operation="D")
        translation = to_events(
            related_batch([upsert, gone], person_terms={"P1": [TERM]}),
            source="pc",
            captured_at=NOW,
        )
        assert translation.owners == [RowOwner("EmailAddress", "41", "P1")]
        assert translation.owners_gone == [("PersonUser", "7")]

    def test_unresolved_delete_yields_nothing(self) -> None:
        """A key-only delete no owner is known for touched no state anyone was told."""
        change = key_change("EmailAddress", ("99",), None, operation="D")
        translation = to_events(related_batch([change]), source="pc", captured_at=NOW)
        assert translation.events == []
        assert translation.unresolved_keys == [("EmailAddress", "99")]

    def test_ids_are_stable_and_distinct_per_table(self) -> None:
        """Re-translating gives the same ids; a TRANSCRIPTDETAIL id keeps its v1 form."""
        change = key_change(
            "ACADEMIC", ("P1", "2021", "Winter", "01", "001"), "P1", term=TERM
        )
        first = to_events(related_batch([change]), source="pc", captured_at=NOW)
        again = to_events(related_batch([change]), source="pc", captured_at=NOW)
        assert [e.event_id for e in first.events] == [e.event_id for e in again.events]
        assert change_event_id("pc", 1, 15, "update") not in {
            e.event_id for e in first.events
        }
