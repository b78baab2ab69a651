"""Late writes: a call whose answer was lost may still be applied after we read Moodle.

A request that timed out is not cancelled on the server: PHP carries on until
the request ends (bounded by ``max_execution_time`` and the web server), so
Moodle can apply it *after* the consumer read Moodle back and decided (an enrol
landing after the drop that followed it). Reading back once is therefore not
enough: the decision that settled an uncertain entry also sets
``recheck_at_ms`` (``moodle.late_write_window_s`` after the lost call was
sent), and ``LateWrites.check_due`` reads those pairs again when they are due
and puts back what the ledger says we decided (``repair_late_write``).

Only pairs of this member's partitions are checked (``owns``), and no read or
repair starts once a rebalance began (``fence``). Entries still
uncertain are left to the event flow (the batch that wrote them is read again),
except the repairs' own intents (``REPAIR_PREFIX``), which no event revisits.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import structlog

from consumers.decisions import EnrolmentPolicy, repair_late_write
from consumers.ledger import Ledger
from consumers.ports import MoodleGateway
from schemas.actions import LedgerEntry, MoodleAction

__all__ = ["REPAIR_PREFIX", "LateWrites"]

log = structlog.get_logger()

#: The ``event_id`` prefix of a repair's ledger entries.
REPAIR_PREFIX = "late-write-repair:"


@dataclass(slots=True)
class LateWrites:
    """Reads again, when due, the pairs whose last call's answer was lost."""

    moodle: MoodleGateway
    ledger: Ledger
    policy: EnrolmentPolicy
    owns: Callable[[bytes], bool]
    #: Raises ``PartitionsRevoked`` once a rebalance began: no repair starts then.
    fence: Callable[[], None]
    clock_ms: Callable[[], int]
    window_ms: int
    #: The course's section groups of ours (None: no section groups).
    ours: Callable[[int], frozenset[int]] | None = None
    repaired: int = 0

    def due(self) -> list[LedgerEntry]:
        """The entries of this member whose recheck time has come."""
        now = self.clock_ms()
        return [
            entry
            for entry in self.ledger.awaiting_recheck()
            if entry.recheck_at_ms is not None
            and entry.recheck_at_ms <= now
            and (not entry.uncertain or entry.event_id.startswith(REPAIR_PREFIX))
            and (
                entry.people_code_id is None or self.owns(entry.people_code_id.encode())
            )
        ]

    async def check_due(self) -> int:
        """Read the due pairs, repair the ones a late write changed; how many repaired.

        Raises the target's error when Moodle cannot be read (the caller retries
        later; nothing is cleared).
        """
        due = self.due()
        if not due:
            return 0
        self.fence()
        held = await self.moodle.holdings([(e.courseid, e.userid) for e in due])
        repairs: list[tuple[MoodleAction, LedgerEntry]] = []
        settled: list[LedgerEntry] = []
        for entry in due:
            found = held.get((entry.courseid, entry.userid))
            if found is not None:  # only groups of ours are ours to put back
                ours = self.ours(entry.courseid) if self.ours else frozenset()
                found = replace(found, groupids=found.groupids & ours)
            action = repair_late_write(entry, found, policy=self.policy)
            if action is None:
                settled.append(entry.model_copy(update=_SETTLED))
            else:
                repairs.append((action, entry))
        await self.ledger.record(settled)
        if repairs:
            await self._repair(repairs)
        return len(repairs)

    async def _repair(
        self, repairs: Sequence[tuple[MoodleAction, LedgerEntry]]
    ) -> None:
        self.fence()
        now = self.clock_ms()
        intents = [self._entry(e, uncertain=True, sent_at_ms=now) for _, e in repairs]
        await self.ledger.record(intents)
        self.fence()
        outcomes = await self.moodle.apply([action for action, _ in repairs])
        before = {action.key(): entry for action, entry in repairs}
        # Applied: read again after another window (this write could be late too).
        await self.ledger.record(
            [
                self._entry(before[a.key()], recheck_at_ms=now + self.window_ms)
                for a in outcomes.applied
            ]
        )
        self.repaired += len(outcomes.applied)
        for action in outcomes.applied:
            log.warning(
                "late_write_repaired",
                action=action.kind,
                courseid=action.courseid,
                userid=action.userid,
                hint="a call whose answer was lost was applied after Moodle was read",
            )
        for action, error in [*outcomes.rejected, *outcomes.unknown]:
            log.error(
                "late_write_repair_failed",
                action=action.kind,
                courseid=action.courseid,
                userid=action.userid,
                error=str(error),
                retry_at_ms=now + self.window_ms,
            )

    def _entry(
        self,
        entry: LedgerEntry,
        *,
        uncertain: bool = False,
        sent_at_ms: int | None = None,
        recheck_at_ms: int | None = None,
    ) -> LedgerEntry:
        """The entry a repair writes: the same decision, put back.

        A repair restores what ``entry`` records (its status and roles), so only
        its bookkeeping changes. An intent is read again after the window
        whatever becomes of its call.
        """
        event_id = entry.event_id
        if not event_id.startswith(REPAIR_PREFIX):
            event_id = REPAIR_PREFIX + event_id
        return entry.normalised().model_copy(
            update={
                "event_id": event_id,
                "owned": True,
                "uncertain": uncertain,
                "sent_at_ms": sent_at_ms if uncertain else None,
                "recheck_at_ms": recheck_at_ms or self.clock_ms() + self.window_ms,
            }
        )


_SETTLED = {
    "recheck_at_ms": None,
    "uncertain": False,
    "sent_at_ms": None,
    "late_roleids": (),
}
