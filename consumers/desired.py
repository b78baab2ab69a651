"""What PowerCampus says Moodle should hold, pure: an event and the policy in, desired states out.

``desired_enrolments(event, mapping, policy)`` decides, for each Moodle course
the event re-decides, the role each source wants the person to hold there. A
change event re-decides the courses its row's section (and ``previous_section``)
feed; a snapshot, an ACADEMIC change (a term withdrawal or its reversal) and a
parked person's event decide every course the person's registrations and
teaching feed; a change to the person alone (PEOPLE, e-mail, login name)
re-decides no course (it is about their account).

Policy choices, open to review:

* **Enrolled (students)** = ``ADD_DROP_WAIT = 'A'``, FINAL_GRADE not a withdrawn
  grade, and not separated from the term (``is_enrolled``: one predicate over
  TRANSCRIPTDETAIL, ACADEMIC and CODE_ENROLLMENT). Separated = an ACADEMIC row of
  the person for the registration's session (or the whole term, session ``''``)
  and transcript (TRANSCRIPT_SEQ, when read) whose ENROLL_SEPARATION is a
  separation: one of ``separation_codes`` (default ``WITH``, ``LOA``, ``AWIT``),
  or, with ``separations_from = "code_enrollment"``, a code CODE_ENROLLMENT marks
  with ``REQUIRE_SEPDATE = 'Y'``. A separated person is dropped from every
  course of the term whatever TRANSCRIPTDETAIL still says; clearing the code
  restores them. Codes compare under PowerCampus's collation.
* **Student role**: the audit role when every enrolled registration feeding the
  course carries the audit grade, else the student role.
* **Instructors** (SECTIONPER has no role column; the policy is ours): a person
  in SECTIONPER for a section feeding the course holds ``instructor_role_id``
  (default editingteacher); a *secondary* instructor, whose PERCENTAGE is set
  and at most ``secondary_percentage_at_most`` (default 0), holds
  ``secondary_role_id`` (default teacher). Teaching several sections feeding one
  course: primary if any of them is. An instructor who is also a student (in
  another course, or the same one) keeps both roles; separations and grades are
  about students and never drop an instructor.
* ``decided`` names the sources an event speaks for: an event without SECTIONPER
  (a version 1 event, or a source that does not track it) leaves instructor
  roles as they are.
* **Section groups** (``section_groups``): in a course several sections feed
  (and whose entry does not say ``"groups": false``), a student belongs in the
  group of each feeding section they are enrolled in (``groups``, idnumbers by
  ``group_idnumber``); an instructor in none of them.
* **Enrolment dates** (``enrolment_dates``): an enrolment starts at the start
  of the mapping entry's ``starts`` day and ends at the end of its ``ends`` day
  (UTC); without the policy (or the dates) it has none.
* Events for a term without a mapping decide nothing; the caller logs them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Literal

from schemas.actions import CourseRef, DesiredEnrolment, RoleSource
from schemas.collation import collate
from schemas.events import PERSON_TABLES

if TYPE_CHECKING:
    from collections.abc import Sequence

    from consumers.mapping import MappingSet, MoodleCourse
    from consumers.mapping_file import MappingEntry
    from schemas.events import (
        EnrolmentEvent,
        Registration,
        SectionKey,
        Standing,
        Teaching,
    )

__all__ = [
    "DEFAULT_SEPARATION_CODES",
    "KNOWN_STATUSES",
    "DropAction",
    "EnrolmentPolicy",
    "SeparationsFrom",
    "desired_enrolments",
    "group_idnumber",
    "instructor_role",
    "is_enrolled",
    "is_separated",
    "unknown_statuses",
]

DropAction = Literal["remove_role", "suspend", "unenrol"]
SeparationsFrom = Literal["codes", "code_enrollment"]
#: The separation codes the domain notes list (ACADEMIC.ENROLL_SEPARATION).
DEFAULT_SEPARATION_CODES = frozenset({"WITH", "LOA", "AWIT"})
#: The ADD_DROP_WAIT values PowerCampus documents; any other is not enrolled.
KNOWN_STATUSES = frozenset({"A", "D", "W"})


def _code(value: str | None) -> str:
    # Codes come from settings (typed by people: blanks around them dropped) and
    # from PowerCampus (compared under its collation).
    return collate((value or "").strip())


@dataclass(frozen=True, slots=True)
class EnrolmentPolicy:
    """The decision settings; grades and codes are stripped and casefolded on creation."""

    student_role_id: int
    audit_role_id: int
    audit_grade: str | None = None
    withdrawn_grades: frozenset[str] = field(default_factory=frozenset)
    drop_action: DropAction = "remove_role"
    instructor_role_id: int = 3
    secondary_role_id: int = 4
    secondary_percentage_at_most: float | None = 0.0
    separation_codes: frozenset[str] = DEFAULT_SEPARATION_CODES
    separations_from: SeparationsFrom = "codes"
    #: A group per section in courses several sections feed (``consumers.groups``).
    section_groups: bool = False
    #: Enrolments start and end on the mapping entry's ``starts``/``ends``.
    enrolment_dates: bool = False

    def __post_init__(self) -> None:
        """Normalise grades and codes so comparisons follow the PowerCampus collation."""
        audit = _code(self.audit_grade) or None
        object.__setattr__(self, "audit_grade", audit)
        withdrawn = frozenset(_code(g) for g in self.withdrawn_grades) - {""}
        object.__setattr__(self, "withdrawn_grades", withdrawn)
        codes = frozenset(_code(c) for c in self.separation_codes) - {""}
        object.__setattr__(self, "separation_codes", codes)

    def is_withdrawn(self, grade: str | None) -> bool:
        """Whether ``grade`` is one of the withdrawn grades."""
        return _code(grade) in self.withdrawn_grades

    def is_audit(self, grade: str | None) -> bool:
        """Whether ``grade`` is the audit grade (never, when none is configured)."""
        return self.audit_grade is not None and _code(grade) == self.audit_grade

    def is_separation(self, standing: Standing) -> bool:
        """Whether an ACADEMIC row's ENROLL_SEPARATION separates the person."""
        if self.separations_from == "code_enrollment":
            return standing.separation is True
        return _code(standing.enroll_separation) in self.separation_codes


