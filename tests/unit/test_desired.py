"""Instructors and term withdrawals in the pure decisions, and plans over several roles."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from consumers.decisions import (
    EnrolmentPolicy,
    Held,
    as_decided,
    desired_enrolments,
    is_enrolled,
    next_ledger_entry,
    plan_action,
    plan_against,
    settle,
)
from consumers.desired import instructor_role, is_separated
from consumers.mapping import MappingSet, load_mappings
from schemas.actions import (
    ChangeRoleAction,
    CourseRef,
    DesiredEnrolment,
    EnrolAction,
    LedgerEntry,
    RemoveRoleAction,
    RestoreRoleAction,
    RoleSource,
    SuspendAction,
)
from schemas.events import (
    EnrolmentEvent,
    Registration,
    SectionKey,
    SourceTable,
    Standing,
    TableChange,
    Teaching,
    TermKey,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "data" / "mapping.example.json"
WINTER = TermKey(academic_year="2021", academic_term="Winter")
STUDENT, AUDIT, EDITING, TEACHER = 5, 14, 3, 4
COUN, BSC = 4766, 4748
POLICY = EnrolmentPolicy(
    student_role_id=STUDENT,
    audit_role_id=AUDIT,
    audit_grade="AU",
    withdrawn_grades=frozenset({"W", "WA"}),
)

#: Separations as CODE_ENROLLMENT marks them; only LOA configured.
FROM_CODES = EnrolmentPolicy(5, 5, separations_from="code_enrollment")
ONLY_LOA = EnrolmentPolicy(5, 5, separation_codes=frozenset({"LOA"}))


def sec(event_id: str, section: str = "01", session: str = "01") -> SectionKey:
    """A 2021/Winter section."""
    return SectionKey(
        academic_year="2021",
        academic_term="Winter",
        academic_session=session,
        event_id=event_id,
        event_sub_type="LEC",
        section=section,
    )


B01, C02 = sec("BSC5102"), sec("COUN6552", "02")


def reg(section: SectionKey, adw: str = "A", seq: str | None = None) -> Registration:
    """A registration of the person."""
    return Registration(
        transcript_detail_id=hash(section.key()) % 10**6,
        section=section,
        add_drop_wait=adw,
        transcript_seq=seq,
    )


def standing(
    code: str | None,
    session: str = "01",
    seq: str = "001",
    *,
    separation: bool | None = None,
) -> Standing:
    """An ACADEMIC row of the person."""
    return Standing(
        academic_session=session,
        transcript_seq=seq,
        enroll_separation=code,
        separation=separation,
    )


def event(
    registrations: tuple[Registration, ...] = (),
    *,
    teaching: tuple[Teaching, ...] | None = (),
    standings: tuple[Standing, ...] | None = (),
    table: SourceTable | None = None,
    section: SectionKey | None = None,
) -> EnrolmentEvent:
    """An event at version 10: a snapshot, or a change of ``table``."""
    change = None
    if table is not None:
        change = TableChange(
            table=table, key="k", operation="update", change_version=10, section=section
        )
    return EnrolmentEvent(
        event_id="e-10",
        kind="change" if change else "snapshot",
        source="test",
        people_code_id="P000074179",
        term=WINTER,
        state_version=10,
        registrations=registrations,
        teaching=teaching,
        standing=standings,
        change=change,
        captured_at=datetime(2021, 1, 11, tzinfo=UTC),
    )


@pytest.fixture(name="mapping")
def mapping_fixture() -> MappingSet:
    """The example mapping: COUN6552/8552 section 02 → 4766, BSC5102 → 4748."""
    return load_mappings({"2021/Winter": EXAMPLE})


class TestEnrolledOverThreeTables:
    """TRANSCRIPTDETAIL, ACADEMIC and CODE_ENROLLMENT decide one predicate."""

    @pytest.mark.parametrize(
        ("registration", "rows", "policy", "enrolled"),
        [
            (reg(B01), (), POLICY, True),
            (reg(B01), (standing("ENRL"),), POLICY, True),
            (reg(B01), (standing("WITH"),), POLICY, False),
            (reg(B01), (standing(" loa "),), POLICY, False),
            (reg(B01), (standing("AWIT", session=""),), POLICY, False),
            (reg(B01), (standing("WITH", session="02"),), POLICY, True),
            (reg(B01, seq="001"), (standing("WITH", seq="002"),), POLICY, True),
            (reg(B01, seq="001"), (standing("WITH", seq="001"),), POLICY, False),
            (reg(B01, "D"), (standing("ENRL"),), POLICY, False),
            (reg(B01), (standing("XFER"),), POLICY, True),
            (reg(B01), (standing("XFER", separation=True),), FROM_CODES, False),
            (reg(B01), (standing("WITH", separation=False),), FROM_CODES, True),
            (reg(B01), (standing("WITH"),), ONLY_LOA, True),
        ],
    )  # fmt: skip
    def test_predicate(
        self,
        registration: Registration,
        rows: tuple[Standing, ...],
        policy: EnrolmentPolicy,
        enrolled: bool,
    ) -> None:
        """Added, no withdrawn grade, not separated from the term (its session or all)."""
        assert is_enrolled(registration, policy, rows) is enrolled

    def test_separation_names_its_row(self) -> None:
        """The ACADEMIC row that separates is returned, for the reason."""
        row = standing("WITH")
        assert is_separated(reg(B01), (standing("ENRL", "02"), row), POLICY) == row


class TestInstructorRole:
    """SECTIONPER has no role column: PERCENTAGE decides primary or secondary."""

    @pytest.mark.parametrize(
        ("percentages", "limit", "role"),
        [
            ((100.0,), 0.0, EDITING),
            ((None,), 0.0, EDITING),
            ((0.0,), 0.0, TEACHER),
            ((0.0, 50.0), 0.0, EDITING),
            ((0.0, 0.0), 0.0, TEACHER),
            ((10.0,), 25.0, TEACHER),
            ((0.0,), None, EDITING),
        ],
    )
    def test_role(
        self, percentages: tuple[float | None, ...], limit: float | None, role: int
    ) -> None:
        """Primary unless every feeding row is at most the secondary percentage."""
        policy = EnrolmentPolicy(5, 5, secondary_percentage_at_most=limit)
        rows = [Teaching(section=B01, percentage=p) for p in percentages]
        assert instructor_role(rows, policy) == role


class TestDesiredWithInstructorsAndWithdrawals:
    """Which courses an event decides, and the role each source wants there."""

    def test_instructor_in_one_course_student_in_another(
        self, mapping: MappingSet
    ) -> None:
        """Teaching BSC5102 and registered in COUN6552/02: one role in each."""
        found = {
            d.course.id: d
            for d in desired_enrolments(
                event((reg(C02),), teaching=(Teaching(section=B01, percentage=100),)),
                mapping,
                POLICY,
            )
        }
        assert found[BSC].wanted() == {"instructor": EDITING}
        assert found[COUN].wanted() == {"student": STUDENT}
        assert found[BSC].decided == ("student", "instructor")
        assert "teaches BSC5102/01 (instructor, role 3)" in found[BSC].reason

    def test_both_in_one_course(self, mapping: MappingSet) -> None:
        """A student who also teaches a section of the same course wants both roles."""
        teaching = (Teaching(section=sec("BSC5102", "02"), percentage=0),)
        (desired,) = desired_enrolments(
            event((reg(B01),), teaching=teaching), mapping, POLICY
        )
        assert desired.wanted() == {"student": STUDENT, "instructor": TEACHER}
        assert desired.role_id == STUDENT

    def test_term_withdrawal_drops_every_course(self, mapping: MappingSet) -> None:
        """Separated in ACADEMIC: no student role anywhere, rows still 'A'."""
        found = desired_enrolments(
            event((reg(B01), reg(C02)), standings=(standing("WITH", session=""),)),
            mapping,
            POLICY,
        )
        assert {d.course.id: d.active for d in found} == {BSC: False, COUN: False}
        assert all(d.term_withdrawal for d in found)
        assert "separated from the term (ACADEMIC.ENROLL_SEPARATION WITH)" in (
            found[0].reason
        )

    def test_withdrawal_leaves_teaching(self, mapping: MappingSet) -> None:
        """A separation is about studying: the person's instructor role stays."""
        teaching = (Teaching(section=B01, percentage=100),)
        (desired,) = desired_enrolments(
            event((reg(B01),), teaching=teaching, standings=(standing("LOA"),)),
            mapping,
            POLICY,
        )
        assert desired.wanted() == {"instructor": EDITING}

    def test_academic_change_decides_the_whole_term(self, mapping: MappingSet) -> None:
        """An ACADEMIC change has no section: every course of the person is decided."""
        found = desired_enrolments(
            event((reg(B01), reg(C02)), table="ACADEMIC"), mapping, POLICY
        )
        assert {d.course.id for d in found} == {BSC, COUN}

    def test_the_events_term_in_any_spelling_and_no_other(
        self, mapping: MappingSet
    ) -> None:
        """Rows of the event's term count however PowerCampus spelled it; others not."""
        spelled = B01.model_copy(update={"academic_term": "WINTER  "})
        taught = C02.model_copy(update={"academic_term": "winter"})
        spring = B01.model_copy(update={"academic_term": "Spring"})
        found = desired_enrolments(
            event((reg(spelled), reg(spring)), teaching=(Teaching(section=taught),)),
            mapping,
            POLICY,
        )
        roles = {d.course.id: d.roles for d in found}
        assert roles == {BSC: {"student": STUDENT}, COUN: {"instructor": EDITING}}
        assert "BSC5102/01" in next(d.reason for d in found if d.course.id == BSC)
        alone = desired_enrolments(event((reg(spring),)), mapping, POLICY)
        assert alone == []

    def test_sectionper_change_decides_its_section(self, mapping: MappingSet) -> None:
        """A SECTIONPER change decides the courses its section feeds, no others."""
        teaching = (Teaching(section=B01),)
        found = desired_enrolments(
            event((reg(C02),), teaching=teaching, table="SECTIONPER", section=B01),
            mapping,
            POLICY,
        )
        assert [d.course.id for d in found] == [BSC]

    @pytest.mark.parametrize("table", ["PEOPLE", "EmailAddress", "PersonUser"])
    def test_person_change_decides_no_course(
        self, mapping: MappingSet, table: SourceTable
    ) -> None:
        """A name or login change is about the account; in full it decides every course."""
        changed = event((reg(B01),), table=table)
        assert desired_enrolments(changed, mapping, POLICY) == []
        assert len(desired_enrolments(changed, mapping, POLICY, in_full=True)) == 1

    def test_without_sectionper_instructors_are_not_decided(
        self, mapping: MappingSet
    ) -> None:
        """An event that does not carry SECTIONPER speaks for the student side only."""
        (desired,) = desired_enrolments(
            event((reg(B01),), teaching=None), mapping, POLICY
        )
        assert desired.decided == ("student",)


