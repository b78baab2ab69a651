"""Moodle's answers as typed errors: the Moodle adapter's part of the apply side's tree.

::

    MoodleError (TargetError)
    ├── MoodleUnavailable (TargetUnavailable)  retriable: refused/dropped connection,
    │                                   timeout, maintenance mode, any answer that
    │                                   is not Moodle's JSON whatever its status
    │                                   (5xx, a proxy's or PHP's error page,
    │                                   "Terminated: 15" while the server stops)
    ├── MoodleAuthError (TargetRefused) invalidtoken, accessexception,
    │   │                               servicenotavailable: fix token or service
    │   └── MoodleFunctionMissing       the site has no such function (the
    │                                   companion plugin is not installed)
    ├── MoodleBadResponse               a redirect (fix the URL), or JSON of a
    │                                   shape Moodle's function does not return
    └── MoodleRejected (ActionRejected) that row cannot be applied; carries
        │                               errorcode, exception, message, debuginfo
        ├── MoodleNotFound              invalidrecordunknown, invaliduser, a
        │                               course or category context that is not
        ├── MoodleNoManualInstance      wsnoinstance
        ├── MoodleCannotAssignRole      wsusercannotassign
        ├── MoodleInvalidParameter      invalidparameter
        ├── MoodleGuestNotAllowed       guestsarenotallowed
        ├── MoodleTaken                 shortnametaken, courseidnumbertaken,
        │                               categoryidnumbertaken, idnumbertaken
        │                               (groups): the thing exists already
        └── MoodleCodingError           codingerror (the request is wrong, no row)

Only ``MoodleUnavailable`` is retriable. ``classify_moodle_error`` turns a Moodle
error body into the right type; extend it by adding entries to
``REJECTED_BY_ERRORCODE`` (or the auth/unavailable code sets).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, TypeGuard

from consumers.errors import (
    ActionRejected,
    TargetError,
    TargetRefused,
    TargetUnavailable,
)

__all__ = [
    "AUTH_ERRORCODES",
    "FUNCTION_MISSING",
    "REJECTED_BY_ERRORCODE",
    "REJECTED_BY_FUNCTION",
    "UNAVAILABLE_ERRORCODES",
    "MoodleAuthError",
    "MoodleBadResponse",
    "MoodleCannotAssignRole",
    "MoodleCodingError",
    "MoodleError",
    "MoodleFunctionMissing",
    "MoodleGuestNotAllowed",
    "MoodleInvalidParameter",
    "MoodleNoManualInstance",
    "MoodleNotFound",
    "MoodleRejected",
    "MoodleTaken",
    "MoodleUnavailable",
    "classify_moodle_error",
    "is_moodle_error_body",
]


class MoodleError(TargetError):
    """Root of the Moodle web-service client's errors."""


class MoodleUnavailable(MoodleError, TargetUnavailable):
    """Moodle did not answer usefully now; the same request may succeed later.

    Nothing sent in the failed request may be assumed applied (or not applied):
    the request may have been cut after Moodle committed it, so whoever retries
    reads what Moodle holds first (a resent enrol welcomes the student again).
    """

    retriable: ClassVar[bool] = True

    def __init__(self, reason: str, *, retry_after_s: float | None = None) -> None:
        self.reason = reason
        self.retry_after_s = retry_after_s
        suffix = "" if retry_after_s is None else f" (retry after {retry_after_s:g} s)"
        super().__init__(f"Moodle unavailable: {reason}{suffix}")


class MoodleAuthError(MoodleError, TargetRefused):
    """The token or the external service is refused: an operator must fix it."""

    def __init__(self, errorcode: str, message: str) -> None:
        self.errorcode = errorcode
        self.message = message
        super().__init__(f"Moodle refused the token: {errorcode}: {message}")


class MoodleFunctionMissing(MoodleAuthError):
    """Moodle does not know the function called: an add-on plugin is missing.

    Only raised where the function's own errors cannot be mistaken for it (see
    ``FUNCTION_MISSING``); install the plugin or stop calling the function.
    """

    def __init__(self, errorcode: str, message: str, *, function: str) -> None:
        super().__init__(errorcode, message)
        self.function = function
        text = (
            f"Moodle has no function {function} ({errorcode}: {message}): "
            "is its plugin installed?"
        )
        self.args = (text,)


class MoodleBadResponse(MoodleError):
    """An answer Moodle's REST server does not give: a redirect, or JSON of another shape."""

    def __init__(self, reason: str, *, status: int | None = None) -> None:
        self.reason = reason
        self.status = status
        where = "" if status is None else f" (HTTP {status})"
        super().__init__(f"unexpected answer from Moodle{where}: {reason}")


class MoodleRejected(MoodleError, ActionRejected):
    """Moodle refused the request's content; retrying the same rows cannot help.

    ``row_level`` says whether one bad row can cause it, i.e. whether splitting a
    batch can isolate the culprit and let the other rows land.
    """

    row_level: ClassVar[bool] = True

    def __init__(
        self,
        errorcode: str,
        message: str,
        *,
        exception: str = "",
        debuginfo: str | None = None,
        function: str | None = None,
    ) -> None:
        self.errorcode = errorcode
        self.exception = exception
        self.message = message
        self.debuginfo = debuginfo
        self.function = function
        where = f"{function}: " if function else ""
        super().__init__(f"{where}{errorcode}: {message}")


class MoodleNotFound(MoodleRejected):
    """A user, course or record does not exist.

    ``invalidrecordunknown`` (site debugging off) and ``invaliduser`` (debugging on)
    are the same condition and both land here.
    """

    person_may_be_gone: ClassVar[bool] = True


