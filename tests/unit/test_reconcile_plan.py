"""The reconcile planner and its mass-drop guard, pure: every rule as a table row."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from consumers.decisions import EnrolmentPolicy
from consumers.identity import Ambiguous, Found, Missing, Resolution
from consumers.mapping import MappingEntry, MappingSet, MoodleCourse
from consumers.ports import RosterEntry
from consumers.reconcile.guard import GuardLimits
from consumers.reconcile.plan import ReconcilePlan, plan_reconcile
from schemas.actions import (
    EnrolAction,
    LedgerEntry,
    ReactivateAction,
    RemoveRoleAction,
    SuspendAction,
    UnenrolAction,
)
from schemas.events import EnrolmentEvent, Registration, SectionKey, TermKey

WINTER = TermKey(academic_year="2021", academic_term="Winter")
FALL = TermKey(academic_year="2021", academic_term="Fall")
STUDENT, AUDIT, TEACHER = 5, 14, 3
COURSE, FALL_COURSE = 101, 201
USER = 501
PERSON = "P000000501"
POLICY = EnrolmentPolicy(
    student_role_id=STUDENT,
    audit_role_id=AUDIT,
    audit_grade="AU",
    withdrawn_grades=frozenset({"W"}),
)
UNENROL = EnrolmentPolicy(
    student_role_id=STUDENT, audit_role_id=AUDIT, drop_action="unenrol"
)
SUSPEND = EnrolmentPolicy(
    student_role_id=STUDENT, audit_role_id=AUDIT, drop_action="suspend"
)
OPEN = GuardLimits(per_course=1.0, overall=1.0)
VERSION = 100


def _mapping() -> MappingSet:
    entries = [
        MappingEntry(
            MoodleCourse(COURSE, "BSC5102Winter2021", WINTER),
            ("BSC5102",),
            None,
            Path("m.json"),
        ),
        MappingEntry(
            MoodleCourse(FALL_COURSE, "BSC5102Fall2021", FALL),
            ("BSC5102",),
            None,
            Path("f.json"),
        ),
    ]
    return MappingSet([WINTER, FALL], entries)


MAPPING = _mapping()


def _event(person: str, state: str, *, term: TermKey = WINTER) -> EnrolmentEvent:
    adw, grade = {
        "enrolled": ("A", None),
        "audit": ("A", "AU"),
        "dropped": ("D", None),
        "withdrawn": ("A", "W"),
    }[state]
    section = SectionKey(
        academic_year=term.academic_year,
        academic_term=term.academic_term,
        academic_session="01",
        event_id="BSC5102",
        event_sub_type="LEC",
        section="01",
    )
    return EnrolmentEvent(
        event_id=f"ev-{person}",
        kind="snapshot",
        source="pc",
        people_code_id=person,
        term=term,
        state_version=VERSION,
        registrations=(
            Registration(
                transcript_detail_id=1,
                section=section,
                add_drop_wait=adw,
                final_grade=grade,
            ),
        ),
        snapshot_id="snap",
        captured_at=datetime(2021, 2, 1, tzinfo=UTC),
    )


def _ledger(
    status: str, role: int = STUDENT, *, owned: bool = True, version: int = 90
) -> LedgerEntry:
    return LedgerEntry.model_validate(
        {
            "courseid": COURSE,
            "userid": USER,
            "roleid": role,
            "status": status,
            "event_id": "old",
            "state_version": version,
            "owned": owned,
        }
    )


def _roster(status: str, *roles: int) -> RosterEntry:
    return RosterEntry(
        userid=USER,
        idnumber="000000501",
        username="u501",
        roleids=frozenset(roles),
        status="active" if status == "active" else "inactive",
    )


def _plan(
    pc: str | None,
    ledger: LedgerEntry | None,
    roster: RosterEntry | None,
    *,
    policy: EnrolmentPolicy = POLICY,
    limits: GuardLimits = OPEN,
    identity: Resolution | None = None,
) -> ReconcilePlan:
    events = [] if pc is None else [_event(PERSON, pc)]
    # A second, in-step student keeps the term from looking like an empty source.
    events.append(_event("P000000999", "dropped"))
    return plan_reconcile(
        snapshot_id="snap",
        state_version=VERSION,
        terms=[WINTER],
        events=events,
        mapping=MAPPING,
        policy=policy,
        identities={PERSON: identity or Found(USER), "P000000999": Found(999)},
        rosters={COURSE: {} if roster is None else {USER: roster}},
        ledger=[] if ledger is None else [ledger],
        limits=limits,
    )


@dataclass(frozen=True)
class Case:
    pc: str | None
    ledger: LedgerEntry | None
    roster: RosterEntry | None
    kind: str | None
    role: int | None = None
    unowned: bool = False


RULES = {
    "missed while the consumer was down": Case(
        "enrolled", None, None, "enrol", STUDENT
    ),
    "unenrolled by hand, ledger active": Case(
        "enrolled", _ledger("active"), None, "enrol", STUDENT
    ),
    "suspended by hand, ledger active": Case(
        "enrolled",
        _ledger("active"),
        _roster("inactive", STUDENT),
        "reactivate",
        STUDENT,
    ),
    "suspended by us, enrolled again": Case(
        "enrolled",
        _ledger("suspended"),
        _roster("inactive", STUDENT),
        "reactivate",
        STUDENT,
    ),
    "role changed by hand": Case(
        "enrolled",
        _ledger("active"),
        _roster("active", TEACHER),
        "restore_role",
        STUDENT,
    ),
    "audit role wanted, student held": Case(
        "audit", _ledger("active"), _roster("active", STUDENT), "change_role", AUDIT
    ),
    "dropped by us (role removed), enrolled again": Case(
        "enrolled", _ledger("role_removed"), _roster("active"), "restore_role", STUDENT
    ),
    "dropped by us (role removed), still dropped": Case(
        "dropped", _ledger("role_removed"), _roster("active"), None
    ),
    "an enrol whose answer was lost, landed": Case(
        "enrolled", _ledger("pending"), _roster("active", STUDENT), None
    ),
    "an enrol whose answer was lost, dropped since": Case(
        "dropped", _ledger("pending"), None, None
    ),
    "in step": Case("enrolled", _ledger("active"), _roster("active", STUDENT), None),
    "in step and not ours": Case("enrolled", None, _roster("active", STUDENT), None),
    "not ours, suspended, PC enrolled": Case(
        "enrolled", None, _roster("inactive", STUDENT), None, unowned=True
    ),
    "not ours, other role": Case(
        "enrolled", None, _roster("active", TEACHER), None, unowned=True
    ),
    "owned, dropped in PC": Case(
        "dropped", _ledger("active"), _roster("active", STUDENT), "remove_role", STUDENT
    ),
    "owned, withdrawn grade": Case(
        "withdrawn",
        _ledger("active"),
        _roster("active", STUDENT),
        "remove_role",
        STUDENT,
    ),
    "owned, person absent from snapshot": Case(
        None, _ledger("active"), _roster("active", STUDENT), "remove_role", STUDENT
    ),
    "owned, reactivated by hand, still dropped": Case(
        "dropped",
        _ledger("suspended"),
        _roster("active", STUDENT),
        "remove_role",
        STUDENT,
    ),
    "owned, already suspended": Case(
        "dropped", _ledger("suspended"), _roster("inactive", STUDENT), None
    ),
    "owned, already gone from Moodle": Case("dropped", _ledger("active"), None, None),
    "hand-made, no PC record, not ours": Case(
        None, None, _roster("active", STUDENT), None, unowned=True
    ),
    "ledger says not owned (teacher's)": Case(
        "dropped",
        _ledger("active", owned=False),
        _roster("active", STUDENT),
        None,
        unowned=True,
    ),
    "we unenrolled, re-made by hand": Case(
        "dropped", _ledger("unenrolled"), _roster("active", STUDENT), None, unowned=True
    ),
    "ledger newer than snapshot": Case(
        "dropped", _ledger("active", version=200), _roster("active", STUDENT), None
    ),
    "dropped and never in Moodle": Case("dropped", None, None, None),
}


class TestPlanReconcile:
    """Each (PowerCampus, ledger, roster) combination plans the documented change."""

    @pytest.mark.parametrize("case", RULES.values(), ids=RULES.keys())
    def test_rule(self, case: Case) -> None:
        """The table row's change (or none, or an unowned difference) is planned."""
        plan = _plan(case.pc, case.ledger, case.roster)
        kinds = [(c.kind, c.roleid) for c in plan.changes]
        assert kinds == ([] if case.kind is None else [(case.kind, case.role)])
        assert bool(plan.unowned) is case.unowned

    def test_drop_action_unenrol(self) -> None:
        """With drop_action=unenrol an owned drop is an UnenrolAction."""
        plan = _plan(
            "dropped", _ledger("active"), _roster("active", STUDENT), policy=UNENROL
        )
        assert [c.action for c in plan.changes] == [
            UnenrolAction(courseid=COURSE, userid=USER)
        ]

    def test_actions_are_the_consumers(self) -> None:
        """The changes are the consumer's own actions, per the drop policy."""
        enrol = _plan("enrolled", None, None)
        back = _plan("enrolled", _ledger("active"), _roster("inactive", STUDENT))
        drop = _plan("dropped", _ledger("active"), _roster("active", STUDENT))
        suspend = _plan(
            "dropped", _ledger("active"), _roster("active", STUDENT), policy=SUSPEND
        )
        pair = {"courseid": COURSE, "userid": USER}
        assert enrol.changes[0].action == EnrolAction(**pair, roleid=STUDENT)
        assert back.changes[0].action == ReactivateAction(**pair, roleid=STUDENT)
        assert drop.changes[0].action == RemoveRoleAction(**pair, roleid=STUDENT)
        assert suspend.changes[0].action == SuspendAction(**pair, roleid=STUDENT)

    @pytest.mark.parametrize(
        "identity", [Missing("no user"), Ambiguous((1, 2), "two users")]
    )
    def test_unresolved_person_listed_not_acted_on(self, identity: Resolution) -> None:
        """A person without exactly one Moodle account is listed with the reason."""
        plan = _plan("enrolled", None, None, identity=identity)
        assert plan.changes == []
        assert [(u.people_code_id, u.courses) for u in plan.unresolved] == [
            (PERSON, ("BSC5102Winter2021",))
        ]

    def test_other_terms_are_not_decided(self) -> None:
        """A Winter snapshot leaves the Fall course alone, even owned enrolments."""
        fall_entry = _ledger("active").model_copy(update={"courseid": FALL_COURSE})
        plan = plan_reconcile(
            snapshot_id="snap",
            state_version=VERSION,
            terms=[WINTER],
            events=[_event(PERSON, "enrolled")],
            mapping=MAPPING,
            policy=POLICY,
            identities={PERSON: Found(USER)},
            rosters={
                COURSE: {USER: _roster("active", STUDENT)},
                FALL_COURSE: {USER: _roster("active", STUDENT)},
            },
            ledger=[fall_entry],
            limits=OPEN,
        )
        assert plan.changes == []
        assert set(plan.counts) == {COURSE}

    def test_missing_roster_is_listed(self) -> None:
        """A course whose roster was not read is not decided, and is listed."""
        plan = plan_reconcile(
            snapshot_id="snap",
            state_version=VERSION,
            terms=[WINTER],
            events=[_event(PERSON, "enrolled")],
            mapping=MAPPING,
            policy=POLICY,
            identities={PERSON: Found(USER)},
            rosters={},
            ledger=[],
            limits=OPEN,
        )
        assert [c.id for c in plan.missing_rosters] == [COURSE]
        assert plan.changes == []

    def test_reason_says_what_happened(self) -> None:
        """The reason names the drift (hand unenrol) and PowerCampus's view."""
        plan = _plan("enrolled", _ledger("active"), None)
        assert plan.changes[0].reason.startswith("unenrolled by hand in Moodle")
        assert "BSC5102/01" in plan.changes[0].reason


