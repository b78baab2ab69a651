"""The apply loop: getmany → decide → accounts → Moodle → ledger → dead letters → commit.

Delivery contract: a partition's offsets are committed only after every event
read from it was applied to Moodle (and recorded in the ledger), parked, or
dead-lettered. A retriable failure (Moodle unreachable or 5xx, Kafka not
acknowledging) rewinds to where the batch began, backs off and tries again:
never skip ahead. Replays are cheap because the ledger shows what Moodle holds.

Unknown outcomes: **a write whose outcome is unknown makes the ledger uncertain
for those rows, and the next decision for them reads what Moodle holds before it
writes or skips.** Every write records its intent first (an ``uncertain`` ledger
entry, acknowledged by Kafka before the call is sent); the answer replaces it
with the outcome. A request that timed out or lost its reply leaves its rows
uncertain (the other requests' outcomes are recorded all the same), the batch
is read again, and only rows Moodle does not hold as decided are sent again:
nothing is resent whole, no drop creates an enrolment, and a process killed
anywhere in between finds its uncertain entries on restart.

``run(stop)`` finishes the batch in flight when ``stop`` is set (SIGTERM), then
returns; ``run(stop, until_idle=True)`` also returns once nothing is left to read.

Mapping changes: with a ``MappingFollower`` the mapping is the one in force on
the mappings topic, looked for every ``mapping_refresh_s`` (a revision that
cannot be used is refused, the old mapping stays); a batch holding events
republished for a revision this member does not hold yet reads the topic first,
so a newly mapped course is decided with its new mapping at once.

Operations: everything counted in ``RunnerStats`` is also reported to the
``Metrics`` port, with the commit → Moodle latency of every action applied for a
change that carries its commit time (``EnrolmentEvent.committed_at``; one
observation per action). ``run`` beats its ``Heartbeat`` once per iteration and
samples the consumer lag every ``lag_sample_s``; ``lag_age_s`` is how long the
oldest event read but not yet committed has waited (0 when none waits), and
``newest_change_at`` the newest commit time seen: the staleness alarm's inputs.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import structlog

from consumers.batching import (
    PlannedAction,
    Undecodable,
    collapse_desired,
    decode,
    full_state,
    plan,
    uncertain_pairs,
)
from consumers.decisions import (
    EnrolmentPolicy,
    Held,
    next_ledger_entry,
    unknown_statuses,
)
from consumers.errors import (
    ActionRejected,
    ConsumerError,
    PartitionsRevoked,
    TargetError,
)
from consumers.groups import sections_wanted
from consumers.late_writes import LateWrites
from consumers.ledger import Ledger
from consumers.live_mapping import MappingFollower, revision_of
from consumers.mapping import MappingSet
from consumers.parked import ParkedEvents
from consumers.ports import (
    EventStream,
    Identities,
    MoodleGateway,
    Partition,
    RawMessage,
    RecordSink,
)
from consumers.provisioning import Provisioning
from consumers.section_groups import SectionGroups
from operations.health import Heartbeat
from operations.metrics import NO_METRICS, Metrics
from schemas.actions import DROP_KINDS, LedgerEntry
from schemas.dead_letter import DeadLetter
from schemas.events import EnrolmentEvent

log = structlog.get_logger()


@dataclass(slots=True)
class RunnerStats:
    """Counters since start, for logs, the demo summary and tests."""

    events: int = 0  # events done with: applied, parked or dead-lettered, committed
    #: Actions Moodle applied, by kind (enrol, remove_role, restore_role, ...).
    applied: Counter[str] = field(default_factory=Counter)
    already_in_state: int = 0
    dead_lettered: int = 0
    parked: int = 0
    retries: int = 0
    #: Pairs whose Moodle state was read because a call's outcome was unknown.
    verified: int = 0
    #: Actions whose outcome was unknown (reply lost, timeout, ...).
    unknown_outcomes: int = 0
    #: Events carrying an ADD_DROP_WAIT other than A, D or W (read as not enrolled).
    unknown_statuses: int = 0
    #: Enrolments put back after a lost call was applied late (``late_writes``).
    late_writes_repaired: int = 0
    applied_at: dict[tuple[int, int], float] = field(default_factory=dict)

    @property
    def enrolled(self) -> int:
        """New enrolments made."""
        return self.applied["enrol"]

    @property
    def dropped(self) -> int:
        """Drops applied, whatever the policy (role removed, suspended, unenrolled)."""
        return sum(self.applied[kind] for kind in DROP_KINDS)

    @property
    def suspended(self) -> int:
        """Drops applied by suspending."""
        return self.applied["suspend"]

    @property
    def unenrolled(self) -> int:
        """Drops applied by unenrolling."""
        return self.applied["unenrol"]

    def summary(self) -> str:
        """One line for the end of a run."""
        kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(self.applied.items()))
        return (
            f"events {self.events}, applied: {kinds or 'nothing'}, already in state "
            f"{self.already_in_state}, read back after unknown outcomes "
            f"{self.verified}, dead-lettered {self.dead_lettered}"
        )


@dataclass(frozen=True, slots=True)
class Origin:
    """Where an event was read, for dead letters."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


