"""Section groups, pure: which groups of ours a student belongs in, and the calls' part.

In a Moodle course fed by more than one section (``MappingEntry.several_sections``)
each section gets a group of ours whose idnumber is the section's key
(``group_idnumber``), so membership can follow registrations: a student belongs
in the groups of the sections feeding the course where they are enrolled
(``desired.DesiredEnrolment.groups``), and in no group of ours once dropped.

``adjust`` adds that to the one action a (course, user) gets: the groups to join
(after the action's own calls, so an enrolment exists first) and to leave (after
joining, so a swap between two sections of one course never leaves the student
outside the course nor outside a group), or a ``RegroupAction`` when only groups
change. The rules follow the enrolment's ownership:

* only groups of ours are joined or left (the caller passes only those: ``ids``
  and the held groups are filtered to the created book's groups);
* only an enrolment of ours is changed (a teacher's enrolment is not);
* an unenrolment takes no group call: Moodle removes the memberships itself
  (recorded, ``groups_unenrol_member``);
* with section groups off for the course (``groups`` None) nothing is done, so
  turning them off leaves memberships as they are.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from consumers.decisions import owns
from consumers.desired import group_idnumber
from schemas.actions import (
    DesiredEnrolment,
    EnrolAction,
    LedgerEntry,
    MoodleAction,
    RegroupAction,
    UnenrolAction,
)
from schemas.events import EnrolmentEvent, SectionKey

__all__ = [
    "DEFAULT_GROUP_NAME",
    "GroupChange",
    "adjust",
    "change",
    "group_idnumber",
    "group_name",
    "sections_wanted",
]

DEFAULT_GROUP_NAME = "{event_id} {sub_type} {section}"


def group_name(section: SectionKey, template: str = DEFAULT_GROUP_NAME) -> str:
    """The group's name from ``template`` (``naming.GROUP_FIELDS``), blanks collapsed."""
    fields = {
        "event_id": section.event_id.rstrip(),
        "sub_type": section.event_sub_type.rstrip(),
        "section": section.section.rstrip(),
        "session": section.academic_session.rstrip(),
        "term": section.academic_term.rstrip(),
        "year": section.academic_year.rstrip(),
    }
    return " ".join(template.format_map(fields).split())


class GroupChange:
    """The groups to join and leave for one (course, user)."""

    __slots__ = ("join", "leave")

    def __init__(self, join: Iterable[int] = (), leave: Iterable[int] = ()) -> None:
        self.join = tuple(sorted(set(join)))
        self.leave = tuple(sorted(set(leave)))

    def __bool__(self) -> bool:
        return bool(self.join or self.leave)


def _student_after(desired: DesiredEnrolment) -> bool:
    return desired.active and "student" in desired.wanted()


def change(
    desired: DesiredEnrolment,
    action: MoodleAction | None,
    ledger: LedgerEntry | None,
    held: frozenset[int],
    ids: Mapping[str, int],
) -> GroupChange:
    """The groups of ours to join and leave (see the module doc)."""
    if desired.groups is None or isinstance(action, UnenrolAction):
        return GroupChange()
    if not isinstance(action, EnrolAction) and not owns(ledger):
        return GroupChange()
    want = set()
    if _student_after(desired):
        want = {ids[g] for g in desired.groups if g in ids}
    return GroupChange(join=want - held, leave=held - want)


def adjust(
    desired: DesiredEnrolment,
    action: MoodleAction | None,
    *,
    userid: int,
    ledger: LedgerEntry | None,
    held: frozenset[int],
    ids: Mapping[str, int],
) -> MoodleAction | None:
    """``action`` with its group calls, or a ``RegroupAction``, or None."""
    groups = change(desired, action, ledger, held, ids)
    if not groups:
        return action
    update = {"join_groupids": groups.join, "leave_groupids": groups.leave}
    if action is None:
        return RegroupAction(courseid=desired.course.id, userid=userid, **update)
    return action.model_copy(update=update)


def sections_wanted(
    decided: Iterable[tuple[DesiredEnrolment, EnrolmentEvent]],
) -> dict[int, dict[str, SectionKey]]:
    """course -> idnumber -> section of every section group the decisions want."""
    wanted: dict[int, dict[str, SectionKey]] = {}
    for desired, event in decided:
        if not desired.groups:
            continue
        sections = wanted.setdefault(desired.course.id, {})
        for registration in event.registrations:
            idnumber = group_idnumber(registration.section)
            if idnumber in desired.groups:
                sections.setdefault(idnumber, registration.section)
    return wanted
