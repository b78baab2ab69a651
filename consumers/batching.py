"""Pure steps of one consumer batch: decode, collapse desired states, plan actions.

A batch is every record one ``getmany`` returned, across partitions (a person's
events all live on one partition, so merging partitions keeps each person in
order). Desired states are collapsed per (course, person), the newest state wins, and
planned once against the ledger as it was before the batch: this is what makes
actions come from state, not transitions (an enrol then a drop of the same
person inside one batch plans nothing for an enrolment we never made).

A ledger entry left ``uncertain`` by a call whose answer was lost is not
trusted: ``uncertain_pairs`` names the pairs whose Moodle state the caller must
read first, and ``plan`` decides those from what was read (``verified``).

Section groups (``groups``, when on): each action gets the groups of ours to
join and leave, or a ``RegroupAction`` comes where only groups change
(``consumers.groups.adjust``); what Moodle was read to hold must already be
limited to groups of ours (``GroupView.ours``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from pydantic import ValidationError

from consumers.decisions import (
    EnrolmentPolicy,
    Held,
    as_decided,
    desired_enrolments,
    plan_action,
    plan_against,
    settle,
)
from consumers.errors import InvalidEvent
from consumers.groups import adjust
from consumers.identity import Found, Resolution
from consumers.mapping import MappingSet
from consumers.ports import RawMessage
from schemas.actions import DesiredEnrolment, LedgerEntry, MoodleAction
from schemas.events import EnrolmentEvent, parse_event


class GroupView(Protocol):
    """The section groups of ours, per course (``consumers.section_groups``)."""

    def ids(self, courseid: int) -> Mapping[str, int]:
        """idnumber -> group id of the course's groups of ours."""
        ...

    def ours(self, courseid: int) -> frozenset[int]:
        """The course's groups of ours."""
        ...


@dataclass(frozen=True, slots=True)
class Undecodable:
    """A record that is not a valid enrolment event, and why (dead-letter it)."""

    message: RawMessage
    error: InvalidEvent

    @property
    def reason(self) -> str:
        """What is wrong with the record."""
        return self.error.reason


@dataclass(frozen=True, slots=True)
class Decoded:
    """The batch's events in order, and the records that failed validation."""

    events: list[tuple[RawMessage, EnrolmentEvent]]
    invalid: list[Undecodable]


def decode(messages: Sequence[RawMessage]) -> Decoded:
    """Validate every record against the event contract."""
    events: list[tuple[RawMessage, EnrolmentEvent]] = []
    invalid: list[Undecodable] = []
    for message in messages:
        if message.value is None:
            invalid.append(
                Undecodable(
                    message, InvalidEvent("empty record (tombstone) on the event topic")
                )
            )
            continue
        try:
            events.append((message, parse_event(message.value)))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in error['loc']) or 'record'}: {error['msg']}"
                for error in exc.errors()[:5]
            )
            invalid.append(
                Undecodable(
                    message, InvalidEvent(f"not a valid enrolment event: {problems}")
                )
            )
    return Decoded(events=events, invalid=invalid)


def full_state(event: EnrolmentEvent) -> EnrolmentEvent:
    """The event re-read as a snapshot: decide every course of every registration."""
    return event.model_copy(update={"kind": "snapshot", "change": None})


@dataclass(frozen=True, slots=True)
class Decision:
    """The latest desired state of one (course, person) and the event behind it."""

    desired: DesiredEnrolment
    event: EnrolmentEvent


def collapse_desired(
    events: Sequence[EnrolmentEvent],
    mapping: MappingSet,
    policy: EnrolmentPolicy,
    *,
    in_full: Callable[[EnrolmentEvent], bool] = lambda _: False,
) -> list[Decision]:
    """Desired states per (course, person), the newest state's winning (the last
    read among equals), in first-seen order.

    ``in_full`` events (a parked person's) are decided for every course of their
    registrations as well as for their changed sections.
    """
    latest: dict[tuple[int, str], Decision] = {}
    for event in events:
        # in full: every course of every registration and teaching, and still the
        # changed sections (a deleted row's course is in no state any more)
        desired = desired_enrolments(event, mapping, policy, in_full=in_full(event))
        for one in desired:
            key = (one.course.id, one.people_code_id)
            held = latest.get(key)
            # The newest state wins, not the last read: an event redelivered late
            # (at-least-once) carries an older state than the one before it.
            if held is None or held.event.state_version <= event.state_version:
                latest[key] = Decision(one, event)
    return list(latest.values())


@dataclass(frozen=True, slots=True)
class PlannedAction:
    """A Moodle action and the decision it comes from (for the ledger and dead letters)."""

    action: MoodleAction
    decision: Decision
    previous: LedgerEntry | None


def watermark(
    decision: Decision, userid: int, before: LedgerEntry | None
) -> LedgerEntry | None:
    """The ledger entry a no-call decision leaves, or None when nothing is newer.

    Without it an add and a drop collapsed in one batch leave no trace, and the
    add seen again later (a replay reads batch by batch) would enrol the student
    and send the welcome message. An existing entry keeps its status, role and
    ownership at the newer version; a course we never enrolled gets a not-owned
    ``unenrolled`` entry, which is never suspended or removed.
    """
    event = decision.event
    if before is None:
        if decision.desired.active:
            return None  # cannot happen: an active decision with no entry enrols
        return LedgerEntry(
            courseid=decision.desired.course.id,
            userid=userid,
            roleid=decision.desired.role_id,
            status="unenrolled",
            event_id=event.event_id,
            state_version=event.state_version,
            owned=False,
        )
    if before.state_version >= event.state_version:
        return None
    return before.model_copy(
        update={"event_id": event.event_id, "state_version": event.state_version}
    )