def _no_crash(point: str) -> None:
    del point


@dataclass(slots=True)
class _Chore:
    """Work the loop does between batches every ``every_s`` seconds."""

    every_s: float
    action: Callable[[], Awaitable[None]]
    next_at: float

    async def run_if_due(self, now: float) -> None:
        if now >= self.next_at:
            self.next_at = now + self.every_s
            await self.action()


@dataclass(slots=True)
class _Background:
    """A chore run as a task of its own, at most one at a time."""

    action: Callable[[], Awaitable[None]]
    task: asyncio.Task[None] | None = None

    async def start_if_idle(self) -> None:
        if self.task is None or self.task.done():
            self.task = asyncio.ensure_future(self.action())

    async def finish(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task


class ApplyRunner:
    """Makes Moodle match the events, at least once, idempotently."""

    def __init__(
        self,
        *,
        stream: EventStream,
        moodle: MoodleGateway,
        identities: Identities,
        mapping: MappingSet,
        policy: EnrolmentPolicy,
        ledger: Ledger,
        parked: ParkedEvents,
        dead_letters: RecordSink,
        parked_topic: str = "parked",
        parked_retry_s: float = 30.0,
        max_backoff_s: float = 30.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        crash_point: Callable[[str], None] = _no_crash,
        late_write_window_s: float = 600.0,
        metrics: Metrics = NO_METRICS,
        heartbeat: Heartbeat | None = None,
        lag_sample_s: float = 5.0,
        provisioning: Provisioning | None = None,
        groups: SectionGroups | None = None,
        mapping_follower: MappingFollower | None = None,
        mapping_refresh_s: float = 2.0,
    ) -> None:
        """``provisioning``: accounts for new people (``[accounts]``); None: off.
        ``groups``: section groups (``consumer.section_groups``); None: off.
        ``mapping_follower``: mapping changes without a restart; None: the
        mapping given stays."""
        self.stream = stream
        self.metrics = metrics
        self.heartbeat = heartbeat
        self.lag_sample_s = lag_sample_s
        #: Kafka timestamp (s) of the oldest record of the batch not yet committed.
        self._pending_since: float | None = None
        #: The newest commit time of a change seen (None: none yet).
        self.newest_change_at: datetime | None = None
        #: Records not yet read per partition, as last sampled (None: not yet).
        self.last_lags: dict[int, int] | None = None
        self.provisioning = provisioning
        self.groups = groups
        # bench/chaos.py kills the process at these points (enrolstream.crashpoints)
        self.crash_point = crash_point
        self.moodle = moodle
        self.identities = identities
        self._mapping = mapping
        self.mapping_follower = mapping_follower
        self.mapping_refresh_s = mapping_refresh_s
        self.policy = policy
        self.ledger = ledger
        self.parked = parked
        self.dead_letters = dead_letters
        self.parked_topic = parked_topic
        self.parked_retry_s = parked_retry_s
        self.max_backoff_s = max_backoff_s
        self.clock = clock
        self.stats = RunnerStats()
        self.late_write_window_ms = int(late_write_window_s * 1000)
        self.late_writes = LateWrites(
            moodle=moodle,
            ledger=ledger,
            policy=policy,
            owns=stream.owns,
            fence=self._fence,
            clock_ms=self._now_ms,
            window_ms=self.late_write_window_ms,
            ours=groups.ours if groups is not None else None,
        )
        #: The assignment epoch the work in hand began in (``_fence``).
        self._epoch = stream.assignment_epoch()
        # Due rechecks are looked for this often (a fraction of the window).
        self.recheck_every_s = min(60.0, max(late_write_window_s / 10, 0.1))

    @property
    def mapping(self) -> MappingSet:
        """The mapping in force."""
        if self.mapping_follower is not None:
            return self.mapping_follower.live.current
        return self._mapping

    async def refresh_mapping(self, *, wait: bool = False) -> None:
        """Put newly published mapping revisions in force (see the module doc)."""
        if self.mapping_follower is not None:
            await self.mapping_follower.refresh(wait=wait)

    async def _refresh_mapping_safely(self) -> None:
        try:
            await self.refresh_mapping()
        except ConsumerError as exc:
            if not exc.retriable:
                raise
            log.warning("mapping_not_read", error=str(exc))

    async def run(
        self,
        stop: asyncio.Event,
        *,
        until_idle: bool = False,
        poll_timeout_ms: int = 500,
    ) -> None:
        """Consume until ``stop`` is set (or, with ``until_idle``, nothing is left).

        Between batches, on their own schedules: the lag is sampled, parked
        persons are retried, due late-write rechecks run.
        """
        now = time.monotonic()
        lag_sampler = _Background(self._sample_lag)
        chores = [
            # in the background: the end offsets may wait behind a fetch the broker
            # holds, and the loop would wait with them
            _Chore(self.lag_sample_s, lag_sampler.start_if_idle, now),
            _Chore(
                self.parked_retry_s,
                self._retry_parked_if_any,
                now + self.parked_retry_s,
            ),
            _Chore(
                self.recheck_every_s, self._recheck_safely, now + self.recheck_every_s
            ),
            _Chore(
                self.mapping_refresh_s,
                self._refresh_mapping_safely,
                now + self.mapping_refresh_s,
            ),
        ]
        try:
            await self._loop(
                stop, chores, until_idle=until_idle, timeout_ms=poll_timeout_ms
            )
        finally:
            await lag_sampler.finish()

    async def _loop(
        self,
        stop: asyncio.Event,
        chores: Sequence[_Chore],
        *,
        until_idle: bool,
        timeout_ms: int,
    ) -> None:
        failures = 0
        retried_when_idle = False
        self.metrics.parked(self.parked.reason_codes())
        while not stop.is_set():
            if self.heartbeat is not None:
                self.heartbeat.beat(time.monotonic())
            # Taken before the fetch: a batch fetched across a rebalance is dropped.
            epoch = self.stream.assignment_epoch()
            batches = await self.stream.getmany(timeout_ms=timeout_ms)
            if self.stream.take_reassigned():
                # Another member may have written the ledger and parked tables for
                # the partitions this one now holds: read them again (both at once).
                await asyncio.gather(self.ledger.load(), self.parked.load())
            if batches:
                failures = await self._process_or_back_off(
                    batches, failures, stop, epoch
                )
                if failures:
                    continue
            for chore in chores:
                await chore.run_if_due(time.monotonic())
            if until_idle and not batches and await self._idle():
                if retried_when_idle:
                    return
                # A script running --until-idle must still enrol someone whose
                # account was created since they were parked, and look at the
                # late writes that are due.
                retried_when_idle = True
                await self._retry_parked_if_any()
                await self._recheck_safely()

    async def _process_or_back_off(
        self,
        batches: Mapping[Partition, Sequence[RawMessage]],
        failures: int,
        stop: asyncio.Event,
        epoch: int,
    ) -> int:
        """Process the batch; on a retriable failure rewind and back off.

        Returns the consecutive failures so far (0 once a batch went through).
        A batch a rebalance interrupted is dropped, and read again by whoever
        holds its partitions next (this member too, if they stay here).
        """
        try:
            async with self.stream.write_turn():
                events = await self._apply_batch(batches, epoch=epoch)
            # The commit is outside the turn: a broker may hold an offset commit
            # until the rebalance completes, which waits for the turn. The writes
            # are done and recorded; once a rebalance began, the next owner reads
            # the batch again and the ledger makes that a no-op.
            self._fence()
            await self._commit_batch(batches, events)
        except PartitionsRevoked:
            self.stream.rewind({tp: msgs[0].offset for tp, msgs in batches.items()})
            log.info(
                "batch_dropped_on_rebalance",
                records=sum(len(msgs) for msgs in batches.values()),
                hint="not committed; the partitions' next owner reads it again",
            )
            return failures
        except ConsumerError as exc:
            if not exc.retriable:
                raise
            failures += 1
            self.stats.retries += 1
            self.metrics.retried()
            self.stream.rewind({tp: msgs[0].offset for tp, msgs in batches.items()})
            delay = min(self.max_backoff_s, 0.25 * 2 ** min(failures, 10))
            log.warning(
                "apply_paused",
                error=str(exc),
                error_type=type(exc).__name__,
                attempt=failures,
                retry_in_s=delay,
                hint="nothing committed; the batch is read again",
            )
            await _wait(stop, delay)
            return failures
        if failures:
            log.info("apply_resumed", after_attempts=failures)
        return 0

    async def _retry_parked_if_any(self) -> None:
        if len(self.parked):
            async with self.stream.write_turn():
                self._epoch = self.stream.assignment_epoch()
                await self._retry_parked_safely()

    def _fence(self) -> None:
        """Before a write starts: ``PartitionsRevoked`` if a rebalance began since
        the work in hand did (two members never act on one person at once)."""
        self.stream.ensure_held(self._epoch)

    def lag_age_s(self) -> float:
        """How long the oldest event read but not yet committed has waited (0: none)."""
        if self._pending_since is None:
            return 0.0
        return max(0.0, self.clock().timestamp() - self._pending_since)

    async def _sample_lag(self) -> None:
        try:
            lags = await self.stream.lags()
        except ConsumerError as exc:
            log.debug("lag_not_sampled", error=str(exc))
            return
        self._record_lags(lags)

    def _record_lags(self, lags: dict[int, int]) -> None:
        self.last_lags = lags
        self.metrics.consumer_lag(lags)
        self.metrics.lag_age(self.lag_age_s())

    async def _idle(self) -> bool:
        """Nothing left to read on the partitions held (none held: not idle)."""
        lags = await self.stream.lags()
        self._record_lags(lags)
        return bool(lags) and sum(lags.values()) == 0

    async def process(
        self,
        batches: Mapping[Partition, Sequence[RawMessage]],
        *,
        epoch: int | None = None,
    ) -> None:
        """Apply one batch, then commit each partition past it.

        ``epoch``: the assignment epoch the batch was fetched in (default: now);
        no write starts once a rebalance began since (``PartitionsRevoked``).
        """
        events = await self._apply_batch(batches, epoch=epoch)
        await self._commit_batch(batches, events)

    async def _apply_batch(
        self,
        batches: Mapping[Partition, Sequence[RawMessage]],
        *,
        epoch: int | None = None,
    ) -> list[EnrolmentEvent]:
        """The writes of ``process`` (inside the write turn); the events done."""
        self._epoch = self.stream.assignment_epoch() if epoch is None else epoch
        messages = [message for msgs in batches.values() for message in msgs]
        if messages and self._pending_since is None:
            # Kept across retries: a batch read again is still the same wait.
            self._pending_since = min(m.timestamp_ms for m in messages) / 1000
        decoded = decode(messages)
        await self._hold_revisions([event for _, event in decoded.events])
        origins = {
            event.event_id: _origin(message) for message, event in decoded.events
        }
        letters = [self._invalid_letter(bad) for bad in decoded.invalid]
        letters += await self._apply([event for _, event in decoded.events], origins)
        await self._dead_letter(letters)
        self.crash_point("consumer.after_ledger")
        return [event for _, event in decoded.events]

    async def _commit_batch(
        self,
        batches: Mapping[Partition, Sequence[RawMessage]],
        events: Sequence[EnrolmentEvent],
    ) -> None:
        await self.stream.commit(
            {tp: msgs[-1].offset + 1 for tp, msgs in batches.items()}
        )
        self._pending_since = None
        self.stats.events += len(events)  # applied, parked or dead-lettered
        self.metrics.events_done(len(events))
        for event in events:
            self._saw_change(event)

    async def _hold_revisions(self, events: Sequence[EnrolmentEvent]) -> None:
        """Read the mappings topic when an event names a revision not in force yet."""
        follower = self.mapping_follower
        if follower is None:
            return
        named = {r for e in events if (r := revision_of(e.snapshot_id)) is not None}
        if any(not follower.live.holds(term, digest) for term, digest in named):
            await follower.refresh(wait=True)

    async def retry_parked(self) -> int:
        """Try every parked person-term again; returns how many are still parked."""
        # Only the persons of this member's partitions: another member retries its own.
        waiting = [
            p for p in self.parked.all() if self.stream.owns(p.event.kafka_key())
        ]
        if waiting:
            log.info("parked_retry", count=len(waiting))
            letters = await self._apply(
                [p.event for p in waiting], {}, in_full=lambda _: True
            )
            await self._dead_letter(letters)
        return len(self.parked)

    async def _retry_parked_safely(self) -> None:
        try:
            await self.retry_parked()
        except ConsumerError as exc:
            if not exc.retriable:
                raise
            log.warning("parked_retry_failed", error=str(exc))

    async def _recheck_safely(self) -> None:
        try:
            async with self.stream.write_turn():
                self._epoch = self.stream.assignment_epoch()
                self.stats.late_writes_repaired += await self.late_writes.check_due()
        except ConsumerError as exc:
            if not exc.retriable:
                raise
            log.warning("late_write_check_failed", error=str(exc))

    def _now_ms(self) -> int:
        return int(self.clock().timestamp() * 1000)

    async def _apply(
        self,
        events: Sequence[EnrolmentEvent],
        origins: Mapping[str, Origin],
        *,
        in_full: Callable[[EnrolmentEvent], bool] | None = None,
    ) -> list[DeadLetter]:
        # A parked person-term has decisions pending in every course, not only in
        # the changed section's: decide it in full, or releasing it below would
        # drop the courses its earlier events were about.
        self._warn_unknown_statuses(events)
        self._fence()
        decisions = collapse_desired(
            events, self.mapping, self.policy, in_full=in_full or self.parked.holds
        )
        persons = {decision.desired.people_code_id for decision in decisions}
        if self.provisioning is not None:
            # account details may change with no course decided (a new name)
            persons |= {e.people_code_id for e in events if e.person is not None}
        identities = await self.identities.resolve(persons) if persons else {}
        if self.provisioning is not None:
            identities = await self.provisioning.provide(events, decisions, identities)
            await self.provisioning.update(events, identities)
        if self.groups is not None:
            await self.groups.ensure(
                sections_wanted((d.desired, d.event) for d in decisions)
            )
        unsure = uncertain_pairs(decisions, identities, self.ledger.get)
        verified = {}
        if unsure:
            # An earlier call's outcome is unknown: read what Moodle holds.
            held = await self.moodle.holdings(unsure)
            verified = {pair: self._ours(pair, held.get(pair)) for pair in unsure}
            self.stats.verified += len(unsure)
            self.metrics.read_back(len(unsure))
            log.info("uncertain_entries_read", pairs=len(unsure))
        batch_plan = plan(
            decisions,
            identities,
            self.ledger.get,
            self.policy,
            verified=verified,
            now_ms=self._now_ms(),
            late_write_window_ms=self.late_write_window_ms,
            groups=self.groups,
        )
        self.stats.already_in_state += batch_plan.already_in_state
        self.metrics.already_in_state(batch_plan.already_in_state)
        letters = await self._execute(batch_plan.actions, origins)
        await self.ledger.record(batch_plan.watermarks)
        if batch_plan.unresolved:
            await self.parked.park(list(batch_plan.unresolved.values()), self.clock())
            self.stats.parked += len(batch_plan.unresolved)
            for event, reason, _ in batch_plan.unresolved.values():
                log.warning(
                    "person_parked",
                    people_code_id=event.people_code_id,
                    term=event.term.label(),
                    reason=reason,
                )
        await self.parked.release(batch_plan.resolved_events)
        self.metrics.parked(self.parked.reason_codes())
        return letters

    def _ours(self, pair: tuple[int, int], held: Held | None) -> Held | None:
        """What Moodle holds, its groups limited to section groups of ours."""
        if held is None or not held.groupids:
            return held
        ours = self.groups.ours(pair[0]) if self.groups is not None else frozenset()
        return replace(held, groupids=held.groupids & ours)

    def _saw_change(self, event: EnrolmentEvent) -> None:
        newest = _newer(self.newest_change_at, event)
        if newest is not None and newest != self.newest_change_at:
            self.newest_change_at = newest
            self.metrics.change_seen(newest)

    def _warn_unknown_statuses(self, events: Sequence[EnrolmentEvent]) -> None:
        for event in events:
            codes = unknown_statuses(event)
            if codes:
                self.stats.unknown_statuses += 1
                log.warning(
                    "unknown_registration_status",
                    people_code_id=event.people_code_id,
                    term=event.term.label(),
                    add_drop_wait=codes,
                    hint="read as not enrolled (dropped); add the code to the "
                    "decisions if PowerCampus means something else by it",
                )

    async def _execute(
        self, actions: Sequence[PlannedAction], origins: Mapping[str, Origin]
    ) -> list[DeadLetter]:
        if not actions:
            return []
        # Intent first: if the call is cut off after Moodle applied it, or this
        # process dies, the entry says the pair is ours and must be read back.
        self._fence()
        sent = self._now_ms()
        await self.ledger.record(
            [_entry(p, uncertain=True, sent_at_ms=sent) for p in actions]
        )
        self.crash_point("consumer.after_intent")
        self._fence()
        outcomes = await self.moodle.apply([p.action for p in actions])
        self.crash_point("consumer.after_moodle")
        planned = {p.action.key(): p for p in actions}
        applied = [planned[action.key()] for action in outcomes.applied]
        rejected = [(planned[a.key()], error) for a, error in outcomes.rejected]
        # A rejected action was rolled back (as before), unless an earlier call of
        # it applied: then its intent stays uncertain and is read back next time.
        await self.ledger.record(
            [_entry(p) for p in applied]
            + [
                _restored(p)
                for p, _ in rejected
                if p.action.key() not in outcomes.partly_applied
            ]
        )
        self._count_applied(applied)
        for planned_action, error in rejected:
            if error.person_may_be_gone:
                # merged or recreated account: look the person up afresh next time
                self.identities.forget(planned_action.decision.desired.people_code_id)
        if outcomes.unknown:
            self.stats.unknown_outcomes += len(outcomes.unknown)
            self.metrics.unknown_outcomes(len(outcomes.unknown))
            raise _unknown(outcomes.unknown, len(actions))
        return [self._rejected_letter(p, error, origins) for p, error in rejected]

    def _count_applied(self, applied: Sequence[PlannedAction]) -> None:
        now = time.monotonic()
        wall = self.clock()
        counts: Counter[str] = Counter()
        debug = log.debug  # the lazy logger binds on every attribute look-up
        for planned in applied:
            kind = planned.action.kind
            counts[kind] += 1
            self.stats.applied_at[planned.action.key()] = now
            committed = planned.decision.event.committed_at
            if committed is not None:
                self.metrics.commit_to_applied((wall - committed).total_seconds())
            # One line per row at debug (the ledger topic is the durable record);
            # a start-of-term burst would otherwise print tens of thousands of lines.
            debug(
                "moodle_applied",
                action=kind,
                courseid=planned.action.courseid,
                userid=planned.action.userid,
                people_code_id=planned.decision.desired.people_code_id,
                reason=planned.decision.desired.reason,
            )
        self.stats.applied.update(counts)
        for applied_kind, count in counts.items():
            self.metrics.actions_applied(applied_kind, count)
        if applied:
            log.info("moodle_batch_applied", **dict(sorted(counts.items())))

    def _invalid_letter(self, bad: Undecodable) -> DeadLetter:
        return self._letter(
            _origin(bad.message), reason=bad.reason, error_type=type(bad.error).__name__
        )

    def _rejected_letter(
        self,
        planned: PlannedAction,
        error: ActionRejected,
        origins: Mapping[str, Origin],
    ) -> DeadLetter:
        event = planned.decision.event
        origin = origins.get(event.event_id) or Origin(
            topic=self.parked_topic,
            partition=-1,
            offset=-1,
            key=event.kafka_key(),
            value=None,
        )
        # The letter carries the person-term's state as a full-state event: the
        # rejected course may not be the one the event changed (a parked person is
        # decided in full), and a redrive must decide it again.
        origin = replace(origin, value=full_state(event).model_dump_json().encode())
        return self._letter(
            origin,
            reason=f"Moodle rejected {planned.action.kind} of user "
            f"{planned.action.userid} in course {planned.action.courseid}: {error}",
            error_type=type(error).__name__,
            errorcode=error.errorcode,
            event_id=event.event_id,
            action=planned.action.model_dump(),
        )

    def _letter(
        self,
        origin: Origin,
        *,
        reason: str,
        error_type: str,
        errorcode: str | None = None,
        event_id: str | None = None,
        action: dict[str, object] | None = None,
    ) -> DeadLetter:
        return DeadLetter(
            reason=reason,
            error_type=error_type,
            errorcode=errorcode,
            source_topic=origin.topic,
            source_partition=origin.partition,
            source_offset=origin.offset,
            key=origin.key.decode(errors="replace") if origin.key else None,
            value=origin.value.decode(errors="replace") if origin.value else None,
            event_id=event_id,
            action=action,
            dead_lettered_at=self.clock(),
        )

    async def _dead_letter(self, letters: Sequence[DeadLetter]) -> None:
        if not letters:
            return
        await self.dead_letters.append(
            [
                (
                    letter.key.encode() if letter.key else None,
                    letter.model_dump_json().encode(),
                )
                for letter in letters
            ]
        )
        self.stats.dead_lettered += len(letters)
        for letter in letters:
            self.metrics.dead_lettered(letter.error_type, 1)
            log.error(
                "dead_lettered",
                reason=letter.reason,
                error_type=letter.error_type,
                source_offset=letter.source_offset,
                event_id=letter.event_id,
            )


def _newer(seen: datetime | None, event: EnrolmentEvent) -> datetime | None:
    """The later of ``seen`` and the event's commit time."""
    committed = event.committed_at
    if committed is None or (seen is not None and seen >= committed):
        return seen
    return committed


def _entry(
    planned: PlannedAction, *, uncertain: bool = False, sent_at_ms: int | None = None
) -> LedgerEntry:
    return next_ledger_entry(
        planned.action,
        planned.previous,
        desired=planned.decision.desired,
        event_id=planned.decision.event.event_id,
        state_version=planned.decision.event.state_version,
        uncertain=uncertain,
        sent_at_ms=sent_at_ms,
        people_code_id=planned.decision.desired.people_code_id,
    )


def _restored(planned: PlannedAction) -> LedgerEntry:
    """The entry for a rejected action: Moodle rolled it back, so as it was before.

    With no entry before, a not-owned watermark (nothing of ours is there).
    """
    if planned.previous is not None:
        return planned.previous
    event = planned.decision.event
    return LedgerEntry(
        courseid=planned.action.courseid,
        userid=planned.action.userid,
        roleid=planned.decision.desired.role_id,
        status="unenrolled",
        event_id=event.event_id,
        state_version=event.state_version,
        owned=False,
    )


def _unknown(unknown: Sequence[tuple[object, TargetError]], total: int) -> TargetError:
    """The error to raise for actions whose outcome is unknown.

    A non-retriable one (token refused, an answer of the wrong shape) stops the
    consumer for an operator; otherwise the batch is retried after a back-off,
    and the uncertain rows are read back first.
    """
    errors = [error for _, error in unknown]
    worst = next((error for error in errors if not error.retriable), errors[0])
    log.warning(
        "moodle_outcome_unknown",
        actions=len(unknown),
        of=total,
        error=str(worst),
        hint="recorded as uncertain; read back from Moodle before the next decision",
    )
    return worst


def _origin(message: RawMessage) -> Origin:
    return Origin(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=message.key,
        value=message.value,
    )


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
