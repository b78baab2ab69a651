"""The consumer's decisions, pure: an event and the ledger in, Moodle actions out.

Two steps, no I/O, clock or logging (STYLE rule 1):

1. ``desired_enrolments(event, mapping, policy)``: what PowerCampus says each
   affected Moodle course should hold for the person. A change event re-decides
   the courses its row's section (and ``previous_section``) feed; a snapshot
   re-decides every course any registration feeds. The person is active in a
   course when ANY registration feeding it is enrolled, so cross-listed courses
   merged into one Moodle course survive a swap (COUN6552/02 → COUN8552/02 in one
   transaction): both events carry the final state, so neither suspends.
2. ``plan_action(desired, userid, ledger, ...)``: at most one call to Moodle,
   given what the ownership ledger says we last did for that (course, user).

Policy choices, open to review:

* Enrolled = ``ADD_DROP_WAIT = 'A'`` and FINAL_GRADE not a withdrawn grade
  (case-insensitive, stripped). ``W`` (wait-listed) and ``D`` are not enrolled.
  ACADEMIC.ENROLL_SEPARATION (term withdrawal) is not in the event contract, so
  it is not part of the predicate yet; MID_GRADE is ignored.
* Role: the audit role when every enrolled registration feeding the course
  carries the audit grade, else the student role. With no enrolled
  registration the desired role is the student role (nothing to hold).
* Drops never send "Welcome to <course>". Moodle 5.1 fires the enrolment hook
  (and the manual instance's welcome message) on EVERY enrol_manual_enrol_users
  call, updates included, so a drop is never sent through it. ``drop_action``:
  ``remove_role`` (default, web services only): the enrolment stays, our role
  is taken away with ``core_role_unassign_roles`` and given back with
  ``core_role_assign_roles`` (no hook fires); ``suspend``: the enrolment's status
  changes through the companion plugin's function (see the README), never
  through enrol_users; ``unenrol``: removed (destructive).
* Role change: the new role is assigned and the one we assigned before taken
  away (``ChangeRoleAction``), so exactly one role of ours remains.
* Ownership: with no ledger entry the enrolment is not ours (e.g. a teacher's
  manual enrolment) and is never dropped. Enrolling someone with no ledger
  entry is done, and the entry written then makes it ours, even if a teacher
  had enrolled the same person by hand before (the consumer cannot see that;
  the reconcile, which reads Moodle, leaves such an enrolment alone).
* Already as desired (ledger active with that role) → no call: re-enrolling
  sends Moodle's welcome message again (golden case ``enrol_welcome_twice``).
* A dropped enrolment (suspended, role removed, unenrolled) stays as it is when
  drops continue, even if ``drop_action`` changed in between.
* Unknown outcomes: a call whose answer was lost leaves its ledger entry
  ``uncertain``; such an entry is never trusted (``plan_action`` refuses it):
  the caller reads what Moodle holds and decides with ``plan_against``.
* Stale: an event whose state_version is older than the ledger entry's is a
  replay after newer state was applied; it plans nothing.
* Events for a term without a mapping plan nothing; the caller logs them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from schemas.actions import (
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
from schemas.collation import collate

if TYPE_CHECKING:
    from collections.abc import Sequence

    from consumers.mapping import MappingSet, MoodleCourse
    from schemas.events import EnrolmentEvent, Registration, SectionKey

DropAction = Literal["remove_role", "suspend", "unenrol"]


def _grade(value: str | None) -> str:
    # Grades come from settings (typed by people: blanks around them dropped) and
    # from PowerCampus (compared under its collation).
    return collate((value or "").strip())


@dataclass(frozen=True, slots=True)
class EnrolmentPolicy:
    """The decision settings; grades are stripped and casefolded on creation."""

    student_role_id: int
    audit_role_id: int
    audit_grade: str | None = None
    withdrawn_grades: frozenset[str] = field(default_factory=frozenset)
    drop_action: DropAction = "remove_role"

    def __post_init__(self) -> None:
        """Normalise grades so comparisons follow the PowerCampus collation."""
        audit = _grade(self.audit_grade) or None
        object.__setattr__(self, "audit_grade", audit)
        withdrawn = frozenset(_grade(g) for g in self.withdrawn_grades) - {""}
        object.__setattr__(self, "withdrawn_grades", withdrawn)

    def is_withdrawn(self, grade: str | None) -> bool:
        """Whether ``grade`` is one of the withdrawn grades."""
        return _grade(grade) in self.withdrawn_grades

    def is_audit(self, grade: str | None) -> bool:
        """Whether ``grade`` is the audit grade (never, when none is configured)."""
        return self.audit_grade is not None and _grade(grade) == self.audit_grade


def _status_code(registration: Registration) -> str:
    """ADD_DROP_WAIT as PowerCampus's collation compares it, in its documented case."""
    return collate(registration.add_drop_wait.strip()).upper()


