"""Groups and cross-lists: what Banner says about terms, sections and cross-lists. Pure.

Group messages and cross-list memberships (members of ``idtype`` 2) change no
one's enrolment by themselves: in enrolstream a cross-list is a mapping (its
sections feed one Moodle course, ``lmb/mapping.py``), so they are kept in the
book for ``enrolstream lmb mapping`` and a change to one is reported to the
operator ("regenerate the mapping"), never applied behind their back.
"""

from __future__ import annotations

import re

from lmb.messages import ImsGroup, ImsMember
from lmb.terms import NotBannerId, banner_section
from schemas.lmb import LmbGroupRecord

#: enrol_lmb reads a cross-list's term from the end of its id (XLSAA201510).
_CROSSLIST_TERM = re.compile(r"XLS.*?(?P<term>\d{6})$", re.IGNORECASE)


def _term_of(group: ImsGroup) -> str | None:
    if group.kind == "term":
        return group.sourcedid
    if group.term_id:
        return group.term_id
    if group.kind == "section":
        try:
            section = banner_section(group.sourcedid)
        except NotBannerId:
            return None
        return f"{section.term.academic_year}{section.term.academic_term}"
    match = _CROSSLIST_TERM.search(group.sourcedid)
    return match["term"] if match else None


def apply_group(
    group: ImsGroup, before: LmbGroupRecord | None, key: str, keep: int
) -> LmbGroupRecord:
    """The group's record after a ``group`` message (recstatus 3 marks it deleted)."""
    return LmbGroupRecord(
        sourcedid=group.sourcedid,
        kind=group.kind,
        title=group.long or group.short or (before.title if before else None),
        term=_term_of(group) or (before.term if before else None),
        sections=before.sections if before else (),
        deleted=group.recstatus == "delete",
        applied=_applied(before, key, keep),
    )


def apply_crosslist_member(
    member: ImsMember, before: LmbGroupRecord | None, key: str, keep: int
) -> LmbGroupRecord:
    """The cross-list's record after one of its sections joined or left it.

    A section leaves with ``status 0`` (the maintainers' way to undo a
    cross-list, enrol_lmb issue 7) or ``recstatus 3``.
    """
    sections = [s for s in (before.sections if before else ()) if s != member.member]
    if member.active and not member.deleted:
        sections.append(member.member)
    term = before.term if before else None
    if term is None:
        match = _CROSSLIST_TERM.search(member.group)
        term = match["term"] if match else None
    return LmbGroupRecord(
        sourcedid=member.group,
        kind="crosslist",
        title=before.title if before else None,
        term=term,
        sections=tuple(sections),
        deleted=before.deleted if before else False,
        applied=_applied(before, key, keep),
    )


def _applied(before: LmbGroupRecord | None, key: str, keep: int) -> tuple[str, ...]:
    return ((*before.applied, key) if before else (key,))[-keep:]
