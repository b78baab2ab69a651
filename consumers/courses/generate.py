"""``mapping generate``'s steps: PowerCampus's term in, a reviewed plan and a mapping out.

1. read the term (``SectionCatalog``) and propose its courses (``proposal``);
2. name them (``naming``) and look each up in Moodle, by idnumber then by
   shortname (``core_course_get_courses_by_field``), a few at a time;
3. decide found / missing / ambiguous (``document.match``, ``resolve``);
4. with ``create_missing``, create the missing ones as shells (``shells``) and
   show the hidden shells whose day has come;
5. write the found courses as the term's mapping document, and compare it with
   the current one (``document.difference``).

Nothing here writes the mapping file or publishes it: the command does, after
showing the plan (a live mapping is never changed silently).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Literal

from consumers.courses.catalog import SectionCatalog, TermCatalog
from consumers.courses.document import (
    Difference,
    Match,
    NamedCourse,
    difference,
    document,
    match,
    resolve,
)
from consumers.courses.naming import CourseNaming, render
from consumers.courses.proposal import ProposedCourse, ShareRule, propose
from consumers.courses.shells import MoodleCourseDirectory, ShellMaker
from consumers.mapping_file import MappingEntry
from schemas.events import TermKey

__all__ = ["GenerateOptions", "Generated", "generate", "named"]

#: Look-ups in flight at once (each course costs one or two requests).
LOOKUPS_IN_FLIGHT = 8
DatesFrom = Literal["none", "term", "section"]


@dataclass(frozen=True, slots=True)
class GenerateOptions:
    """What the command was asked for, and the settings it uses."""

    share: ShareRule = "course"
    naming: CourseNaming = field(default_factory=CourseNaming)
    dates_from: DatesFrom = "none"
    create_missing: bool = False


@dataclass(slots=True)
class Generated:
    """The plan: every proposed course's match, the document, its difference."""

    catalog: TermCatalog
    matches: list[Match]
    document: dict[str, dict[str, object]]
    difference: Difference
    created: list[str] = field(default_factory=list)
    revealed: list[str] = field(default_factory=list)

    def of(self, status: str) -> list[Match]:
        """The matches with that status."""
        return [m for m in self.matches if m.status == status]


def named(course: ProposedCourse, naming: CourseNaming) -> NamedCourse:
    """The proposed course with its shortname, idnumber and full name."""
    fields = course.fields()
    shortname = render(naming.shortname, fields)
    with_shortname = {**fields, "shortname": shortname}
    return NamedCourse(
        course,
        shortname,
        render(naming.idnumber, with_shortname),
        render(naming.fullname, with_shortname),
    )


async def _lookups(
    courses: Sequence[NamedCourse], moodle: MoodleCourseDirectory
) -> list[Match]:
    gate = asyncio.Semaphore(LOOKUPS_IN_FLIGHT)

    async def one(course: NamedCourse) -> Match:
        async with gate:
            by_idnumber = await moodle.get_courses_by_field("idnumber", course.idnumber)
            by_shortname = await moodle.get_courses_by_field(
                "shortname", course.shortname
            )
        return match(course, by_idnumber, by_shortname)

    return list(await asyncio.gather(*(one(c) for c in courses)))


def _dates(
    course: ProposedCourse, catalog: TermCatalog, dates_from: DatesFrom
) -> tuple[date, date] | None:
    if dates_from == "term":
        start, end = catalog.start, catalog.end
    elif dates_from == "section":
        start, end = course.start, course.end
    else:
        return None
    return (start, end) if start is not None and end is not None else None


async def generate(
    term: TermKey,
    catalog_port: SectionCatalog,
    moodle: MoodleCourseDirectory,
    current: Sequence[MappingEntry],
    *,
    options: GenerateOptions,
    shells: ShellMaker | None = None,
    today: date,
) -> Generated:
    """The term's plan (see the module doc); ``shells`` is needed to create any."""
    catalog = await catalog_port.read_term(term)
    courses = [named(c, options.naming) for c in propose(catalog, share=options.share)]
    matches = resolve(await _lookups(courses, moodle))
    result_created: list[str] = []
    revealed: list[str] = []
    if shells is not None:
        for found in matches:
            if found.status == "found" and found.moodle_id is not None:
                await shells.settle(found.course.idnumber, found.moodle_id)
    if options.create_missing and shells is not None:
        matches = [
            await _create(m, catalog, shells, today) if m.status == "missing" else m
            for m in matches
        ]
        result_created = list(shells.created)
        revealed = await shells.reveal(today)
    dates = {
        m.course.shortname: d
        for m in matches
        if (d := _dates(m.course.proposal, catalog, options.dates_from)) is not None
    }
    new = document(matches, dates)
    return Generated(
        catalog=catalog,
        matches=matches,
        document=new,
        difference=difference(current, new),
        created=result_created,
        revealed=revealed,
    )


async def _create(
    missing: Match, catalog: TermCatalog, shells: ShellMaker, today: date
) -> Match:
    proposal = missing.course.proposal
    courseid = await shells.create(
        missing.course,
        start=catalog.start or proposal.start,
        end=catalog.end or proposal.end,
        today=today,
    )
    return Match(missing.course, "found", courseid, "idnumber", note="created")
