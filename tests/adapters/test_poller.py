"""The poller's resume contract, driven with a scripted source and a recording publisher."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from cdc.errors import (
    ChangeTrackingVersionTooOld,
    PublishFailed,
    SourceMisconfigured,
    SourceUnavailable,
)
from cdc.poller import Poller, parse_terms
from cdc.ports import (
    ChangeBatch,
    ChangeRow,
    PersonTerm,
    RowOwner,
    ShadowEntry,
    Snapshot,
    TrackedTable,
    TranscriptRow,
)
from connectors.local.checkpoint import SqliteCheckpointStore
from schemas.events import SectionKey, TermKey
from tests.fakes import RecordingPublisher, ScriptedChangeSource

TERM = TermKey(academic_year="2021", academic_term="Winter")
BSC = SectionKey(
    academic_year="2021",
    academic_term="Winter",
    academic_session="01",
    event_id="BSC5102",
    event_sub_type="LEC",
    section="01",
)
ALICE_A = TranscriptRow(1, "P000000001", BSC, "A")
BOB_A = TranscriptRow(2, "P000000002", BSC, "A")


class Crash(Exception):
    """Stands for the process dying."""


class CrashingStore(SqliteCheckpointStore):
    """A checkpoint store whose next incremental commit dies (publish done, save not)."""

    crash = False

    def commit(
        self,
        version: int,
        upserts: Sequence[ShadowEntry],
        deletes: Sequence[int],
        *,
        replace_terms: Sequence[TermKey] = (),
        newest_change_at: datetime | None = None,
        owners: Sequence[RowOwner] = (),
        owners_gone: Sequence[tuple[TrackedTable, str]] = (),
    ) -> None:
        if self.crash:
            raise Crash
        super().commit(
            version,
            upserts,
            deletes,
            replace_terms=replace_terms,
            newest_change_at=newest_change_at,
            owners=owners,
            owners_gone=owners_gone,
        )


def make(
    tmp_path: Path, store_type: type[SqliteCheckpointStore] = SqliteCheckpointStore
) -> tuple[ScriptedChangeSource, RecordingPublisher, SqliteCheckpointStore, Poller]:
    source = ScriptedChangeSource(Snapshot(version=10, terms=[TERM], rows=[ALICE_A]))
    source.batches[10] = ChangeBatch(
        10,
        12,
        [ChangeRow(1, "D", 11, None, None), ChangeRow(2, "I", 12, 12, BOB_A)],
        {PersonTerm("P000000001", TERM): (), PersonTerm("P000000002", TERM): (BOB_A,)},
    )
    publisher = RecordingPublisher()
    store = store_type(tmp_path / "state.sqlite", source.name)
    poller = Poller(
        source, publisher, store, clock=lambda: datetime(2021, 1, 11, tzinfo=UTC)
    )
    return source, publisher, store, poller


class TestRunOnce:
    """One iteration: fetch, publish with acks, then save."""

    async def test_first_start_publishes_a_snapshot(self, tmp_path: Path) -> None:
        """With no saved version the poller publishes snapshot events and saves their version."""
        _, publisher, store, poller = make(tmp_path)
        with capture_logs() as logs:
            result = await poller.run_once()
        assert result.initialised
        assert [(e.kind, e.people_code_id) for e in publisher.published] == [
            ("snapshot", "P000000001")
        ]
        assert store.load_version() == 10
        assert store.shadow_size() == 1
        assert any(
            entry["event"] == "reinitialising" and entry["log_level"] == "warning"
            for entry in logs
        )

    async def test_delete_is_resolved_through_the_shadow_map(
        self, tmp_path: Path
    ) -> None:
        """A delete carrying only the key becomes a drop event for the right person."""
        _, publisher, store, poller = make(tmp_path)
        await poller.run_once()
        await poller.run_once()
        changes = [
            (e.people_code_id, e.change.operation)
            for e in publisher.published
            if e.change
        ]
        assert changes == [("P000000001", "delete"), ("P000000002", "insert")]
        assert store.load_version() == 12
        assert set(store.lookup([1, 2])) == {2}

    async def test_failed_publish_does_not_advance_the_version(
        self, tmp_path: Path
    ) -> None:
        """When Kafka does not acknowledge, the saved version and shadow map stay put."""
        source, publisher, store, poller = make(tmp_path)
        await poller.run_once()
        publisher.fail_next = 1
        with pytest.raises(PublishFailed):
            await poller.run_once()
        assert store.load_version() == 10
        assert set(store.lookup([1])) == {1}
        await poller.run_once()
        assert store.load_version() == 12
        assert source.fetched_from == [10, 10]

    async def test_source_failure_does_not_advance_the_version(
        self, tmp_path: Path
    ) -> None:
        """A source outage raises a retriable error and changes nothing."""
        source, publisher, store, poller = make(tmp_path)
        await poller.run_once()
        source.errors.append(SourceUnavailable("connection reset"))
        with pytest.raises(SourceUnavailable) as raised:
            await poller.run_once()
        assert raised.value.retriable
        assert store.load_version() == 10
        assert len(publisher.published) == 1

    async def test_crash_between_publish_and_save_republishes_the_same_ids(
        self, tmp_path: Path
    ) -> None:
        """Killed after the acks, the next poller republishes that batch with the same ids."""
        _, publisher, store, poller = make(tmp_path, CrashingStore)
        await poller.run_once()
        assert isinstance(store, CrashingStore)
        store.crash = True
        with pytest.raises(Crash):
            await poller.run_once()
        first = [e.event_id for e in publisher.published if e.kind == "change"]
        store.close()
        _, publisher2, store2, poller2 = make(tmp_path)
        await poller2.run_once()
        again = [e.event_id for e in publisher2.published]
        assert again == first
        assert store2.load_version() == 12

    async def test_crash_before_the_first_save_then_a_delete(
        self, tmp_path: Path
    ) -> None:
        """Killed between the first snapshot's acks and its save, then a row deleted:
        the re-initialisation still publishes its drop (found by bench/chaos.py)."""
        source, _, store, poller = make(tmp_path, CrashingStore)
        assert isinstance(store, CrashingStore)
        store.crash = True
        with pytest.raises(Crash):
            await poller.run_once()  # Alice's snapshot published, nothing saved
        store.close()
        source, publisher, store, poller = make(tmp_path)
        source.snapshot = Snapshot(version=11, terms=[TERM], rows=[])  # Alice deleted
        await poller.run_once()
        dropped = [
            (e.people_code_id, e.change.operation, e.change.section)
            for e in publisher.published
            if e.change
        ]
        assert dropped == [("P000000001", "delete", BSC)]
        assert store.load_version() == 11

    async def test_crash_after_publishing_an_insert_then_a_delete(
        self, tmp_path: Path
    ) -> None:
        """Bob inserted and published, killed before the save, then Bob deleted: the
        retried batch resolves his delete where his insert was published."""
        source, _, store, poller = make(tmp_path, CrashingStore)
        await poller.run_once()
        assert isinstance(store, CrashingStore)
        store.crash = True
        with pytest.raises(Crash):
            await poller.run_once()  # Bob's insert published, version 12 not saved
        store.close()
        source, publisher, store, poller = make(tmp_path)
        source.batches[10] = ChangeBatch(
            10,
            13,
            [ChangeRow(1, "D", 11, None, None), ChangeRow(2, "D", 13, 12, None)],
            {PersonTerm("P000000001", TERM): (), PersonTerm("P000000002", TERM): ()},
        )
        await poller.run_once()
        resolved = [
            (e.people_code_id, e.change.operation, e.change.section)
            for e in publisher.published
            if e.change
        ]
        assert resolved == [
            ("P000000001", "delete", BSC),
            ("P000000002", "delete", BSC),
        ]
        assert store.lookup([1, 2]) == {}

    async def test_version_too_old_reinitialises(self, tmp_path: Path) -> None:
        """Below the min valid version: a snapshot, deletes for rows gone meanwhile."""
        source, publisher, store, poller = make(tmp_path)
        await poller.run_once()
        source.errors.append(ChangeTrackingVersionTooOld(10, 15))
        source.snapshot = Snapshot(version=30, terms=[TERM], rows=[BOB_A])
        result = await poller.run_once()
        assert result.initialised
        assert store.load_version() == 30
        assert set(store.lookup([1, 2])) == {2}
        reinit = publisher.published[1:]
        assert [(e.kind, e.people_code_id) for e in reinit] == [
            ("snapshot", "P000000002"),
            ("change", "P000000001"),
        ]
        vanished = reinit[1]
        assert vanished.change is not None
        assert (vanished.change.operation, vanished.registrations) == ("delete", ())


class TestCollectorPaused:
    """The cyclic garbage collector waits while an iteration builds its batch."""

    async def test_paused_during_an_iteration_and_back_on_after(
        self, tmp_path: Path
    ) -> None:
        _, publisher, _, poller = make(tmp_path)
        seen: list[bool] = []
        publisher.on_publish = lambda: seen.append(gc.isenabled())
        await poller.run_once()
        await poller.run_once()
        assert seen == [False, False]
        assert gc.isenabled()

    async def test_back_on_after_a_failed_iteration(self, tmp_path: Path) -> None:
        _, publisher, _, poller = make(tmp_path)
        publisher.fail_next = 1
        with pytest.raises(PublishFailed):
            await poller.run_once()
        assert gc.isenabled()

    async def test_left_off_when_it_was_off(self, tmp_path: Path) -> None:
        _, _, _, poller = make(tmp_path)
        gc.disable()
        try:
            await poller.run_once()
            assert not gc.isenabled()
        finally:
            gc.enable()


class TestRestoredSource:
    """A source that went back in time is re-read in full, not trusted to be quiet."""

    async def test_current_version_below_saved_reinitialises(
        self, tmp_path: Path
    ) -> None:
        """A database restored from an older backup triggers a loud re-initialisation."""
        source, _, store, poller = make(tmp_path)
        await poller.run_once()
        await poller.run_once()
        assert store.load_version() == 12
        source.snapshot = Snapshot(version=5, terms=[TERM], rows=[BOB_A])
        source.batches[12] = ChangeBatch(12, 5, [], {})
        with capture_logs() as logs:
            result = await poller.run_once()
        assert result.initialised
        assert store.load_version() == 5
        assert any("restored" in str(e.get("reason")) for e in logs)


class TestRun:
    """The polling loop: retries transient failures, stops when asked."""

    async def test_retries_until_the_broker_acknowledges(self, tmp_path: Path) -> None:
        """Two failed publishes are retried with backoff; the version advances once acked."""
        _, publisher, store, poller = make(tmp_path)
        publisher.fail_next = 2
        stop = asyncio.Event()
        publisher.on_publish = stop.set
        with capture_logs() as logs:
            await poller.run(stop, interval_s=0.001, max_backoff_s=0.01)
        assert store.load_version() == 10
        assert [e["event"] for e in logs].count("poll_failed_retrying") == 2

    async def test_non_retriable_errors_stop_the_loop(self, tmp_path: Path) -> None:
        """A misconfigured source is not retried: the error reaches the operator."""
        source, _, store, poller = make(tmp_path)
        await poller.run_once()
        source.errors.append(SourceMisconfigured("VIEW CHANGE TRACKING is missing"))
        with pytest.raises(SourceMisconfigured):
            await poller.run(asyncio.Event(), interval_s=0.001, max_backoff_s=0.01)
        assert store.load_version() == 10


class TestParseTerms:
    """Live terms from settings."""

    @pytest.mark.parametrize(
        ("labels", "expected"),
        [
            (["2021/Winter"], [("2021", "Winter")]),
            ([" 2021 / FALL "], [("2021", "FALL")]),
            ([], []),
        ],
    )
    def test_labels(self, labels: list[str], expected: list[tuple[str, str]]) -> None:
        """YEAR/TERM labels become term keys."""
        assert [
            (t.academic_year, t.academic_term) for t in parse_terms(labels)
        ] == expected

    @pytest.mark.parametrize("label", ["2021", "/Winter", "2021/"])
    def test_bad_label(self, label: str) -> None:
        """A label without both parts is refused with an example."""
        with pytest.raises(ValueError, match="YEAR/TERM"):
            parse_terms([label])