#: The ADD_DROP_WAIT values PowerCampus documents; any other is not enrolled.
KNOWN_STATUSES = frozenset({"A", "D", "W"})


def unknown_statuses(event: EnrolmentEvent) -> list[str]:
    """ADD_DROP_WAIT values of the event's registrations that are not A, D or W.

    They count as not enrolled (a drop): the caller warns and counts them, so a
    new code in PowerCampus is noticed before students lose their courses.
    """
    return sorted(
        {
            code
            for r in event.registrations
            if (code := _status_code(r)) not in KNOWN_STATUSES
        }
    )


def is_enrolled(registration: Registration, policy: EnrolmentPolicy) -> bool:
    """Added (``ADD_DROP_WAIT = 'A'``) and not carrying a withdrawn final grade."""
    added = _status_code(registration) == "A"
    return added and not policy.is_withdrawn(registration.final_grade)


def desired_enrolments(
    event: EnrolmentEvent, mapping: MappingSet, policy: EnrolmentPolicy
) -> list[DesiredEnrolment]:
    """The Moodle courses the event re-decides, and what each should hold.

    Only courses of the event's term are decided: the event carries that term's
    registrations and nothing else.
    """
    if not mapping.covers(event.term):
        return []
    registrations = [
        r for r in event.registrations if r.section.term.matches(event.term)
    ]
    sections: list[SectionKey]
    if event.change is not None:
        sections = [event.change.section]
        if event.change.previous_section is not None:
            sections.append(event.change.previous_section)
    else:
        sections = [r.section for r in registrations]
    courses = dict.fromkeys(
        course
        for section in sections
        for course in mapping.courses_for(section)
        if course.term.matches(event.term)
    )
    return [
        _decide(course, event, registrations, mapping, policy) for course in courses
    ]


def _decide(
    course: MoodleCourse,
    event: EnrolmentEvent,
    registrations: Sequence[Registration],
    mapping: MappingSet,
    policy: EnrolmentPolicy,
) -> DesiredEnrolment:
    feeding = [r for r in registrations if course in mapping.courses_for(r.section)]
    enrolled = [r for r in feeding if is_enrolled(r, policy)]
    audit = bool(enrolled) and all(policy.is_audit(r.final_grade) for r in enrolled)
    return DesiredEnrolment(
        course=CourseRef(id=course.id, shortname=course.shortname),
        people_code_id=event.people_code_id,
        term=event.term,
        active=bool(enrolled),
        role_id=policy.audit_role_id if audit else policy.student_role_id,
        reason=_reason(feeding, enrolled, audit=audit, policy=policy),
    )


def _label(registration: Registration) -> str:
    section = registration.section
    return f"{section.event_id.rstrip()}/{section.section.rstrip()}"


def _reason(
    feeding: Sequence[Registration],
    enrolled: Sequence[Registration],
    *,
    audit: bool,
    policy: EnrolmentPolicy,
) -> str:
    if enrolled:
        labels = ", ".join(dict.fromkeys(_label(r) for r in enrolled))
        return f"enrolled in {labels}" + (" (audit)" if audit else "")
    if not feeding:
        return "no registration left in a mapped section"
    states = ", ".join(f"{_label(r)} {_status(r, policy)}" for r in feeding)
    return f"not enrolled: {states}"


def _status(registration: Registration, policy: EnrolmentPolicy) -> str:
    code = _status_code(registration)
    if code == "A" and policy.is_withdrawn(registration.final_grade):
        return f"withdrawn ({(registration.final_grade or '').strip()})"
    return {"D": "dropped", "W": "wait-listed"}.get(code, f"status {code!r}")


@dataclass(frozen=True, slots=True)
class Held:
    """What Moodle holds for one (course, user): the enrolment's state and roles.

    ``None`` in its place means Moodle holds no enrolment there. ``active`` is
    False for a suspended enrolment (or one outside its time window).
    """

    active: bool
    roleids: frozenset[int]


def held_per_ledger(entry: LedgerEntry | None) -> Held | None:
    """What Moodle holds if the (certain) ledger entry is right."""
    if entry is None or entry.status == "unenrolled":
        return None
    if entry.status == "suspended":
        return Held(active=False, roleids=frozenset({entry.roleid}))
    if entry.status == "role_removed":
        return Held(active=True, roleids=frozenset())
    return Held(active=True, roleids=frozenset({entry.roleid}))