def group_idnumber(section: SectionKey) -> str:
    """The section's key as a group idnumber: ``2021|WINTER|01|COUN6552|LEC|02``.

    The six SECTIONS key columns, trailing blanks removed and upper-cased (the
    collation ignores case, Moodle's idnumbers do not), so any spelling of a
    section gives the same idnumber.
    """
    return "|".join(
        part.rstrip().upper()
        for part in (
            section.academic_year,
            section.academic_term,
            section.academic_session,
            section.event_id,
            section.event_sub_type,
            section.section,
        )
    )


def _unix(day: date) -> int:
    return int(datetime.combine(day, time(), tzinfo=UTC).timestamp())


def _dates(entry: MappingEntry | None, policy: EnrolmentPolicy) -> tuple[int, int]:
    """(timestart, timeend) of an enrolment in the entry's course (0: none)."""
    if entry is None or not policy.enrolment_dates:
        return 0, 0
    start = _unix(entry.starts) if entry.starts else 0
    end = _unix(entry.ends + timedelta(days=1)) if entry.ends else 0
    return start, end


def _groups(
    entry: MappingEntry | None,
    enrolled: Sequence[Registration],
    policy: EnrolmentPolicy,
) -> tuple[str, ...] | None:
    """The section groups the person belongs in there (None: the course has none)."""
    if entry is None or not policy.section_groups or not entry.groups:
        return None
    if not entry.several_sections():
        return None
    return tuple(sorted({group_idnumber(r.section) for r in enrolled}))


def _status_code(registration: Registration) -> str:
    """ADD_DROP_WAIT as PowerCampus's collation compares it, in its documented case."""
    return collate(registration.add_drop_wait.strip()).upper()


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


def is_separated(
    registration: Registration,
    standing: Sequence[Standing],
    policy: EnrolmentPolicy,
) -> Standing | None:
    """The ACADEMIC row that separates the person from the registration's term, if any.

    It must be of the registration's session or of the whole term (session
    ``''``), and of its transcript when TRANSCRIPT_SEQ was read on both sides.
    """
    session = collate(registration.section.academic_session)
    transcript = registration.transcript_seq
    for row in standing:
        if collate(row.academic_session) not in {session, ""}:
            continue
        if transcript is not None and collate(row.transcript_seq) != collate(
            transcript
        ):
            continue
        if policy.is_separation(row):
            return row
    return None


def is_enrolled(
    registration: Registration,
    policy: EnrolmentPolicy,
    standing: Sequence[Standing] = (),
) -> bool:
    """Added (``'A'``), no withdrawn final grade, and not separated from the term."""
    added = _status_code(registration) == "A"
    return (
        added
        and not policy.is_withdrawn(registration.final_grade)
        and is_separated(registration, standing, policy) is None
    )


def instructor_role(teaching: Sequence[Teaching], policy: EnrolmentPolicy) -> int:
    """The role of someone teaching these sections of one course (at least one)."""
    limit = policy.secondary_percentage_at_most

    def secondary(row: Teaching) -> bool:
        return (
            limit is not None and row.percentage is not None and row.percentage <= limit
        )

    if all(secondary(row) for row in teaching):
        return policy.secondary_role_id
    return policy.instructor_role_id


def _term_of(section: SectionKey) -> tuple[str, str]:
    """``section.term.key()`` without building the term (it is on every registration)."""
    return (collate(section.academic_year), collate(section.academic_term))


def _sections(
    event: EnrolmentEvent,
    registrations: Sequence[Registration],
    teaching: Sequence[Teaching],
    *,
    in_full: bool,
) -> list[SectionKey]:
    change = event.change
    if change is not None and change.table in PERSON_TABLES and not in_full:
        return []  # about the person's account, not their courses
    if change is None or change.section is None or in_full:
        return [r.section for r in registrations] + [t.section for t in teaching]
    sections = [change.section]
    if change.previous_section is not None:
        sections.append(change.previous_section)
    return sections


