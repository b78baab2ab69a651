"""The nightly reconcile's decision, pure: snapshot, ledger and rosters in, changes out.

Two views are compared per (mapped course, Moodle user): what PowerCampus says
(the snapshot, through ``desired_enrolments``), what we own (the ledger) and what
Moodle holds (the roster). The rules, in order:

* The ledger entry is newer than the snapshot (``state_version``): the consumer
  already applied later PowerCampus state; nothing is planned (``stale``).
* Otherwise the change is the consumer's own decision against what Moodle
  holds (``consumers.decisions.plan_against``), so the two never disagree:
  - PowerCampus says enrolled: Moodle holds nothing → ``enrol`` (missed while
    the consumer was down, or unenrolled by hand when the ledger says active);
    held suspended → ``reactivate``; held without the desired role →
    ``restore_role``, or ``change_role`` when a role we assigned before is
    still held; not ours → unowned difference;
  - PowerCampus does not say enrolled (dropped, or the person is absent from
    the snapshot altogether): an active enrolment of ours still holding our
    role is dropped per ``policy.drop_action`` (``remove_role``, ``suspend``,
    ``unenrol``); Moodle-active enrolments we do not own are listed as unowned
    differences and left alone;
  - otherwise in step.
* Persons without exactly one Moodle account are listed, never acted on. No
  drop is planned for an account that may be theirs: any of an ``Ambiguous``
  person's accounts, and any roster entry whose ``user_field`` value (idnumber
  by default) is an unresolved person's transformed id. Without a resolution
  they get no desired state, so their enrolments would otherwise look "absent
  from the snapshot". Such an enrolment is kept, and named in the person's
  ``UnresolvedPerson.reason``.

Section groups (``groups``, when on): each change also brings the groups of
ours the user is in to those of their enrolled sections, and a ``regroup`` is
planned where only groups differ (a student moved between groups by hand, or
taken out of one), with the consumer's own rules (``consumers.groups``); a
dropped student leaves every group of ours. Groups not made yet are not planned
(the consumer makes them; ``reconcile --apply`` makes them first).

Only courses of the snapshot's terms are decided: a snapshot of Fall says
nothing about Winter. The mass-drop guard (``GuardLimits``) compares drops with
the owned enrolments Moodle holds active; a term for which the snapshot carries
no event at all while we own active enrolments there is an empty source, which
even ``force`` does not override (an empty or broken source never empties Moodle).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from consumers.batching import GroupView
from consumers.decisions import (
    EnrolmentPolicy,
    Held,
    desired_enrolments,
    owns,
    plan_against,
    target_roles,
)
from consumers.groups import adjust
from consumers.identity import (
    Ambiguous,
    Found,
    Resolution,
    Transform,
    UserField,
    transform_people_code_id,
)
from consumers.mapping import MappingSet, MoodleCourse
from consumers.ports import RosterEntry
from consumers.reconcile.guard import GuardLimits, GuardReport, check_guard
from consumers.reconcile.model import (
    CachedMapping,
    ChangeKind,
    CourseCounts,
    PlannedChange,
    ReconcilePlan,
    UnownedDifference,
    UnresolvedPerson,
)
from consumers.reconcile.unresolved import Unresolved, UnresolvedPersons
from consumers.roles import role_name
from schemas.actions import (
    ROLE_SOURCES,
    ChangeRoleAction,
    CourseRef,
    DesiredEnrolment,
    EnrolAction,
    LedgerEntry,
    MoodleAction,
    ReactivateAction,
    RegroupAction,
    RestoreRoleAction,
    RoleSource,
    UnenrolAction,
)
from schemas.events import EnrolmentEvent, TermKey

__all__ = [
    "CachedMapping",
    "ChangeKind",
    "CourseCounts",
    "GuardLimits",
    "GuardReport",
    "PlannedChange",
    "ReconcilePlan",
    "UnownedDifference",
    "UnresolvedPerson",
    "plan_reconcile",
]


@dataclass(frozen=True, slots=True)
class _Wanted:
    desired: DesiredEnrolment
    event: EnrolmentEvent


@dataclass(frozen=True, slots=True)
class _Pair:
    """Everything known about one (course, user)."""

    course: CourseRef
    term: TermKey
    userid: int
    wanted: _Wanted | None
    ledger: LedgerEntry | None
    roster: RosterEntry | None
    idnumber: str
    unresolved_person: str | None = None
    """The unresolved person this account may belong to: never dropped."""
    ours: frozenset[int] = frozenset()
    """The course's section groups of ours."""
    groups_ids: Mapping[str, int] | None = None
    """idnumber -> id of those groups; None: the course has no section groups."""