def owns(entry: LedgerEntry | None) -> bool:
    """Whether the enrolment is ours to change: an owned entry that still exists.

    An uncertain entry is ours whatever its status: it records a call we sent.
    """
    if entry is None or not entry.owned:
        return False
    return entry.status != "unenrolled" or entry.uncertain


def plan_action(
    desired: DesiredEnrolment,
    userid: int,
    ledger: LedgerEntry | None,
    *,
    state_version: int,
    policy: EnrolmentPolicy,
) -> MoodleAction | None:
    """The one Moodle change that brings (course, user) to ``desired``, or None.

    Trusts the ownership ledger's entry for (``desired.course.id``, ``userid``)
    about what Moodle holds; an ``uncertain`` entry cannot be trusted, so it is
    refused here (``ValueError``): read Moodle and call ``plan_against``.
    ``state_version`` is the event's: an entry written for newer state makes the
    decision stale (None).
    """
    if ledger is not None:
        ledger = ledger.normalised()
        _check_pair(ledger, desired.course.id, userid)
        if ledger.state_version > state_version:
            return None
        if ledger.uncertain:
            raise ValueError(
                f"ledger entry for ({ledger.courseid}, {userid}) is uncertain: "
                "read what Moodle holds and use plan_against"
            )
    return plan_against(desired, userid, ledger, held_per_ledger(ledger), policy=policy)


def plan_against(
    desired: DesiredEnrolment,
    userid: int,
    ledger: LedgerEntry | None,
    held: Held | None,
    *,
    policy: EnrolmentPolicy,
) -> MoodleAction | None:
    """The one change that brings what Moodle ``held`` to ``desired``, or None.

    ``ledger`` says whether the enrolment is ours (``owns``) and which role we
    assigned; ``held`` is what Moodle holds (read, or as the ledger says). The
    rules, shared by the consumer and the nightly reconcile:

    * wanted, nothing held: enrol (the only change that welcomes the student);
    * wanted, held but not ours: left alone (a teacher's enrolment stays theirs);
    * wanted, ours and suspended: reactivate; active without the role: restore it
      (or change from the role we assigned before); a role of ours that is no
      longer wanted is taken away (change role);
    * not wanted: an active enrolment of ours that still holds our role is
      dropped per ``policy.drop_action``; anything else (nothing held, already
      suspended, our role already gone, not ours) is left as it is. A drop never
      creates an enrolment.
    """
    if desired.active:
        return _bring_in(desired.course.id, desired.role_id, userid, ledger, held)
    return _drop(desired.course.id, userid, ledger, held, policy)


def repair_late_write(
    entry: LedgerEntry, held: Held | None, *, policy: EnrolmentPolicy
) -> MoodleAction | None:
    """The change that puts back what ``entry`` says we decided, or None.

    For a (certain) entry whose ``recheck_at_ms`` came due: a call whose answer
    was lost, and that Moodle applied only after we had read it back, may have
    changed the enrolment since (an enrol landing after the drop that followed
    it). The late write was ours, so its effects are ours to undo.
    """
    if entry.status == "active":
        return _bring_in(entry.courseid, entry.roleid, entry.userid, entry, held)
    ours = entry.model_copy(update={"status": "active", "owned": True})
    return _drop(entry.courseid, entry.userid, ours, held, policy)


def _bring_in(
    courseid: int,
    role: int,
    userid: int,
    ledger: LedgerEntry | None,
    held: Held | None,
) -> MoodleAction | None:
    if held is None:
        return EnrolAction(courseid=courseid, userid=userid, roleid=role)
    if not owns(ledger):
        return None
    leftover = _leftover_role(ledger, held, role)
    if not held.active:
        return ReactivateAction(
            courseid=courseid, userid=userid, roleid=role, previous_roleid=leftover
        )
    if leftover is not None:
        return ChangeRoleAction(
            courseid=courseid, userid=userid, roleid=role, previous_roleid=leftover
        )
    if role not in held.roleids:
        return RestoreRoleAction(courseid=courseid, userid=userid, roleid=role)
    return None


def _drop(
    courseid: int,
    userid: int,
    ledger: LedgerEntry | None,
    held: Held | None,
    policy: EnrolmentPolicy,
) -> MoodleAction | None:
    if ledger is None or held is None or not held.active or not owns(ledger):
        return None
    ours = ledger.roleid
    if ours not in held.roleids:
        return None  # our role is gone already: dropped by role removal (or by hand)
    if policy.drop_action == "unenrol":
        return UnenrolAction(courseid=courseid, userid=userid)
    if policy.drop_action == "suspend":
        return SuspendAction(courseid=courseid, userid=userid, roleid=ours)
    return RemoveRoleAction(courseid=courseid, userid=userid, roleid=ours)


