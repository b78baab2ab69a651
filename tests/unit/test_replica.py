"""The state replica: what each iteration writes to the state topic, behind the lease."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from cdc.ports import ShadowEntry
from cdc.replica import LoggedRecord, StateReplica
from cdc.state_records import StateRecord, fold_records, shadow_records
from schemas.events import SectionKey

BSC = SectionKey(
    academic_year="2021",
    academic_term="Winter",
    academic_session="01",
    event_id="BSC5102",
    event_sub_type="LEC",
    section="01",
)
ALICE_ROW = ShadowEntry(1, "P000000001", BSC)
BOB_ROW = ShadowEntry(2, "P000000002", BSC)
CHECKPOINT = b"enrolstream/pc/checkpoint"


class CountingLease:
    """Always held; counts the confirmations."""

    epoch = 3

    def __init__(self) -> None:
        self.confirmed = 0

    async def confirm(self) -> None:
        self.confirmed += 1


class MemoryStateLog:
    """Each append kept as one write (the records in order)."""

    def __init__(self) -> None:
        self.writes: list[list[StateRecord]] = []

    async def append(self, records: Sequence[StateRecord], *, epoch: int) -> None:
        self.writes.append(list(records))

    async def read_until(self, offset: int, marker: StateRecord) -> list[LoggedRecord]:
        raise NotImplementedError

    async def first(self) -> LoggedRecord | None:
        raise NotImplementedError

    def records(self) -> list[StateRecord]:
        return [record for write in self.writes for record in write]


def _replica() -> tuple[StateReplica, MemoryStateLog, CountingLease]:
    state_log, lease = MemoryStateLog(), CountingLease()
    return StateReplica(state_log, lease, "pc"), state_log, lease


class TestStagedRecordsAreNotWrittenTwice:
    """A commit leaves out the shadow records its iteration's stage already wrote."""

    def test_the_commit_writes_only_the_checkpoint_after_a_full_stage(self) -> None:
        replica, state_log, lease = _replica()

        async def iteration() -> None:
            await replica.stage([ALICE_ROW, BOB_ROW])
            await replica.commit(7, [ALICE_ROW, BOB_ROW], [])

        asyncio.run(iteration())
        staged, committed = state_log.writes
        assert staged == shadow_records("pc", [ALICE_ROW, BOB_ROW])
        assert [key for key, _ in committed] == [CHECKPOINT]
        state = fold_records("pc", state_log.records())
        assert state.upserts == {1: ALICE_ROW, 2: BOB_ROW}
        assert state.checkpoint is not None
        assert state.checkpoint.version == 7
        assert lease.confirmed == 2  # before each write

    def test_what_the_stage_did_not_write_the_commit_writes(self) -> None:
        """Entries staged with other values, or not staged, are in the commit."""
        moved = ShadowEntry(1, "P000000001", BSC.model_copy(update={"section": "02"}))
        replica, state_log, _ = _replica()

        async def iteration() -> None:
            await replica.stage([ALICE_ROW])
            await replica.commit(7, [moved, BOB_ROW], [])

        asyncio.run(iteration())
        committed = state_log.writes[-1]
        assert committed[:-1] == shadow_records("pc", [moved, BOB_ROW])
        assert fold_records("pc", state_log.records()).upserts == {
            1: moved,
            2: BOB_ROW,
        }

    def test_only_the_last_stage_counts(self) -> None:
        """An earlier iteration's stage does not excuse a later commit's record."""
        replica, state_log, _ = _replica()

        async def iterations() -> None:
            await replica.stage([ALICE_ROW])
            await replica.commit(7, [ALICE_ROW], [])
            await replica.stage([])
            await replica.commit(8, [ALICE_ROW], [2])

        asyncio.run(iterations())
        last = state_log.writes[-1]
        assert last[0] == shadow_records("pc", [ALICE_ROW])[0]
        assert last[-1][0] == CHECKPOINT
