"""The outbox over its real SQLite store and an in-memory folder: order, appends, commits.

The folder here is a dictionary that can be down and can "take" files as Conduit
does; the real SFTP server is in tests/integration/test_conduit_sftp.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from connectors.conduit.files import ENROLMENTS, ConduitFormat, ConduitLayout
from connectors.local.outbox import SqliteOutboxStore
from consumers.decisions import Held
from consumers.errors import TargetUnavailable
from consumers.outbox import DeferredCommits, Outbox
from consumers.ports import OutboxRow, Partition, RawMessage

FORMAT = ConduitFormat(ConduitLayout())
NAME = "enrollments.csv"


def add(course: str, person: str) -> OutboxRow:
    return FORMAT.enrolment(add=True, shortname=course, idnumber=person, role="student")


def drop(course: str, person: str) -> OutboxRow:
    return FORMAT.enrolment(
        add=False, shortname=course, idnumber=person, role="student"
    )


class Folder:
    """An in-memory remote folder; ``down`` makes every call fail as a dead server."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.down = False
        self.published: list[tuple[str, bytes, bool]] = []
        #: Called after each successful publish (e.g. Conduit racing us).
        self.after_publish: Callable[[], None] = lambda: None

    def _check(self) -> None:
        if self.down:
            raise TargetUnavailable("connection refused")

    async def read(self, name: str) -> bytes | None:
        self._check()
        return self.files.get(name)

    async def publish(self, name: str, content: bytes, *, replace: bool) -> bool:
        self._check()
        if not replace and name in self.files:
            return False
        self.files[name] = content
        self.published.append((name, content, replace))
        self.after_publish()
        return True

    def take(self, name: str = NAME) -> list[str]:
        """Conduit reads the file and removes it; its data lines."""
        content = self.files.pop(name, b"")
        return content.decode().splitlines()[1:]


class Stream:
    """Commits recorded; nothing else is used by the outbox."""

    def __init__(self) -> None:
        self.commits: list[dict[Partition, int]] = []
        self.reassigned = False

    async def getmany(self, timeout_ms: int) -> dict[Partition, list[RawMessage]]:
        return {}

    async def commit(self, offsets: Mapping[Partition, int]) -> None:
        self.commits.append(dict(offsets))

    def rewind(self, offsets: Mapping[Partition, int]) -> None:
        del offsets

    def take_reassigned(self) -> bool:
        changed, self.reassigned = self.reassigned, False
        return changed

    def owns(self, key: bytes) -> bool:
        return True

    def assignment_epoch(self) -> int:
        return 0

    @asynccontextmanager
    async def write_turn(self) -> AsyncIterator[None]:
        yield

    def ensure_held(self, epoch: int) -> None:
        del epoch

    async def lag(self) -> int:
        return 0

    async def lags(self) -> dict[int, int]:
        return {}


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 5, 6, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture(name="store")
def _store(tmp_path: Path) -> SqliteOutboxStore:
    return SqliteOutboxStore(tmp_path / "outbox")


class Setup:
    def __init__(self, store: SqliteOutboxStore) -> None:
        self.store = store
        self.folder = Folder()
        self.clock = Clock()
        self.outbox = Outbox(store, self.folder, FORMAT, window_s=60, clock=self.clock)
        self.stream = Stream()
        self.commits = DeferredCommits(self.stream, self.outbox)

    def queue(self, *rows: OutboxRow) -> None:
        self.outbox.queue(rows, {})


@pytest.fixture(name="setup")
def _setup(store: SqliteOutboxStore) -> Setup:
    return Setup(store)


