"""``enrol_manual_enrol_users``, ``enrol_manual_unenrol_users``, ``core_enrol_*``.

Check order per row follows Moodle 5.1 as recorded: course context (missing
course: ``invalidparameter`` for enrol, ``invalidrecordunknown`` for unenrol),
assignable role (``wsusercannotassign``, also for unknown role ids and 0), the
manual instance (enrol needs it enabled, unenrol only present), then the user.
The whole batch runs in one transaction: the first failing row undoes all rows.
"""

from __future__ import annotations

from typing import Any

from sandbox.moodle_sim import errors
from sandbox.moodle_sim.api import CallContext, WsFunction
from sandbox.moodle_sim.external import Multiple, Single, Value
from sandbox.moodle_sim.state import GUEST_USER_ID, ROLE_SHORTNAMES
from sandbox.moodle_sim.users import user_details, user_keys

_ENROL_ITEM = Single(
    {
        "roleid": Value("int"),
        "userid": Value("int"),
        "courseid": Value("int"),
        "timestart": Value("int", "optional"),
        "timeend": Value("int", "optional"),
        "suspend": Value("int", "optional"),
    }
)
_UNENROL_ITEM = Single(
    {
        "userid": Value("int"),
        "courseid": Value("int"),
        "roleid": Value("int", "optional"),
    }
)


def enrol_users(ctx: CallContext, params: dict[str, Any]) -> None:
    """Enrol every row or none; re-enrol overwrites status and times (missing = 0)."""
    state = ctx.state
    with state.transaction():
        for row in params["enrolments"]:
            courseid, userid, roleid = row["courseid"], row["userid"], row["roleid"]
            course = state.course(courseid)
            if course is None:
                raise errors.invalid_parameter("Context does not exist")
            if roleid not in ctx.token.assignable_roles:
                raise errors.cannot_assign(roleid, userid, courseid)
            manual = course.manual()
            if manual is None or manual.status != 0:
                raise errors.no_manual_instance(courseid)
            if userid == GUEST_USER_ID:
                raise errors.moodle_exception(
                    "guestsarenotallowed", "The guest user is not allowed to do this"
                )
            if state.user(userid) is None:
                raise errors.missing_record("user", userid)
            state.enrol(
                courseid,
                userid,
                roleid,
                timestart=row.get("timestart", 0),
                timeend=row.get("timeend", 0),
                status=1 if row.get("suspend", 0) else 0,
            )


def unenrol_users(ctx: CallContext, params: dict[str, Any]) -> None:
    """Unenrol every row or none; not enrolled is a silent no-op; roleid is ignored."""
    state = ctx.state
    with state.transaction():
        for row in params["enrolments"]:
            courseid, userid = row["courseid"], row["userid"]
            course = state.course(courseid)
            if course is None:
                raise errors.missing_record("course", courseid)
            if course.manual() is None:
                raise errors.no_manual_instance(courseid)
            if state.user(userid) is None:
                raise errors.missing_record("user", userid)
            state.unenrol(courseid, userid)


_SORT_FIELDS = ("id", "firstname", "lastname", "siteorder")


def _options(options: list[dict[str, str]]) -> dict[str, str]:
    chosen = {opt["name"].strip(): opt["value"] for opt in options}
    for name in ("onlyactive", "onlysuspended"):
        chosen[name] = "1" if chosen.get(name, "0").strip() not in {"", "0"} else "0"
    if chosen["onlyactive"] == "1" and chosen["onlysuspended"] == "1":
        raise errors.coding_error(
            "Both onlyactive and onlysuspended are set, this is probably not what you want!"
        )
    sortby = chosen.get("sortby", "id")
    if sortby not in _SORT_FIELDS:
        raise errors.invalid_parameter(
            f"Invalid value for sortby parameter (value: {sortby})"
        )
    direction = chosen.get("sortdirection", "ASC").upper()
    if direction not in {"ASC", "DESC"}:
        raise errors.invalid_parameter(
            f"Invalid value for sortdirection parameter (value: {direction})"
        )
    return chosen


def _int_option(options: dict[str, str], name: str) -> int:
    text = options.get(name, "0").strip()
    return int(text) if text.lstrip("-").isdigit() else 0


