"""The domain's Moodle actions as web-service calls; the one place that translates them.

The runner and the reconcile speak the registrar's words (enrol, drop by removing
the role / suspending / unenrolling, restore, change role); this module turns
each into the calls Moodle 5.1 needs, built on one checked ``call`` (no aiohttp
here, so an in-process transport can stand in for HTTP in tests).

Two translations of a status change exist. By default only Moodle's own web
services are used, and a status changes only by enrolling again, which sends the
course welcome message. A site that installed the companion plugin
(``moodle/local_enrolstream``) and put its function in the token's service is
used with ``status_function = SET_STATUS``: the status then changes through
``enrol_plugin::update_user_enrol``, which sends nothing.

============== ====================================================================
action         calls (in order; each only once the one before it applied)
============== ====================================================================
enrol          ``enrol_manual_enrol_users`` (suspend=0): the only one that welcomes;
               then ``core_role_assign_roles`` for each further role (a student
               who also teaches the course: never a second enrol call)
reactivate     with the plugin: its function (suspend=0), then
               ``core_role_assign_roles`` per role (a role already held is a
               no-op), then unassign each previous role that differs; no message.
               Without: ``enrol_manual_enrol_users`` (suspend=0), then assign the
               further roles, then unassign the previous ones (Moodle sends the
               welcome message again: only enrolments suspended before drops
               stopped being suspends need it)
change_role    ``core_role_assign_roles`` per new role, then
               ``core_role_unassign_roles`` per old one (recorded: exactly the
               new roles remain, ``people_instructor_to_secondary_*``)
restore_role   ``core_role_assign_roles`` per role
remove_role    ``core_role_unassign_roles`` per role
suspend        with the plugin: its function (suspend=1); roles are kept, no
               message. Without: refused, as suspending through
               ``enrol_manual_enrol_users`` welcomes the student (see
               ``consumers.decisions``); ``drop_action = "suspend"`` is refused at
               start-up unless the site lists the function
unenrol        ``enrol_manual_unenrol_users``
============== ====================================================================

Role calls use ``contextlevel=course`` and ``instanceid=<course id>``. Every
request stays within ``max_input_vars``; rows of one function are chunked and
bisected by ``connectors.moodle.batch.apply_rows``. Each action ends in exactly
one of ``applied``, ``rejected`` (Moodle refused one of its calls: that call and
the ones after it are not applied, the ones before it are) or ``unknown``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import structlog

from connectors.moodle.batch import (
    ENROL_ROW_FIELDS,
    MEMBER_ROW_FIELDS,
    ROLE_ROW_FIELDS,
    STATUS_ROW_FIELDS,
    UNENROL_ROW_FIELDS,
    BatchResult,
    EnrolRow,
    MemberRow,
    RoleRow,
    StatusRow,
    UnenrolRow,
    apply_rows,
)
from connectors.moodle.errors import MoodleBadResponse
from connectors.moodle.form import ROUTING_FIELDS
from consumers.ports import ActionOutcomes
from consumers.tasks import run_all
from schemas.actions import (
    ChangeRoleAction,
    EnrolAction,
    MoodleAction,
    ReactivateAction,
    RegroupAction,
    RemoveRoleAction,
    RestoreRoleAction,
    SuspendAction,
    UnenrolAction,
)

__all__ = [
    "ADD_MEMBERS",
    "DELETE_MEMBERS",
    "ENROL",
    "ROLE_ASSIGN",
    "ROLE_UNASSIGN",
    "SET_STATUS",
    "UNENROL",
    "MoodleWrites",
    "status_function_listed",
]

log = structlog.get_logger()

ENROL = "enrol_manual_enrol_users"
UNENROL = "enrol_manual_unenrol_users"
ROLE_ASSIGN = "core_role_assign_roles"
ROLE_UNASSIGN = "core_role_unassign_roles"
#: The companion plugin's function (``moodle/local_enrolstream``).
SET_STATUS = "local_enrolstream_set_enrolment_status"
ADD_MEMBERS = "core_group_add_group_members"
DELETE_MEMBERS = "core_group_delete_group_members"

Row = EnrolRow | UnenrolRow | RoleRow | StatusRow | MemberRow
RowT = TypeVar("RowT", bound=Row)

#: function -> (the list parameter's name, form fields per row)
_SHAPES: dict[str, tuple[str, int]] = {
    ENROL: ("enrolments", ENROL_ROW_FIELDS),
    UNENROL: ("enrolments", UNENROL_ROW_FIELDS),
    ROLE_ASSIGN: ("assignments", ROLE_ROW_FIELDS),
    ROLE_UNASSIGN: ("unassignments", ROLE_ROW_FIELDS),
    ADD_MEMBERS: ("members", MEMBER_ROW_FIELDS),
    DELETE_MEMBERS: ("members", MEMBER_ROW_FIELDS),
}
#: The status function's shape (``SET_STATUS``, or whatever ``status_function`` names).
_STATUS_SHAPE = ("enrolments", STATUS_ROW_FIELDS)


@dataclass(frozen=True, slots=True)
class _Call(Generic[RowT]):
    function: str
    row: RowT


AnyCall = (
    _Call[EnrolRow]
    | _Call[UnenrolRow]
    | _Call[RoleRow]
    | _Call[StatusRow]
    | _Call[MemberRow]
)


def _calls(action: MoodleAction, status_function: str | None) -> list[AnyCall]:
    """The calls that carry out ``action``, in order (see the module table)."""
    if isinstance(action, UnenrolAction):
        return _own_calls(action, status_function)
    members: list[AnyCall] = [
        _Call(ADD_MEMBERS, MemberRow(groupid=g, userid=action.userid))
        for g in action.join_groupids
    ]
    members += [
        _Call(DELETE_MEMBERS, MemberRow(groupid=g, userid=action.userid))
        for g in action.leave_groupids
    ]
    if isinstance(action, RegroupAction):
        return members
    return [*_own_calls(action, status_function), *members]


def _own_calls(
    action: EnrolAction
    | ReactivateAction
    | ChangeRoleAction
    | RestoreRoleAction
    | RemoveRoleAction
    | SuspendAction
    | UnenrolAction,
    status_function: str | None,
) -> list[AnyCall]:
    """The action's calls before its section groups'."""
    pair = {"userid": action.userid, "courseid": action.courseid}
    match action:
        case EnrolAction():
            enrol = EnrolRow(
                **pair,
                roleid=action.roleid,
                suspend=False,
                timestart=action.timestart,
                timeend=action.timeend,
            )
            return [_Call(ENROL, enrol), *_assign(action, action.also_roleids)]
        case ReactivateAction() | SuspendAction():
            return _status_calls(action, status_function)
        case ChangeRoleAction():
            roles = (action.roleid, *action.also_roleids)
            return [*_assign(action, roles), *_unassign_previous(action)]
        case RestoreRoleAction():
            return _assign(action, (action.roleid, *action.also_roleids))
        case RemoveRoleAction():
            roles = (action.roleid, *action.also_roleids)
            return [
                _Call(ROLE_UNASSIGN, RoleRow(**pair, roleid=role))
                for role in dict.fromkeys(roles)
            ]
        case UnenrolAction():
            return [_Call(UNENROL, UnenrolRow(**pair))]


def _assign(action: MoodleAction, roles: Sequence[int]) -> list[AnyCall]:
    """One ``core_role_assign_roles`` call per role, in order."""
    return [
        _Call(
            ROLE_ASSIGN,
            RoleRow(userid=action.userid, courseid=action.courseid, roleid=role),
        )
        for role in dict.fromkeys(roles)
    ]


def _status_calls(
    action: ReactivateAction | SuspendAction, status_function: str | None
) -> list[AnyCall]:
    """A status change: through the companion's function when the site has it."""
    pair = {"userid": action.userid, "courseid": action.courseid}
    if isinstance(action, SuspendAction):
        if status_function is None:
            raise ValueError(
                "a suspend needs the companion plugin's function (status_function): "
                "through enrol_manual_enrol_users it sends the course welcome "
                "message; drop_action='suspend' is refused at start-up without it"
            )
        return [_Call(status_function, StatusRow(**pair, suspend=True))]
    also = _assign(action, action.also_roleids)
    if status_function is None:
        row = EnrolRow(
            **pair,
            roleid=action.roleid,
            suspend=False,
            timestart=action.timestart,
            timeend=action.timeend,
        )
        return [_Call(ENROL, row), *also, *_unassign_previous(action)]
    reactivate = _Call(status_function, StatusRow(**pair, suspend=False))
    # Enrolling again assigned the role; a status change does not.
    roles = _assign(action, (action.roleid, *action.also_roleids))
    return [reactivate, *roles, *_unassign_previous(action)]


