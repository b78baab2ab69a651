"""The nightly reconcile's I/O: gather the three views, plan, then report or apply.

``gather_inputs`` resolves every snapshot person (in look-ups of
``lookup_chunk`` values, run concurrently) while reading the roster of every
mapped course of the snapshot's terms (``consumers.rosters``); the client's
``concurrency`` bounds the requests in flight. ``reconcile`` plans
(``consumers.reconcile_plan``) and, with ``apply``, sends the changes through the
consumer's own ``enrol``/``unenrol`` (bad rows isolated by bisection), recording
every applied change in the ledger before the next slice is sent. A dry run
sends nothing but reads. A tripped guard applies nothing (see
``consumers.reconcile_guard``).

Rows Moodle rejects are reported with Moodle's error and the run goes on; a
failure of Moodle itself (unreachable, token refused) stops applying, keeps
what was applied and recorded, and marks the rest ``error``.

Applying (and ``ledger adopt``) writes the ledger, so it must not run beside
``enrolstream consume``: the consumer holds its own copy of the ledger in memory
and would overwrite our entries (a lost drop) or re-enrol from a stale view (a
second welcome message). The caller passes ``before_writing``, which raises
``LiveConsumerRefused`` while the apply group has live members; it runs after
planning, just before the first write.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import structlog

from consumers.decisions import EnrolmentPolicy, next_ledger_entry
from consumers.errors import ConsumerError, MoodleError
from consumers.identity import IdentityResolver, Resolution
from consumers.ledger import Ledger
from consumers.mapping import MappingSet
from consumers.moodle_batch import BatchResult, EnrolRow, UnenrolRow
from consumers.reconcile_guard import GuardLimits
from consumers.reconcile_plan import PlannedChange, ReconcilePlan, plan_reconcile
from consumers.rosters import RosterEntry, RosterReads, read_rosters
from consumers.snapshot_reader import LoadedSnapshot
from schemas.actions import LedgerEntry, UnenrolAction

__all__ = [
    "BeforeWriting",
    "LiveConsumerRefused",
    "ProgressTask",
    "ReconcileInputs",
    "ReconcileMoodle",
    "ReconcileResult",
    "apply_plan",
    "gather_inputs",
    "make_plan",
    "mapped_course_ids",
    "reconcile",
]

log = structlog.get_logger()

#: Start a progress task of ``total`` steps named ``description``; returns ``advance``.
ProgressTask = Callable[[str, int], Callable[[int], None]]
#: Raises (``LiveConsumerRefused``) when the ledger must not be written now.
BeforeWriting = Callable[[], Awaitable[None]]


class LiveConsumerRefused(ConsumerError):
    """The apply consumer group has live members: writing the ledger now is unsafe.

    Not retriable by the command itself: an operator stops the consumer (or
    waits for the maintenance window) and runs it again.
    """

    def __init__(
        self, command: str, group: str, state: str, members: Sequence[str]
    ) -> None:
        self.command = command
        self.group = group
        self.state = state
        self.members = tuple(members)
        super().__init__(
            f"{command} refused: consumer group {group!r} is {state} with live "
            f"members {', '.join(members) or '(none listed)'}; both write the "
            "ownership ledger: stop `enrolstream consume` first (or run the "
            "reconcile in its maintenance window)"
        )


class ReconcileMoodle(RosterReads, Protocol):
    """The reads and writes the reconcile makes (``consumers.moodle.MoodleClient``)."""

    async def enrol(self, rows: Sequence[EnrolRow]) -> BatchResult[EnrolRow]:
        """enrol_manual_enrol_users, bad rows isolated."""
        ...

    async def unenrol(self, rows: Sequence[UnenrolRow]) -> BatchResult[UnenrolRow]:
        """enrol_manual_unenrol_users, bad rows isolated."""
        ...


@dataclass(frozen=True, slots=True)
class ReconcileInputs:
    """Everything the planner needs besides mapping, policy and ledger."""

    snapshot: LoadedSnapshot
    identities: dict[str, Resolution]
    rosters: dict[int, dict[int, RosterEntry]]


@dataclass(slots=True)
class ReconcileResult:
    """The plan and what became of each change (``outcomes[i]`` for ``changes[i]``)."""

    plan: ReconcilePlan
    outcomes: list[str]
    applied: bool
    forced: bool
    blocked: bool
    errors: list[str] = field(default_factory=list)

    @property
    def rejected(self) -> int:
        """Changes Moodle refused."""
        return sum(1 for o in self.outcomes if o.startswith("rejected"))

    @property
    def exit_code(self) -> int:
        """0 ok, 3 guard tripped (nothing applied), 1 rejected rows or errors."""
        if self.errors or self.rejected:
            return 1
        return 3 if self.blocked else 0


def _ignore(step: int) -> None:
    del step


def _noop_progress(description: str, total: int) -> Callable[[int], None]:
    del description, total
    return _ignore


def mapped_course_ids(mapping: MappingSet, snapshot: LoadedSnapshot) -> list[int]:
    """The Moodle courses of the snapshot's terms, in mapping order."""
    terms = snapshot.marker.terms
    return [c.id for c in mapping if any(c.term.matches(t) for t in terms)]


