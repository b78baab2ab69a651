"""The nightly reconcile's I/O: gather the three views, plan, then report or apply.

``gather_inputs`` resolves every snapshot person (in look-ups of
``lookup_chunk`` values, run concurrently) while reading the roster of every
mapped course of the snapshot's terms (``connectors.moodle.rosters``); the client's
``concurrency`` bounds the requests in flight. ``reconcile`` plans
(``consumers.reconcile.plan``) and, with ``apply``, sends the changes through the
consumer's own ``enrol``/``unenrol`` (bad rows isolated by bisection), recording
every applied change in the ledger before the next slice is sent. A dry run
sends nothing but reads. A tripped guard applies nothing (see
``consumers.reconcile.guard``).

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

from consumers.batching import GroupView
from consumers.decisions import EnrolmentPolicy, next_ledger_entry
from consumers.errors import TargetError, TargetRefused
from consumers.identity import Missing, Resolution, Transform, UserField
from consumers.ledger import Ledger
from consumers.mapping import MappingSet
from consumers.ports import ActionOutcomes, RosterEntry, Rosters
from consumers.reconcile.guard import GuardLimits
from consumers.reconcile.plan import PlannedChange, ReconcilePlan, plan_reconcile
from consumers.reconcile.snapshot_reader import LoadedSnapshot
from consumers.tasks import run_all
from schemas.actions import LedgerEntry, MoodleAction

__all__ = [
    "BeforeWriting",
    "PersonResolver",
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


class PersonResolver(Protocol):
    """PEOPLE_CODE_ID → Moodle user, as the reconcile needs it
    (``consumers.identity.IdentityResolver``; on a Conduit site the
    idnumber-derived numbers of ``connectors.conduit.identity``)."""

    transform: Transform
    field: UserField
    #: Moodle user id → full name, as the look-ups answered (for reports).
    fullnames: dict[int, str]

    async def resolve(self, people_code_ids: Iterable[str]) -> dict[str, Resolution]:
        """A resolution for every id given."""
        ...


class ReconcileMoodle(Rosters, Protocol):
    """The reads and writes the reconcile makes (``connectors.moodle.client.MoodleClient``)."""

    async def apply(self, actions: Sequence[MoodleAction]) -> ActionOutcomes:
        """Carry out the actions; every one is reported, none raises."""
        ...


@dataclass(frozen=True, slots=True)
class ReconcileInputs:
    """Everything the planner needs besides mapping, policy and ledger."""

    snapshot: LoadedSnapshot
    identities: dict[str, Resolution]
    rosters: dict[int, dict[int, RosterEntry]]
    #: Courses whose roster could not be read, with the last error.
    unread: dict[int, str] = field(default_factory=dict)


async def _resolve_with_retries(
    resolver: PersonResolver, chunk: Sequence[str], attempts: int
) -> dict[str, Resolution]:
    delay = 1.0
    for attempt in range(1, attempts + 1):
        try:
            return await resolver.resolve(chunk)
        except TargetRefused:
            raise
        except TargetError as exc:
            if not exc.retriable or attempt == attempts:
                log.warning(
                    "reconcile_lookup_failed", persons=len(chunk), error=str(exc)
                )
                reason = f"not looked up: {type(exc).__name__}: {exc}"
                missing = Missing(reason=reason, code="not_looked_up")
                return dict.fromkeys(chunk, missing)
            await asyncio.sleep(delay)
            delay *= 2
    return {}


@dataclass(slots=True)
class ReconcileResult:
    """The plan and what became of each change (``outcomes[i]`` for ``changes[i]``)."""

    plan: ReconcilePlan
    outcomes: list[str]
    applied: bool
    forced: bool
    blocked: bool
    errors: list[str] = field(default_factory=list)
    #: What the reader must know about where the rosters came from (a Conduit
    #: site without web services: what enrolstream sent, not what Moodle holds).
    notes: list[str] = field(default_factory=list)
    #: Moodle user id → full name (from the rosters and the look-ups), for reports.
    names: dict[int, str] = field(default_factory=dict)

    @property
    def rejected(self) -> int:
        """Changes Moodle refused."""
        return sum(1 for o in self.outcomes if o.startswith("rejected"))

    @property
    def unknown(self) -> int:
        """Changes whose outcome is unknown (Moodle's answer was lost)."""
        return sum(1 for o in self.outcomes if o.startswith("unknown"))

    @property
    def exit_code(self) -> int:
        """0 ok, 3 guard tripped (nothing applied), 1 rejected or unknown rows, errors."""
        if self.errors or self.rejected or self.unknown:
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
    moodle: Rosters,
    resolver: PersonResolver,
    snapshot: LoadedSnapshot,
    mapping: MappingSet,
    *,
    lookup_chunk: int = 500,
    progress: ProgressTask | None = None,
    attempts: int = 3,
    retry_delay_s: float = 1.0,
) -> ReconcileInputs:
    """Resolve the snapshot's persons and read every mapped course's roster.

    Moodle failing for a while does not abort the run: every read is tried up to
    ``attempts`` times; a course still unread is left out (the plan lists it and
    decides nothing there), a person still not looked up is unresolved (never
    enrolled, never dropped). Only a refused token stops it.
    """
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
        identities.update(await _resolve_with_retries(resolver, chunk, attempts))
        advance_people(len(chunk))

    failed: dict[int, str] = {}
    reads = moodle.read_rosters(
        course_ids,
        progress=advance_rosters,
        attempts=attempts,
        retry_delay_s=retry_delay_s,
        failed=failed,
    )
    *_, rosters = await run_all([*(resolve(chunk) for chunk in chunks), reads])
    assert isinstance(rosters, dict)  # noqa: S101 - the last awaitable's result
    log.info(
        "reconcile_inputs_read",
        snapshot_id=snapshot.snapshot_id,
        persons=len(persons),
        courses=len(course_ids),
        courses_not_read=len(failed),
    )
    return ReconcileInputs(snapshot, identities, rosters, failed)