COURSE = CourseRef(id=BSC, shortname="BSC5102Winter2021")


def want(
    roles: dict[RoleSource, int],
    decided: tuple[RoleSource, ...] = ("student", "instructor"),
) -> DesiredEnrolment:
    """A decision for course 4748 wanting ``roles``."""
    return DesiredEnrolment(
        course=COURSE,
        people_code_id="P000074179",
        term=WINTER,
        active=bool(roles),
        role_id=roles.get("student", roles.get("instructor", STUDENT)),
        roles=roles,
        decided=decided,
        reason="test",
    )


def entry(roles: dict[RoleSource, int], status: str = "active") -> LedgerEntry:
    """The ledger entry of user 7 in course 4748 holding ``roles`` of ours."""
    return LedgerEntry.model_validate(
        {
            "courseid": BSC,
            "userid": 7,
            "roleid": roles.get("student", roles.get("instructor", STUDENT)),
            "roles": roles,
            "status": status,
            "event_id": "e-5",
            "state_version": 5,
        }
    )


PAIR = {"courseid": BSC, "userid": 7}


class TestRolesPerSource:
    """One action per (course, user) brings every source's role in step."""

    @pytest.mark.parametrize(
        ("desired", "ledger", "expected"),
        [
            # a new instructor: enrolled with the instructor role
            (want({"instructor": EDITING}), None, EnrolAction(**PAIR, roleid=EDITING)),
            # student and instructor at once: one enrol call, the second role assigned
            (want({"student": STUDENT, "instructor": TEACHER}), None,
             EnrolAction(**PAIR, roleid=STUDENT, also_roleids=(TEACHER,))),
            # a student of ours starts teaching the course: the role added, no welcome
            (want({"student": STUDENT, "instructor": EDITING}), entry({"student": STUDENT}),
             RestoreRoleAction(**PAIR, roleid=EDITING)),
            # instructor changed to secondary: exactly one role remains
            (want({"instructor": TEACHER}), entry({"instructor": EDITING}),
             ChangeRoleAction(**PAIR, roleid=TEACHER, previous_roleid=EDITING)),
            # drops as a student, still teaches: only the student role goes
            (want({"instructor": EDITING}), entry({"student": STUDENT, "instructor": EDITING}),
             RemoveRoleAction(**PAIR, roleid=STUDENT)),
            # removed from SECTIONPER: the instructor role goes (drop_action remove_role)
            (want({}), entry({"instructor": EDITING}), RemoveRoleAction(**PAIR, roleid=EDITING)),
            # an event without SECTIONPER leaves the instructor role of ours alone
            (want({}, ("student",)), entry({"student": STUDENT, "instructor": EDITING}),
             RemoveRoleAction(**PAIR, roleid=STUDENT)),
            (want({"student": STUDENT}, ("student",)), entry({"instructor": EDITING}),
             RestoreRoleAction(**PAIR, roleid=STUDENT)),
            # in step
            (want({"student": STUDENT, "instructor": EDITING}),
             entry({"student": STUDENT, "instructor": EDITING}), None),
        ],
    )  # fmt: skip
    def test_plan(
        self,
        desired: DesiredEnrolment,
        ledger: LedgerEntry | None,
        expected: object,
    ) -> None:
        """The action assigns what is missing and takes away only roles of ours."""
        assert (
            plan_action(desired, 7, ledger, state_version=10, policy=POLICY) == expected
        )

    def test_teachers_own_role_is_never_taken(self) -> None:
        """A role Moodle holds that is not ours stays when ours goes."""
        held = Held(active=True, roleids=frozenset({STUDENT, TEACHER}))
        action = plan_against(
            want({}), 7, entry({"student": STUDENT}), held, policy=POLICY
        )
        assert action == RemoveRoleAction(**PAIR, roleid=STUDENT)

    def test_suspend_policy_suspends_only_when_nothing_of_ours_is_wanted(self) -> None:
        """Under suspend, one source dropping while another stays is a role removal."""
        policy = EnrolmentPolicy(STUDENT, AUDIT, drop_action="suspend")
        both = entry({"student": STUDENT, "instructor": EDITING})
        partly = plan_action(
            want({"instructor": EDITING}), 7, both, state_version=10, policy=policy
        )
        assert partly == RemoveRoleAction(**PAIR, roleid=STUDENT)
        gone = plan_action(want({}), 7, both, state_version=10, policy=policy)
        assert gone == SuspendAction(**PAIR, roleid=EDITING, also_roleids=(STUDENT,))

    def test_ledger_records_the_source_of_each_role(self) -> None:
        """After a partial drop the entry stays active with the remaining source."""
        before = entry({"student": STUDENT, "instructor": EDITING})
        desired = want({"instructor": EDITING})
        action = plan_action(desired, 7, before, state_version=10, policy=POLICY)
        assert action is not None
        after = next_ledger_entry(
            action, before, desired=desired, event_id="e-10", state_version=10
        )
        assert (after.status, after.our_roles(), after.roleid) == (
            "active",
            {"instructor": EDITING},
            EDITING,
        )

    def test_old_entries_read_as_student_roles(self) -> None:
        """An entry written before instructors holds the student role it names."""
        legacy = LedgerEntry(
            courseid=BSC, userid=7, roleid=STUDENT, status="active",
            event_id="e", state_version=1,
        )  # fmt: skip
        assert legacy.our_roles() == {"student": STUDENT}
        assert settle(legacy, Held(True, frozenset({STUDENT}))) == legacy

    def test_settle_keeps_the_roles_moodle_holds(self) -> None:
        """An uncertain two-role entry settles on the roles Moodle was read to hold."""
        intent = entry({"student": STUDENT, "instructor": EDITING}).model_copy(
            update={"uncertain": True}
        )
        settled = settle(intent, Held(True, frozenset({EDITING})))
        assert (settled.status, settled.our_roles()) == (
            "active",
            {"instructor": EDITING},
        )

    def test_a_role_read_back_and_wanted_again_is_ours_again(self) -> None:
        """A role change cut off, read back, then wanted again: the entry says ours.

        The late-write recheck puts back what the entry says: had it kept the
        student role as a leftover of the unfinished change, it would take the
        role away from a student PowerCampus enrols.
        """
        cut_off = entry({"instructor": EDITING}).model_copy(
            update={"uncertain": True, "previous_roles": {"student": STUDENT}}
        )
        both = Held(True, frozenset({STUDENT, EDITING}))
        settled = settle(cut_off, both)
        assert settled.leftover_roles() == {"student": STUDENT}
        desired = want({"student": STUDENT, "instructor": EDITING})
        assert plan_against(desired, 7, settled, both, policy=POLICY) is None
        decided = as_decided(settled, desired, both)
        assert decided.our_roles() == {"student": STUDENT, "instructor": EDITING}
        assert decided.leftover_roles() == {}
        # Moodle not holding a wanted role: nothing is claimed.
        partly = Held(True, frozenset({EDITING}))
        assert as_decided(settled, desired, partly) == settled