async def gather_inputs(
    moodle: RosterReads,
    resolver: IdentityResolver,
    snapshot: LoadedSnapshot,
    mapping: MappingSet,
    *,
    concurrency: int = 8,
    lookup_chunk: int = 500,
    progress: ProgressTask | None = None,
) -> ReconcileInputs:
    """Resolve the snapshot's persons and read every mapped course's roster."""
    persons = sorted({e.people_code_id for e in snapshot.events})
    chunks = [
        persons[i : i + lookup_chunk] for i in range(0, len(persons), lookup_chunk)
    ]
    course_ids = mapped_course_ids(mapping, snapshot)
    identities: dict[str, Resolution] = {}
    progress = progress or _noop_progress
    advance_people = progress("resolving persons", len(persons))
    advance_rosters = progress("reading rosters", len(course_ids))

    async def resolve(chunk: Sequence[str]) -> None:
        identities.update(await resolver.resolve(chunk))
        advance_people(len(chunk))

    async with asyncio.TaskGroup() as group:
        for chunk in chunks:
            group.create_task(resolve(chunk))
        rosters_task = group.create_task(
            read_rosters(
                moodle, course_ids, concurrency=concurrency, progress=advance_rosters
            )
        )
    log.info(
        "reconcile_inputs_read",
        snapshot_id=snapshot.snapshot_id,
        persons=len(persons),
        courses=len(course_ids),
    )
    return ReconcileInputs(snapshot, identities, rosters_task.result())


def make_plan(
    inputs: ReconcileInputs,
    *,
    mapping: MappingSet,
    policy: EnrolmentPolicy,
    ledger: Iterable[LedgerEntry],
    limits: GuardLimits,
    resolver: IdentityResolver,
) -> ReconcilePlan:
    """``plan_reconcile`` over gathered inputs and the ledger as loaded."""
    marker = inputs.snapshot.marker
    return plan_reconcile(
        snapshot_id=marker.snapshot_id,
        state_version=marker.state_version,
        terms=marker.terms,
        events=inputs.snapshot.events,
        mapping=mapping,
        policy=policy,
        identities=inputs.identities,
        rosters=inputs.rosters,
        ledger=ledger,
        limits=limits,
        transform=resolver.transform,
        user_field=resolver.field,
    )


async def apply_plan(
    plan: ReconcilePlan,
    moodle: ReconcileMoodle,
    ledger: Ledger,
    *,
    slice_rows: int = 2000,
    progress: ProgressTask | None = None,
) -> tuple[list[str], list[str]]:
    """Apply every planned change; (outcome per change, errors that stopped it)."""
    outcomes = ["planned"] * len(plan.changes)
    advance = (progress or _noop_progress)("applying", len(plan.changes))
    errors: list[str] = []
    order = list(range(len(plan.changes)))
    for start in range(0, len(order), slice_rows):
        part = order[start : start + slice_rows]
        try:
            await _apply_slice(plan, part, moodle, ledger, outcomes)
        except MoodleError as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
            log.exception("reconcile_apply_stopped", error=str(exc))
            for index in order[start:]:
                if outcomes[index] == "planned":
                    outcomes[index] = f"error: not applied ({type(exc).__name__})"
            break
        advance(len(part))
    return outcomes, errors