OTHER_ACCOUNT = 502


def _plan_unresolved(
    pc: str,
    identity: Resolution | None,
    roster: dict[int, RosterEntry],
    *,
    owned: tuple[int, ...] = (USER,),
    policy: EnrolmentPolicy = POLICY,
    person: str = PERSON,
) -> ReconcilePlan:
    """A plan where ``person`` is unresolved (``identity`` None: not looked up)."""
    identities: dict[str, Resolution] = {"P000000999": Found(999)}
    if identity is not None:
        identities[person] = identity
    return plan_reconcile(
        snapshot_id="snap",
        state_version=VERSION,
        terms=[WINTER],
        events=[_event(person, pc), _event("P000000999", "dropped")],
        mapping=MAPPING,
        policy=policy,
        identities=identities,
        rosters={COURSE: roster},
        ledger=[_ledger("active").model_copy(update={"userid": u}) for u in owned],
        limits=OPEN,
    )


def _held(userid: int, idnumber: str, status: str = "active") -> RosterEntry:
    return RosterEntry(
        userid=userid,
        idnumber=idnumber,
        username=f"u{userid}",
        roleids=frozenset({STUDENT}),
        status="active" if status == "active" else "inactive",
    )


UNRESOLVED: dict[str, Resolution | None] = {
    "missing": Missing("no Moodle user has idnumber='000000501'"),
    "ambiguous": Ambiguous((USER, OTHER_ACCOUNT), "2 Moodle users share idnumber"),
    "not looked up": None,
}


