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
* Role change: ``enrol_manual_enrol_users`` ADDS the new role and keeps the old
  one (golden case ``enrol_again_other_role``). We send one EnrolAction with the
  new role and record it in the ledger; the old role stays in Moodle until a
  separate ``core_role_unassign_roles`` step exists (not planned here).
* Ownership: with no ledger entry the enrolment is not ours (e.g. a teacher's
  manual enrolment) and is never suspended or unenrolled. Enrolling someone
  with no ledger entry is done, and the entry written then makes it ours, even
  if a teacher had enrolled the same person by hand before.
* Already as desired (ledger active with that role) → no call: re-enrolling
  sends Moodle's welcome message again (golden case ``enrol_welcome_twice``).
* A suspended or unenrolled entry stays as it is when drops continue, even if
  ``drop_action`` changed in between.
* Stale: an event whose state_version is older than the ledger entry's is a
  replay after newer state was applied; it plans nothing.
* Events for a term without a mapping plan nothing; the caller logs them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from schemas.actions import (
    CourseRef,
    DesiredEnrolment,
    EnrolAction,
    LedgerEntry,
    MoodleAction,
    SuspendAction,
    UnenrolAction,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from consumers.mapping import MappingSet, MoodleCourse
    from enrolstream.settings import ConsumerSettings
    from schemas.events import EnrolmentEvent, Registration, SectionKey

DropAction = Literal["suspend", "unenrol"]


def _grade(value: str | None) -> str:
    return (value or "").strip().casefold()


@dataclass(frozen=True, slots=True)
class EnrolmentPolicy:
    """The decision settings; grades are stripped and casefolded on creation."""

    student_role_id: int
    audit_role_id: int
    audit_grade: str | None = None
    withdrawn_grades: frozenset[str] = field(default_factory=frozenset)
    drop_action: DropAction = "suspend"

    def __post_init__(self) -> None:
        """Normalise grades so comparisons follow the PowerCampus collation."""
        audit = _grade(self.audit_grade) or None
        object.__setattr__(self, "audit_grade", audit)
        withdrawn = frozenset(_grade(g) for g in self.withdrawn_grades) - {""}
        object.__setattr__(self, "withdrawn_grades", withdrawn)

    @classmethod
    def from_settings(cls, settings: ConsumerSettings) -> EnrolmentPolicy:
        """The policy the consumer settings describe."""
        return cls(
            student_role_id=settings.student_role_id,
            audit_role_id=settings.audit_role_id,
            audit_grade=settings.audit_grade,
            withdrawn_grades=frozenset(settings.withdrawn_grades),
            drop_action=settings.drop_action,
        )

    def is_withdrawn(self, grade: str | None) -> bool:
        """Whether ``grade`` is one of the withdrawn grades."""
        return _grade(grade) in self.withdrawn_grades

    def is_audit(self, grade: str | None) -> bool:
        """Whether ``grade`` is the audit grade (never, when none is configured)."""
        return self.audit_grade is not None and _grade(grade) == self.audit_grade


def is_enrolled(registration: Registration, policy: EnrolmentPolicy) -> bool:
    """Added (``ADD_DROP_WAIT = 'A'``) and not carrying a withdrawn final grade."""
    added = registration.add_drop_wait.strip().upper() == "A"
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
    code = registration.add_drop_wait.strip().upper()
    if code == "A" and policy.is_withdrawn(registration.final_grade):
        return f"withdrawn ({(registration.final_grade or '').strip()})"
    return {"D": "dropped", "W": "wait-listed"}.get(code, f"status {code!r}")


def plan_action(
    desired: DesiredEnrolment,
    userid: int,
    ledger: LedgerEntry | None,
    *,
    state_version: int,
    policy: EnrolmentPolicy,
) -> MoodleAction | None:
    """The one Moodle call that brings (course, user) to ``desired``, or None.

    ``ledger`` is the ownership ledger's entry for (``desired.course.id``,
    ``userid``); ``state_version`` is the event's. See the module docstring for
    the ownership, staleness and role rules.
    """
    courseid = desired.course.id
    if ledger is not None:
        if (ledger.courseid, ledger.userid) != (courseid, userid):
            raise ValueError(
                f"ledger entry is for ({ledger.courseid}, {ledger.userid}), "
                f"not ({courseid}, {userid})"
            )
        if ledger.state_version > state_version:
            return None
    if desired.active:
        if (
            ledger is not None
            and ledger.status == "active"
            and ledger.roleid == desired.role_id
        ):
            return None  # Moodle holds it already: no call, no second welcome
        return EnrolAction(courseid=courseid, userid=userid, roleid=desired.role_id)
    # A pending entry may or may not have reached Moodle: it is ours, so drop it.
    if ledger is None or not ledger.owned or ledger.status not in {"active", "pending"}:
        return None
    if policy.drop_action == "unenrol":
        return UnenrolAction(courseid=courseid, userid=userid)
    return SuspendAction(courseid=courseid, userid=userid, roleid=ledger.roleid)


def next_ledger_entry(
    action: MoodleAction,
    previous: LedgerEntry | None,
    *,
    event_id: str,
    state_version: int,
) -> LedgerEntry:
    """The ledger entry to write once ``action`` has been applied to Moodle."""
    if isinstance(action, EnrolAction):
        roleid, status = action.roleid, "active"
    elif isinstance(action, SuspendAction):
        roleid, status = action.roleid, "suspended"
    elif previous is None:
        raise ValueError("an unenrol is only planned over an existing ledger entry")
    else:
        roleid, status = previous.roleid, "unenrolled"
    return LedgerEntry(
        courseid=action.courseid,
        userid=action.userid,
        roleid=roleid,
        status=status,
        event_id=event_id,
        state_version=state_version,
    )


__all__ = [
    "DropAction",
    "EnrolmentPolicy",
    "LedgerEntry",
    "desired_enrolments",
    "is_enrolled",
    "next_ledger_entry",
    "plan_action",
]
