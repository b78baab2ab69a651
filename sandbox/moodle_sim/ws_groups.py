"""``core_group_create_groups``, ``core_group_get_course_groups`` and group members.

As recorded (sequence 5):

* ``create_groups`` needs ``description`` (may be empty); in its course a
  taken idnumber is ``idnumbertaken`` and a taken name ``invalidparameter``
  ("Group with the same name already exists in the course" in debuginfo); the
  batch is one transaction, but the course's group cache keeps a group a failed
  batch inserted (``structure.py``); the answer holds the full records
  (``enrolmentkey: ""``);
* ``get_course_groups`` lists the cache's groups by name (``enrolmentkey:
  null``); a missing course is ``errorcoursecontextnotvalid``;
* ``add_group_members`` is idempotent and needs an enrolment (suspended or
  role-less will do: "Only enrolled users may be members of groups"); a missing
  group or user is ``invalidrecordunknown``; one transaction per call;
* ``delete_group_members``: a non-member is a silent no-op, a missing group or
  user ``invalidrecordunknown``; one transaction per call.
"""

from __future__ import annotations

from typing import Any

from sandbox.moodle_sim import errors
from sandbox.moodle_sim.api import CallContext, WsFunction
from sandbox.moodle_sim.external import Multiple, Required, Single, Value
from sandbox.moodle_sim.tables import Group

__all__ = ["FUNCTIONS"]

_OPT: Required = "optional"


def _record(group: Group, *, enrolmentkey: str | None) -> dict[str, Any]:
    return {
        "id": group.id,
        "courseid": group.courseid,
        "name": group.name,
        "description": group.description,
        "descriptionformat": group.descriptionformat,
        "enrolmentkey": enrolmentkey,
        "idnumber": group.idnumber,
        "visibility": 0,
        "participation": True,
    }


def create_groups(ctx: CallContext, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Create every group or none (but see the cache, module doc)."""
    state = ctx.state
    created: list[Group] = []
    with state.transaction():
        for row in params["groups"]:
            courseid = row["courseid"]
            if state.course(courseid) is None:
                raise errors.context_not_valid("course", courseid)
            idnumber = row.get("idnumber", "")
            # The name is checked in the database (groups_get_group_by_name), the
            # idnumber through the course's group cache (recorded: a rolled-back
            # group's name is free again, its idnumber still taken).
            if any(g.name == row["name"] for g in state.stored_groups(courseid)):
                raise errors.invalid_parameter(
                    "Group with the same name already exists in the course"
                )
            cached = state.course_groups(courseid)
            if idnumber and any(g.idnumber == idnumber for g in cached):
                raise errors.moodle_exception(
                    "idnumbertaken", "This ID number is already in use"
                )
            groupid = state.add_group(
                courseid,
                row["name"],
                idnumber=idnumber,
                description=row["description"],
                descriptionformat=row["descriptionformat"],
            )
            group = state.group(groupid)
            assert group is not None  # noqa: S101 - just created
            created.append(group)
    return [_record(g, enrolmentkey="") for g in created]


def get_course_groups(ctx: CallContext, params: dict[str, Any]) -> list[dict[str, Any]]:
    """The course's groups, by name, as the cache holds them."""
    courseid = params["courseid"]
    if ctx.state.course(courseid) is None:
        raise errors.context_not_valid("course", courseid)
    groups = sorted(ctx.state.course_groups(courseid), key=lambda g: (g.name, g.id))
    return [_record(g, enrolmentkey=None) for g in groups]


def _checked(ctx: CallContext, row: dict[str, Any]) -> Group:
    group = ctx.state.group(row["groupid"])
    if group is None:
        raise errors.missing_record("groups", row["groupid"])
    if ctx.state.user(row["userid"]) is None:
        raise errors.missing_record("user", row["userid"])
    return group


def add_group_members(ctx: CallContext, params: dict[str, Any]) -> None:
    """Add every member or none; only users enrolled in the group's course."""
    state = ctx.state
    with state.transaction():
        for row in params["members"]:
            group = _checked(ctx, row)
            if state.enrolment(group.courseid, row["userid"]) is None:
                raise errors.invalid_parameter(
                    "Only enrolled users may be members of groups"
                )
            state.set_group_member(group.id, row["userid"], member=True)


def delete_group_members(ctx: CallContext, params: dict[str, Any]) -> None:
    """Remove every member or none; a non-member is a no-op."""
    state = ctx.state
    with state.transaction():
        for row in params["members"]:
            group = _checked(ctx, row)
            state.set_group_member(group.id, row["userid"], member=False)


def _v(kind: str, required: Required = _OPT) -> Value:
    return Value(kind, required)


_GROUP = Single(
    {
        "id": _v("int", "required"),
        "courseid": _v("int", "required"),
        "name": _v("text", "required"),
        "description": _v("raw", "required"),
        "descriptionformat": _v("int", "required"),
        "enrolmentkey": _v("raw", "required"),
        "idnumber": _v("raw", "required"),
        "visibility": _v("int"),
        "participation": _v("bool"),
    }
)
_MEMBERS = Single(
    {
        "members": Multiple(
            Single({"groupid": _v("int", "required"), "userid": _v("int", "required")})
        )
    }
)

FUNCTIONS: dict[str, WsFunction] = {
    f.name: f
    for f in (
        WsFunction(
            "core_group_create_groups",
            Single(
                {
                    "groups": Multiple(
                        Single(
                            {
                                "courseid": _v("int", "required"),
                                "name": _v("text", "required"),
                                "description": _v("raw", "required"),
                                "descriptionformat": Value("int", "default", 1),
                                "enrolmentkey": _v("raw"),
                                "idnumber": _v("raw"),
                                "visibility": _v("int"),
                                "participation": _v("bool"),
                            }
                        )
                    )
                }
            ),
            Multiple(_GROUP),
            create_groups,
            rows_param="groups",
        ),
        WsFunction(
            "core_group_get_course_groups",
            Single({"courseid": _v("int", "required")}),
            Multiple(_GROUP),
            get_course_groups,
        ),
        WsFunction(
            "core_group_add_group_members",
            _MEMBERS,
            None,
            add_group_members,
            rows_param="members",
        ),
        WsFunction(
            "core_group_delete_group_members",
            _MEMBERS,
            None,
            delete_group_members,
            rows_param="members",
        ),
    )
}
