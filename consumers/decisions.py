"""The consumer's decisions, pure: desired states and the ledger in, Moodle actions out.

Two steps, no I/O, clock or logging (STYLE rule 1):

1. ``desired_enrolments(event, mapping, policy)`` (``consumers.desired``): what
   PowerCampus says each affected Moodle course should hold for the person: the
   role each source (student, instructor) wants held there. The person is a
   student of a course when ANY registration feeding it is enrolled, so
   cross-listed courses merged into one Moodle course survive a swap
   (COUN6552/02 → COUN8552/02 in one transaction): both events carry the final
   state, so neither drops.
2. ``plan_action(desired, userid, ledger, ...)``: at most one action for the
   (course, user), given what the ownership ledger says we last did there; or
   ``plan_against`` given what Moodle was read to hold.

Policy choices, open to review:

* Drops never send "Welcome to <course>". Moodle 5.1 fires the enrolment hook
  (and the manual instance's welcome message) on EVERY enrol_manual_enrol_users
  call, updates included, so a drop is never sent through it. ``drop_action``,
  for students and instructors alike: ``remove_role`` (default, web services
  only): the enrolment stays, our roles are taken away with
  ``core_role_unassign_roles`` and given back with ``core_role_assign_roles`` (no
  hook fires); ``suspend``: the enrolment's status changes through the companion
  plugin's function (see the README), never through enrol_users, and the roles
  stay; ``unenrol``: removed (destructive).
* Roles per source: the ledger records the role of ours for each source
  (``LedgerEntry.roles``). The roles to hold are the decided sources' wanted
  roles plus, for a source the event does not speak for, the role we hold. A
  role of ours that is no longer wanted is taken away in the same action that
  assigns the new one (``ChangeRoleAction``, also for student ↔ audit and
  editing teacher ↔ teacher), so exactly one role per source remains. One
  source dropping while another stays (a student who also teaches the course)
  takes only that source's role away; the enrolment is dropped per
  ``drop_action`` only when no role of ours is wanted any more.
* Ownership: with no ledger entry the enrolment is not ours (e.g. a teacher's
  manual enrolment) and is never dropped, nor are roles added to it. Enrolling
  someone with no ledger entry is done, and the entry written then makes it
  ours, even if a teacher had enrolled the same person by hand before (the
  consumer cannot see that; the reconcile, which reads Moodle, leaves such an
  enrolment alone). A role we did not assign is never taken away.
* Already as desired (ledger active with those roles) → no call: re-enrolling
  sends Moodle's welcome message again (golden case ``enrol_welcome_twice``).
* A dropped enrolment (suspended, role removed, unenrolled) stays as it is when
  drops continue, even if ``drop_action`` changed in between.
* Unknown outcomes: a call whose answer was lost leaves its ledger entry
  ``uncertain``; such an entry is never trusted (``plan_action`` refuses it):
  the caller reads what Moodle holds and decides with ``plan_against``.
* Stale: an event whose state_version is older than the ledger entry's is a
  replay after newer state was applied; it plans nothing.
* Late writes: a lost call may still be applied after Moodle was read back.
  ``settle`` records the roles it may still assign (``late_roleids``, taken away
  when held and not wanted) and when to read again; ``repair_late_write`` then
  puts back what the entry says we decided.
"""

from __future__ import annotations

from dataclasses import dataclass

from consumers.desired import (
    DropAction,
    EnrolmentPolicy,
    desired_enrolments,
    is_enrolled,
    unknown_statuses,
)
from schemas.actions import (
    ROLE_SOURCES,
    ChangeRoleAction,
    DesiredEnrolment,
    EnrolAction,
    LedgerEntry,
    LedgerStatus,
    MoodleAction,
    ReactivateAction,
    RegroupAction,
    RemoveRoleAction,
    RestoreRoleAction,
    RoleSource,
    SuspendAction,
    UnenrolAction,
)

Roles = dict[RoleSource, int]


@dataclass(frozen=True, slots=True)
class Held:
    """What Moodle holds for one (course, user): the enrolment's state and roles.

    ``None`` in its place means Moodle holds no enrolment there. ``active`` is
    False for a suspended enrolment (or one outside its time window).
    """

    active: bool
    roleids: frozenset[int]
    #: The section groups of ours the user is in there (Moodle group ids).
    groupids: frozenset[int] = frozenset()