def status_function_listed(site_info: Mapping[str, object]) -> str | None:
    """``SET_STATUS`` when ``core_webservice_get_site_info`` lists it, else None.

    site_info lists the functions of the token's service, so this is None both on
    a site without the companion plugin and on one whose service lacks its
    function (recorded: ``companion_site_info_without_plugin`` /
    ``companion_site_info_with_plugin``); calling it then fails either way.
    """
    functions = site_info.get("functions")
    if not isinstance(functions, list):
        return None
    names = {f.get("name") for f in functions if isinstance(f, dict)}
    return SET_STATUS if SET_STATUS in names else None


def _unassign_previous(action: ChangeRoleAction | ReactivateAction) -> list[AnyCall]:
    """Unassign each previous role that is not also one to hold."""
    kept = {action.roleid, *action.also_roleids}
    previous = [action.previous_roleid, *action.also_previous_roleids]
    return [
        _Call(
            ROLE_UNASSIGN,
            RoleRow(userid=action.userid, courseid=action.courseid, roleid=role),
        )
        for role in dict.fromkeys(previous)
        if role is not None and role not in kept
    ]


class MoodleWrites(ABC):
    """Write calls; subclasses provide ``call``, ``max_input_vars`` and ``concurrency``."""

    max_input_vars: int
    #: Requests the subclass lets run at once; chunks are balanced over them.
    concurrency: int = 1
    #: ``SET_STATUS`` when the site has the companion plugin's function in the
    #: token's service (``core_webservice_get_site_info`` lists it); None: Moodle's
    #: own functions only, and a ``SuspendAction`` is refused.
    status_function: str | None = None

    @abstractmethod
    async def call(self, function: str, params: Mapping[str, object]) -> object:
        """One checked web-service call (see ``MoodleClient.call``)."""

    async def apply(self, actions: Sequence[MoodleAction]) -> ActionOutcomes:
        """Carry out ``actions`` (at most one per (course, user)); see the module table.

        The calls go in rounds: every action's first call, then the second call of
        those whose first applied, and so on. Never raises for Moodle's answers:
        every action is reported applied, rejected or unknown, whatever happened
        to the other actions' requests. ``ValueError`` if a ``SuspendAction`` comes
        without ``status_function`` (nothing is sent then).
        """
        plans = {a.key(): _calls(a, self.status_function) for a in actions}
        outcomes = ActionOutcomes()
        outcomes.applied.extend(a for a in actions if not plans[a.key()])
        todo = [a for a in actions if plans[a.key()]]
        step = 0
        while todo:
            sent = await self._send([(a, plans[a.key()][step]) for a in todo])
            outcomes.rejected.extend(sent.rejected)
            outcomes.unknown.extend(sent.unknown)
            if step:
                outcomes.partly_applied.update(a.key() for a, _ in sent.rejected)
            step += 1
            todo = []
            for action in sent.applied:
                more = step < len(plans[action.key()])
                (todo if more else outcomes.applied).append(action)
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

    async def set_status(self, rows: Sequence[StatusRow]) -> BatchResult[StatusRow]:
        """The companion plugin's function: suspend or reactivate existing enrolments.

        No welcome message; a row without an enrolment is rejected (``notenrolled``),
        never created. ``ValueError`` without ``status_function``.
        """
        if self.status_function is None:
            raise ValueError("the site has no companion status function")
        return await self._rows(self.status_function, rows)

    async def _send(
        self,
        calls: Sequence[tuple[MoodleAction, AnyCall]],
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
        key, fields = (
            _STATUS_SHAPE if function == self.status_function else _SHAPES[function]
        )

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
