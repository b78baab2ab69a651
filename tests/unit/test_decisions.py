"""The pure decisions: enrolled predicate, desired enrolments, planned Moodle actions."""

from __future__ import annotations

import zlib
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from consumers.decisions import (
    EnrolmentPolicy,
    Held,
    desired_enrolments,
    is_enrolled,
    next_ledger_entry,
    plan_action,
    plan_against,
    settle,
)
from consumers.mapping import MappingSet, load_mappings
from enrolstream.settings import ConsumerSettings, Settings
from enrolstream.wiring.common import policy as policy_of
from schemas.actions import (
    MOODLE_ACTION,
    ChangeRoleAction,
    CourseRef,
    DesiredEnrolment,
    EnrolAction,
    LedgerEntry,
    LedgerStatus,
    MoodleAction,
    ReactivateAction,
    RemoveRoleAction,
    RestoreRoleAction,
    SuspendAction,
    UnenrolAction,
)
from schemas.events import (
    EnrolmentEvent,
    Operation,
    Registration,
    SectionKey,
    TableChange,
    TermKey,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "data" / "mapping.example.json"
WINTER = TermKey(academic_year="2021", academic_term="Winter")
STUDENT, AUDIT = 5, 14
COUN, BSC = 4766, 4748
POLICY = EnrolmentPolicy(
    student_role_id=STUDENT,
    audit_role_id=AUDIT,
    audit_grade="AU",
    withdrawn_grades=frozenset({"W", "WA"}),
)
UNENROL_POLICY = EnrolmentPolicy(
    student_role_id=STUDENT,
    audit_role_id=AUDIT,
    audit_grade="AU",
    withdrawn_grades=frozenset({"W", "WA"}),
    drop_action="unenrol",
)
SUSPEND_POLICY = EnrolmentPolicy(
    student_role_id=STUDENT,
    audit_role_id=AUDIT,
    audit_grade="AU",
    withdrawn_grades=frozenset({"W", "WA"}),
    drop_action="suspend",
)


def sec(event_id: str, section: str = "02", sub_type: str = "LEC") -> SectionKey:
    """A 2021/Winter section."""
    return SectionKey(
        academic_year="2021",
        academic_term="Winter",
        academic_session="",
        event_id=event_id,
        event_sub_type=sub_type,
        section=section,
    )


C6552, C8552, C6552_01 = sec("COUN6552"), sec("COUN8552"), sec("COUN6552", "01")
B_LEC, B_LAB = sec("BSC5102", "01"), sec("BSC5102", "01", "LAB")


def reg(section: SectionKey, adw: str = "A", grade: str | None = None) -> Registration:
    """A registration; its TranscriptDetailId is derived from the section."""
    tdid = zlib.crc32(
        f"{section.event_id}|{section.section}|{section.event_sub_type}".encode()
    )
    return Registration(
        transcript_detail_id=tdid,
        section=section,
        add_drop_wait=adw,
        final_grade=grade,
    )


def event(
    registrations: list[Registration],
    changed: SectionKey | None,
    *,
    previous: SectionKey | None = None,
    operation: Operation = "update",
    term: TermKey = WINTER,
) -> EnrolmentEvent:
    """A change event (or a snapshot when ``changed`` is None) at version 10."""
    change = None
    if changed is not None:
        change = TableChange(
            table="TRANSCRIPTDETAIL",
            key=str(1),
            operation=operation,
            change_version=10,
            section=changed,
            previous_section=previous,
        )
    return EnrolmentEvent(
        event_id="e-10",
        kind="snapshot" if change is None else "change",
        source="test",
        people_code_id="P000074179",
        term=term,
        state_version=10,
        registrations=tuple(registrations),
        change=change,
        captured_at=datetime(2021, 1, 11, tzinfo=UTC),
    )


@pytest.fixture(name="mapping")
def _mapping() -> MappingSet:
    """The example mapping: COUN6552+COUN8552 section 02 → 4766, BSC5102 → 4748."""
    return load_mappings({"2021/Winter": EXAMPLE})


class TestEnrolmentPolicy:
    """The policy built from the consumer settings."""

    def test_from_settings_normalises_grades(self) -> None:
        """Settings become a policy with stripped, casefolded grades."""
        policy = policy_of(
            Settings(
                consumer=ConsumerSettings(
                    withdrawn_grades=(" W", "wa"), audit_grade="Au "
                )
            )
        )
        assert policy.withdrawn_grades == frozenset({"w", "wa"})
        assert policy.audit_grade == "au"
        assert (policy.student_role_id, policy.drop_action) == (5, "remove_role")

    def test_no_audit_grade_never_audits(self) -> None:
        """Without an audit grade nothing is an audit, not even an empty grade."""
        policy = EnrolmentPolicy(student_role_id=5, audit_role_id=14, audit_grade=None)
        assert not policy.is_audit(None)
        assert not policy.is_audit("")


class TestIsEnrolled:
    """The enrolled predicate."""

    @pytest.mark.parametrize(
        ("adw", "grade", "expected"),
        [
            ("A", None, True),
            ("A", "B+", True),
            ("A", "AU", True),
            ("a", None, True),
            ("A", "W", False),
            ("A", "wa ", False),
            ("A", " W", False),
            ("A", "WF", True),
            ("D", None, False),
            ("W", None, False),
            ("D", "W", False),
            ("X", None, False),
        ],
    )
    def test_is_enrolled(self, adw: str, grade: str | None, expected: bool) -> None:
        """Added without a withdrawn final grade is enrolled; anything else is not."""
        assert is_enrolled(reg(C6552, adw, grade), POLICY) is expected


Decision = tuple[int, bool, int]

DESIRED_CASES = [
    pytest.param([reg(C6552)], C6552, None, [(COUN, True, STUDENT)], id="add"),
    pytest.param([reg(C6552, "D")], C6552, None, [(COUN, False, STUDENT)], id="drop"),
    pytest.param(
        [reg(C6552, "D"), reg(C8552)], C6552, None, [(COUN, True, STUDENT)],
        id="swap-seen-from-the-drop",
    ),
    pytest.param(
        [reg(C6552, "D"), reg(C8552)], C8552, None, [(COUN, True, STUDENT)],
        id="swap-seen-from-the-add",
    ),
    pytest.param(
        [reg(C6552, "A", "W")], C6552, None, [(COUN, False, STUDENT)], id="withdrawn"
    ),
    pytest.param([reg(B_LEC, "A", "AU")], B_LEC, None, [(BSC, True, AUDIT)], id="audit"),
    pytest.param(
        [reg(B_LEC, "A", "au"), reg(B_LAB)], B_LEC, None, [(BSC, True, STUDENT)],
        id="audit-and-credit-is-student",
    ),
    pytest.param(
        [reg(B_LEC, "A", "AU"), reg(B_LAB, "D")], B_LAB, None, [(BSC, True, AUDIT)],
        id="audit-counts-enrolled-only",
    ),
    pytest.param([reg(B_LEC, "W")], B_LEC, None, [(BSC, False, STUDENT)], id="waitlist"),
    pytest.param([], B_LEC, None, [(BSC, False, STUDENT)], id="delete-last"),
    pytest.param(
        [reg(C8552)], C6552, None, [(COUN, True, STUDENT)], id="delete-one-cross-listed"
    ),
    pytest.param(
        [reg(C6552)], C6552, B_LEC, [(COUN, True, STUDENT), (BSC, False, STUDENT)],
        id="moved-section",
    ),
    pytest.param([reg(C6552_01)], C6552_01, None, [], id="unmapped-section"),
    pytest.param(
        [reg(sec("coun8552  ", "02 "))], sec("coun8552", "02"), None,
        [(COUN, True, STUDENT)], id="case-and-padding",
    ),
    pytest.param(
        [reg(C6552), reg(B_LEC, "D"), reg(C6552_01)], None, None,
        [(COUN, True, STUDENT), (BSC, False, STUDENT)], id="snapshot",
    ),
    pytest.param(
        [reg(C6552), reg(B_LEC)], C6552, None, [(COUN, True, STUDENT)],
        id="change-decides-its-courses-only",
    ),
]  # fmt: skip


class TestDesiredEnrolments:
    """Which Moodle courses an event re-decides, and what each should hold."""

    @pytest.mark.parametrize(
        ("registrations", "changed", "previous", "expected"), DESIRED_CASES
    )
    def test_desired(
        self,
        mapping: MappingSet,
        registrations: list[Registration],
        changed: SectionKey | None,
        previous: SectionKey | None,
        expected: list[Decision],
    ) -> None:
        """Active when any registration feeding the course is enrolled; role by grades."""
        desired = desired_enrolments(
            event(registrations, changed, previous=previous), mapping, POLICY
        )
        assert [(d.course.id, d.active, d.role_id) for d in desired] == expected
        assert all(d.people_code_id == "P000074179" for d in desired)
        assert all(d.term == WINTER for d in desired)

    def test_term_without_mapping(self, mapping: MappingSet) -> None:
        """An event of a term the mapping does not cover decides nothing."""
        fall = TermKey(academic_year="2021", academic_term="Fall")
        assert desired_enrolments(event([], C6552, term=fall), mapping, POLICY) == []

    def test_term_compared_case_insensitively(self, mapping: MappingSet) -> None:
        """An event whose term is spelt in another case still maps."""
        winter = TermKey(academic_year="2021", academic_term="WINTER")
        desired = desired_enrolments(
            event([reg(C6552)], C6552, term=winter), mapping, POLICY
        )
        assert [d.course.id for d in desired] == [COUN]

    @pytest.mark.parametrize(
        ("registrations", "changed", "reason"),
        [
            ([reg(C6552, "D"), reg(C8552)], C6552, "enrolled in COUN8552/02"),
            ([reg(B_LEC, "A", "AU")], B_LEC, "enrolled in BSC5102/01 (audit)"),
            ([reg(C6552, "D")], C6552, "not enrolled: COUN6552/02 dropped"),
            ([reg(C6552, "W")], C6552, "not enrolled: COUN6552/02 wait-listed"),
            ([reg(C6552, "A", "W ")], C6552, "not enrolled: COUN6552/02 withdrawn (W)"),
            ([], C6552, "no registration left in a mapped section"),
        ],
    )
    def test_reason(
        self,
        mapping: MappingSet,
        registrations: list[Registration],
        changed: SectionKey,
        reason: str,
    ) -> None:
        """The reason names the sections and their state in a few words."""
        (desired,) = desired_enrolments(event(registrations, changed), mapping, POLICY)
        assert desired.reason == reason


def desired(active: bool, role: int = STUDENT) -> DesiredEnrolment:
    """A decision for course 4766."""
    return DesiredEnrolment(
        course=CourseRef(id=COUN, shortname="COUN6552COUN855202Winter2021"),
        people_code_id="P000074179",
        term=WINTER,
        active=active,
        role_id=role,
        reason="test",
    )


def ledger(
    status: LedgerStatus,
    role: int = STUDENT,
    *,
    owned: bool = True,
    version: int = 5,
    uncertain: bool = False,
    previous_role: int | None = None,
) -> LedgerEntry:
    """The ledger entry of user 7 in course 4766."""
    return LedgerEntry(
        courseid=COUN,
        userid=7,
        roleid=role,
        status=status,
        event_id="e-earlier",
        state_version=version,
        owned=owned,
        uncertain=uncertain,
        previous_roleid=previous_role,
    )


def intent(
    status: LedgerStatus, role: int = STUDENT, previous_role: int | None = None
) -> LedgerEntry:
    """An intent written before a call whose answer was lost."""
    return ledger(status, role, uncertain=True, previous_role=previous_role)


def held(*roles: int, active: bool = True) -> Held:
    """What Moodle was read to hold for user 7 in course 4766."""
    return Held(active=active, roleids=frozenset(roles))


ENROL = EnrolAction(courseid=COUN, userid=7, roleid=STUDENT)
SUSPEND = SuspendAction(courseid=COUN, userid=7, roleid=STUDENT)
UNENROL = UnenrolAction(courseid=COUN, userid=7)
REMOVE = RemoveRoleAction(courseid=COUN, userid=7, roleid=STUDENT)
RESTORE = RestoreRoleAction(courseid=COUN, userid=7, roleid=STUDENT)
REACTIVATE = ReactivateAction(courseid=COUN, userid=7, roleid=STUDENT)
RESTORE_AUDIT = RestoreRoleAction(courseid=COUN, userid=7, roleid=AUDIT)
ENROL_AUDIT = EnrolAction(courseid=COUN, userid=7, roleid=AUDIT)
TO_AUDIT = ChangeRoleAction(
    courseid=COUN, userid=7, roleid=AUDIT, previous_roleid=STUDENT
)

PLAN_CASES = [
    (desired(True), None, POLICY, ENROL),
    (desired(True), ledger("active"), POLICY, None),
    (desired(True, AUDIT), ledger("active"), POLICY, TO_AUDIT),
    (desired(True), ledger("suspended"), POLICY, REACTIVATE),
    (desired(True), ledger("role_removed"), POLICY, RESTORE),
    (desired(True, AUDIT), ledger("role_removed"), POLICY, RESTORE_AUDIT),
    (desired(True), ledger("unenrolled"), UNENROL_POLICY, ENROL),
    (desired(True), ledger("unenrolled", owned=False), POLICY, ENROL),
    (desired(True), ledger("active", owned=False), POLICY, None),
    (desired(False), None, POLICY, None),
    (desired(False), None, UNENROL_POLICY, None),
    (desired(False), ledger("active"), POLICY, REMOVE),
    (desired(False), ledger("active"), SUSPEND_POLICY, SUSPEND),
    (desired(False), ledger("active"), UNENROL_POLICY, UNENROL),
    (desired(False), ledger("active", AUDIT), POLICY, REMOVE.model_copy(update={"roleid": AUDIT})),
    (desired(False), ledger("active", owned=False), POLICY, None),
    (desired(False), ledger("active", owned=False), UNENROL_POLICY, None),
    (desired(False), ledger("suspended"), POLICY, None),
    (desired(False), ledger("suspended"), UNENROL_POLICY, None),
    (desired(False), ledger("role_removed"), POLICY, None),
    (desired(False), ledger("role_removed"), UNENROL_POLICY, None),
    (desired(False), ledger("role_removed"), SUSPEND_POLICY, None),
    (desired(False), ledger("unenrolled"), POLICY, None),
    (desired(False), ledger("active", version=11), POLICY, None),
    (desired(True, AUDIT), ledger("active", version=11), POLICY, None),
    (desired(True), ledger("suspended", version=11), POLICY, None),
    (desired(False), ledger("active", version=10), POLICY, REMOVE),
]  # fmt: skip


class TestPlanAction:
    """The one Moodle call per (course, user), given the ownership ledger."""

    @pytest.mark.parametrize(("want", "entry", "policy", "expected"), PLAN_CASES)
    def test_plan(
        self,
        want: DesiredEnrolment,
        entry: LedgerEntry | None,
        policy: EnrolmentPolicy,
        expected: MoodleAction | None,
    ) -> None:
        """Enrol what should be active, drop only what we own, skip stale events."""
        assert plan_action(want, 7, entry, state_version=10, policy=policy) == expected

    def test_ledger_of_another_pair_is_refused(self) -> None:
        """A ledger entry for another (course, user) is a caller bug, not a decision."""
        with pytest.raises(ValueError, match="not \\(4766, 8\\)"):
            plan_action(
                desired(True), 8, ledger("active"), state_version=10, policy=POLICY
            )

    @pytest.mark.parametrize(
        "entry", [intent("active"), intent("role_removed"), ledger("pending")]
    )
    def test_uncertain_entry_is_never_trusted(self, entry: LedgerEntry) -> None:
        """An entry whose call's outcome is unknown (or a legacy pending) is refused."""
        for want in (desired(True), desired(False)):
            with pytest.raises(ValueError, match="uncertain"):
                plan_action(want, 7, entry, state_version=10, policy=POLICY)

    def test_stale_uncertain_entry_plans_nothing(self) -> None:
        """An older event than an uncertain entry is stale all the same."""
        entry = ledger("active", uncertain=True, version=11)
        assert (
            plan_action(desired(False), 7, entry, state_version=10, policy=POLICY)
            is None
        )


AGAINST_CASES = [
    # An enrol whose reply was lost: it landed, or it did not.
    (desired(True), intent("active"), None, ENROL),
    (desired(True), intent("active"), held(STUDENT), None),
    # Added then dropped during an outage: a drop never creates an enrolment.
    (desired(False), intent("active"), None, None),
    (desired(False), intent("active"), held(STUDENT), REMOVE),
    # A drop whose reply was lost, then re-added: in step, or the role back.
    (desired(True), intent("role_removed"), held(STUDENT), None),
    (desired(True), intent("role_removed"), held(), RESTORE),
    (desired(False), intent("role_removed"), held(STUDENT), REMOVE),
    (desired(False), intent("role_removed"), held(), None),
    # A restore whose reply was lost, then dropped again.
    (desired(False), intent("active"), held(), None),
    # A role change half done (new role assigned, old not yet removed).
    (desired(True, AUDIT), intent("active", AUDIT, STUDENT), held(STUDENT), TO_AUDIT),
    (desired(True, AUDIT), intent("active", AUDIT, STUDENT), held(STUDENT, AUDIT), TO_AUDIT),
    (desired(True, AUDIT), intent("active", AUDIT, STUDENT), held(AUDIT), None),
    # Reactivation of a suspended enrolment of ours.
    (desired(True), ledger("suspended"), held(STUDENT, active=False), REACTIVATE),
    # Teachers' roles beside ours are untouched; not ours is never changed.
    (desired(True), ledger("active"), held(3, STUDENT), None),
    (desired(False), ledger("active"), held(3), None),
    (desired(True), None, held(STUDENT, active=False), None),
    (desired(True), ledger("active", owned=False), held(3), None),
    (desired(False), None, held(STUDENT), None),
]  # fmt: skip


class TestPlanAgainst:
    """Deciding from what Moodle was read to hold (after an unknown outcome, reconcile)."""

    @pytest.mark.parametrize(("want", "entry", "moodle", "expected"), AGAINST_CASES)
    def test_plan(
        self,
        want: DesiredEnrolment,
        entry: LedgerEntry | None,
        moodle: Held | None,
        expected: MoodleAction | None,
    ) -> None:
        """The change is what brings Moodle to PowerCampus, for ours only."""
        settled = settle(entry, moodle) if entry is not None else None
        assert plan_against(want, 7, settled, moodle, policy=POLICY) == expected


class TestSettle:
    """An uncertain entry settled on what Moodle holds."""

    def test_a_lost_assignment_is_remembered_until_the_recheck(self) -> None:
        """The role a lost call would assign is kept as a late role, with the recheck time."""
        settled = settle(intent("active", AUDIT), None, recheck_at_ms=1_000)
        assert (settled.status, settled.late_roleids) == ("unenrolled", (AUDIT,))
        assert settled.recheck_at_ms == 1_000
        later = next_ledger_entry(
            ENROL, settled, desired=desired(True), event_id="e", state_version=11
        )
        assert (later.late_roleids, later.recheck_at_ms) == ((AUDIT,), 1_000)
        # the late assignment landing is taken away again by the next decision
        assert plan_against(
            desired(True), 7, later, held(STUDENT, AUDIT), policy=POLICY
        ) == (
            ChangeRoleAction(
                courseid=COUN, userid=7, roleid=STUDENT, previous_roleid=AUDIT
            )
        )

    @pytest.mark.parametrize(
        ("entry", "moodle", "status", "previous"),
        [
            (intent("active"), None, "unenrolled", None),
            (intent("active"), held(STUDENT), "active", None),
            (intent("active"), held(STUDENT, active=False), "suspended", None),
            (intent("role_removed"), held(), "role_removed", None),
            (intent("role_removed"), held(STUDENT), "active", None),
            (intent("active", AUDIT, STUDENT), held(STUDENT), "role_removed", STUDENT),
            (intent("active", AUDIT, STUDENT), held(AUDIT), "active", None),
            (ledger("pending"), held(STUDENT), "active", None),
        ],
    )  # fmt: skip
    def test_settle(
        self,
        entry: LedgerEntry,
        moodle: Held | None,
        status: LedgerStatus,
        previous: int | None,
    ) -> None:
        """The status is Moodle's, the entry certain, ownership and version kept."""
        settled = settle(entry, moodle)
        assert (settled.status, settled.previous_roleid) == (status, previous)
        assert not settled.uncertain
        assert (settled.owned, settled.state_version) == (True, entry.state_version)


class TestNextLedgerEntry:
    """The ledger entry written after an action is applied."""

    @pytest.mark.parametrize(
        ("action", "previous", "want", "status", "role"),
        [
            (ENROL, None, desired(True), "active", STUDENT),
            (ENROL_AUDIT, ledger("active"), desired(True, AUDIT), "active", AUDIT),
            (SUSPEND, ledger("active"), desired(False), "suspended", STUDENT),
            (UNENROL, ledger("active", AUDIT), desired(False), "unenrolled", AUDIT),
            (REMOVE, ledger("active"), desired(False), "role_removed", STUDENT),
            (RESTORE, ledger("role_removed"), desired(True), "active", STUDENT),
            (REACTIVATE, ledger("suspended"), desired(True), "active", STUDENT),
            (TO_AUDIT, ledger("active"), desired(True, AUDIT), "active", AUDIT),
        ],
    )  # fmt: skip
    def test_next(
        self,
        action: MoodleAction,
        previous: LedgerEntry | None,
        want: DesiredEnrolment,
        status: LedgerStatus,
        role: int,
    ) -> None:
        """The entry records the new status, the role, the event and its version."""
        entry = next_ledger_entry(
            action, previous, desired=want, event_id="e-10", state_version=10
        )
        assert (entry.status, entry.roleid, entry.owned) == (status, role, True)
        assert (entry.courseid, entry.userid) == (COUN, 7)
        assert (entry.event_id, entry.state_version) == ("e-10", 10)

    def test_intent_is_uncertain_and_remembers_the_old_role(self) -> None:
        """Before the call: the intended state, uncertain, with the role it replaces."""
        want = desired(True, AUDIT)
        entry = next_ledger_entry(
            TO_AUDIT,
            ledger("active"),
            desired=want,
            event_id="e",
            state_version=10,
            uncertain=True,
        )
        assert (entry.status, entry.roleid, entry.uncertain) == ("active", AUDIT, True)
        assert entry.previous_roleid == STUDENT
        done = next_ledger_entry(
            TO_AUDIT, ledger("active"), desired=want, event_id="e", state_version=10
        )
        assert (done.uncertain, done.previous_roleid) == (False, None)

    def test_unenrol_needs_a_previous_entry(self) -> None:
        """An unenrol is never planned without a ledger entry, so none is invented."""
        with pytest.raises(ValueError, match="existing ledger entry"):
            next_ledger_entry(
                UNENROL, None, desired=desired(False), event_id="e", state_version=1
            )


class TestMoodleActionUnion:
    """The action models."""

    @pytest.mark.parametrize(
        "action", [ENROL, SUSPEND, UNENROL, REMOVE, RESTORE, REACTIVATE, TO_AUDIT]
    )
    def test_round_trip_by_kind(self, action: MoodleAction) -> None:
        """An action serialised to JSON parses back to the same member of the union."""
        assert MOODLE_ACTION.validate_json(action.model_dump_json()) == action

    def test_frozen_and_closed(self) -> None:
        """Actions cannot be changed, and unknown fields or kinds are refused."""
        with pytest.raises(ValidationError):
            ENROL.roleid = 3  # type: ignore[misc]
        with pytest.raises(ValidationError):
            MOODLE_ACTION.validate_python(
                {"kind": "enrol", "courseid": 1, "userid": 2, "roleid": 5, "groupid": 1}
            )
        with pytest.raises(ValidationError):
            MOODLE_ACTION.validate_python(
                {"kind": "delete", "courseid": 1, "userid": 2}
            )