def make_plan(
    inputs: ReconcileInputs,
    *,
    mapping: MappingSet,
    policy: EnrolmentPolicy,
    ledger: Iterable[LedgerEntry],
    limits: GuardLimits,
    resolver: PersonResolver,
    groups: GroupView | None = None,
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
        groups=groups,
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
        stopped = await _apply_slice(plan, part, moodle, ledger, outcomes)
        advance(len(part))
        if stopped is not None:
            errors.append(stopped)
            for index in order[start + len(part) :]:
                outcomes[index] = "error: not applied (Moodle unavailable)"
            break
    return outcomes, errors


async def _apply_slice(
    plan: ReconcilePlan,
    indexes: Sequence[int],
    moodle: ReconcileMoodle,
    ledger: Ledger,
    outcomes: list[str],
) -> str | None:
    """Apply one slice; the reason to stop when Moodle answered none of it."""
    changes = {plan.changes[i].action.key(): i for i in indexes}
    # Intent first, as the consumer does: an unanswered call leaves it uncertain.
    await ledger.record(
        [
            _ledger_entry(plan.changes[i], plan.state_version, uncertain=True)
            for i in indexes
        ]
    )
    done = await moodle.apply([plan.changes[i].action for i in indexes])
    applied = [changes[action.key()] for action in done.applied]
    rejected = [(changes[action.key()], error) for action, error in done.rejected]
    await ledger.record(
        [_ledger_entry(plan.changes[i], plan.state_version) for i in applied]
        + [
            _restored(plan.changes[i], plan.state_version)
            for i, _ in rejected
            if plan.changes[i].action.key() not in done.partly_applied
        ]
    )
    for index in applied:
        outcomes[index] = "applied"
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
    for action, failure in done.unknown:
        outcomes[changes[action.key()]] = (
            f"unknown: {failure} (read back by the consumer and the next reconcile)"
        )
    if done.unknown and not done.applied and not done.rejected:
        first = done.unknown[0][1]
        log.error("reconcile_apply_stopped", error=str(first))
        return f"{type(first).__name__}: {first}"
    return None


def _ledger_entry(
    change: PlannedChange, state_version: int, *, uncertain: bool = False
) -> LedgerEntry:
    return next_ledger_entry(
        change.action,
        change.previous,
        desired=change.desired,
        event_id=change.event_id,
        state_version=state_version,
        uncertain=uncertain,
    )


def _restored(change: PlannedChange, state_version: int) -> LedgerEntry:
    """A rejected change was rolled back: the entry as it was (or a not-owned mark)."""
    if change.previous is not None:
        return change.previous
    return LedgerEntry(
        courseid=change.course.id,
        userid=change.userid,
        roleid=change.roleid,
        status="unenrolled",
        event_id=change.event_id,
        state_version=state_version,
        owned=False,
    )


async def reconcile(
    inputs: ReconcileInputs,
    *,
    mapping: MappingSet,
    policy: EnrolmentPolicy,
    ledger: Ledger,
    limits: GuardLimits,
    resolver: PersonResolver,
    moodle: ReconcileMoodle,
    apply: bool = False,
    force: bool = False,
    progress: ProgressTask | None = None,
    before_writing: BeforeWriting | None = None,
    groups: GroupView | None = None,
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
        groups=groups,
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
        names={
            **resolver.fullnames,
            **{
                entry.userid: entry.fullname
                for roster in inputs.rosters.values()
                for entry in roster.values()
                if entry.fullname
            },
        },
    )
    if plan.missing_rosters:
        names = ", ".join(
            f"{c.shortname} ({inputs.unread[c.id]})"
            if c.id in inputs.unread
            else c.shortname
            for c in plan.missing_rosters
        )
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