def desired_enrolments(
    event: EnrolmentEvent,
    mapping: MappingSet,
    policy: EnrolmentPolicy,
    *,
    in_full: bool = False,
) -> list[DesiredEnrolment]:
    """The Moodle courses the event re-decides, and what each should hold.

    Only courses of the event's term are decided: the event carries that term's
    state and nothing else. ``in_full`` decides every course of the person-term
    (a parked person's event), the changed sections' included.
    """
    if not mapping.covers(event.term):
        return []
    term = event.term.key()
    registrations = [r for r in event.registrations if _term_of(r.section) == term]
    teaching = [t for t in event.teaching or () if _term_of(t.section) == term]
    sections = _sections(event, registrations, teaching, in_full=in_full)
    if in_full and event.change is not None and event.change.section is not None:
        sections.append(event.change.section)  # a deleted row is in no state
        if event.change.previous_section is not None:
            sections.append(event.change.previous_section)
    courses = dict.fromkeys(
        course
        for section in sections
        for course in mapping.courses_for(section)
        if course.term.key() == term
    )
    return [
        _decide(
            course,
            event,
            registrations=registrations,
            teaching=teaching,
            mapping=mapping,
            policy=policy,
        )
        for course in courses
    ]


def _decide(
    course: MoodleCourse,
    event: EnrolmentEvent,
    *,
    registrations: Sequence[Registration],
    teaching: Sequence[Teaching],
    mapping: MappingSet,
    policy: EnrolmentPolicy,
) -> DesiredEnrolment:
    standing = event.standing or ()
    feeding = [r for r in registrations if course in mapping.courses_for(r.section)]
    enrolled = [r for r in feeding if is_enrolled(r, policy, standing)]
    audit = bool(enrolled) and all(policy.is_audit(r.final_grade) for r in enrolled)
    taught = [t for t in teaching if course in mapping.courses_for(t.section)]
    roles: dict[RoleSource, int] = {}
    if enrolled:
        roles["student"] = policy.audit_role_id if audit else policy.student_role_id
    if taught:
        roles["instructor"] = instructor_role(taught, policy)
    decided: tuple[RoleSource, ...] = ("student",)
    if event.teaching is not None:
        decided += ("instructor",)
    separated = not enrolled and any(
        _status_code(r) == "A" and is_separated(r, standing, policy) is not None
        for r in feeding
    )
    reasons = []
    if feeding or not taught:  # an instructor with no registration: no student part
        reasons.append(
            _student_reason(feeding, enrolled, standing, audit=audit, policy=policy)
        )
    if taught:
        reasons.append(_teaching_reason(taught, roles["instructor"], policy))
    entry = mapping.entry(course.id)
    timestart, timeend = _dates(entry, policy)
    return DesiredEnrolment(
        course=CourseRef(id=course.id, shortname=course.shortname),
        people_code_id=event.people_code_id,
        term=event.term,
        active=bool(roles),
        role_id=roles.get("student", roles.get("instructor", policy.student_role_id)),
        roles=roles,
        decided=decided,
        reason="; ".join(r for r in reasons if r),
        term_withdrawal=separated,
        groups=_groups(entry, enrolled, policy),
        timestart=timestart,
        timeend=timeend,
    )


def _label(section: SectionKey) -> str:
    return f"{section.event_id.rstrip()}/{section.section.rstrip()}"


def _teaching_reason(
    taught: Sequence[Teaching], role: int, policy: EnrolmentPolicy
) -> str:
    labels = ", ".join(dict.fromkeys(_label(t.section) for t in taught))
    kind = "secondary instructor" if role == policy.secondary_role_id else "instructor"
    return f"teaches {labels} ({kind}, role {role})"


def _student_reason(
    feeding: Sequence[Registration],
    enrolled: Sequence[Registration],
    standing: Sequence[Standing],
    *,
    audit: bool,
    policy: EnrolmentPolicy,
) -> str:
    if enrolled:
        labels = ", ".join(dict.fromkeys(_label(r.section) for r in enrolled))
        return f"enrolled in {labels}" + (" (audit)" if audit else "")
    if not feeding:
        return "no registration left in a mapped section"
    states = ", ".join(
        f"{_label(r.section)} {_status(r, standing, policy)}" for r in feeding
    )
    return f"not enrolled: {states}"


def _status(
    registration: Registration, standing: Sequence[Standing], policy: EnrolmentPolicy
) -> str:
    code = _status_code(registration)
    if code == "A" and policy.is_withdrawn(registration.final_grade):
        return f"withdrawn ({(registration.final_grade or '').strip()})"
    separated = is_separated(registration, standing, policy)
    if code == "A" and separated is not None:
        return (
            "separated from the term (ACADEMIC.ENROLL_SEPARATION "
            f"{(separated.enroll_separation or '').strip()})"
        )
    return {"D": "dropped", "W": "wait-listed"}.get(code, f"status {code!r}")