class TestUnresolvedPersonsKeepTheirEnrolments:
    """An unresolved person's owned enrolments are never dropped; they are listed."""

    @pytest.mark.parametrize("policy", [POLICY, UNENROL], ids=["suspend", "unenrol"])
    @pytest.mark.parametrize("pc", ["enrolled", "dropped"])
    @pytest.mark.parametrize(
        "identity", UNRESOLVED.values(), ids=list(UNRESOLVED.keys())
    )
    def test_owned_enrolment_kept(
        self, identity: Resolution | None, pc: str, policy: EnrolmentPolicy
    ) -> None:
        """The roster entry carrying the person's id is not dropped, and is named."""
        plan = _plan_unresolved(
            pc, identity, {USER: _held(USER, "000000501")}, policy=policy
        )
        assert plan.changes == []
        assert plan.unowned == []
        (person,) = plan.unresolved
        assert person.people_code_id == PERSON
        assert f"not dropped (may be theirs): BSC5102Winter2021 (user {USER})" in (
            person.reason
        )
        assert person.courses == (("BSC5102Winter2021",) if pc == "enrolled" else ())
        assert plan.counts[COURSE].owned_active == 1

    def test_every_ambiguous_account_kept(self) -> None:
        """Each account of an Ambiguous person is kept, whatever idnumber it holds now."""
        roster = {
            USER: _held(USER, "changed-by-hand"),
            OTHER_ACCOUNT: _held(OTHER_ACCOUNT, "000000501"),
        }
        plan = _plan_unresolved(
            "enrolled",
            UNRESOLVED["ambiguous"],
            roster,
            owned=(USER, OTHER_ACCOUNT),
        )
        assert plan.changes == []
        (person,) = plan.unresolved
        assert person.reason.endswith(
            f"(user {USER}), BSC5102Winter2021 (user {OTHER_ACCOUNT})"
        )
        assert not plan.guard.tripped

    def test_hand_made_enrolment_not_reported_as_absent(self) -> None:
        """A Moodle-only enrolment of theirs is kept without an "absent" difference."""
        plan = _plan_unresolved(
            "enrolled",
            UNRESOLVED["missing"],
            {USER: _held(USER, "000000501")},
            owned=(),
        )
        assert plan.changes == []
        assert plan.unowned == []
        assert "not dropped" in plan.unresolved[0].reason

    def test_other_users_still_dropped(self) -> None:
        """Only accounts that may be the unresolved person's are spared."""
        plan = _plan_unresolved(
            "enrolled",
            Missing("no user"),
            {USER: _held(USER, "000000501")},
            person="P000000777",
        )
        assert [(c.kind, c.userid) for c in plan.changes] == [("remove_role", USER)]
        (person,) = plan.unresolved
        assert person.people_code_id == "P000000777"
        assert "not dropped" not in person.reason

    def test_suspended_enrolment_needs_no_note(self) -> None:
        """An enrolment Moodle already holds inactive is in step, not named."""
        plan = _plan_unresolved(
            "enrolled",
            UNRESOLVED["missing"],
            {USER: _held(USER, "000000501", status="inactive")},
        )
        assert plan.changes == []
        assert "not dropped" not in plan.unresolved[0].reason

    def test_matched_on_the_resolver_field(self) -> None:
        """With user_field=username the roster's username is what is compared."""
        held = RosterEntry(
            userid=USER,
            idnumber="",
            username="p000000501",
            roleids=frozenset({STUDENT}),
            status="active",
        )
        plan = plan_reconcile(
            snapshot_id="snap",
            state_version=VERSION,
            terms=[WINTER],
            events=[_event(PERSON, "dropped"), _event("P000000999", "dropped")],
            mapping=MAPPING,
            policy=POLICY,
            identities={PERSON: Missing("no user"), "P000000999": Found(999)},
            rosters={COURSE: {USER: held}},
            ledger=[_ledger("active")],
            limits=OPEN,
            transform="lower",
            user_field="username",
        )
        assert plan.changes == []
        assert "not dropped" in plan.unresolved[0].reason


