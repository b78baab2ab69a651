"""The domain's Moodle actions as web-service calls; the one place that translates them.

The runner and the reconcile speak the registrar's words (enrol, drop by removing
the role / suspending / unenrolling, restore, change role); this module turns
each into the calls Moodle 5.1 needs, built on one checked ``call`` (no aiohttp
here, so an in-process transport can stand in for HTTP in tests):

============== ====================================================================
action         calls (in order; the second only once the first applied)
============== ====================================================================
enrol          ``enrol_manual_enrol_users`` (suspend=0): the only one that welcomes
reactivate     ``enrol_manual_enrol_users`` (suspend=0), then unassign the previous
               role if it differs (Moodle sends the welcome message again: only
               enrolments suspended before drops stopped being suspends need it)
change_role    ``core_role_assign_roles`` (new), then ``core_role_unassign_roles`` (old)
restore_role   ``core_role_assign_roles``
remove_role    ``core_role_unassign_roles``
suspend        refused: suspending through ``enrol_manual_enrol_users`` welcomes the
               student (see ``consumers.decisions``); ``drop_action = "suspend"``
               is refused at start-up
unenrol        ``enrol_manual_unenrol_users``
============== ====================================================================

Role calls use ``contextlevel=course`` and ``instanceid=<course id>``. Every
request stays within ``max_input_vars``; rows of one function are chunked and
bisected by ``consumers.moodle_batch.apply_rows``. Each action ends in exactly
one of ``applied``, ``rejected`` (Moodle refused it: nothing of it applied, or,
for a two-call action, only its first call) or ``unknown``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import structlog

from consumers.errors import MoodleBadResponse
from consumers.moodle_batch import (
    ENROL_ROW_FIELDS,
    ROLE_ROW_FIELDS,
    UNENROL_ROW_FIELDS,
    BatchResult,
    EnrolRow,
    RoleRow,
    UnenrolRow,
    apply_rows,
    run_all,
)
from consumers.moodle_form import ROUTING_FIELDS
from consumers.ports import ActionOutcomes
from schemas.actions import (
    ChangeRoleAction,
    EnrolAction,
    MoodleAction,
    ReactivateAction,
    RemoveRoleAction,
    RestoreRoleAction,
    SuspendAction,
    UnenrolAction,
)

__all__ = ["ENROL", "ROLE_ASSIGN", "ROLE_UNASSIGN", "UNENROL", "MoodleWrites"]

log = structlog.get_logger()

ENROL = "enrol_manual_enrol_users"
UNENROL = "enrol_manual_unenrol_users"
ROLE_ASSIGN = "core_role_assign_roles"
ROLE_UNASSIGN = "core_role_unassign_roles"

Row = EnrolRow | UnenrolRow | RoleRow
RowT = TypeVar("RowT", bound=Row)

#: function -> (the list parameter's name, form fields per row)
_SHAPES: dict[str, tuple[str, int]] = {
    ENROL: ("enrolments", ENROL_ROW_FIELDS),
    UNENROL: ("enrolments", UNENROL_ROW_FIELDS),
    ROLE_ASSIGN: ("assignments", ROLE_ROW_FIELDS),
    ROLE_UNASSIGN: ("unassignments", ROLE_ROW_FIELDS),
}


@dataclass(frozen=True, slots=True)
class _Call(Generic[RowT]):
    function: str
    row: RowT


def _first_call(
    action: MoodleAction,
) -> _Call[EnrolRow] | _Call[UnenrolRow] | _Call[RoleRow]:
    pair = {"userid": action.userid, "courseid": action.courseid}
    match action:
        case EnrolAction() | ReactivateAction():
            return _Call(ENROL, EnrolRow(**pair, roleid=action.roleid, suspend=False))
        case ChangeRoleAction() | RestoreRoleAction():
            return _Call(ROLE_ASSIGN, RoleRow(**pair, roleid=action.roleid))
        case RemoveRoleAction():
            return _Call(ROLE_UNASSIGN, RoleRow(**pair, roleid=action.roleid))
        case UnenrolAction():
            return _Call(UNENROL, UnenrolRow(**pair))
        case SuspendAction():
            raise ValueError(
                "a suspend through enrol_manual_enrol_users sends the course welcome "
                "message; drop_action='suspend' is refused at start-up"
            )


def _second_call(action: MoodleAction) -> _Call[RoleRow] | None:
    if isinstance(action, ChangeRoleAction | ReactivateAction):
        previous = action.previous_roleid
        if previous is not None and previous != action.roleid:
            row = RoleRow(
                userid=action.userid, courseid=action.courseid, roleid=previous
            )
            return _Call(ROLE_UNASSIGN, row)
    return None


class MoodleWrites(ABC):
    """Write calls; subclasses provide ``call``, ``max_input_vars`` and ``concurrency``."""

    max_input_vars: int
    #: Requests the subclass lets run at once; chunks are balanced over them.
    concurrency: int = 1

    @abstractmethod
    async def call(self, function: str, params: Mapping[str, object]) -> object:
        """One checked web-service call (see ``MoodleClient.call``)."""

    async def apply(self, actions: Sequence[MoodleAction]) -> ActionOutcomes:
        """Carry out ``actions`` (at most one per (course, user)); see the module table.

        Never raises for Moodle's answers: every action is reported applied,
        rejected or unknown, whatever happened to the other actions' requests.
        """
        outcomes = ActionOutcomes()
        first = await self._send([(action, _first_call(action)) for action in actions])
        then: list[tuple[MoodleAction, _Call[RoleRow]]] = []
        for action in first.applied:
            second = _second_call(action)
            if second is None:
                outcomes.applied.append(action)
            else:
                then.append((action, second))
        outcomes.rejected.extend(first.rejected)
        outcomes.unknown.extend(first.unknown)
        if then:
            finished = await self._send(then)
            outcomes.applied.extend(finished.applied)
            outcomes.rejected.extend(finished.rejected)
            outcomes.unknown.extend(finished.unknown)
        return outcomes

    async def enrol(self, rows: Sequence[EnrolRow]) -> BatchResult[EnrolRow]:
        """``enrol_manual_enrol_users`` for ``rows``; bad rows never block good ones.

        Each row is sent with ``suspend``, ``timestart`` and ``timeend`` (a missing
        key would reactivate or clear them). Requests hold at most
        ``(max_input_vars - 3) // 6`` rows (166 at 1000). Moodle sends the course
        welcome message for every row of every call, updates included.
        """
        return await self._rows(ENROL, rows)

    async def unenrol(self, rows: Sequence[UnenrolRow]) -> BatchResult[UnenrolRow]:
        """``enrol_manual_unenrol_users``; not enrolled is a silent no-op in Moodle."""
        return await self._rows(UNENROL, rows)

    async def assign_roles(self, rows: Sequence[RoleRow]) -> BatchResult[RoleRow]:
        """``core_role_assign_roles`` in each row's course context (no welcome)."""
        return await self._rows(ROLE_ASSIGN, rows)

    async def unassign_roles(self, rows: Sequence[RoleRow]) -> BatchResult[RoleRow]:
        """``core_role_unassign_roles`` in each row's course context."""
        return await self._rows(ROLE_UNASSIGN, rows)

    async def _send(
        self,
        calls: Sequence[
            tuple[MoodleAction, _Call[EnrolRow] | _Call[UnenrolRow] | _Call[RoleRow]]
        ],
    ) -> ActionOutcomes:
        by_function: dict[str, dict[Row, MoodleAction]] = {}
        for action, call in calls:
            by_function.setdefault(call.function, {})[call.row] = action
        functions = list(by_function)
        results = await run_all(
            self._rows(function, list(by_function[function])) for function in functions
        )
        outcomes = ActionOutcomes()
        for function, result in zip(functions, results, strict=True):
            action_of = by_function[function]
            outcomes.applied.extend(action_of[row] for row in result.applied)
            outcomes.rejected.extend(
                (action_of[row], error) for row, error in result.rejected
            )
            outcomes.unknown.extend(
                (action_of[row], error) for row, error in result.unknown
            )
        return outcomes

    async def _rows(self, function: str, rows: Sequence[RowT]) -> BatchResult[RowT]:
        if not rows:
            return BatchResult()
        key, fields = _SHAPES[function]

        async def send(chunk: Sequence[RowT]) -> None:
            answer = await self.call(function, {key: [row.as_param() for row in chunk]})
            if answer is not None:
                raise MoodleBadResponse(
                    f"{function}: expected null, got {type(answer).__name__}"
                )

        result = await apply_rows(
            rows,
            send,
            max_rows=(self.max_input_vars - ROUTING_FIELDS) // fields,
            lanes=self.concurrency,
        )
        _log_result(function, result)
        return result


def _log_result(function: str, result: BatchResult[RowT]) -> None:
    log.info(
        "moodle_rows_sent",
        function=function,
        applied=len(result.applied),
        rejected=len(result.rejected),
        unknown=len(result.unknown),
    )
