"""The domain's actions as Conduit enrolment rows, pure: the one place that translates them.

Conduit's enrolment file has one row per (course, person, role) and two actions,
``add`` and ``drop``; what a ``drop`` does in Moodle (unenrol, suspend) is
Conduit's own setting, not ours. Every action therefore becomes drops of the
roles it takes away, then adds:

============== =====================================================================
action         rows
============== =====================================================================
enrol          add each role
restore_role   add each role
reactivate,    drop each previous role that is not wanted any more, then add every
change_role    role the enrolment holds afterwards
remove_role    drop each role; then add the roles of ours that stay (a student who
               still teaches there), in case Conduit's drop removes the enrolment
suspend        drop each role (``drop_action = "suspend"``: Conduit cannot suspend
               through its file; the ledger records the drop as a suspension)
unenrol        drop every role the site was told the person holds there
============== =====================================================================

``held`` is what the site was told before (the outbox's book), and the second
value returned what it is told after: the same model the ledger keeps, so a
read-back after a crash (``MoodleGateway.holdings``) and the decisions agree.
"""

from __future__ import annotations

from typing import Literal

from consumers.decisions import Held
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

__all__ = ["RoleRow", "Verb", "rows_for"]

Verb = Literal["add", "drop"]
#: One row to write: add or drop, and the role id.
RoleRow = tuple[Verb, int]


def _roles(held: Held | None) -> frozenset[int]:
    return held.roleids if held is not None else frozenset()


def _rows(drops: list[int], after: Held | None, adds: list[int]) -> list[RoleRow]:
    """Drops, then the adds (every role held afterwards when something was dropped)."""
    if drops and after is not None and after.active:
        adds = sorted(after.roleids)
    rows: list[RoleRow] = [("drop", role) for role in dict.fromkeys(drops)]
    return rows + [("add", role) for role in dict.fromkeys(adds)]


def rows_for(
    action: MoodleAction, held: Held | None
) -> tuple[list[RoleRow], Held | None]:
    """The rows for ``action`` given what the site was told ``held``, and what it
    is told afterwards (None: no enrolment)."""
    roles = _roles(held)
    if isinstance(action, EnrolAction | RestoreRoleAction):
        wanted = [action.roleid, *action.also_roleids]
        after = Held(active=True, roleids=roles | frozenset(wanted))
        return _rows([], after, wanted), after
    if isinstance(action, ReactivateAction | ChangeRoleAction):
        wanted = [action.roleid, *action.also_roleids]
        previous = [
            role
            for role in (action.previous_roleid, *action.also_previous_roleids)
            if role is not None and role not in wanted
        ]
        after = Held(
            active=True, roleids=(roles | frozenset(wanted)) - frozenset(previous)
        )
        return _rows(previous, after, wanted), after
    if isinstance(action, RemoveRoleAction):
        dropped = [action.roleid, *action.also_roleids]
        after = Held(
            active=held.active if held is not None else True,
            roleids=roles - frozenset(dropped),
        )
        return _rows(dropped, after, []), after
    if isinstance(action, SuspendAction):
        dropped = [action.roleid, *action.also_roleids]
        after = Held(active=False, roleids=roles | frozenset(dropped))
        return _rows(dropped, after, []), after
    if isinstance(action, UnenrolAction):
        return _rows(sorted(roles), None, []), None
    raise TypeError(f"unknown action {action!r}")  # pragma: no cover - closed union
