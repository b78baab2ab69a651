"""``ledger adopt``: take ownership of the enrolments Moodle already holds for us.

Going live on a site that was kept by hand (or by campus-enrollment-sync), the
ledger is empty: the first reconcile would own nothing, so it would neither drop
anything nor know the enrolments are ours. Adopting records, per mapped course
of the latest complete snapshot's terms, every enrolment Moodle holds that
PowerCampus also says should exist, as owned, with:

* status from the roster (active → ``active``, inactive → ``suspended``);
* roles: the desired role of each source (student, instructor) that Moodle
  holds. An enrolment holding none of the desired roles is not adopted (it may
  be a teacher's): it stays unowned and the reconcile reports it.

Not adopted, reported: Moodle-only enrolments (left unowned, never dropped)
and PowerCampus-only ones (the reconcile will enrol them). Pairs that already
have a ledger entry are left as they are. ``plan_adoption`` is pure.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import structlog

from consumers.decisions import EnrolmentPolicy, desired_enrolments
from consumers.identity import Found
from consumers.ledger import Ledger
from consumers.mapping import MappingSet
from consumers.ports import RosterEntry
from consumers.reconcile.driver import BeforeWriting, ReconcileInputs
from consumers.reconcile.model import CachedMapping
from schemas.actions import CourseRef, LedgerEntry, RoleSource

__all__ = ["AdoptionPlan", "NotAdopted", "adopt", "plan_adoption"]

log = structlog.get_logger()


@dataclass(frozen=True, slots=True)
class NotAdopted:
    """An enrolment (or a wish) left out of the ledger, and why."""

    course: CourseRef
    userid: int | None
    people_code_id: str | None
    reason: str


@dataclass(slots=True)
class AdoptionPlan:
    """The ledger entries to write, and what is reported instead."""

    entries: list[LedgerEntry] = field(default_factory=list)
    already_owned: int = 0
    moodle_only: list[NotAdopted] = field(default_factory=list)
    powercampus_only: list[NotAdopted] = field(default_factory=list)
    role_differs: list[NotAdopted] = field(default_factory=list)


def plan_adoption(
    inputs: ReconcileInputs,
    mapping: MappingSet,
    policy: EnrolmentPolicy,
    ledger: Iterable[LedgerEntry],
) -> AdoptionPlan:
    """Decide which Moodle enrolments become owned ledger entries."""
    snapshot = inputs.snapshot
    terms = snapshot.marker.terms
    known = {(e.courseid, e.userid) for e in ledger if e.owned}
    wanted: dict[tuple[int, int], tuple[dict[RoleSource, int], str, str]] = {}
    plan = AdoptionPlan()
    mapping = CachedMapping(mapping)
    for event in snapshot.events:
        resolution = inputs.identities.get(event.people_code_id)
        for desired in desired_enrolments(event, mapping, policy):
            if desired.active and isinstance(resolution, Found):
                key = (desired.course.id, resolution.userid)
                wanted[key] = (desired.wanted(), event.event_id, event.people_code_id)
    for course in mapping:
        if not any(course.term.matches(t) for t in terms):
            continue
        ref = CourseRef(id=course.id, shortname=course.shortname)
        roster = inputs.rosters.get(course.id, {})
        _adopt_course(
            ref,
            roster,
            wanted=wanted,
            known=known,
            state_version=snapshot.marker.state_version,
            plan=plan,
        )
    return plan


def _adopt_course(
    course: CourseRef,
    roster: Mapping[int, RosterEntry],
    *,
    wanted: Mapping[tuple[int, int], tuple[dict[RoleSource, int], str, str]],
    known: set[tuple[int, int]],
    state_version: int,
    plan: AdoptionPlan,
) -> None:
    for userid, held in sorted(roster.items()):
        key = (course.id, userid)
        if key in known:
            plan.already_owned += 1
            continue
        want = wanted.get(key)
        if want is None:
            plan.moodle_only.append(
                NotAdopted(course, userid, None, "PowerCampus does not enrol them")
            )
            continue
        roles, event_id, person = want
        adopted = {s: r for s, r in roles.items() if r in held.roleids}
        if not adopted:
            holds = ",".join(str(r) for r in sorted(held.roleids)) or "none"
            wants = ",".join(str(r) for r in sorted(set(roles.values())))
            plan.role_differs.append(
                NotAdopted(
                    course, userid, person, f"Moodle holds roles {holds}, not {wants}"
                )
            )
            continue
        plan.entries.append(
            LedgerEntry(
                courseid=course.id,
                userid=userid,
                roleid=adopted.get("student", adopted.get("instructor", 0)),
                roles=adopted,
                status="active" if held.status == "active" else "suspended",
                event_id=event_id,
                state_version=state_version,
            )
        )
    for (courseid, userid), (_, _, person) in wanted.items():
        if (
            courseid == course.id
            and userid not in roster
            and (courseid, userid) not in known
        ):
            plan.powercampus_only.append(
                NotAdopted(course, userid, person, "not in Moodle: reconcile enrols")
            )


async def adopt(
    inputs: ReconcileInputs,
    mapping: MappingSet,
    policy: EnrolmentPolicy,
    ledger: Ledger,
    *,
    dry_run: bool = False,
    before_writing: BeforeWriting | None = None,
) -> AdoptionPlan:
    """Plan the adoption and, unless ``dry_run``, record it in the ledger.

    ``before_writing`` is awaited just before the ledger is written (never on a
    dry run); what it raises (``LiveConsumerRefused``) propagates, nothing written.
    """
    plan = plan_adoption(inputs, mapping, policy, ledger)
    if not dry_run:
        if before_writing is not None:
            await before_writing()
        await ledger.record(plan.entries)
    log.info(
        "ledger_adopted" if not dry_run else "ledger_adopt_planned",
        snapshot_id=inputs.snapshot.snapshot_id,
        adopted=len(plan.entries),
        already_owned=plan.already_owned,
        moodle_only=len(plan.moodle_only),
        powercampus_only=len(plan.powercampus_only),
        role_differs=len(plan.role_differs),
    )
    return plan
