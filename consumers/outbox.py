"""The outbox of a site fed by files (Open LMS Conduit): windows delivered in order.

A site like Conduit takes its changes as files of fixed names in a folder it
reads on its own schedule (every 15 minutes), and removes each file once read.
The consumer's decisions become rows (``connectors.conduit``); the rows of one
*window* (``window_s``) go out together. The contract:

* **Nothing is lost.** Rows are queued durably on this machine
  (``OutboxStore``) before the runner records them in the ledger, and the Kafka
  offsets of their events are committed only once the window holding them is
  complete on the server (``DeferredCommits``). A server that is down, or a
  previous file still there, holds the windows back; they are never skipped.
* **Nothing is reordered.** Windows are delivered one at a time, oldest first;
  a window is not begun before the one before it is complete on the server.
* **The previous file is never overwritten.** While the site has not taken the
  last file, the next window is appended to it: a file holding the previous
  file's rows then the new ones, written under a temporary name and renamed over
  it in one step (the site never sees half a file). The rows are states (one
  per key: ``add``/``drop`` of one role of one person in one course), so a row
  read twice changes nothing; the file keeps only the latest row of each key.
* **A file replaced while the site may have been reading it is sent again.**
  If the site read the previous file and removes it by name after our rename,
  the merged file goes with it. Its rows are therefore *carried*: kept here
  and delivered once more, onto an empty slot, the next time the site has taken
  the file. Onto an empty slot nothing races (the site removes only files that
  exist), so that delivery ends the carrying.
* **A crash repeats at most the window in flight**, never an older one after a
  newer: the window whose upload was cut off is still pending and is delivered
  again (merged with itself if the site has not taken it yet).

``Outbox.deliver`` does one round (cut the open window when due, deliver every
pending window, settle carried rows, commit what is delivered); ``run`` repeats
it every ``check_every_s`` until stopped, waiting longer after failures.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import structlog

from consumers.decisions import Held
from consumers.errors import ConsumerError, TargetUnavailable
from consumers.ports import (
    EventStream,
    FileFormat,
    OutboxRow,
    OutboxStore,
    OutboxWindow,
    Partition,
    RawMessage,
    RemoteFolder,
)

__all__ = ["DeferredCommits", "DeliveryStats", "Outbox", "merge_rows"]

log = structlog.get_logger()

#: Attempts at one file when another writer keeps putting one in our way.
PUBLISH_ATTEMPTS = 3


def merge_rows(*parts: Sequence[OutboxRow]) -> list[OutboxRow]:
    """The rows of ``parts`` in order, the latest of each (file, key) only.

    A key's row stands where its latest version came: the states a site reads
    in this order end where the latest rows say.
    """
    latest: dict[tuple[str, tuple[str, ...]], OutboxRow] = {}
    for part in parts:
        for row in part:
            latest.pop((row.file, row.key), None)
            latest[(row.file, row.key)] = row
    return list(latest.values())


@dataclass(slots=True)
class DeliveryStats:
    """Counters since start, for logs, the summary and tests."""

    windows: int = 0
    files: int = 0
    appended: int = 0  # files written over one the site had not taken
    carried_resent: int = 0
    failures: int = 0
    committed: int = 0  # commits sent to Kafka after a delivery


@dataclass(slots=True)
class _Waiting:
    """Offsets to commit once every window up to ``seq`` is delivered."""

    seq: int
    offsets: dict[Partition, int] = field(default_factory=dict)


class Outbox:
    """Queues rows in windows and delivers them to the site's folder, in order."""

    def __init__(
        self,
        store: OutboxStore,
        folder: RemoteFolder,
        file_format: FileFormat,
        *,
        window_s: float,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        max_backoff_s: float = 60.0,
        crash_point: Callable[[str], None] = lambda _: None,
    ) -> None:
        """``crash_point``: where the fault tests kill the process (enrolstream.crashpoints)."""
        self.crash_point = crash_point
        self.store = store
        self.folder = folder
        self.format = file_format
        self.window = timedelta(seconds=window_s)
        self.clock = clock
        self.max_backoff_s = max_backoff_s
        self.stats = DeliveryStats()
        self.stream: EventStream | None = None
        self._waiting: list[_Waiting] = []
        self._lock = asyncio.Lock()

    def queue(
        self,
        rows: Sequence[OutboxRow],
        held: Mapping[tuple[int, int], tuple[str, Held | None]],
    ) -> None:
        """Add rows to the open window, durably (see ``OutboxStore.queue``)."""
        self.store.queue(rows, held, self.clock())

    # -- commits ----------------------------------------------------------------------

    def hold(self, offsets: Mapping[Partition, int]) -> None:
        """Commit ``offsets`` once every window that exists now is delivered."""
        if offsets:
            self._waiting.append(_Waiting(self.store.last_seq(), dict(offsets)))

    def forget_held(self) -> None:
        """Drop held offsets (a rebalance: later commits cover the partitions kept)."""
        self._waiting.clear()

    async def commit_delivered(self) -> None:
        """Commit the held offsets whose windows are all delivered."""
        if self.stream is None or not self._waiting:
            return
        through = self.store.delivered_through()
        ready = [w for w in self._waiting if w.seq <= through]
        if not ready:
            return
        offsets: dict[Partition, int] = {}
        for waiting in ready:
            for tp, offset in waiting.offsets.items():
                offsets[tp] = max(offset, offsets.get(tp, offset))
        await self.stream.commit(offsets)
        self._waiting = [w for w in self._waiting if w.seq > through]
        self.stats.committed += 1

    def waiting_windows(self) -> int:
        """Windows cut or open and not delivered yet."""
        return self.store.last_seq() - self.store.delivered_through()

    # -- delivery ---------------------------------------------------------------------

    async def deliver(self, *, flush: bool = False) -> int:
        """One round: cut when due (now with ``flush``), deliver, settle, commit.

        Returns the windows delivered. The target's errors propagate (the
        windows stay pending; nothing is committed past them).
        """
        async with self._lock:
            now = self.clock()
            opened = self.store.opened_at()
            if opened is not None and (flush or now - opened >= self.window):
                self.store.cut(now)
            done = 0
            for window in self.store.pending():
                await self._deliver_window(window)
                done += 1
            if not self.store.pending():
                await self._settle_carried()
        self.crash_point("conduit.after_delivered")
        await self.commit_delivered()
        return done

    async def run(self, stop: asyncio.Event, *, check_every_s: float = 1.0) -> None:
        """Deliver until ``stop`` is set; a failure waits (doubling) and tries again."""
        failures = 0
        while not stop.is_set():
            try:
                await self.deliver()
                failures = 0
                delay = check_every_s
            except ConsumerError as exc:
                failures += 1
                self.stats.failures += 1
                delay = min(self.max_backoff_s, check_every_s * 2 ** min(failures, 10))
                log.warning(
                    "conduit_delivery_failed",
                    error=str(exc),
                    error_type=type(exc).__name__,
                    retriable=exc.retriable,
                    attempt=failures,
                    retry_in_s=delay,
                    waiting_windows=self.waiting_windows(),
                    hint="the windows wait in the outbox; their offsets are not "
                    "committed",
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)

    async def _deliver_window(self, window: OutboxWindow) -> None:
        carried = self.store.carried()
        still_carried: list[OutboxRow] = []
        appended = 0
        for file in self.format.files:
            rows = [r for r in window.rows if r.file == file]
            old = [r for r in carried if r.file == file]
            if not rows and not old:
                continue
            sent, merged = await self._publish(file, merge_rows(old, rows), window.seq)
            if merged:
                appended += 1
                still_carried += sent
        self.crash_point("conduit.after_upload")
        self.store.delivered(window.seq, still_carried, self.clock())
        self.stats.windows += 1
        self.stats.appended += appended
        log.info(
            "conduit_window_delivered",
            window=window.seq,
            rows=len(window.rows),
            appended_to_untaken_file=appended,
            carried_rows=len(still_carried),
        )

    async def _settle_carried(self) -> None:
        """Deliver carried rows again onto an empty slot, once the site took the file."""
        carried = self.store.carried()
        if not carried:
            return
        still: list[OutboxRow] = []
        for file in self.format.files:
            rows = [r for r in carried if r.file == file]
            if not rows:
                continue
            if await self.folder.read(self.format.remote_name(file)) is not None:
                still += rows  # not taken yet: nothing races while we leave it be
                continue
            sent, merged = await self._publish(file, rows, self.store.last_seq())
            if merged:
                still += sent
            else:
                self.stats.carried_resent += len(rows)
        self.store.delivered(None, still, self.clock())

    async def _publish(
        self, file: str, rows: Sequence[OutboxRow], seq: int
    ) -> tuple[list[OutboxRow], bool]:
        """Put ``rows`` in the site's file; (rows the file holds, whether it was
        written over one the site had not taken)."""
        name = self.format.remote_name(file)
        for _ in range(PUBLISH_ATTEMPTS):
            existing = await self.folder.read(name)
            if existing is None:
                content = self.format.compose(file, rows)
                if await self.folder.publish(name, content, replace=False):
                    self._sent(name, content, seq)
                    return list(rows), False
                continue  # a file appeared meanwhile: read it and append
            merged = merge_rows(self.format.parse(file, existing), rows)
            content = self.format.compose(file, merged)
            await self.folder.publish(name, content, replace=True)
            self._sent(name, content, seq)
            return merged, True
        raise TargetUnavailable(
            f"{name}: the file kept changing while it was written "
            f"({PUBLISH_ATTEMPTS} attempts): is another writer using the folder?"
        )

    def _sent(self, name: str, content: bytes, seq: int) -> None:
        self.stats.files += 1
        self.store.keep_copy(name, content, seq, self.clock())