def _held_roles(entry: LedgerEntry) -> Roles:
    """The roles of ours the (certain) entry says Moodle holds."""
    if entry.status in {"active", "suspended"}:
        return entry.our_roles()
    return {}


def held_per_ledger(entry: LedgerEntry | None) -> Held | None:
    """What Moodle holds if the (certain) ledger entry is right."""
    if entry is None or entry.status == "unenrolled":
        return None
    roles = frozenset(_held_roles(entry).values())
    return Held(
        active=entry.status != "suspended",
        roleids=roles,
        groupids=frozenset(entry.groups or ()),
    )


def owns(entry: LedgerEntry | None) -> bool:
    """Whether the enrolment is ours to change: an owned entry that still exists.

    An uncertain entry is ours whatever its status: it records a call we sent.
    """
    if entry is None or not entry.owned:
        return False
    return entry.status != "unenrolled" or entry.uncertain


def target_roles(desired: DesiredEnrolment, ledger: LedgerEntry | None) -> Roles:
    """The role per source to hold: the decided sources' wishes, the others' as held."""
    target = desired.wanted()
    if ledger is not None and ledger.owned:
        for source, role in _held_roles(ledger).items():
            if source not in desired.decided:
                target.setdefault(source, role)
    return target


def _ordered(roles: Roles) -> list[int]:
    """Role ids in source order (student first), each once."""
    return list(dict.fromkeys(roles[s] for s in ROLE_SOURCES if s in roles))


def _ours(ledger: LedgerEntry | None) -> set[int]:
    """Every role the entry says we assigned: held, being replaced, or one a lost
    call may have assigned late (``late_roleids``)."""
    if ledger is None:
        return set()
    return (
        set(ledger.our_roles().values())
        | set(ledger.leftover_roles().values())
        | set(ledger.late_roleids)
    )


def plan_action(
    desired: DesiredEnrolment,
    userid: int,
    ledger: LedgerEntry | None,
    *,
    state_version: int,
    policy: EnrolmentPolicy,
) -> MoodleAction | None:
    """The one Moodle change that brings (course, user) to ``desired``, or None.

    Trusts the ownership ledger's entry for (``desired.course.id``, ``userid``)
    about what Moodle holds; an ``uncertain`` entry cannot be trusted, so it is
    refused here (``ValueError``): read Moodle and call ``plan_against``.
    ``state_version`` is the event's: an entry written for newer state makes the
    decision stale (None).
    """
    if ledger is not None:
        ledger = ledger.normalised()
        _check_pair(ledger, desired.course.id, userid)
        if ledger.state_version > state_version:
            return None
        if ledger.uncertain:
            raise ValueError(
                f"ledger entry for ({ledger.courseid}, {userid}) is uncertain: "
                "read what Moodle holds and use plan_against"
            )
    return plan_against(desired, userid, ledger, held_per_ledger(ledger), policy=policy)


def plan_against(
    desired: DesiredEnrolment,
    userid: int,
    ledger: LedgerEntry | None,
    held: Held | None,
    *,
    policy: EnrolmentPolicy,
) -> MoodleAction | None:
    """The one change that brings what Moodle ``held`` to ``desired``, or None.

    ``ledger`` says whether the enrolment is ours (``owns``) and which roles we
    assigned; ``held`` is what Moodle holds (read, or as the ledger says). The
    rules, shared by the consumer and the nightly reconcile:

    * some role wanted, nothing held: enrol with the wanted roles (the only
      change that welcomes);
    * wanted, held but not ours: left alone (a teacher's enrolment stays theirs);
    * wanted, ours and suspended: reactivate; active: assign what is missing and
      take away roles of ours no longer wanted (restore, change or remove role);
    * nothing of ours wanted: an active enrolment of ours that still holds a
      role of ours is dropped per ``policy.drop_action``; anything else
      (nothing held, already suspended, our roles already gone, not ours) is
      left as it is. A drop never creates an enrolment.
    """
    target = target_roles(desired, ledger)
    courseid = desired.course.id
    if target:
        return _bring_in(
            courseid,
            userid,
            ledger,
            held,
            target,
            creates=desired.wanted(),
            dates=(desired.timestart, desired.timeend),
        )
    return _drop(courseid, userid, ledger, held, policy)