class TestWindows:
    """Rows go out per window, in order, complete."""

    async def test_a_window_waits_for_its_time_then_goes_out(
        self, setup: Setup
    ) -> None:
        """Nothing is sent before the window closes; then one file with its rows."""
        setup.queue(add("A", "1"))
        assert await setup.outbox.deliver() == 0
        assert setup.folder.files == {}
        setup.clock.advance(60)
        assert await setup.outbox.deliver() == 1
        assert setup.folder.take() == ["add,A,1,student"]

    async def test_offsets_are_committed_only_once_their_file_is_there(
        self, setup: Setup
    ) -> None:
        """The runner's commit is held while the window's file is not delivered."""
        setup.queue(add("A", "1"))
        await setup.commits.commit({("events", 0): 11})
        assert setup.stream.commits == []
        setup.folder.down = True
        with pytest.raises(TargetUnavailable):
            await setup.outbox.deliver(flush=True)
        assert setup.stream.commits == []
        setup.folder.down = False
        await setup.outbox.deliver()
        assert setup.stream.commits == [{("events", 0): 11}]

    async def test_a_commit_with_nothing_waiting_goes_through_at_once(
        self, setup: Setup
    ) -> None:
        """Events that made no row, with no window waiting, commit at once."""
        await setup.commits.commit({("events", 0): 3})
        assert setup.stream.commits == [{("events", 0): 3}]

    async def test_nothing_is_lost_or_reordered_while_the_server_is_down(
        self, setup: Setup
    ) -> None:
        """Three windows cut during an outage arrive as the site would apply them."""
        setup.folder.down = True
        for person, row in [("1", add("A", "1")), ("2", add("A", "2"))]:
            del person
            setup.queue(row)
            with pytest.raises(TargetUnavailable):
                await setup.outbox.deliver(flush=True)
        setup.queue(drop("A", "1"))
        with pytest.raises(TargetUnavailable):
            await setup.outbox.deliver(flush=True)
        assert len(setup.store.pending()) == 3
        setup.folder.down = False
        assert await setup.outbox.deliver() == 3
        # one file: the first window, the next two appended (Conduit had not taken it)
        assert setup.folder.take() == ["drop,A,1,student", "add,A,2,student"]
        assert setup.store.pending() == []


class TestPreviousFileStillThere:
    """The seed skipped a round when its last file was still there; we append."""

    async def test_the_next_window_is_appended_not_lost(self, setup: Setup) -> None:
        """Conduit has not taken window 1: window 2's file holds both."""
        setup.queue(add("A", "1"))
        await setup.outbox.deliver(flush=True)
        setup.queue(add("B", "2"))
        await setup.outbox.deliver(flush=True)
        assert setup.folder.take() == ["add,A,1,student", "add,B,2,student"]
        assert [replace for _, _, replace in setup.folder.published] == [False, True]

    async def test_an_appended_file_is_sent_again_after_it_was_taken(
        self, setup: Setup
    ) -> None:
        """Rows written over an untaken file are delivered once more onto an empty slot."""
        setup.queue(add("A", "1"))
        await setup.outbox.deliver(flush=True)
        setup.queue(add("B", "2"))
        await setup.outbox.deliver(flush=True)
        assert setup.store.carried() != []
        await setup.outbox.deliver()
        assert len(setup.folder.published) == 2  # still there: left alone
        setup.folder.take()
        await setup.outbox.deliver()
        assert setup.folder.take() == ["add,A,1,student", "add,B,2,student"]
        assert setup.store.carried() == []
        await setup.outbox.deliver()
        assert setup.folder.files == {}  # carried once, then done

    async def test_a_file_removed_by_a_racing_reader_is_not_lost(
        self, setup: Setup
    ) -> None:
        """Conduit read file 1, we replaced it, Conduit removed ours: sent again."""
        setup.queue(add("A", "1"))
        await setup.outbox.deliver(flush=True)
        conduit_read = setup.folder.files[NAME]

        def conduit_removes_by_name() -> None:
            setup.folder.files.pop(NAME)  # once: it finishes with the file it read
            setup.folder.after_publish = lambda: None

        setup.folder.after_publish = conduit_removes_by_name
        setup.queue(add("B", "2"))
        await setup.outbox.deliver(flush=True)
        assert b"add,B,2" not in conduit_read
        # window 2's file went with Conduit's removal; its rows, carried, went again
        assert setup.folder.take() == ["add,A,1,student", "add,B,2,student"]
        assert setup.store.carried() == []

    async def test_the_latest_state_of_a_pair_wins_in_an_appended_file(
        self, setup: Setup
    ) -> None:
        """An add then a drop of the same role in two windows: one drop row."""
        setup.queue(add("A", "1"))
        await setup.outbox.deliver(flush=True)
        setup.queue(drop("A", "1"))
        await setup.outbox.deliver(flush=True)
        assert setup.folder.take() == ["drop,A,1,student"]

    async def test_a_file_that_is_not_ours_is_never_overwritten(
        self, setup: Setup
    ) -> None:
        """Another header under our file's name: refused, window kept, file untouched."""
        setup.folder.files[NAME] = b"user,course\n1,2\n"
        setup.queue(add("A", "1"))
        with pytest.raises(Exception, match="not written by enrolstream"):
            await setup.outbox.deliver(flush=True)
        assert setup.folder.files[NAME] == b"user,course\n1,2\n"
        assert len(setup.store.pending()) == 1