def get_enrolled_users(
    ctx: CallContext, params: dict[str, Any]
) -> list[dict[str, Any]]:
    """Participants of any status unless onlyactive / onlysuspended; no status field."""
    state = ctx.state
    courseid = params["courseid"]
    course = state.course(courseid)
    if course is None:
        raise errors.missing_record("course", courseid)
    options = _options(params["options"])
    if course.enrolreview_prevented and "1" in (
        options["onlyactive"],
        options["onlysuspended"],
    ):
        raise errors.no_permission("Review course enrolments")
    users = []
    for view in state.enrolments(courseid):
        active = state.is_active(courseid, view.userid)
        if (options["onlyactive"] == "1" and not active) or (
            options["onlysuspended"] == "1" and active
        ):
            continue
        user = state.user(view.userid)
        if user is not None:
            users.append(user)
    sortby = options.get("sortby", "id")
    key = "id" if sortby == "siteorder" else sortby
    users.sort(
        key=lambda u: getattr(u, key), reverse=options.get("sortdirection") == "DESC"
    )
    start, limit = (
        _int_option(options, "limitfrom"),
        _int_option(options, "limitnumber"),
    )
    users = users[start : start + limit] if limit > 0 else users[start:]
    fields = None
    if "userfields" in options:
        fields = {f.strip() for f in options["userfields"].split(",")} | {
            "id",
            "fullname",
        }
    return [_participant(ctx, courseid, user.id, fields) for user in users]


def _participant(
    ctx: CallContext, courseid: int, userid: int, fields: set[str] | None
) -> dict[str, Any]:
    state = ctx.state
    user = state.user(userid)
    assert user is not None  # noqa: S101 - callers pass enrolled, existing users
    details = user_details(ctx, user, admin_fields=False)
    details["lastcourseaccess"] = 0
    groups = state.groups_of(courseid, userid)
    if groups:  # recorded: a user in no group has no ``groups`` key at all
        details["groups"] = [
            {
                "id": g.id,
                "name": g.name,
                "description": g.description,
                "descriptionformat": g.descriptionformat,
            }
            for g in groups
        ]
    details["roles"] = [
        {
            "roleid": rid,
            "name": "",
            "shortname": ROLE_SHORTNAMES.get(rid, ""),
            "sortorder": 0,
        }
        for rid in sorted(state.roles_of(courseid, userid))
    ]
    if fields is None or "enrolledcourses" in fields:
        details["enrolledcourses"] = [
            {"id": c.id, "fullname": c.fullname, "shortname": c.shortname}
            for c in state.enrolled_courses(userid)
        ]
    if fields is not None:
        details = {k: v for k, v in details.items() if k in fields}
    return details


def get_course_enrolment_methods(ctx: CallContext, params: dict[str, Any]) -> list[Any]:
    """Enabled self/guest-type instances only: manual instances are never listed."""
    course = ctx.state.course(params["courseid"])
    if course is None:
        raise errors.missing_record("course", params["courseid"])
    return [
        {
            "id": course.id * 10 + n,
            "courseid": course.id,
            "type": inst.enrol,
            "name": inst.enrol.capitalize(),
            "status": "1",
        }
        for n, inst in enumerate(course.instances)
        if inst.enrol in {"self", "guest"} and inst.status == 0
    ]


_PARTICIPANT = Single(
    {
        **user_keys(course=True),
        "groups": Multiple(
            Single(
                {
                    "id": Value("int"),
                    "name": Value("raw"),
                    "description": Value("raw"),
                    "descriptionformat": Value("int"),
                }
            ),
            "optional",
        ),
        "roles": Multiple(
            Single(
                {
                    "roleid": Value("int"),
                    "name": Value("raw"),
                    "shortname": Value("alpha"),
                    "sortorder": Value("int"),
                }
            ),
            "optional",
        ),
        "preferences": Multiple(
            Single({"name": Value("raw"), "value": Value("raw")}), "optional"
        ),
        "enrolledcourses": Multiple(
            Single(
                {
                    "id": Value("int"),
                    "fullname": Value("raw"),
                    "shortname": Value("raw"),
                }
            ),
            "optional",
        ),
    }
)

FUNCTIONS: dict[str, WsFunction] = {
    f.name: f
    for f in (
        WsFunction(
            "enrol_manual_enrol_users",
            Single({"enrolments": Multiple(_ENROL_ITEM)}),
            None,
            enrol_users,
            "2025100600",
            "enrolments",
        ),
        WsFunction(
            "enrol_manual_unenrol_users",
            Single({"enrolments": Multiple(_UNENROL_ITEM)}),
            None,
            unenrol_users,
            "2025100600",
            "enrolments",
        ),
        WsFunction(
            "core_enrol_get_enrolled_users",
            Single(
                {
                    "courseid": Value("int"),
                    "options": Multiple(
                        Single({"name": Value("alphanumext"), "value": Value("raw")}),
                        "default",
                        [],
                    ),
                }
            ),
            Multiple(_PARTICIPANT),
            get_enrolled_users,
        ),
        WsFunction(
            "core_enrol_get_course_enrolment_methods",
            Single({"courseid": Value("int")}),
            Multiple(
                Single(
                    {
                        "id": Value("int"),
                        "courseid": Value("int"),
                        "type": Value("plugin"),
                        "name": Value("raw"),
                        "status": Value("raw"),
                        "wsfunction": Value("alpha", "optional"),
                    }
                )
            ),
            get_course_enrolment_methods,
        ),
    )
}
