"""``core_role_assign_roles`` and ``core_role_unassign_roles`` in course contexts.

As recorded on Moodle 5.1 (sequence 2 of ``tests/data/moodle-golden``), per
item and in this order, inside one transaction for the whole request (the
first failing item undoes the items before it):

1. the context: a non-zero ``contextid``, else ``contextlevel`` (a short name:
   the parameter is ``PARAM_ALPHA``, so digits are cleaned away) with an
   ``instanceid``, else ``invalidparameter`` ("Missing parameters …"); an
   unknown level name is ``invalidparameter`` too;
2. the context must exist (``invalidparameter`` "Context does not exist");
3. the role must be one the token's user may assign there, else
   ``invalidparameter`` "Can not (un)assign roleid=… in contextid=…" — also for
   role ids that do not exist, and for unassigning a role nobody holds;
4. assign: the user must exist (``coding_exception`` "User ID does not exist or
   is deleted!"); unassign does not look the user up (a missing user is a no-op).

Neither function needs, creates or changes an enrolment, and neither sends a
message: assigning to a user who is not enrolled leaves a bare role assignment;
removing a student's last role leaves an active enrolment with no role. Every
refusal except the missing user reads "Invalid parameter value detected"; the
reason travels only in ``debuginfo``.

Only course contexts are simulated: a ``contextid`` that is not a course's
context, or another level name (``system``, ``user``, ``coursecat``,
``module``, ``block``), is answered as a context that does not exist.
"""

from __future__ import annotations

from typing import Any

from sandbox.moodle_sim import errors
from sandbox.moodle_sim.api import CallContext, WsFunction
from sandbox.moodle_sim.external import Multiple, Single, Value
from sandbox.moodle_sim.state import Course

_LEVELS = frozenset({"system", "user", "coursecat", "course", "module", "block"})


_ITEM = Single(
    {
        "roleid": Value("int"),
        "userid": Value("int"),
        "contextid": Value("int", "optional"),
        "contextlevel": Value("alpha", "optional"),
        "instanceid": Value("int", "optional"),
    }
)


def _course(ctx: CallContext, row: dict[str, Any]) -> Course:
    """``get_context_from_params`` then ``validate_context``, for course contexts."""
    if row.get("contextid"):
        course = ctx.state.course_by_context(row["contextid"])
    elif row.get("contextlevel") and "instanceid" in row:
        level = row["contextlevel"]
        if level not in _LEVELS:
            raise errors.invalid_parameter(f"Invalid context level = {level}")
        course = ctx.state.course(row["instanceid"]) if level == "course" else None
    else:
        raise errors.invalid_parameter(
            "Missing parameters, please provide either context level with instance"
            " id or contextid"
        )
    if course is None:
        raise errors.invalid_parameter("Context does not exist")
    return course


def _check_assignable(ctx: CallContext, row: dict[str, Any], verb: str) -> None:
    if row["roleid"] not in ctx.token.assignable_roles:
        # PHP prints $row['contextid'], which is unset when the level was sent.
        raise errors.invalid_parameter(
            f"Can not {verb} roleid={row['roleid']} in contextid={row.get('contextid', '')}"
        )


def assign_roles(ctx: CallContext, params: dict[str, Any]) -> None:
    """Assign every item or none; an assignment already held is a no-op."""
    state = ctx.state
    with state.transaction():
        for row in params["assignments"]:
            course = _course(ctx, row)
            _check_assignable(ctx, row, "assign")
            userid = row["userid"]
            if not userid:
                raise errors.coding_error(
                    "Invalid call to role_assign(), userid can not be empty"
                )
            if state.user(userid) is None:
                raise errors.coding_error(
                    "User ID does not exist or is deleted!", f"userid:{userid}"
                )
            state.assign_role(course.id, userid, row["roleid"])


def unassign_roles(ctx: CallContext, params: dict[str, Any]) -> None:
    """Unassign every item or none; a role not held, or an unknown user, is a no-op."""
    state = ctx.state
    with state.transaction():
        for row in params["unassignments"]:
            course = _course(ctx, row)
            _check_assignable(ctx, row, "unassign")
            if not row["userid"]:
                raise errors.coding_error(
                    "Invalid call to role_unassign(), please use role_unassign_all()"
                    " when removing multiple role assignments"
                )
            state.unassign_role(course.id, row["userid"], row["roleid"])


FUNCTIONS: dict[str, WsFunction] = {
    f.name: f
    for f in (
        WsFunction(
            "core_role_assign_roles",
            Single({"assignments": Multiple(_ITEM)}),
            None,
            assign_roles,
            rows_param="assignments",
        ),
        WsFunction(
            "core_role_unassign_roles",
            Single({"unassignments": Multiple(_ITEM)}),
            None,
            unassign_roles,
            rows_param="unassignments",
        ),
    )
}
