"""The poller's state as records of the state topic, and back."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from cdc.ports import RowOwner, ShadowEntry
from cdc.state_records import (
    Checkpoint,
    StateRecordInvalid,
    commit_records,
    fold_records,
    shadow_records,
)
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
SEEN = datetime(2021, 1, 11, 9, 30, tzinfo=UTC)


class TestStateRecords:
    """Records written in order read back as the state they describe."""

    def test_a_commit_reads_back_as_written(self) -> None:
        """Shadow entries, owners and the checkpoint survive the trip through the topic."""
        records = commit_records(
            "pc",
            Checkpoint(12, SEEN),
            [ALICE_ROW, BOB_ROW],
            [],
            owners=[RowOwner("EmailAddress", "77", "P000000001")],
        )
        state = fold_records("pc", records)
        assert state.upserts == {1: ALICE_ROW, 2: BOB_ROW}
        assert state.checkpoint == Checkpoint(12, SEEN)
        assert state.row_owners() == [RowOwner("EmailAddress", "77", "P000000001")]

    def test_the_checkpoint_is_written_last(self) -> None:
        """A crash in the middle of a commit leaves the old checkpoint: never a newer one."""
        records = commit_records("pc", Checkpoint(12), [ALICE_ROW], [3])
        assert records[-1][0] == b"enrolstream/pc/checkpoint"
        assert fold_records("pc", records[:-1]).checkpoint is None

    def test_later_records_win_and_tombstones_delete(self) -> None:
        """A row deleted after being staged is gone; an owner removed is gone."""
        records = [
            *shadow_records("pc", [ALICE_ROW, BOB_ROW]),
            *commit_records(
                "pc",
                Checkpoint(12),
                [],
                [1],
                owners=[RowOwner("PersonUser", "9", "P000000002")],
            ),
            *commit_records(
                "pc", Checkpoint(13), [], [], owners_gone=[("PersonUser", "9")]
            ),
        ]
        state = fold_records("pc", records)
        assert state.upserts == {2: BOB_ROW}
        assert state.deletes == {1}
        assert state.owners == {}
        assert state.owners_gone == {("PersonUser", "9")}
        assert state.checkpoint == Checkpoint(13)

    def test_other_sources_records_are_skipped(self) -> None:
        """Two sources may share the topic: each reads only its own records."""
        records = commit_records("other", Checkpoint(99), [ALICE_ROW], [])
        state = fold_records("pc", records)
        assert state.empty
        assert state.checkpoint is None

    def test_an_unreadable_record_names_its_key(self) -> None:
        """A damaged record stops the reader with its key, rather than losing a row."""
        with pytest.raises(StateRecordInvalid, match="enrolstream/pc/shadow/1"):
            fold_records("pc", [(b"enrolstream/pc/shadow/1", b'{"section": {}}')])