async def _apply_slice(
    plan: ReconcilePlan,
    indexes: Sequence[int],
    moodle: ReconcileMoodle,
    ledger: Ledger,
    outcomes: list[str],
) -> None:
    enrols: dict[EnrolRow, int] = {}
    unenrols: dict[UnenrolRow, int] = {}
    for index in indexes:
        action = plan.changes[index].action
        if isinstance(action, UnenrolAction):
            unenrols[UnenrolRow(userid=action.userid, courseid=action.courseid)] = index
        else:
            row = EnrolRow(
                userid=action.userid,
                courseid=action.courseid,
                roleid=action.roleid,
                suspend=action.kind == "suspend",
            )
            enrols[row] = index
    done = await moodle.enrol(list(enrols)) if enrols else BatchResult[EnrolRow]()
    gone = await moodle.unenrol(list(unenrols)) if unenrols else BatchResult()
    applied = [enrols[r] for r in done.applied] + [unenrols[r] for r in gone.applied]
    await ledger.record(
        [_ledger_entry(plan.changes[i], plan.state_version) for i in applied]
    )
    for index in applied:
        outcomes[index] = "applied"
    rejected = [(enrols[r], e) for r, e in done.rejected]
    rejected += [(unenrols[r], e) for r, e in gone.rejected]
    for index, error in rejected:
        change = plan.changes[index]
        outcomes[index] = f"rejected: {error}"
        log.warning(
            "reconcile_rejected",
            action=change.kind,
            courseid=change.course.id,
            userid=change.userid,
            errorcode=error.errorcode,
        )


def _ledger_entry(change: PlannedChange, state_version: int) -> LedgerEntry:
    return next_ledger_entry(
        change.action,
        change.previous,
        event_id=change.event_id,
        state_version=state_version,
    )


async def reconcile(
    inputs: ReconcileInputs,
    *,
    mapping: MappingSet,
    policy: EnrolmentPolicy,
    ledger: Ledger,
    limits: GuardLimits,
    resolver: IdentityResolver,
    moodle: ReconcileMoodle,
    apply: bool = False,
    force: bool = False,
    progress: ProgressTask | None = None,
    before_writing: BeforeWriting | None = None,
) -> ReconcileResult:
    """Plan from ``inputs`` and the loaded ledger; apply unless dry run or blocked.

    ``before_writing`` is awaited once before the first Moodle or ledger write
    (never on a dry run or a blocked plan); what it raises propagates and
    nothing is applied.
    """
    plan = make_plan(
        inputs,
        mapping=mapping,
        policy=policy,
        ledger=ledger,
        limits=limits,
        resolver=resolver,
    )
    blocked = plan.guard.blocks(force=force)
    log.info(
        "reconcile_planned",
        snapshot_id=plan.snapshot_id,
        changes=len(plan.changes),
        unowned=len(plan.unowned),
        unresolved=len(plan.unresolved),
        guard_tripped=plan.guard.tripped,
        blocked=blocked,
    )
    result = ReconcileResult(
        plan=plan,
        outcomes=["planned"] * len(plan.changes),
        applied=False,
        forced=force,
        blocked=blocked and apply,
    )
    if plan.missing_rosters:
        names = ", ".join(c.shortname for c in plan.missing_rosters)
        result.errors.append(f"rosters not read: {names}")
    if not apply:
        return result
    if blocked:
        result.outcomes = ["skipped: guard"] * len(plan.changes)
        return result
    if before_writing is not None:
        await before_writing()
    result.outcomes, errors = await apply_plan(plan, moodle, ledger, progress=progress)
    result.applied = True
    result.errors.extend(errors)
    return result
