"""Pure steps of a consumer batch: which persons resolve, which wait."""

from __future__ import annotations

from datetime import UTC, datetime

from consumers.batching import Decision, plan, watermark
from consumers.decisions import EnrolmentPolicy
from consumers.identity import Found, Missing
from schemas.actions import CourseRef, DesiredEnrolment, LedgerEntry, LedgerStatus
from schemas.events import EnrolmentEvent, TermKey

FALL = TermKey(academic_year="2021", academic_term="Fall")
WINTER = TermKey(academic_year="2021", academic_term="Winter")
POLICY = EnrolmentPolicy(student_role_id=5, audit_role_id=5)


def decision(person: str, term: TermKey, course: int, version: int) -> Decision:
    event = EnrolmentEvent(
        event_id=f"{person}-{term.label()}-{version}",
        kind="snapshot",
        source="pc",
        people_code_id=person,
        term=term,
        state_version=version,
        registrations=(),
        captured_at=datetime(2021, 1, 11, tzinfo=UTC),
    )
    desired = DesiredEnrolment(
        course=CourseRef(id=course, shortname=f"C{course}"),
        people_code_id=person,
        term=term,
        active=True,
        role_id=5,
        reason="test",
    )
    return Decision(desired, event)


class TestPlan:
    """Resolution and waiting are per person and term."""

    def test_resolved_events_are_kept_per_person_term(self) -> None:
        """A person resolved in two terms releases both terms' parked entries."""
        result = plan(
            [decision("P1", FALL, 1, 5), decision("P1", WINTER, 2, 6)],
            {"P1": Found(userid=7)},
            lambda _c, _u: None,
            POLICY,
        )
        assert sorted(e.term.academic_term for e in result.resolved_events) == [
            "Fall",
            "Winter",
        ]
        assert len(result.actions) == 2

    def test_unresolved_wait_per_person_term_with_the_newest_event(self) -> None:
        """A missing person waits once per term, with that term's newest state."""
        result = plan(
            [
                decision("P1", FALL, 1, 5),
                decision("P1", FALL, 3, 8),
                decision("P1", WINTER, 2, 6),
            ],
            {"P1": Missing(reason="no account")},
            lambda _c, _u: None,
            POLICY,
        )
        assert {
            slot: waiting.event.state_version
            for slot, waiting in result.unresolved.items()
        } == {("P1", "2021/Fall"): 8, ("P1", "2021/Winter"): 6}
        assert result.actions == []


def inactive(version: int) -> Decision:
    base = decision("P1", WINTER, 1, version)
    return Decision(base.desired.model_copy(update={"active": False}), base.event)


def entry(
    version: int, *, status: LedgerStatus = "active", owned: bool = True
) -> LedgerEntry:
    return LedgerEntry(
        courseid=1,
        userid=7,
        roleid=5,
        status=status,
        event_id="old",
        state_version=version,
        owned=owned,
    )


class TestWatermark:
    """A decision that needs no call still records the version it was made at."""

    def test_never_enrolled_gets_a_not_owned_entry(self) -> None:
        """Dropped where we never enrolled: an entry that owns nothing but dates the state."""
        mark = watermark(inactive(9), 7, None)
        assert mark is not None
        assert (mark.status, mark.owned, mark.state_version) == ("unenrolled", False, 9)

    def test_existing_entry_moves_up_keeping_what_it_says(self) -> None:
        """Already as decided: same status, role and ownership, at the newer version."""
        mark = watermark(decision("P1", WINTER, 1, 9), 7, entry(4))
        assert mark == entry(4).model_copy(
            update={"state_version": 9, "event_id": "P1-2021/Winter-9"}
        )

    def test_nothing_newer_nothing_written(self) -> None:
        """A stale or same-version decision writes nothing."""
        assert watermark(decision("P1", WINTER, 1, 4), 7, entry(4)) is None
        assert watermark(decision("P1", WINTER, 1, 3), 7, entry(4)) is None

    def test_plan_returns_the_marks(self) -> None:
        """An add and a drop collapsed to nothing still leave the drop's version behind."""
        result = plan(
            [inactive(9)], {"P1": Found(userid=7)}, lambda _c, _u: None, POLICY
        )
        assert result.actions == []
        assert [(m.state_version, m.owned) for m in result.watermarks] == [(9, False)]