class MoodleNoManualInstance(MoodleRejected):
    """The course has no *enabled* manual enrolment instance (``wsnoinstance``)."""


class MoodleCannotAssignRole(MoodleRejected):
    """The token user may not assign that role there, or the role does not exist."""


class MoodleInvalidParameter(MoodleRejected):
    """Moodle's parameter validation failed (e.g. enrol into an unknown course)."""


class MoodleGuestNotAllowed(MoodleRejected):
    """The guest user cannot be enrolled."""


class MoodleTaken(MoodleRejected):
    """A shortname or idnumber is taken already (a course, category or group).

    Recorded (sequence 5): ``shortnametaken``, ``courseidnumbertaken``,
    ``categoryidnumbertaken``, and ``idnumbertaken`` for a group (also while
    Moodle's group cache still holds a group a rolled-back batch created).
    """


class MoodleCodingError(MoodleRejected):
    """Moodle reports a coding error: our request is wrong whatever the rows are."""

    row_level: ClassVar[bool] = False


#: errorcode -> its MoodleRejected subclass; other codes give plain MoodleRejected.
REJECTED_BY_ERRORCODE: dict[str, type[MoodleRejected]] = {
    "invalidrecordunknown": MoodleNotFound,
    "invalidrecord": MoodleNotFound,
    "invaliduser": MoodleNotFound,
    "wsnoinstance": MoodleNoManualInstance,
    "wsusercannotassign": MoodleCannotAssignRole,
    "invalidparameter": MoodleInvalidParameter,
    "guestsarenotallowed": MoodleGuestNotAllowed,
    "codingerror": MoodleCodingError,
    "shortnametaken": MoodleTaken,
    "courseidnumbertaken": MoodleTaken,
    "categoryidnumbertaken": MoodleTaken,
    "idnumbertaken": MoodleTaken,
    "errorcatcontextnotvalid": MoodleNotFound,
    "errorcoursecontextnotvalid": MoodleNotFound,
    "invalidcourseid": MoodleNotFound,
}

#: (function, errorcode) -> type, where a function uses a code differently. Recorded:
#: core_role_assign_roles answers a user that does not exist with ``codingerror``
#: ("User ID does not exist or is deleted!"), one row's fault, not the request's
#: (golden case ``assign_roles_nonexistent_user``).
REJECTED_BY_FUNCTION: dict[tuple[str, str], type[MoodleRejected]] = {
    ("core_role_assign_roles", "codingerror"): MoodleNotFound,
}

#: (function, errorcode) pairs meaning Moodle does not know the function. Moodle
#: answers an unknown function with ``invalidrecordunknown`` (``invalidrecord``
#: with debugging on), which most functions also use for a missing row; the
#: companion plugin's functions never answer those codes themselves (the status
#: function says ``invaliduser``, the roster read warns ``invalidcourseid``), so
#: from them they mean the plugin is not installed (golden cases
#: ``companion_not_installed``, ``companion_not_installed_debug_on``,
#: ``bulkroster_not_installed``).
FUNCTION_MISSING: frozenset[tuple[str, str]] = frozenset(
    {
        ("local_enrolstream_set_enrolment_status", "invalidrecordunknown"),
        ("local_enrolstream_set_enrolment_status", "invalidrecord"),
        ("local_enrolstream_get_course_enrolments", "invalidrecordunknown"),
        ("local_enrolstream_get_course_enrolments", "invalidrecord"),
    }
)

#: errorcodes meaning the token/service is refused, whatever the request says.
AUTH_ERRORCODES: frozenset[str] = frozenset(
    {"invalidtoken", "accessexception", "servicenotavailable", "invalidtokensession"}
)

#: errorcodes meaning "not now": retry later.
UNAVAILABLE_ERRORCODES: frozenset[str] = frozenset({"sitemaintenance"})

# Raised for any access-control failure of the web-service layer itself.
_AUTH_EXCEPTION_CLASS = "webservice_access_exception"


def is_moodle_error_body(body: object) -> TypeGuard[Mapping[str, object]]:
    """True when a decoded body is Moodle's error object (sent with HTTP 200)."""
    return isinstance(body, Mapping) and "exception" in body


def classify_moodle_error(
    body: Mapping[str, object], *, function: str | None = None
) -> MoodleError:
    """The typed error for a body ``{exception, errorcode, message[, debuginfo]}``.

    Pure: it returns the error, the caller raises it. Exception class names may be
    namespaced (``core\\exception\\moodle_exception``); only the last part counts.
    """
    errorcode = str(body.get("errorcode", ""))
    exception = str(body.get("exception", ""))
    message = str(body.get("message", ""))
    debuginfo = body.get("debuginfo")
    short_class = exception.rsplit("\\", 1)[-1]
    if errorcode in AUTH_ERRORCODES or short_class == _AUTH_EXCEPTION_CLASS:
        return MoodleAuthError(errorcode, message)
    if function is not None and (function, errorcode) in FUNCTION_MISSING:
        return MoodleFunctionMissing(errorcode, message, function=function)
    if errorcode in UNAVAILABLE_ERRORCODES:
        return MoodleUnavailable(f"{errorcode}: {message}")
    error_type = REJECTED_BY_FUNCTION.get(
        (function or "", errorcode),
        REJECTED_BY_ERRORCODE.get(errorcode, MoodleRejected),
    )
    return error_type(
        errorcode,
        message,
        exception=exception,
        debuginfo=None if debuginfo is None else str(debuginfo),
        function=function,
    )