class DeferredCommits:
    """The event stream, its commits held until their windows are delivered.

    The runner commits as usual; the offsets wait in the outbox and go to Kafka
    once every window that existed when they were committed is on the server
    (at once when none waits). A rebalance drops what waits: the partitions kept
    are covered by the next commit, the others are read again by their new
    owner, whose ledger says the rows were queued.
    """

    def __init__(self, stream: EventStream, outbox: Outbox) -> None:
        self.inner = stream
        self.outbox = outbox
        outbox.stream = stream

    async def getmany(self, timeout_ms: int) -> dict[Partition, list[RawMessage]]:
        """The inner stream's records."""
        return await self.inner.getmany(timeout_ms)

    async def commit(self, offsets: Mapping[Partition, int]) -> None:
        """Hold the offsets until their windows are delivered."""
        self.outbox.hold(offsets)
        await self.outbox.commit_delivered()

    def rewind(self, offsets: Mapping[Partition, int]) -> None:
        """Seek the inner stream back."""
        self.inner.rewind(offsets)

    def take_reassigned(self) -> bool:
        """The inner stream's answer; a rebalance drops the held offsets."""
        changed = self.inner.take_reassigned()
        if changed:
            self.outbox.forget_held()
        return changed

    def owns(self, key: bytes) -> bool:
        """The inner stream's answer."""
        return self.inner.owns(key)

    def assignment_epoch(self) -> int:
        """The inner stream's answer."""
        return self.inner.assignment_epoch()

    def write_turn(self) -> AbstractAsyncContextManager[None]:
        """The inner stream's turn."""
        return self.inner.write_turn()

    def ensure_held(self, epoch: int) -> None:
        """The inner stream's check."""
        self.inner.ensure_held(epoch)

    async def lag(self) -> int:
        """The inner stream's answer."""
        return await self.inner.lag()

    async def lags(self) -> dict[int, int]:
        """The inner stream's answer."""
        return await self.inner.lags()
