"""The simulator's write journal: what each applied write found, and who was still waiting.

A real Moodle cannot tell a fault-matrix harness why a student got a second
"Welcome to <course>": whether the enrolment already existed when that call
ran, or whether the client had already given up on the call. The simulator can.
With ``enrolstream moodle-sim --audit FILE`` every *committed* call of the
functions below appends one JSON line per row to FILE (flushed at once, so the
journal survives a SIGTERM, a restart and even a SIGKILL of the simulator);
calls that Moodle refused or rolled back write nothing.

Each line: ``call`` (process id and call number), ``function``, ``courseid``,
``userid``, ``arrived`` and ``applied`` (wall-clock seconds: the request's
arrival, before any injected delay, and the commit), ``client_gone`` (the client
had closed the connection before the commit: a request that hung past its
timeout and was applied anyway), and per function:

* ``enrol_manual_enrol_users``: ``roleid``, ``suspend``, ``existed`` (an
  enrolment was there before this row), ``status_before``, ``roles_before``,
  ``welcome`` (this row sent the course welcome message);
* ``enrol_manual_unenrol_users``: ``existed``;
* ``core_role_assign_roles`` / ``core_role_unassign_roles``: ``roleid``,
  ``held_before`` (the user held that role there), ``enrolled`` (an enrolment
  exists);
* ``core_enrol_get_enrolled_users`` (a read, one line per call, no ``userid``):
  when a client read a course's roster, to show that a read-back came before
  or after a late write.

Off unless asked: the journal is for test harnesses, never for a demo site.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandbox.moodle_sim.state import MoodleState

ENROL = "enrol_manual_enrol_users"
UNENROL = "enrol_manual_unenrol_users"
ASSIGN = "core_role_assign_roles"
UNASSIGN = "core_role_unassign_roles"
READ = "core_enrol_get_enrolled_users"
JOURNALLED = frozenset({ENROL, UNENROL, ASSIGN, UNASSIGN, READ})
_ROWS_PARAM = {
    ENROL: "enrolments",
    UNENROL: "enrolments",
    ASSIGN: "assignments",
    UNASSIGN: "unassignments",
}


@dataclass(frozen=True)
class Caller:
    """The request a call came in: when it arrived, and whether its client left."""

    arrived: float
    gone: Callable[[], bool]


@dataclass
class Watch:
    """One call being journalled: its rows as they were before the call ran."""

    call: str
    function: str
    caller: Caller
    rows: list[dict[str, Any]] = field(default_factory=list)
    notifications_before: int = 0


class WriteAudit:
    """Appends the journal lines of committed calls to ``path`` (see the module doc)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._calls = 0
        self._pid = os.getpid()

    def before(
        self, function: str, params: dict[str, Any], state: MoodleState, caller: Caller
    ) -> Watch | None:
        """What the rows of this call find, taken just before the call runs."""
        if function not in JOURNALLED:
            return None
        self._calls += 1
        watch = Watch(f"{self._pid}-{self._calls}", function, caller)
        if function == READ:
            watch.rows.append({"courseid": params.get("courseid")})
            return watch
        watch.notifications_before = len(state.notifications)
        for row in params.get(_ROWS_PARAM[function], []):
            watch.rows.append(_before_row(function, row, state))
        return watch

    def after(self, watch: Watch, state: MoodleState) -> None:
        """The call committed: append one line per row."""
        applied = time.time()
        gone = watch.caller.gone()
        welcomed = Counter(
            (n.courseid, n.useridto)
            for n in state.notifications[watch.notifications_before :]
        )
        lines = []
        for row in watch.rows:
            line = {
                "call": watch.call,
                "function": watch.function,
                "arrived": watch.caller.arrived,
                "applied": applied,
                "client_gone": gone,
                **row,
            }
            if watch.function == ENROL:
                pair = (row["courseid"], row["userid"])
                line["welcome"] = welcomed[pair] > 0
                welcomed[pair] -= 1
            lines.append(json.dumps(line, sort_keys=True))
        with self.path.open("a", encoding="utf-8") as journal:
            journal.write("".join(f"{line}\n" for line in lines))
            journal.flush()


def _course_of(row: dict[str, Any], state: MoodleState) -> int | None:
    if row.get("courseid"):
        return int(row["courseid"])
    if row.get("contextid"):
        course = state.course_by_context(int(row["contextid"]))
        return None if course is None else course.id
    if row.get("contextlevel") == "course" and "instanceid" in row:
        return int(row["instanceid"])
    return None


def _before_row(
    function: str, row: dict[str, Any], state: MoodleState
) -> dict[str, Any]:
    courseid, userid = _course_of(row, state), int(row["userid"])
    found = None if courseid is None else state.enrolment(courseid, userid)
    held = set() if courseid is None else state.roles_of(courseid, userid)
    entry: dict[str, Any] = {"courseid": courseid, "userid": userid}
    if function == ENROL:
        entry |= {
            "roleid": row["roleid"],
            "suspend": 1 if row.get("suspend", 0) else 0,
            "existed": found is not None,
            "status_before": None if found is None else found.status,
            "roles_before": sorted(held),
        }
    elif function == UNENROL:
        entry["existed"] = found is not None
    else:
        entry |= {
            "roleid": row["roleid"],
            "held_before": row["roleid"] in held,
            "enrolled": found is not None,
        }
    return entry


def read_journal(path: Path) -> list[dict[str, Any]]:
    """Every line of a journal, oldest first (none when the file does not exist)."""
    if not path.exists():
        return []
    with path.open(encoding="utf-8") as journal:
        return [json.loads(line) for line in journal if line.strip()]
