"""The exceptions a Moodle web-service call can end with, as the wire shows them.

Every error travels as HTTP 200 with a body ``{exception, errorcode, message}``
(plus ``debuginfo`` when the site has debugging on). ``MoodleError`` carries
exactly those fields; the factories below hold the texts recorded from
Moodle 5.1 (see ``tests/data/moodle-golden``), so the handlers never spell them.

    MoodleError
    └── (instances only; the PHP class travels in ``exception``)
"""

from __future__ import annotations

from typing import Any

MOODLE_EXCEPTION = "core\\exception\\moodle_exception"
INVALID_PARAMETER_EXCEPTION = "core\\exception\\invalid_parameter_exception"
CODING_EXCEPTION = "core\\exception\\coding_exception"
MISSING_RECORD_EXCEPTION = "dml_missing_record_exception"
ACCESS_EXCEPTION = "webservice_access_exception"
REQUIRED_CAPABILITY_EXCEPTION = "core\\exception\\required_capability_exception"

INVALID_PARAMETER_MESSAGE = "Invalid parameter value detected"

# With debugging on, Moodle names the missing record (dml_missing_record_exception
# in lib/dmllib.php): "invaliduser" for the user table (recorded), "invalidrecord"
# naming the table for the others, the course table included when the lookup had
# SQL, as get_record has (recorded for external_functions, sequence 3).
_DEBUG_MISSING_RECORD: dict[str, tuple[str, str]] = {
    "user": ("invaliduser", "Invalid user"),
}


class MoodleError(Exception):
    """One web-service error object; ``render`` applies the site's debug flag."""

    def __init__(
        self,
        exception: str,
        errorcode: str,
        message: str,
        debuginfo: str | None = None,
        *,
        debug_override: tuple[str, str] | None = None,
    ) -> None:
        super().__init__(f"{errorcode}: {message}")
        self.exception = exception
        self.errorcode = errorcode
        self.message = message
        self.debuginfo = debuginfo
        self.debug_override = debug_override

    def render(self, *, debug: bool) -> dict[str, Any]:
        """The error object as Moodle serialises it, in key order."""
        errorcode, message = self.errorcode, self.message
        if debug and self.debug_override is not None:
            errorcode, message = self.debug_override
        body: dict[str, Any] = {
            "exception": self.exception,
            "errorcode": errorcode,
            "message": message,
        }
        if debug and self.debuginfo is not None:
            body["debuginfo"] = self.debuginfo
        return body


def invalid_parameter(debuginfo: str) -> MoodleError:
    """``invalid_parameter_exception``: the detail only reaches debuginfo."""
    return MoodleError(
        INVALID_PARAMETER_EXCEPTION,
        "invalidparameter",
        INVALID_PARAMETER_MESSAGE,
        debuginfo,
    )


def missing_record(table: str, value: int | str, column: str = "id") -> MoodleError:
    """``dml_missing_record_exception`` for ``get_record(..., MUST_EXIST)``."""
    exported = value if isinstance(value, int) else f"'{value}'"
    sql = f"SELECT * FROM {{{table}}} WHERE {column} = ?\n[array (\n  0 => {exported},\n)]"
    return MoodleError(
        MISSING_RECORD_EXCEPTION,
        "invalidrecordunknown",
        "Can't find data record in database.",
        sql,
        debug_override=_DEBUG_MISSING_RECORD.get(
            table,
            ("invalidrecord", f"Can't find data record in database table {table}."),
        ),
    )


def coding_error(detail: str, debuginfo: str | None = None) -> MoodleError:
    """``coding_exception``: the detail is part of the message."""
    return MoodleError(
        CODING_EXCEPTION,
        "codingerror",
        f"Coding error detected, it must be fixed by a programmer: {detail}",
        debuginfo,
    )


def moodle_exception(
    errorcode: str, message: str, debuginfo: str | None = None
) -> MoodleError:
    """A plain ``moodle_exception`` with its language string already filled in."""
    return MoodleError(MOODLE_EXCEPTION, errorcode, message, debuginfo)


def invalid_token() -> MoodleError:
    """Unknown or missing ``wstoken`` (also a token dropped by max_input_vars)."""
    return moodle_exception("invalidtoken", "Invalid token - token not found")


def access_exception(function: str) -> MoodleError:
    """The function exists on the site but not in the token's service."""
    return MoodleError(
        ACCESS_EXCEPTION,
        "accessexception",
        "Access control exception",
        f"Access to the function {function}() is not allowed. There could be "
        "multiple reasons for this: 1. The service linked to the user token does "
        "not contain the function. 2. The service is user-restricted and the user "
        "is not listed. 3. The function is called with username/password.",
    )


def cannot_assign(roleid: int, userid: int, courseid: int) -> MoodleError:
    """``wsusercannotassign``: role not in the token user's assignable roles."""
    return moodle_exception(
        "wsusercannotassign",
        f"You don't have the permission to assign this role ({roleid}) to this "
        f"user ({userid}) in this course ({courseid}).",
    )


def not_enrolled(userid: int, courseid: int) -> MoodleError:
    """The companion plugin's ``notenrolled``: no manual enrolment to change."""
    return moodle_exception(
        "notenrolled",
        f"User {userid} has no manual enrolment in course {courseid}: "
        "nothing was changed",
    )


def no_manual_instance(courseid: int) -> MoodleError:
    """``wsnoinstance``: no (enabled, for enrol) manual instance in the course."""
    return moodle_exception(
        "wsnoinstance",
        "Manual enrolment plugin instance doesn't exist or is disabled for the "
        f"course (id = {courseid})",
    )


def context_not_valid(level: str, instanceid: int) -> MoodleError:
    """``errorcatcontextnotvalid`` / ``errorcoursecontextnotvalid``: no such context.

    Recorded (sequence 5) for a missing category (``core_course_create_courses``)
    and a missing course (``core_group_get_course_groups``).
    """
    code = (
        "errorcatcontextnotvalid"
        if level == "category"
        else "errorcoursecontextnotvalid"
    )
    return moodle_exception(
        code,
        f"You cannot execute functions in the {level} context ({level} id:"
        f"{instanceid}). The context error message was: {INVALID_PARAMETER_MESSAGE}",
    )


def no_permission(capability_name: str) -> MoodleError:
    """``required_capability_exception`` (``nopermissions``), the capability's name in it."""
    return MoodleError(
        REQUIRED_CAPABILITY_EXCEPTION,
        "nopermissions",
        "Sorry, but you do not currently have permissions to do that"
        f" ({capability_name}).",
    )
