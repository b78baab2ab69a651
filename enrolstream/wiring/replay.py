"""``replay`` wired: move the apply group's offsets back, so the consumer re-reads events.

Steps, in this order (the order is what makes a crash part-way harmless):

1. refuse while the group has live members (``ReplayRefused``; a dry run only
   reports them): offsets moved under a running consumer are overwritten by
   its next commit;
2. compute the target offset per partition (``--since``: ``offsets_for_times``;
   ``--from-beginning``; ``--to-offsets``: checked against the topic);
3. unless ``verify_ledger_first=False``: check the ledger entries written since
   the start against Moodle's rosters (``consumers/replay/ledger_check.py``) and write
   the corrections. "Since the start" is ``--since``'s time, every entry for
   ``--from-beginning``, and the earliest timestamp of the records at the target
   offsets for ``--to-offsets`` (every entry if unknown): after a Moodle restore,
   any start would otherwise skip what the ledger remembers but Moodle lost as
   "already in state". Written before the offsets move: if the replay stops in
   between, the ledger is merely more accurate;
4. commit the targets for the group.

A dry run does 1-3 read-only and shows what the events from the targets to the
current end would change in Moodle: they go through the consumer's own pure
path (``decode`` → ``collapse_desired`` → ``plan`` against the ledger, as
corrected), with identities resolved by reading Moodle. It shows the net
effect of all those events at once; the consumer reads them in batches, so it
may also make intermediate calls (e.g. an enrol later suspended).

Why replaying is safe: the ledger makes actions idempotent (already in state →
no call, no second welcome message) and older events than an entry's
state_version are not applied over it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import structlog

from connectors.kafka import KafkaRecordSink, read_topic
from connectors.kafka.groups import GroupOffsets, GroupState
from connectors.moodle.client import MoodleClient
from consumers.batching import (
    Plan,
    PlannedAction,
    collapse_desired,
    decode,
    plan,
    uncertain_pairs,
)
from consumers.ledger import ledger_key
from consumers.mapping import MappingSet, load_mappings
from consumers.ports import RawMessage
from consumers.replay.ledger_check import (
    Correction,
    LedgerCheck,
    LedgerRecord,
    apply_corrections,
    check_since_ms,
    latest_entries,
    verify_ledger,
)
from consumers.replay.offsets import (
    FromBeginning,
    PartitionMove,
    ReplayRefused,
    ReplayStart,
    Since,
    ToOffsets,
    check_offsets,
    plan_moves,
    time_targets,
)
from enrolstream.settings import Settings
from enrolstream.wiring.common import (
    identity_resolver,
    kafka_options,
    open_moodle,
    policy,
)
from schemas.actions import LedgerEntry

log = structlog.get_logger()


@dataclass(frozen=True, slots=True)
class DryRunPlan:
    """What the replayed events would change in Moodle, net."""

    events: int
    invalid: int
    actions: list[PlannedAction]
    already_in_state: int
    unresolved: list[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class ReplayReport:
    """What a replay did (or, for a dry run, would do)."""

    topic: str
    group: GroupState
    moves: list[PartitionMove]
    dry_run: bool
    ledger_check: LedgerCheck | None = None
    plan: DryRunPlan | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def events(self) -> int:
        """Events the consumer will read again."""
        return sum(move.events for move in self.moves)


async def _targets(offsets: GroupOffsets, start: ReplayStart) -> list[PartitionMove]:
    beginning = await offsets.beginning_offsets()
    end = await offsets.end_offsets()
    if isinstance(start, Since):
        found = await offsets.offsets_for_time(start.timestamp_ms)
        targets = time_targets(found, end)
    elif isinstance(start, FromBeginning):
        targets = dict(beginning)
    else:
        targets = check_offsets(start.offsets, beginning, end, topic=offsets.topic)
    return plan_moves(targets, await offsets.committed(), end)


async def _check_since(
    offsets: GroupOffsets, start: ReplayStart, moves: Sequence[PartitionMove]
) -> int:
    """``check_since_ms`` for ``start``, reading the records at the target offsets."""
    if not isinstance(start, ToOffsets):
        return check_since_ms(start)
    wanted = {m.partition: m.target for m in moves if m.target < m.end}
    found = await offsets.read(wanted, {p: o + 1 for p, o in wanted.items()})
    stamps = {
        r.partition: r.timestamp_ms for r in found if r.offset == wanted[r.partition]
    }
    return check_since_ms(start, [stamps.get(p) for p in wanted])


async def replay(
    settings: Settings,
    bootstrap_servers: str,
    start: ReplayStart,
    *,
    group: str | None = None,
    dry_run: bool = False,
    verify_ledger_first: bool = True,
    mapping: MappingSet | None = None,
) -> ReplayReport:
    """Move ``group``'s offsets on the event topic to ``start`` (see module doc).

    Raises ``ReplayRefused`` (live members), ``InvalidReplayOffsets``,
    ``BrokerUnavailable`` and the Moodle client's errors.
    """
    kafka = settings.kafka
    options = kafka_options(settings, bootstrap_servers)
    group_id = group or settings.consumer.group_id
    async with GroupOffsets(options, kafka.events_topic, group_id) as offsets:
        state = await offsets.describe_group()
        if state.live and not dry_run:
            raise ReplayRefused(group_id, state.state, state.members)
        moves = await _targets(offsets, start)
        report = ReplayReport(kafka.events_topic, state, moves, dry_run)
        if state.live:
            report.notes.append(
                str(ReplayRefused(group_id, state.state, state.members))
            )
        if not (verify_ledger_first or dry_run):
            await offsets.commit({m.partition: m.target for m in moves})
            log.info("replay_committed", group=group_id, events=report.events)
            return report
        table = latest_entries(await read_topic(options, kafka.ledger_topic))
        async with open_moodle(settings, attempts=3) as client:
            check = None
            if verify_ledger_first:
                since_ms = await _check_since(offsets, start, moves)
                check = await verify_ledger(table, client, since_ms=since_ms)
            corrections = check.corrections if check else []
            records: list[RawMessage] = []
            if dry_run or corrections:
                records = await offsets.read(
                    {m.partition: m.target for m in moves},
                    {m.partition: m.end for m in moves},
                )
            report.notes.extend(uncovered_notes(corrections, records))
            if dry_run:
                dry = await _dry_run_plan(
                    settings,
                    client,
                    mapping=mapping,
                    records=records,
                    table=table,
                    corrections=corrections,
                )
                return replace(report, ledger_check=check, plan=dry)
            await _write_corrections(settings, bootstrap_servers, corrections)
        # Check again: a consumer started meanwhile would overwrite the commit.
        state = await offsets.describe_group()
        if state.live:
            raise ReplayRefused(group_id, state.state, state.members)
        await offsets.commit({m.partition: m.target for m in moves})
        log.info(
            "replay_committed",
            group=group_id,
            events=report.events,
            ledger_corrections=len(corrections),
        )
        return replace(report, ledger_check=check)


def uncovered_notes(
    corrections: Sequence[Correction], records: Sequence[RawMessage]
) -> list[str]:
    """Corrections whose writing event is not among the replayed records.

    An event published before the start but applied after it (consumer lag), or
    one the topic no longer holds, wrote a checked entry yet is not replayed: the
    entry is corrected, but nothing re-applies it unless a later event
    re-decides that course.
    """
    replayed = {event.event_id for _, event in decode(records).events}
    return [
        f"{c.describe()}: the event that wrote it ({c.before.event_id}) is not "
        "replayed (older than the start, or no longer on the topic); use an "
        "earlier start, or let reconcile repair it"
        for c in corrections
        if c.before.event_id not in replayed
    ]


async def _write_corrections(
    settings: Settings, bootstrap_servers: str, corrections: Sequence[Correction]
) -> None:
    if not corrections:
        return
    kafka = settings.kafka
    async with KafkaRecordSink(
        kafka_options(settings, bootstrap_servers),
        kafka.ledger_topic,
        ack_timeout_s=kafka.request_timeout_s,
    ) as sink:
        await sink.append(
            [
                (
                    ledger_key(c.after.courseid, c.after.userid),
                    c.after.model_dump_json().encode(),
                )
                for c in corrections
            ]
        )
    for correction in corrections:
        log.warning(
            "ledger_corrected",
            courseid=correction.after.courseid,
            userid=correction.after.userid,
            before=correction.before.status,
            after=correction.after.status,
            moodle=correction.moodle,
        )


async def _dry_run_plan(
    settings: Settings,
    client: MoodleClient,
    *,
    mapping: MappingSet | None,
    records: Sequence[RawMessage],
    table: dict[tuple[int, int], LedgerRecord],
    corrections: Sequence[Correction],
) -> DryRunPlan:
    mapping = mapping or load_mappings(settings.consumer.mappings)
    decided = policy(settings)
    decoded = decode(records)
    decisions = collapse_desired([e for _, e in decoded.events], mapping, decided)
    resolver = identity_resolver(client, settings)
    persons = {d.desired.people_code_id for d in decisions}
    identities = await resolver.resolve(persons) if persons else {}
    view = apply_corrections(table, corrections)

    def entry(courseid: int, userid: int) -> LedgerEntry | None:
        return view.get((courseid, userid))

    # Entries whose last call's outcome is unknown are read, as the consumer does.
    unsure = uncertain_pairs(decisions, identities, entry)
    held = await client.holdings(unsure) if unsure else {}
    result: Plan = plan(
        decisions,
        identities,
        entry,
        decided,
        verified={pair: held.get(pair) for pair in unsure},
    )
    return DryRunPlan(
        events=len(decoded.events),
        invalid=len(decoded.invalid),
        actions=result.actions,
        already_in_state=result.already_in_state,
        unresolved=[
            (event.people_code_id, reason)
            for event, reason, _ in result.unresolved.values()
        ],
    )