class Unresolved(NamedTuple):
    """A person-term to park: its latest event, why, and the reason's code."""

    event: EnrolmentEvent
    reason: str
    code: str


@dataclass(slots=True)
class Plan:
    """What to do with a batch once identities are known."""

    actions: list[PlannedAction] = field(default_factory=list)
    unresolved: dict[tuple[str, str], Unresolved] = field(default_factory=dict)
    resolved_events: list[EnrolmentEvent] = field(default_factory=list)
    already_in_state: int = 0
    #: Ledger entries for decisions that needed no call: the version they were
    #: decided at, so an older event seen again later is recognised as stale.
    watermarks: list[LedgerEntry] = field(default_factory=list)


def uncertain_pairs(
    decisions: Sequence[Decision],
    identities: Mapping[str, Resolution],
    ledger: Callable[[int, int], LedgerEntry | None],
) -> set[tuple[int, int]]:
    """The (course, user) pairs whose ledger entry is uncertain and not stale.

    What Moodle holds there must be read before ``plan`` can decide them.
    """
    pairs: set[tuple[int, int]] = set()
    for decision in decisions:
        resolution = identities[decision.desired.people_code_id]
        if not isinstance(resolution, Found):
            continue
        pair = (decision.desired.course.id, resolution.userid)
        entry = ledger(*pair)
        if entry is None:
            continue
        entry = entry.normalised()
        if entry.uncertain and entry.state_version <= decision.event.state_version:
            pairs.add(pair)
    return pairs


def plan(
    decisions: Sequence[Decision],
    identities: Mapping[str, Resolution],
    ledger: Callable[[int, int], LedgerEntry | None],
    policy: EnrolmentPolicy,
    *,
    verified: Mapping[tuple[int, int], Held | None] | None = None,
    now_ms: int = 0,
    late_write_window_ms: int = 0,
    groups: GroupView | None = None,
) -> Plan:
    """Actions for the decisions whose person has exactly one Moodle user.

    Persons with none or several are returned in ``unresolved`` (per person and
    term) with their latest event and the reason, to be parked. ``verified``
    holds what Moodle was read to hold (None: no enrolment) for every pair of
    ``uncertain_pairs``; those pairs are decided from it, and their entry is
    rewritten as certain even when no call is needed, to be read again
    ``late_write_window_ms`` after its lost call was sent (``now_ms`` when the
    entry does not say): a call cut off may still be applied late.
    """
    verified = verified or {}
    result = Plan()
    resolved: dict[tuple[str, str], EnrolmentEvent] = {}
    for decision in decisions:
        person = decision.desired.people_code_id
        resolution = identities[person]
        if not isinstance(resolution, Found):
            slot = (person, decision.event.term.label())
            previous = result.unresolved.get(slot)
            if (
                previous is None
                or previous[0].state_version <= decision.event.state_version
            ):
                result.unresolved[slot] = Unresolved(
                    decision.event, resolution.reason, resolution.code
                )
            continue
        resolved[(person, decision.event.term.label())] = decision.event
        _plan_one(
            decision,
            resolution.userid,
            ledger,
            policy=policy,
            verified=verified,
            result=result,
            recheck=lambda sent: (sent or now_ms) + late_write_window_ms,
            groups=groups,
        )
    result.resolved_events = list(resolved.values())
    return result


def _plan_one(
    decision: Decision,
    userid: int,
    ledger: Callable[[int, int], LedgerEntry | None],
    *,
    policy: EnrolmentPolicy,
    verified: Mapping[tuple[int, int], Held | None],
    result: Plan,
    recheck: Callable[[int | None], int],
    groups: GroupView | None = None,
) -> None:
    event = decision.event
    pair = (decision.desired.course.id, userid)
    before = ledger(*pair)
    before = before.normalised() if before is not None else None
    mark: LedgerEntry | None
    if (
        before is not None
        and before.uncertain
        and before.state_version <= event.state_version
    ):
        if pair not in verified:
            raise ValueError(f"uncertain ledger entry {pair} was not read from Moodle")
        held = verified[pair]
        before = settle(before, held, recheck_at_ms=recheck(before.sent_at_ms))
        action = plan_against(decision.desired, userid, before, held, policy=policy)
        # The read settled the entry: keep that, whether or not a call follows.
        settled = (
            before if action is not None else as_decided(before, decision.desired, held)
        )
        mark = settled.model_copy(
            update={"event_id": event.event_id, "state_version": event.state_version}
        )
    else:
        action = plan_action(
            decision.desired,
            userid,
            before,
            state_version=event.state_version,
            policy=policy,
        )
        mark = watermark(decision, userid, before)
    stale = before is not None and before.state_version > event.state_version
    if groups is not None and not stale:
        action = adjust(
            decision.desired,
            action,
            userid=userid,
            ledger=before,
            held=frozenset(before.groups or ()) if before is not None else frozenset(),
            ids=groups.ids(decision.desired.course.id),
        )
    if action is None:
        result.already_in_state += 1
        if mark is not None:
            result.watermarks.append(mark)
    else:
        result.actions.append(PlannedAction(action, decision, before))