def _owned_course(
    students: int, dropped: int, *, limits: GuardLimits, empty: bool = False
) -> ReconcilePlan:
    users = range(1, students + 1)
    events = (
        []
        if empty
        else [
            _event(f"P{u:09d}", "dropped" if u <= dropped else "enrolled")
            for u in users
        ]
    )
    return plan_reconcile(
        snapshot_id="snap",
        state_version=VERSION,
        terms=[WINTER],
        events=events,
        mapping=MAPPING,
        policy=POLICY,
        identities={f"P{u:09d}": Found(u) for u in users},
        rosters={COURSE: {u: _roster("active", STUDENT) for u in users}},
        ledger=[_ledger("active").model_copy(update={"userid": u}) for u in users],
        limits=limits,
    )


class TestGuard:
    """The mass-drop guard trips on shares above the limits and on empty terms."""

    @pytest.mark.parametrize(
        ("students", "dropped", "per_course", "overall", "scopes"),
        [
            (10, 3, 0.3, 1.0, []),
            (10, 4, 0.3, 1.0, ["course"]),
            (10, 1, 1.0, 0.05, ["overall"]),
            (10, 5, 0.3, 0.05, ["course", "overall"]),
            (10, 0, 0.0, 0.0, []),
        ],
    )
    def test_shares(
        self,
        students: int,
        dropped: int,
        per_course: float,
        overall: float,
        scopes: list[str],
    ) -> None:
        """Trips are listed by scope exactly when drops exceed the share."""
        plan = _owned_course(students, dropped, limits=GuardLimits(per_course, overall))
        assert [t.scope for t in plan.guard.trips] == scopes
        assert plan.guard.drops == dropped
        assert plan.guard.owned_active == students
        assert plan.guard.blocks(force=False) is bool(scopes)
        assert plan.guard.blocks(force=True) is False

    def test_empty_source_cannot_be_forced(self) -> None:
        """A term with no snapshot event at all trips a guard force cannot override."""
        plan = _owned_course(10, 0, limits=OPEN, empty=True)
        assert [t.scope for t in plan.guard.trips] == ["empty_term"]
        assert plan.guard.blocks(force=True) is True
        assert "not overridable" in plan.guard.trips[0].describe()
