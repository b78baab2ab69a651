"""``core_course_get_courses_by_field``, ``core_course_create_courses``, the registry.

``enrollmentmethods`` lists the *enabled* instance types, so a missing or
disabled manual instance shows as ``[]`` there: the usable pre-flight check
(``core_enrol_get_course_enrolment_methods`` never lists manual instances).
The course shape lives in ``course_shapes.py`` and site info in ``ws_site.py``;
``course_summary`` and ``site_info`` are re-exported from here.
"""

from __future__ import annotations

from typing import Any

from sandbox.moodle_sim import errors, ws_site
from sandbox.moodle_sim.api import CallContext, WsFunction
from sandbox.moodle_sim.course_shapes import COURSE_KEYS, NEW_COURSE, course_summary
from sandbox.moodle_sim.external import Multiple, Required, Single, Value
from sandbox.moodle_sim.state import Course
from sandbox.moodle_sim.ws_site import site_info

__all__ = [
    "FUNCTIONS",
    "course_summary",
    "create_courses",
    "get_courses_by_field",
    "site_info",
]

_OPT: Required = "optional"


def _matches(course: Course, field: str, value: str) -> bool:
    if field == "":
        return course.id != 1
    if field in {"id", "category"}:
        number = course.id if field == "id" else course.categoryid
        return value.strip() == str(number)
    if field == "ids":
        return str(course.id) in {v.strip() for v in value.split(",")}
    return str(getattr(course, field)) == value


def get_courses_by_field(ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
    """Courses matching one field; nothing found is ``{courses: [], warnings: []}``."""
    field, value = params["field"], params["value"]
    if field not in {"", "id", "ids", "shortname", "idnumber", "category"}:
        raise errors.invalid_parameter("Invalid field name")
    found = [c for c in ctx.state.courses() if _matches(c, field, value)]
    return {"courses": [course_summary(ctx, c) for c in found], "warnings": []}


def create_courses(ctx: CallContext, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Create all courses or none, each with manual (on), guest and self (off).

    Recorded (sequence 5): a missing category is ``errorcatcontextnotvalid``;
    ``startdate``, ``enddate``, ``visible`` and ``idnumber`` are stored as given;
    a rolled-back batch uses its course ids up.
    """
    state = ctx.state
    created = []
    # Gathered once per call, grown row by row (later rows see earlier ones).
    shortnames = {c.shortname for c in state.courses()}
    idnumbers = {c.idnumber for c in state.courses()}
    with state.transaction():
        for row in params["courses"]:
            if state.category(row["categoryid"]) is None:
                raise errors.context_not_valid("category", row["categoryid"])
            if row["shortname"] in shortnames:
                raise errors.moodle_exception(
                    "shortnametaken",
                    f"Short name is already used for another course ({row['shortname']})",
                )
            idnumber = row.get("idnumber", "")
            if idnumber and idnumber in idnumbers:
                raise errors.moodle_exception(
                    "courseidnumbertaken",
                    f"ID number is already used for another course ({idnumber})",
                )
            courseid = state.add_course(
                row["shortname"],
                row["fullname"],
                idnumber=idnumber,
                categoryid=row["categoryid"],
                visible=bool(row.get("visible", 1)),
            )
            shortnames.add(row["shortname"])
            idnumbers.add(idnumber)
            course = state.course(courseid)
            # Set directly, not through the undo log: the course is new in this
            # transaction, so undoing its creation drops these values too.
            if course is not None and "startdate" in row:
                course.startdate = row["startdate"]
                course.enddate = row.get("enddate", course.enddate)
            created.append({"id": courseid, "shortname": row["shortname"]})
    return created


def _v(kind: str, required: Required = "optional") -> Value:
    return Value(kind, required)


FUNCTIONS: dict[str, WsFunction] = {
    f.name: f
    for f in (
        WsFunction(
            "core_course_get_courses_by_field",
            Single(
                {
                    "field": Value("alpha", "default", ""),
                    "value": Value("raw", "default", ""),
                }
            ),
            Single(
                {
                    "courses": Multiple(Single(COURSE_KEYS)),
                    "warnings": Multiple(
                        Single(
                            {
                                "item": _v("text"),
                                "itemid": _v("int"),
                                "warningcode": _v("alphanum", "required"),
                                "message": _v("raw", "required"),
                            }
                        ),
                        _OPT,
                    ),
                }
            ),
            get_courses_by_field,
        ),
        WsFunction(
            "core_course_create_courses",
            Single({"courses": Multiple(NEW_COURSE)}),
            Multiple(
                Single(
                    {"id": _v("int", "required"), "shortname": _v("raw", "required")}
                )
            ),
            create_courses,
            rows_param="courses",
        ),
    )
}
FUNCTIONS |= ws_site.FUNCTIONS