def repair_late_write(
    entry: LedgerEntry, held: Held | None, *, policy: EnrolmentPolicy
) -> MoodleAction | None:
    """The change that puts back what ``entry`` says we decided, or None.

    For a (certain) entry whose ``recheck_at_ms`` came due: a call whose answer
    was lost, and that Moodle applied only after we had read it back, may have
    changed the enrolment since (an enrol landing after the drop that followed
    it). The late write was ours, so its effects are ours to undo.
    """
    entry = entry.normalised()
    if entry.status == "active":
        roles = entry.our_roles()
        action = _bring_in(
            entry.courseid, entry.userid, entry, held, roles, creates=roles
        )
    else:
        ours = entry.model_copy(update={"status": "active", "owned": True})
        action = _drop(entry.courseid, entry.userid, ours, held, policy)
    return _regroup_late(entry, action, held)


def _regroup_late(
    entry: LedgerEntry, action: MoodleAction | None, held: Held | None
) -> MoodleAction | None:
    """The section groups ``entry`` records put back beside ``action`` (a late add
    or removal of a member undone), when the enrolment stays."""
    if held is None or entry.groups is None or isinstance(action, UnenrolAction):
        return action
    want = set(entry.groups) if entry.status == "active" else set()
    join = tuple(sorted(want - held.groupids))
    leave = tuple(sorted(held.groupids - want))
    if not join and not leave:
        return action
    update = {"join_groupids": join, "leave_groupids": leave}
    if action is None:
        return RegroupAction(courseid=entry.courseid, userid=entry.userid, **update)
    return action.model_copy(update=update)


def _bring_in(
    courseid: int,
    userid: int,
    ledger: LedgerEntry | None,
    held: Held | None,
    target: Roles,
    *,
    creates: Roles,
    dates: tuple[int, int] = (0, 0),
) -> MoodleAction | None:
    """Bring (course, user) to hold ``target``; ``creates``: the roles that may
    create an enrolment when Moodle holds none (what the decision itself wants)."""
    pair = {"courseid": courseid, "userid": userid}
    if held is None:
        # Only what this event decides creates an enrolment, never a kept role.
        roles = _ordered(creates)
        if not roles:
            return None
        return EnrolAction(
            **pair,
            roleid=roles[0],
            also_roleids=tuple(roles[1:]),
            timestart=dates[0],
            timeend=dates[1],
        )
    if not owns(ledger):
        return None
    wanted = _ordered(target)
    assign = [r for r in wanted if r not in held.roleids]
    unassign = sorted(r for r in _ours(ledger) - set(wanted) if r in held.roleids)
    # A source whose old role goes while it keeps a role: a role change, not a drop.
    replaced = [
        target[source]
        for source, role in _sources(ledger)
        if role in unassign and source in target
    ]
    if ledger is not None and set(ledger.late_roleids) & set(unassign):
        # A role a lost call assigned late, taken away while we keep a role there:
        # a role change, not a drop.
        replaced.append(wanted[0])
    if not held.active:
        return ReactivateAction(
            **pair,
            roleid=wanted[0],
            also_roleids=tuple(wanted[1:]),
            previous_roleid=unassign[0] if unassign else None,
            also_previous_roleids=tuple(unassign[1:]),
            timestart=dates[0],
            timeend=dates[1],
        )
    return _adjust(pair, assign, unassign, replaced)


def _sources(ledger: LedgerEntry | None) -> list[tuple[RoleSource, int]]:
    """Each role of ours with its source (leftovers of a role change included)."""
    if ledger is None:
        return []
    return [*ledger.our_roles().items(), *ledger.leftover_roles().items()]


def _adjust(
    pair: dict[str, int], assign: list[int], unassign: list[int], replaced: list[int]
) -> MoodleAction | None:
    """The role change of an active enrolment of ours: assign, unassign, or both.

    Taking roles away is a change of role when a role of the same source stays
    (``replaced``: assigned again, a no-op, so the action names it), else a drop
    of that source (``RemoveRoleAction``).
    """
    roles = list(dict.fromkeys([*assign, *replaced]))
    if roles and unassign:
        return ChangeRoleAction(
            **pair,
            roleid=roles[0],
            also_roleids=tuple(roles[1:]),
            previous_roleid=unassign[0],
            also_previous_roleids=tuple(unassign[1:]),
        )
    if assign:
        return RestoreRoleAction(
            **pair, roleid=assign[0], also_roleids=tuple(assign[1:])
        )
    if unassign:
        return RemoveRoleAction(
            **pair, roleid=unassign[0], also_roleids=tuple(unassign[1:])
        )
    return None