class TestCrashes:
    """A process killed mid-delivery repeats at most the window in flight."""

    async def test_killed_after_the_rename_the_window_goes_again_unchanged(
        self, store: SqliteOutboxStore, tmp_path: Path
    ) -> None:
        """Renamed on the server, not marked delivered: the restart sends the same rows."""
        first = Setup(store)
        first.queue(add("A", "1"), drop("B", "1"))
        store.cut(first.clock())

        def killed() -> None:
            raise KeyboardInterrupt  # the process dies right after the rename

        first.folder.after_publish = killed
        with pytest.raises(KeyboardInterrupt):
            await first.outbox.deliver()
        store.close()
        taken = first.folder.take()  # Conduit applied it meanwhile
        again = Setup(SqliteOutboxStore(tmp_path / "outbox"))
        again.folder = first.folder
        again.outbox.folder = first.folder
        first.folder.after_publish = lambda: None
        assert await again.outbox.deliver() == 1
        assert again.folder.take() == taken  # the same states: nothing changes

    async def test_rows_and_the_book_survive_a_restart(
        self, store: SqliteOutboxStore, tmp_path: Path
    ) -> None:
        """Queued rows and what the site holds are on disk as soon as queue returns."""
        outbox = Setup(store).outbox
        outbox.queue([add("A", "1")], {(1, -5): ("1", Held(True, frozenset({5})))})
        store.close()
        reopened = SqliteOutboxStore(tmp_path / "outbox")
        assert reopened.held([(1, -5), (1, -6)]) == {
            (1, -5): Held(True, frozenset({5}))
        }
        assert reopened.idnumber(1, -5) == "1"
        reopened.cut(datetime.now(UTC))
        assert [w.rows for w in reopened.pending()] == [(add("A", "1"),)]


class TestLocalCopies:
    """Every file sent is kept here, dated, readable by the service only."""

    async def test_copies_are_private_and_exact(
        self, setup: Setup, tmp_path: Path
    ) -> None:
        """sent/<date>/…-enrollments.csv, 0600 in 0700 directories, the bytes sent."""
        setup.queue(add("A", "1"))
        await setup.outbox.deliver(flush=True)
        [copy] = (tmp_path / "outbox" / "sent" / "2026-05-06").iterdir()
        assert copy.name.endswith("-w000001-enrollments.csv")
        assert copy.read_bytes() == setup.folder.files[NAME]
        assert copy.stat().st_mode & 0o777 == 0o600
        assert copy.parent.stat().st_mode & 0o777 == 0o700
        assert (tmp_path / "outbox").stat().st_mode & 0o777 == 0o700
        assert (tmp_path / "outbox" / "outbox.sqlite").stat().st_mode & 0o777 == 0o600


def test_file_order_is_users_then_enrolments() -> None:
    """A new account's user row reaches Conduit before its enrolment rows."""
    assert FORMAT.files == ("users", ENROLMENTS)