def plan_reconcile(
    *,
    snapshot_id: str,
    state_version: int,
    terms: Sequence[TermKey],
    events: Sequence[EnrolmentEvent],
    mapping: MappingSet,
    policy: EnrolmentPolicy,
    identities: Mapping[str, Resolution],
    rosters: Mapping[int, Mapping[int, RosterEntry]],
    ledger: Iterable[LedgerEntry],
    limits: GuardLimits,
    transform: Transform = "strip_p",
    user_field: UserField = "idnumber",
    groups: GroupView | None = None,
) -> ReconcilePlan:
    """Plan the changes that bring every mapped course of ``terms`` in step.

    ``identities`` must hold a resolution for every person of ``events`` (a
    person without one is treated as unresolved); ``rosters`` every mapped
    course of ``terms`` (a course without one is listed in ``missing_rosters``
    and not decided). ``transform`` and ``user_field`` are the resolver's: they say
    which roster entries may belong to an unresolved person. See the module
    docstring for the rules.
    """
    result = ReconcilePlan(snapshot_id=snapshot_id, state_version=state_version)
    mapping = mapping if isinstance(mapping, CachedMapping) else CachedMapping(mapping)
    courses = [c for c in mapping if any(c.term.matches(t) for t in terms)]
    unresolved = UnresolvedPersons(user_field)
    wanted = _wanted(
        events,
        mapping,
        policy,
        identities,
        unresolved=unresolved,
        transform=transform,
    )
    owned = _ledger_by_course(ledger)
    events_per_term = _events_per_term(events, terms)
    # Someone absent from a snapshot that reads SECTIONPER teaches nothing either.
    absent: tuple[RoleSource, ...] = ("student",)
    if any(event.teaching is not None for event in events):
        absent = ROLE_SOURCES
    for course in courses:
        ref = CourseRef(id=course.id, shortname=course.shortname)
        roster = rosters.get(course.id)
        if roster is None:
            result.missing_rosters.append(ref)
            continue
        counts = CourseCounts(course=ref)
        result.counts[course.id] = counts
        pairs = _pairs(
            ref,
            course.term,
            wanted.get(course.id, {}),
            owned,
            roster,
            transform=transform,
            unresolved=unresolved,
            groups=_sectioned(groups, mapping, course.id, policy),
        )
        for pair in pairs:
            _decide(
                pair,
                state_version,
                policy=policy,
                result=result,
                unresolved=unresolved,
                absent=absent,
            )
    result.unresolved = unresolved.listed()
    result.guard = check_guard(
        result.counts.values(),
        result.changes,
        limits,
        empty_terms=_empty_terms(courses, events_per_term, result.counts),
    )
    return result


def _wanted(
    events: Iterable[EnrolmentEvent],
    mapping: MappingSet,
    policy: EnrolmentPolicy,
    identities: Mapping[str, Resolution],
    *,
    unresolved: UnresolvedPersons,
    transform: Transform,
) -> dict[int, dict[int, _Wanted]]:
    """Desired state per course and user; fills ``unresolved`` with the rest."""
    by_course: dict[int, dict[int, _Wanted]] = {}
    for event in events:
        desired = desired_enrolments(event, mapping, policy)
        person = event.people_code_id
        resolution = identities.get(person)
        if not isinstance(resolution, Found):
            reason = resolution.reason if resolution else "not looked up"
            known = unresolved.persons.setdefault(person, Unresolved(person, reason))
            known.courses += tuple(d.course.shortname for d in desired if d.active)
            if isinstance(resolution, Ambiguous):
                unresolved.by_userid.update(dict.fromkeys(resolution.userids, person))
            value = transform_people_code_id(person, transform)
            if value:
                unresolved.by_value[value] = person
            continue
        for item in desired:
            by_course.setdefault(item.course.id, {})[resolution.userid] = _Wanted(
                item, event
            )
    return by_course


def _sectioned(
    groups: GroupView | None,
    mapping: MappingSet,
    courseid: int,
    policy: EnrolmentPolicy,
) -> GroupView | None:
    """``groups`` when the course has section groups, else None."""
    entry = mapping.entry(courseid)
    on = policy.section_groups and entry is not None and entry.groups
    return groups if on and entry is not None and entry.several_sections() else None


def _ledger_by_course(
    ledger: Iterable[LedgerEntry],
) -> dict[int, dict[int, LedgerEntry]]:
    by_course: dict[int, dict[int, LedgerEntry]] = {}
    for entry in ledger:
        by_course.setdefault(entry.courseid, {})[entry.userid] = entry
    return by_course