def _drop(
    courseid: int,
    userid: int,
    ledger: LedgerEntry | None,
    held: Held | None,
    policy: EnrolmentPolicy,
) -> MoodleAction | None:
    if ledger is None or held is None or not held.active or not owns(ledger):
        return None
    mine = sorted(r for r in _ours(ledger) if r in held.roleids)
    if not mine:
        return None  # our roles are gone already: dropped by role removal (or by hand)
    pair = {"courseid": courseid, "userid": userid}
    if policy.drop_action == "unenrol":
        return UnenrolAction(**pair)
    if policy.drop_action == "suspend":
        return SuspendAction(**pair, roleid=mine[0], also_roleids=tuple(mine[1:]))
    return RemoveRoleAction(**pair, roleid=mine[0], also_roleids=tuple(mine[1:]))


def _check_pair(ledger: LedgerEntry, courseid: int, userid: int) -> None:
    if (ledger.courseid, ledger.userid) != (courseid, userid):
        raise ValueError(
            f"ledger entry is for ({ledger.courseid}, {ledger.userid}), "
            f"not ({courseid}, {userid})"
        )


def settle(
    entry: LedgerEntry, held: Held | None, *, recheck_at_ms: int | None = None
) -> LedgerEntry:
    """The certain entry for what Moodle was read to hold, ownership kept.

    Used when an entry was uncertain (a call's outcome unknown): the status is
    what Moodle holds now; roles of ours Moodle does not hold are dropped from
    ``roles`` (kept when none is held: they name what was removed); roles we held
    before an unfinished role change stay in ``previous_roles`` while Moodle
    still holds them. ``recheck_at_ms``: when to read Moodle again, as the lost
    call may still land later; the roles it would assign then are kept in
    ``late_roleids``.
    """
    entry = entry.normalised()
    ours = entry.our_roles()
    late = set(entry.late_roleids)
    if entry.uncertain and entry.status == "active":
        late |= set(ours.values())  # the lost call assigns them if it lands late
    kept = {s: r for s, r in ours.items() if held is not None and r in held.roleids}
    status: LedgerStatus
    if held is None:
        status = "unenrolled"
    elif not held.active:
        status = "suspended"
    elif kept:
        status = "active"
    else:
        status = "role_removed"
    roles = kept or ours
    leftovers = {
        s: r
        for s, r in entry.leftover_roles().items()
        if held is not None and r in held.roleids and r not in roles.values()
    }
    roleid = _main(roles, entry.roleid)
    legacy = entry.roles is None and entry.previous_roles is None
    student_only = set(roles) <= {"student"} and set(leftovers) <= {"student"}
    return entry.model_copy(
        update={
            "status": status,
            "uncertain": False,
            "roleid": roleid,
            # an entry written before instructors stays in that form while it can
            "roles": None if legacy and student_only else roles,
            "previous_roles": None if legacy and student_only else leftovers or None,
            "previous_roleid": leftovers.get("student"),
            "sent_at_ms": None,
            "late_roleids": tuple(sorted(late)),
            "recheck_at_ms": recheck_at_ms or entry.recheck_at_ms,
            # the groups of ours Moodle was read to hold (none without an enrolment)
            "groups": _settled_groups(entry, held),
        }
    )


def _settled_groups(entry: LedgerEntry, held: Held | None) -> tuple[int, ...] | None:
    if held is None:
        return () if entry.groups is not None else None
    if entry.groups is None and not held.groupids:
        return None
    return tuple(sorted(held.groupids))


def as_decided(
    entry: LedgerEntry, desired: DesiredEnrolment, held: Held | None
) -> LedgerEntry:
    """The settled ``entry`` once ``desired`` needed no call: Moodle holds it already.

    After a read-back an unfinished role change can leave a role of ours recorded
    as a leftover while the decision wants it again; Moodle holding it makes it
    ours again (``roles``), so the entry records what was decided (the late-write
    recheck puts back exactly that). Anything else: ``entry`` unchanged.
    """
    target = target_roles(desired, entry)
    if not target or held is None or not held.active or not owns(entry):
        return entry
    if any(role not in held.roleids for role in target.values()):
        return entry
    legacy = entry.roles is None and set(target) <= {"student"}
    return entry.model_copy(
        update={
            "status": "active",
            "roleid": _main(target, entry.roleid),
            "roles": None if legacy else target,
            "previous_roles": None,
            "previous_roleid": None,
        }
    )


