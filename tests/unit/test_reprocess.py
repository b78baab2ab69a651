"""Reprocess selections: a person's or a course's full state, from one snapshot."""

from __future__ import annotations

from datetime import UTC, datetime

from cdc.ports import Snapshot, TranscriptRow
from cdc.reprocess import course_events, person_events
from schemas.events import SectionKey, TermKey

WINTER = TermKey(academic_year="2021", academic_term="Winter")
SPRING = TermKey(academic_year="2021", academic_term="Spring")
NOW = datetime(2021, 1, 11, 9, tzinfo=UTC)


def section(event_id: str, term: TermKey = WINTER) -> SectionKey:
    """A LEC section 01 of session 01."""
    return SectionKey(
        academic_year=term.academic_year,
        academic_term=term.academic_term,
        academic_session="01",
        event_id=event_id,
        event_sub_type="LEC",
        section="01",
    )


ROWS = (
    TranscriptRow(1, "P1", section("BSC5102"), "A"),
    TranscriptRow(2, "P1", section("COUN6552"), "D"),
    TranscriptRow(3, "P2", section("COUN6552"), "A"),
    TranscriptRow(4, "P3", section("MATH1000"), "A"),
)
SNAPSHOT = Snapshot(version=40, terms=(WINTER, SPRING), rows=ROWS)


class TestPersonEvents:
    """A person: one full-state event per live term."""

    def test_every_term_even_without_rows(self) -> None:
        """A term with no row of theirs yields an empty state (drop what we own)."""
        events = person_events(
            SNAPSHOT, "p1", source="pc", captured_at=NOW, request_id="reprocess-1"
        )
        assert [(e.term.label(), len(e.registrations)) for e in events] == [
            ("2021/Winter", 2),
            ("2021/Spring", 0),
        ]
        assert all(e.kind == "snapshot" and e.change is None for e in events)
        assert {e.state_version for e in events} == {40}
        assert {e.snapshot_id for e in events} == {"reprocess-1"}


class TestCourseEvents:
    """A course: everyone registered in its sections, with their whole term state."""

    def test_people_of_the_course_with_all_their_rows(self) -> None:
        """Any status counts; each person's other sections come along."""
        events = course_events(
            SNAPSHOT,
            lambda s: s.event_id == "COUN6552",
            source="pc",
            captured_at=NOW,
            request_id="reprocess-2",
        )
        assert [
            (e.people_code_id, [r.transcript_detail_id for r in e.registrations])
            for e in events
        ] == [("P1", [1, 2]), ("P2", [3])]
