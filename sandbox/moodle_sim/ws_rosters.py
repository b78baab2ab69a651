"""``local_enrolstream_get_course_enrolments``: the companion plugin's bulk roster read.

What the plugin (``moodle/local_enrolstream``, version 2026120200) answers on a
real Moodle 5.1, recorded in sequence 6 of ``tests/data/moodle-golden``: for
several courses in one call, one row per (course, enrolled user) in course then
user id order, paged by ``limitfrom``/``limitnumber`` (0: the largest page,
10,000; above it, or negative, ``invalidparameter``), each row with the user's
idnumber, username and full name, ``active`` (false exactly when
``core_enrol_get_enrolled_users`` with ``onlysuspended=1`` lists the user: see
``MoodleState.is_active``), role ids in the course context and group ids, both
ascending. A course that does not exist, the front page, or a course whose
enrolments the token may not review (``Course.enrolreview_prevented``) is a
warning and the others are answered. It exists only on a site with the plugin
and answers only a token whose service has it (see ``ws_companion``).
"""

from __future__ import annotations

from typing import Any

from sandbox.moodle_sim import errors
from sandbox.moodle_sim.api import CallContext, WsFunction
from sandbox.moodle_sim.external import Multiple, Single, Value
from sandbox.moodle_sim.site import (
    COMPANION_PLUGIN,
    GET_COURSE_ENROLMENTS,
    SITE_COURSE_ID,
)

#: The plugin version that brought the function.
PLUGIN_VERSION = "2026120200"
MAX_LIMIT = 10000

_ROW = Single(
    {
        "courseid": Value("int"),
        "userid": Value("int"),
        "idnumber": Value("raw"),
        "username": Value("raw"),
        "fullname": Value("notags"),
        "active": Value("bool"),
        "roleids": Multiple(Value("int")),
        "groupids": Multiple(Value("int")),
    }
)
_WARNING = Single(
    {
        "item": Value("text", "optional"),
        "itemid": Value("int", "optional"),
        "warningcode": Value("alphanum"),
        "message": Value("raw"),
    }
)


def _warning(courseid: int, code: str, message: str) -> dict[str, Any]:
    return {
        "item": "course",
        "itemid": courseid,
        "warningcode": code,
        "message": message,
    }


def get_course_enrolments(ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
    """One page of (course, user) rows over the readable courses, with warnings."""
    limitfrom, limitnumber = params["limitfrom"], params["limitnumber"] or MAX_LIMIT
    if limitfrom < 0 or not 0 < limitnumber <= MAX_LIMIT:
        raise errors.invalid_parameter(
            f"limitfrom must be >= 0 and limitnumber 0..{MAX_LIMIT}"
        )
    state = ctx.state
    warnings: list[dict[str, Any]] = []
    readable: list[int] = []
    for courseid in dict.fromkeys(params["courseids"]):
        course = state.course(courseid)
        if course is None or courseid == SITE_COURSE_ID:
            message = "You are trying to use an invalid course ID"
            warnings.append(_warning(courseid, "invalidcourseid", message))
        elif course.enrolreview_prevented:
            refused = errors.no_permission("Review course enrolments")
            warnings.append(_warning(courseid, refused.errorcode, refused.message))
        else:
            readable.append(courseid)
    rows: list[dict[str, Any]] = []
    for courseid in sorted(readable):
        for view in state.enrolments(courseid):
            user = state.user(view.userid)
            if user is None:
                continue
            rows.append(
                {
                    "courseid": courseid,
                    "userid": user.id,
                    "idnumber": user.idnumber,
                    "username": user.username,
                    "fullname": f"{user.firstname} {user.lastname}",
                    "active": state.is_active(courseid, user.id),
                    "roleids": list(view.roleids),
                    "groupids": sorted(
                        g.id for g in state.groups_of(courseid, user.id)
                    ),
                }
            )
    return {
        "enrolments": rows[limitfrom : limitfrom + limitnumber],
        "warnings": warnings,
    }


FUNCTIONS: dict[str, WsFunction] = {
    GET_COURSE_ENROLMENTS: WsFunction(
        GET_COURSE_ENROLMENTS,
        Single(
            {
                "courseids": Multiple(Value("int")),
                "limitfrom": Value("int", "default", 0),
                "limitnumber": Value("int", "default", 0),
            }
        ),
        Single({"enrolments": Multiple(_ROW), "warnings": Multiple(_WARNING)}),
        get_course_enrolments,
        PLUGIN_VERSION,
        "courseids",
        COMPANION_PLUGIN,
    )
}