def _main(roles: Roles, fallback: int) -> int:
    """The entry's ``roleid``: the student side's role, else the instructor's."""
    return roles.get("student", roles.get("instructor", fallback))


_STATUS_AFTER: dict[str, LedgerStatus] = {
    "enrol": "active",
    "reactivate": "active",
    "change_role": "active",
    "restore_role": "active",
    "remove_role": "role_removed",
    "suspend": "suspended",
    "unenrol": "unenrolled",
}


def _groups_after(
    action: MoodleAction, previous: LedgerEntry | None
) -> tuple[int, ...] | None:
    """The groups of ours the user is in once ``action`` applied."""
    if isinstance(action, UnenrolAction):
        return () if previous is not None and previous.groups is not None else None
    before = previous.groups if previous is not None else None
    if not action.join_groupids and not action.leave_groupids:
        return before
    held = set(before or ())
    return tuple(
        sorted((held | set(action.join_groupids)) - set(action.leave_groupids))
    )


def next_ledger_entry(
    action: MoodleAction,
    previous: LedgerEntry | None,
    *,
    desired: DesiredEnrolment,
    event_id: str,
    state_version: int,
    uncertain: bool = False,
    sent_at_ms: int | None = None,
    people_code_id: str | None = None,
) -> LedgerEntry:
    """The ledger entry for ``action``: its intent (``uncertain``) or its outcome.

    The intent is written before the call is sent, so a call cut off after Moodle
    applied it still leaves an entry that says we own the enrolment and that its
    state must be read before the next decision. The outcome replaces it once
    Moodle answered. ``desired`` is the decision the action came from: it says
    which source each role is for. ``sent_at_ms`` (an intent): when its call is
    sent, for the late-write recheck.
    """
    if isinstance(action, UnenrolAction) and previous is None:
        raise ValueError("an unenrol is only planned over an existing ledger entry")
    before = previous.our_roles() if previous is not None else {}
    target = target_roles(desired, previous)
    if isinstance(action, RegroupAction):
        if previous is None:
            raise ValueError("a regroup is only planned over an existing ledger entry")
        return previous.normalised().model_copy(
            update={
                "event_id": event_id,
                "state_version": state_version,
                "uncertain": uncertain,
                "sent_at_ms": sent_at_ms if uncertain else None,
                "groups": _groups_after(action, previous),
            }
        )
    status = _STATUS_AFTER[action.kind]
    roles: Roles
    if isinstance(action, EnrolAction):
        roles = desired.wanted()
    elif isinstance(action, ChangeRoleAction | ReactivateAction | RestoreRoleAction):
        roles = target
    elif isinstance(action, RemoveRoleAction) and target:
        roles, status = target, "active"  # one source dropped, another stays
    else:
        roles = before  # dropped: the roles that were ours there
    leftovers: Roles = {}
    if uncertain and isinstance(action, ChangeRoleAction | ReactivateAction):
        removed = {action.previous_roleid, *action.also_previous_roleids}
        # Per source, a leftover of an earlier cut-off change and the role now
        # replaced can differ: whichever of them this change removes stays a
        # leftover (the one it replaces wins).
        earlier = previous.leftover_roles() if previous else {}
        mine = [*earlier.items(), *before.items()]
        leftovers = {s: r for s, r in mine if r in removed}
    fallback = previous.roleid if previous is not None else desired.role_id
    return LedgerEntry(
        courseid=action.courseid,
        userid=action.userid,
        roleid=_main(roles, fallback),
        roles=roles,
        status=status,
        event_id=event_id,
        state_version=state_version,
        uncertain=uncertain,
        previous_roleid=leftovers.get("student"),
        previous_roles=leftovers or None,
        people_code_id=people_code_id
        or (previous.people_code_id if previous is not None else None),
        sent_at_ms=sent_at_ms if uncertain else None,
        # A late write may still land: the recheck outlives the writes after it.
        recheck_at_ms=previous.recheck_at_ms if previous is not None else None,
        late_roleids=previous.late_roleids if previous is not None else (),
        groups=_groups_after(action, previous),
    )


__all__ = [
    "DropAction",
    "EnrolmentPolicy",
    "Held",
    "LedgerEntry",
    "as_decided",
    "desired_enrolments",
    "held_per_ledger",
    "is_enrolled",
    "next_ledger_entry",
    "owns",
    "plan_action",
    "plan_against",
    "repair_late_write",
    "settle",
    "target_roles",
    "unknown_statuses",
]
