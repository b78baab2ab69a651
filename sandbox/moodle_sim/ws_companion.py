"""``local_enrolstream_set_enrolment_status``: the companion plugin's one function.

The repository's optional Moodle plugin (``moodle/local_enrolstream``) changes
the status of existing manual enrolments through ``update_user_enrol``: no
enrolment hook, so no welcome message. It exists only on a site whose
``SiteConfig.plugins`` has ``local_enrolstream`` (elsewhere the call is an
unknown function, ``invalidrecordunknown``) and is callable only by a token
whose service has it (else ``accessexception``), as recorded in sequence 3 of
``tests/data/moodle-golden``.

Per request: ``suspend`` must be 0 or 1 in every row (``invalidparameter``,
before anything is read). Then per row, in one transaction (the first failing
row undoes the rows before it): the course (``invalidparameter`` "Context does
not exist"), the user (``invaliduser``, a ``moodle_exception`` with no
``debuginfo``: the plugin never answers ``invalidrecordunknown``, which stays
Moodle's "no such function here"), a manual instance, enabled or disabled
(``wsnoinstance``), an enrolment in it (``notenrolled``: nothing is ever
created), then the status; a row already in that status changes nothing.
"""

from __future__ import annotations

from typing import Any

from sandbox.moodle_sim import errors
from sandbox.moodle_sim.api import CallContext, WsFunction
from sandbox.moodle_sim.external import Multiple, Single, Value
from sandbox.moodle_sim.site import COMPANION_PLUGIN, SET_ENROLMENT_STATUS

#: The plugin's version.php, which site_info reports as the function's version.
PLUGIN_VERSION = "2026120100"

_ITEM = Single(
    {
        "courseid": Value("int"),
        "userid": Value("int"),
        "suspend": Value("int"),
    }
)


def set_enrolment_status(ctx: CallContext, params: dict[str, Any]) -> None:
    """Set every row's enrolment status or none; never creates an enrolment."""
    rows = params["enrolments"]
    for row in rows:
        if row["suspend"] not in {0, 1}:
            raise errors.invalid_parameter(
                f"suspend must be 0 or 1, not {row['suspend']}"
            )
    state = ctx.state
    with state.transaction():
        for row in rows:
            courseid, userid = row["courseid"], row["userid"]
            course = state.course(courseid)
            if course is None:
                raise errors.invalid_parameter("Context does not exist")
            if state.user(userid) is None:
                raise errors.moodle_exception("invaliduser", "Invalid user")
            if course.manual() is None:
                raise errors.no_manual_instance(courseid)
            if state.enrolment(courseid, userid) is None:
                raise errors.not_enrolled(userid, courseid)
            state.set_enrolment_status(courseid, userid, row["suspend"])


FUNCTIONS: dict[str, WsFunction] = {
    SET_ENROLMENT_STATUS: WsFunction(
        SET_ENROLMENT_STATUS,
        Single({"enrolments": Multiple(_ITEM)}),
        None,
        set_enrolment_status,
        PLUGIN_VERSION,
        "enrolments",
        COMPANION_PLUGIN,
    )
}