def _events_per_term(
    events: Iterable[EnrolmentEvent], terms: Sequence[TermKey]
) -> dict[str, int]:
    counts = {term.label(): 0 for term in terms}
    for event in events:
        for term in terms:
            if event.term.matches(term):
                counts[term.label()] += 1
    return counts


def _empty_terms(
    courses: Sequence[MoodleCourse],
    events_per_term: Mapping[str, int],
    counts: Mapping[int, CourseCounts],
) -> list[tuple[str, int]]:
    owned: dict[str, int] = {}
    for course in courses:
        label = next(t for t in events_per_term if course.term.matches(_term(t)))
        known = counts.get(course.id)
        owned[label] = owned.get(label, 0) + (known.owned_active if known else 0)
    return sorted(
        (t, owned[t]) for t, n in events_per_term.items() if n == 0 and owned.get(t)
    )


def _term(label: str) -> TermKey:
    return TermKey.parse(label)


def _pairs(
    course: CourseRef,
    term: TermKey,
    wanted: Mapping[int, _Wanted],
    owned: Mapping[int, Mapping[int, LedgerEntry]],
    roster: Mapping[int, RosterEntry],
    *,
    transform: Transform,
    unresolved: UnresolvedPersons,
    groups: GroupView | None = None,
) -> list[_Pair]:
    entries = owned.get(course.id, {})
    ours = groups.ours(course.id) if groups is not None else frozenset()
    ids = groups.ids(course.id) if groups is not None else None
    users = sorted(set(wanted) | set(entries) | set(roster))
    pairs = []
    for userid in users:
        held, want = roster.get(userid), wanted.get(userid)
        if held is not None and held.idnumber:
            idnumber = held.idnumber
        elif want is not None:
            idnumber = transform_people_code_id(want.desired.people_code_id, transform)
        else:
            idnumber = f"userid:{userid}"
        pairs.append(
            _Pair(
                course,
                term,
                userid,
                want,
                entries.get(userid),
                held,
                idnumber,
                unresolved.owner(userid, held),
                ours,
                ids,
            )
        )
    return pairs


def _roles(roleids: Iterable[int]) -> str:
    return ", ".join(role_name(r) for r in sorted(roleids)) or "no role"


def _moodle_view(roster: RosterEntry | None) -> str:
    if roster is None:
        return "not enrolled"
    return f"{roster.status} as {_roles(roster.roleids)}"


def _held(roster: RosterEntry | None, ours: frozenset[int]) -> Held | None:
    if roster is None:
        return None
    return Held(
        active=roster.status == "active",
        roleids=roster.roleids,
        groupids=roster.groupids & ours,
    )


def _decide(
    pair: _Pair,
    state_version: int,
    *,
    policy: EnrolmentPolicy,
    result: ReconcilePlan,
    unresolved: UnresolvedPersons,
    absent: tuple[RoleSource, ...],
) -> None:
    roster, want = pair.roster, pair.wanted
    ledger = pair.ledger.normalised() if pair.ledger is not None else None
    counts = result.counts[pair.course.id]
    ours = owns(ledger)
    if ours and roster is not None and roster.status == "active":
        counts.owned_active += 1
    if ledger is not None and ledger.state_version > state_version:
        counts.stale += 1
        return
    wanted = want is not None and want.desired.active
    if (
        not wanted
        and pair.unresolved_person is not None
        and roster is not None
        and roster.status == "active"
    ):
        # Perhaps the unresolved person's own enrolment: never dropped, never
        # reported as "absent from the snapshot" (it is not; they are unresolved).
        unresolved.keep(pair.unresolved_person, pair.course.shortname, pair.userid)
        return
    desired = want.desired if want is not None else _absent(pair, policy, absent)
    held = _held(roster, pair.ours)
    action = plan_against(desired, pair.userid, ledger, held, policy=policy)
    if pair.groups_ids is not None:
        action = adjust(
            desired,
            action,
            userid=pair.userid,
            ledger=ledger,
            held=held.groupids if held is not None else frozenset(),
            ids=pair.groups_ids,
        )
    if action is not None:
        _add(
            pair, action, _reason(action, pair, ledger, desired, want), result, desired
        )
        _count(result, counts)
    elif not ours and not wanted and _staff(roster, policy):
        counts.other_roles += 1
    elif not ours and _differs(desired, roster):
        powercampus = (
            want.desired.reason
            if want is not None
            else "no registration in the term (absent from the snapshot)"
        )
        if wanted:
            powercampus = f"enrolled as {role_name(desired.role_id)}: {desired.reason}"
        _unowned(pair, powercampus, result, counts)
    else:
        counts.in_step += 1


