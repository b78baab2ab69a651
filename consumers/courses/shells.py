"""Course shells: the Moodle courses ``mapping generate --create-missing`` makes.

A shell is created in the category its template names (found by idnumber, made
when missing), dated from ACADEMICCALENDAR (the term's first and last day, UTC),
with the idnumber that ties it to its sections, so a re-run finds it instead of
creating it twice. It is hidden until ``visible_days_before`` days before the
term starts; ``reveal`` (``mapping reveal``, also run by ``--create-missing``)
shows the shells whose day has come, once: a course a teacher hides afterwards
stays hidden.

Fault discipline, as for enrolments: the shell's record is written to the
created book before ``core_course_create_courses`` (``uncertain``); a creation
whose answer was lost is found again by its idnumber, never created twice; a
taken idnumber means the shell exists (another run made it) and it is adopted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal, Protocol

import structlog

from consumers.courses.document import NamedCourse
from consumers.courses.naming import CourseNaming, render
from consumers.created_book import CreatedBook
from consumers.errors import ActionRejected
from schemas.created import CreatedShell

__all__ = ["MoodleCourseDirectory", "ShellMaker", "ShellPolicy", "is_visible"]

log = structlog.get_logger()

Record = dict[str, object]


class MoodleCourseDirectory(Protocol):
    """The course calls (``connectors.moodle`` reads and structure)."""

    async def get_courses_by_field(
        self, field: Literal["idnumber", "shortname"], value: str | int
    ) -> list[Record]:
        """Courses whose ``field`` equals ``value``."""
        ...

    async def get_categories_by_idnumber(self, idnumber: str) -> list[Record]:
        """Categories with that idnumber."""
        ...

    async def create_category(self, name: str, idnumber: str, parent: int) -> int:
        """Create one category; its id."""
        ...

    async def create_course(self, course: Mapping[str, object]) -> int:
        """Create one course; its id."""
        ...

    async def show_course(self, courseid: int) -> None:
        """Make a course visible."""
        ...


@dataclass(frozen=True, slots=True)
class ShellPolicy:
    """Where shells go and when they are shown."""

    naming: CourseNaming = field(default_factory=CourseNaming)
    category_parent: int = 0
    visible_days_before: int = 7


def _unix(day: date) -> int:
    return int(datetime.combine(day, time(), tzinfo=UTC).timestamp())


def reveal_day(start: date | None, policy: ShellPolicy) -> date | None:
    """The day a shell of a term starting on ``start`` is shown (None: at once)."""
    return None if start is None else start - timedelta(days=policy.visible_days_before)


def is_visible(start: date | None, policy: ShellPolicy, today: date) -> bool:
    """Whether a shell created ``today`` is visible from the start."""
    day = reveal_day(start, policy)
    return day is None or today >= day


@dataclass(slots=True)
class ShellMaker:
    """Creates missing shells and shows them when due; counts what it did."""

    moodle: MoodleCourseDirectory
    book: CreatedBook
    policy: ShellPolicy
    created: list[str] = field(default_factory=list)
    revealed: list[str] = field(default_factory=list)
    _categories: dict[str, int] = field(default_factory=dict)

    async def create(
        self, course: NamedCourse, *, start: date | None, end: date | None, today: date
    ) -> int:
        """Create the shell of ``course``; its Moodle id (adopted when it exists)."""
        proposal = course.proposal
        fields = proposal.fields()
        category = await self._category(
            render(self.policy.naming.category_idnumber, fields),
            render(self.policy.naming.category_name, fields),
        )
        visible = is_visible(start, self.policy, today)
        row: dict[str, object] = {
            "fullname": course.fullname,
            "shortname": course.shortname,
            "categoryid": category,
            "idnumber": course.idnumber,
            "visible": int(visible),
        }
        if start is not None:
            row["startdate"] = _unix(start)
        if end is not None:
            row["enddate"] = _unix(end + timedelta(days=1))
        intent = CreatedShell(
            idnumber=course.idnumber,
            shortname=course.shortname,
            term=proposal.term.label(),
            reveal_on=None if visible else reveal_day(start, self.policy),
            uncertain=True,
        )
        await self.book.record([intent])
        try:
            courseid = await self.moodle.create_course(row)
        except ActionRejected:
            found = await self.moodle.get_courses_by_field("idnumber", course.idnumber)
            if len(found) != 1:
                raise
            courseid = int(str(found[0]["id"]))  # made by an earlier run: adopted
        await self.book.record(
            [intent.model_copy(update={"courseid": courseid, "uncertain": False})]
        )
        self.created.append(course.shortname)
        log.info(
            "course_shell_created",
            shortname=course.shortname,
            courseid=courseid,
            visible=visible,
            reveal_on=str(intent.reveal_on) if intent.reveal_on else None,
        )
        return courseid

    async def settle(self, idnumber: str, courseid: int) -> None:
        """A shell record left uncertain, now found in Moodle: settled with its id."""
        shell = self.book.shell(idnumber)
        if shell is not None and (shell.uncertain or shell.courseid is None):
            await self.book.record(
                [shell.model_copy(update={"courseid": courseid, "uncertain": False})]
            )

    async def reveal(self, today: date) -> list[str]:
        """Show every hidden shell of ours whose day has come; their shortnames."""
        shown = []
        for shell in self.book.shells():
            due = shell.reveal_on is not None and shell.reveal_on <= today
            if not due or shell.revealed or shell.courseid is None:
                continue
            await self.moodle.show_course(shell.courseid)
            await self.book.record([shell.model_copy(update={"revealed": True})])
            shown.append(shell.shortname)
            log.info("course_shell_revealed", shortname=shell.shortname)
        self.revealed.extend(shown)
        return shown

    async def _category(self, idnumber: str, name: str) -> int:
        known = self._categories.get(idnumber)
        if known is not None:
            return known
        found = await self.moodle.get_categories_by_idnumber(idnumber)
        if found:
            categoryid = int(str(found[0]["id"]))
        else:
            categoryid = await self.moodle.create_category(
                name, idnumber, self.policy.category_parent
            )
            log.info(
                "course_category_created", idnumber=idnumber, categoryid=categoryid
            )
        self._categories[idnumber] = categoryid
        return categoryid
