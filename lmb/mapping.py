"""A Banner term's course mapping, generated from the group messages LMB sent. Pure.

Each Moodle course is found by its idnumber, as enrol_lmb and SHEBanG create
them: a section's course by the section's sourcedid (``14482.201510``), a
cross-list's by the cross-list's (``XLSAA201510``). A cross-list merges its
sections into one Moodle course (enrol_lmb's default ``merge``): its entry
lists every member CRN and its sections get no entry of their own; the others
get one entry each. The result is a mapping file in the project's format
(``consumers/mapping.py``) for the term ``2015/10``: ``{shortname: {"courses":
[CRNs], "id": Moodle id}}``; sections or cross-lists without a Moodle course
are returned apart, to be created (or named) before the term starts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from lmb.terms import NotBannerId, banner_section
from schemas.lmb import LmbGroupRecord

__all__ = ["MappingUnit", "MoodleCourseRef", "mapping_file", "mapping_units"]


@dataclass(frozen=True, slots=True)
class MappingUnit:
    """One Moodle course to be: its idnumber and the CRNs that feed it."""

    idnumber: str
    crns: tuple[str, ...]
    title: str | None = None


@dataclass(frozen=True, slots=True)
class MoodleCourseRef:
    """A Moodle course found by idnumber."""

    id: int
    shortname: str


def _crn(sourcedid: str) -> str | None:
    try:
        return banner_section(sourcedid).crn
    except NotBannerId:
        return None


def mapping_units(groups: Iterable[LmbGroupRecord], term: str) -> list[MappingUnit]:
    """The term's Moodle courses: cross-lists first, then sections not cross-listed."""
    live = [g for g in groups if not g.deleted and g.term == term]
    units: list[MappingUnit] = []
    crosslisted: set[str] = set()
    for group in sorted(live, key=lambda g: g.sourcedid):
        if group.kind != "crosslist":
            continue
        members = [s for s in group.sections if s not in crosslisted]
        crns = tuple(c for s in members if (c := _crn(s)) is not None)
        if crns:
            units.append(MappingUnit(group.sourcedid, crns, group.title))
            crosslisted.update(members)
    for group in sorted(live, key=lambda g: g.sourcedid):
        crn = _crn(group.sourcedid)
        if group.kind == "section" and crn and group.sourcedid not in crosslisted:
            units.append(MappingUnit(group.sourcedid, (crn,), group.title))
    return units


def mapping_file(
    units: Iterable[MappingUnit], courses: Mapping[str, MoodleCourseRef]
) -> tuple[dict[str, dict[str, object]], list[MappingUnit]]:
    """The mapping entries of the units whose course exists, and the units without one."""
    entries: dict[str, dict[str, object]] = {}
    missing: list[MappingUnit] = []
    for unit in units:
        course = courses.get(unit.idnumber)
        if course is None:
            missing.append(unit)
            continue
        entries[course.shortname] = {"courses": list(unit.crns), "id": course.id}
    return entries, missing