def _leftover_role(ledger: LedgerEntry | None, held: Held, role: int) -> int | None:
    """A role we assigned that Moodle still holds and that is not wanted any more.

    Besides the role we last assigned and the one a role change replaced, a role
    a lost call may have assigned late (``late_roleids``).
    """
    if ledger is None:
        return None
    for candidate in (ledger.roleid, ledger.previous_roleid, *ledger.late_roleids):
        if candidate is not None and candidate != role and candidate in held.roleids:
            return candidate
    return None


def _check_pair(ledger: LedgerEntry, courseid: int, userid: int) -> None:
    if (ledger.courseid, ledger.userid) != (courseid, userid):
        raise ValueError(
            f"ledger entry is for ({ledger.courseid}, {ledger.userid}), "
            f"not ({courseid}, {userid})"
        )


def settle(
    entry: LedgerEntry, held: Held | None, *, recheck_at_ms: int | None = None
) -> LedgerEntry:
    """The certain entry for what Moodle was read to hold, ownership kept.

    Used when an entry was uncertain (a call's outcome unknown): the status is
    what Moodle holds now; a role we held before an unfinished role change is
    kept in ``previous_roleid`` while Moodle still holds it. ``recheck_at_ms``:
    when to read Moodle again, as the lost call may still land later.
    """
    entry = entry.normalised()
    status: LedgerStatus
    if held is None:
        status = "unenrolled"
    elif not held.active:
        status = "suspended"
    elif entry.roleid in held.roleids:
        status = "active"
    else:
        status = "role_removed"
    previous = entry.previous_roleid
    if held is None or previous not in held.roleids:
        previous = None
    late = set(entry.late_roleids)
    if entry.uncertain and entry.status == "active":
        late.add(entry.roleid)  # the lost call assigns it if it lands late
    return entry.model_copy(
        update={
            "status": status,
            "uncertain": False,
            "previous_roleid": previous,
            "sent_at_ms": None,
            "late_roleids": tuple(sorted(late)),
            "recheck_at_ms": recheck_at_ms or entry.recheck_at_ms,
        }
    )


_STATUS_AFTER: dict[str, LedgerStatus] = {
    "enrol": "active",
    "reactivate": "active",
    "change_role": "active",
    "restore_role": "active",
    "remove_role": "role_removed",
    "suspend": "suspended",
    "unenrol": "unenrolled",
}


def next_ledger_entry(
    action: MoodleAction,
    previous: LedgerEntry | None,
    *,
    event_id: str,
    state_version: int,
    uncertain: bool = False,
    sent_at_ms: int | None = None,
    people_code_id: str | None = None,
) -> LedgerEntry:
    """The ledger entry for ``action``: its intent (``uncertain``) or its outcome.

    The intent is written before the call is sent, so a call cut off after Moodle
    applied it still leaves an entry that says we own the enrolment and that its
    state must be read before the next decision. The outcome replaces it once
    Moodle answered.
    """
    if isinstance(action, UnenrolAction):
        if previous is None:
            raise ValueError("an unenrol is only planned over an existing ledger entry")
        roleid = previous.roleid
    else:
        roleid = action.roleid
    previous_roleid = (
        action.previous_roleid
        if uncertain and isinstance(action, ChangeRoleAction | ReactivateAction)
        else None
    )
    return LedgerEntry(
        courseid=action.courseid,
        userid=action.userid,
        roleid=roleid,
        status=_STATUS_AFTER[action.kind],
        event_id=event_id,
        state_version=state_version,
        uncertain=uncertain,
        previous_roleid=previous_roleid,
        people_code_id=people_code_id
        or (previous.people_code_id if previous is not None else None),
        sent_at_ms=sent_at_ms if uncertain else None,
        # A late write may still land: the recheck outlives the writes after it.
        recheck_at_ms=previous.recheck_at_ms if previous is not None else None,
        late_roleids=previous.late_roleids if previous is not None else (),
    )


__all__ = [
    "DropAction",
    "EnrolmentPolicy",
    "Held",
    "LedgerEntry",
    "desired_enrolments",
    "held_per_ledger",
    "is_enrolled",
    "next_ledger_entry",
    "owns",
    "plan_action",
    "plan_against",
    "repair_late_write",
    "settle",
    "unknown_statuses",
]