def _absent(
    pair: _Pair, policy: EnrolmentPolicy, decided: tuple[RoleSource, ...]
) -> DesiredEnrolment:
    """What PowerCampus wants of a person absent from the snapshot: no enrolment."""
    return DesiredEnrolment(
        course=pair.course,
        people_code_id=f"userid:{pair.userid}",
        term=pair.term,
        active=False,
        role_id=policy.student_role_id,
        roles={},
        decided=decided,
        reason="no registration in the term (absent from the snapshot)",
        groups=() if pair.groups_ids is not None else None,
    )


def _staff(roster: RosterEntry | None, policy: EnrolmentPolicy) -> bool:
    """An enrolment holding none of the roles we give (a teacher's, an assistant's)."""
    ours = {policy.student_role_id, policy.audit_role_id}
    return roster is not None and not roster.roleids & ours


def _differs(desired: DesiredEnrolment, roster: RosterEntry | None) -> bool:
    """Moodle holds something other than PowerCampus wants (ownership aside)."""
    if desired.active:
        return roster is None or (
            roster.status != "active"
            or not set(desired.wanted().values()) <= roster.roleids
        )
    return roster is not None and roster.status == "active"


def _about(
    action: MoodleAction, desired: DesiredEnrolment, ledger: LedgerEntry | None
) -> tuple[RoleSource, ...]:
    """The sources whose role ``action`` adds, changes or takes away."""
    if isinstance(action, EnrolAction):
        return tuple(desired.wanted())
    before = ledger.our_roles() if ledger is not None else {}
    after = target_roles(desired, ledger)
    changed = tuple(s for s in ROLE_SOURCES if before.get(s) != after.get(s))
    return changed or tuple(before) or ("student",)


def _reason(
    action: MoodleAction,
    pair: _Pair,
    ledger: LedgerEntry | None,
    desired: DesiredEnrolment,
    want: _Wanted | None,
) -> str:
    was_active = ledger is not None and ledger.status == "active"
    powercampus = f"PowerCampus: {desired.reason}"
    match action:
        case EnrolAction():
            how = "unenrolled by hand in Moodle" if was_active else "missing in Moodle"
            return f"{how}; {powercampus}"
        case ReactivateAction():
            how = "suspended by hand in Moodle" if was_active else "suspended by us"
            return f"{how}; {powercampus}"
        case ChangeRoleAction():
            held = _roles(pair.roster.roleids if pair.roster else ())
            return (
                f"Moodle holds {held}, PowerCampus says {role_name(action.roleid)} "
                f"({desired.reason}); {role_name(action.previous_roleid)} is taken away"
            )
        case RestoreRoleAction():
            how = (
                "removed by hand in Moodle" if was_active else "removed by us at a drop"
            )
            return f"{role_name(action.roleid)} role {how}; {powercampus}"
        case RegroupAction():
            return (
                f"section groups differ (join {list(action.join_groupids)}, leave "
                f"{list(action.leave_groupids)}); {powercampus}"
            )
        case _:
            return (
                want.desired.reason
                if want is not None
                else "no registration in the term (absent from the snapshot)"
            )


def _count(result: ReconcilePlan, counts: CourseCounts) -> None:
    kind = result.changes[-1].kind
    counts.planned[kind] = counts.planned.get(kind, 0) + 1


def _unowned(
    pair: _Pair, powercampus: str, result: ReconcilePlan, counts: CourseCounts
) -> None:
    counts.unowned += 1
    result.unowned.append(
        UnownedDifference(
            course=pair.course,
            userid=pair.userid,
            user_idnumber=pair.idnumber,
            people_code_id=pair.wanted.desired.people_code_id if pair.wanted else None,
            moodle=_moodle_view(pair.roster),
            powercampus=powercampus,
        )
    )


def _add(
    pair: _Pair,
    action: MoodleAction,
    reason: str,
    result: ReconcilePlan,
    desired: DesiredEnrolment,
) -> None:
    want = pair.wanted
    ledger = pair.ledger
    roleid = (
        action.roleid
        if not isinstance(action, UnenrolAction | RegroupAction)
        else (ledger.roleid if ledger is not None else 0)
    )
    result.changes.append(
        PlannedChange(
            kind=action.kind,
            action=action,
            course=pair.course,
            userid=pair.userid,
            user_idnumber=pair.idnumber,
            people_code_id=want.desired.people_code_id if want else None,
            roleid=roleid,
            reason=reason,
            previous=ledger.normalised() if ledger is not None else None,
            event_id=want.event.event_id if want else f"reconcile:{result.snapshot_id}",
            desired=desired,
            about=_about(action, desired, ledger),
            term_withdrawal=desired.term_withdrawal,
        )
    )
