"""Moodle's course structure as enrolstream makes it: categories, course shells, groups.

Built on one checked ``call`` (no aiohttp here). What the recorded Moodle 5.1
answers teach (sequence 5), and this module respects:

* one course and one group per request: ``core_course_create_courses`` and
  ``core_group_create_groups`` roll a whole batch back on one bad row, and a
  rolled-back group stays in the course's group cache (listed, its idnumber
  taken) until another group change there; alone, a refused row leaves nothing;
* a group needs ``description`` (sent empty); a taken name is
  ``invalidparameter``, a taken idnumber ``idnumbertaken`` (``MoodleTaken``);
* ``core_group_get_course_groups`` lists by name from that cache;
* ``core_course_update_courses`` answers ``{"warnings": [...]}`` and reports a
  course it could not update as a warning, not an error.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

from connectors.moodle.errors import MoodleBadResponse, MoodleNotFound

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "CREATE_CATEGORIES",
    "CREATE_COURSES",
    "CREATE_GROUPS",
    "GET_CATEGORIES",
    "GET_COURSE_GROUPS",
    "UPDATE_COURSES",
    "MoodleStructure",
]

Record = dict[str, object]

CREATE_COURSES = "core_course_create_courses"
UPDATE_COURSES = "core_course_update_courses"
GET_CATEGORIES = "core_course_get_categories"
CREATE_CATEGORIES = "core_course_create_categories"
CREATE_GROUPS = "core_group_create_groups"
GET_COURSE_GROUPS = "core_group_get_course_groups"


def _records(function: str, answer: object) -> list[Record]:
    if not isinstance(answer, list) or not all(isinstance(i, dict) for i in answer):
        raise MoodleBadResponse(f"{function}: expected a list of objects")
    return [dict(item) for item in answer]


def _first_id(function: str, answer: object) -> int:
    records = _records(function, answer)
    if len(records) != 1 or not isinstance(records[0].get("id"), int):
        raise MoodleBadResponse(f"{function}: expected one created record with an id")
    return int(str(records[0]["id"]))


class MoodleStructure(ABC):
    """Categories, course shells and groups; subclasses provide ``call``."""

    @abstractmethod
    async def call(self, function: str, params: Mapping[str, object]) -> object:
        """One checked web-service call (see ``MoodleClient.call``)."""

    async def get_course_groups(self, courseid: int) -> list[Record]:
        """The course's groups (as Moodle's group cache holds them), by name."""
        answer = await self.call(GET_COURSE_GROUPS, {"courseid": courseid})
        return _records(GET_COURSE_GROUPS, answer)

    async def create_group(self, courseid: int, name: str, idnumber: str) -> int:
        """Create one group (alone in its request); its Moodle id.

        ``MoodleTaken`` when the idnumber is taken in the course,
        ``MoodleInvalidParameter`` when the name is.
        """
        group = {
            "courseid": courseid,
            "name": name,
            "description": "",
            "idnumber": idnumber,
        }
        answer = await self.call(CREATE_GROUPS, {"groups": [group]})
        return _first_id(CREATE_GROUPS, answer)

    async def get_categories_by_idnumber(self, idnumber: str) -> list[Record]:
        """The categories whose idnumber is ``idnumber`` (``[]`` if none)."""
        criteria = [{"key": "idnumber", "value": idnumber}]
        answer = await self.call(GET_CATEGORIES, {"criteria": criteria})
        return _records(GET_CATEGORIES, answer)

    async def create_category(self, name: str, idnumber: str, parent: int) -> int:
        """Create one category under ``parent`` (0: top level); its id."""
        category = {"name": name, "idnumber": idnumber, "parent": parent}
        answer = await self.call(CREATE_CATEGORIES, {"categories": [category]})
        return _first_id(CREATE_CATEGORIES, answer)

    async def create_course(self, course: Mapping[str, object]) -> int:
        """Create one course (alone in its request); its id.

        ``MoodleTaken`` for a taken shortname or idnumber, ``MoodleNotFound``
        for a category that does not exist.
        """
        answer = await self.call(CREATE_COURSES, {"courses": [dict(course)]})
        return _first_id(CREATE_COURSES, answer)

    async def show_course(self, courseid: int) -> None:
        """Make the course visible; ``MoodleNotFound`` when Moodle has no such course."""
        answer = await self.call(
            UPDATE_COURSES, {"courses": [{"id": courseid, "visible": 1}]}
        )
        warnings = answer.get("warnings") if isinstance(answer, dict) else None
        if not isinstance(warnings, list):
            raise MoodleBadResponse(
                f"{UPDATE_COURSES}: expected an object with warnings"
            )
        for warning in warnings:
            if isinstance(warning, dict):
                raise MoodleNotFound(
                    str(warning.get("warningcode", "")),
                    str(warning.get("message", "")),
                    function=UPDATE_COURSES,
                )
