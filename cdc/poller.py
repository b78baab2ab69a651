"""The change-tracking poller: read net changes, publish events, then save the version.

Resume contract (see ``CheckpointStore``): the saved version is the last one whose
events Kafka acknowledged. One iteration (``run_once``):

1. no saved version (first start) → initialise;
2. ``fetch_since(saved)``; ``ChangeTrackingVersionTooOld``, or a source whose
   current version is below the saved one (restored from an older backup)
   → re-initialise, loudly;
3. translate (pure), publish, wait for every ack;
4. only then save the batch's version and the shadow-map changes, together
   (where the rows go was *staged* before publishing, so a crash between 3 and
   4 cannot make the next attempt forget a row it published).

(Re-)initialisation publishes the full state of every person in the live terms
as snapshot events consistent with one version, rebuilds the shadow map from
that snapshot and continues incrementally from its version.

A crash between 3 and 4 republishes at most that batch, with the same event ids.
Transient failures (``err.retriable``) never advance the version; ``run`` backs off
and tries again. ``run`` finishes the in-flight iteration when asked to stop.

Each saved iteration is reported to the ``Metrics`` port (rows read, events
published, the source's and the saved version, the newest change's commit time,
the outcome); ``run`` beats its ``Heartbeat`` once per iteration (``/livez``).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

import structlog

from cdc.changes import shadow_entry, snapshot_events, to_events, vanished_events
from cdc.errors import CdcError, ChangeTrackingVersionTooOld
from cdc.ports import (
    ChangeBatch,
    ChangeSource,
    CheckpointStore,
    EventPublisher,
    ShadowEntry,
)
from cdc.replica import StateReplica
from operations.health import Heartbeat
from operations.metrics import NO_METRICS, Metrics
from schemas.events import EnrolmentEvent, TermKey

log = structlog.get_logger()


@dataclass(frozen=True, slots=True)
class PollResult:
    """What one iteration did."""

    from_version: int | None
    to_version: int
    events: int
    initialised: bool = False
    unresolved_deletes: int = 0


def _newest_change(batch: ChangeBatch, captured_at: datetime) -> datetime | None:
    """The newest commit time of the batch's changes (None: no change read).

    Without commit times (no permission, history cleaned up) the read time bounds
    it from above, so quiet is never overstated.
    """
    if not batch.changes and not batch.key_changes:
        return None
    times = batch.commit_times.values()
    return max(times) if times else captured_at


def parse_terms(labels: Sequence[str]) -> list[TermKey]:
    """Terms from settings labels ``YEAR/TERM`` (e.g. ``2021/Winter``)."""
    return [TermKey.parse(label) for label in labels]


def _no_crash(point: str) -> None:
    del point


class Poller:
    """Moves changes from a ``ChangeSource`` to an ``EventPublisher``, at least once."""

    def __init__(
        self,
        source: ChangeSource,
        publisher: EventPublisher,
        store: CheckpointStore,
        *,
        live_terms: Sequence[TermKey] = (),
        crash_point: Callable[[str], None] = _no_crash,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        today: Callable[[], date] = date.today,
        metrics: Metrics = NO_METRICS,
        heartbeat: Heartbeat | None = None,
        replica: StateReplica | None = None,
    ) -> None:
        self.source = source
        # The state topic and the lease (cdc.replica): None keeps the state in
        # the local store only (the demo, the benchmarks, single-host tests).
        self.replica = replica
        self.metrics = metrics
        self.heartbeat = heartbeat
        self.publisher = publisher
        self.store = store
        # bench/chaos.py kills the process here (enrolstream.crashpoints): never
        # between the save and the acknowledgement it depends on.
        self.crash_point = crash_point
        self.configured_terms = list(live_terms)
        self.clock = clock
        self.today = today
        self._live_today: tuple[date, list[TermKey]] | None = None

    async def run_once(self) -> PollResult:
        """One iteration: fetch, publish and await acks, then save the new version.

        The cyclic garbage collector waits while it runs (``_collector_paused``).
        """
        with _collector_paused():
            return await self._iteration()

    async def _iteration(self) -> PollResult:
        if self.replica is not None:
            await self.replica.confirm()
        last = self.store.load_version()
        if last is None:
            return await self.initialise(reason="first start: no saved version")
        try:
            batch = await self.source.fetch_since(
                last, self.store, live_terms=await self._live_terms()
            )
        except ChangeTrackingVersionTooOld as exc:
            return await self.initialise(reason=str(exc))
        if batch.to_version < last:
            # CHANGETABLE answers "nothing changed" here, but the database went
            # back in time (restored from an older backup, or recreated).
            return await self.initialise(
                reason=f"the source's current version {batch.to_version} is below the "
                f"saved version {last}: the database was restored or recreated"
            )
        captured_at = self.clock()
        translation = to_events(batch, source=self.source.name, captured_at=captured_at)
        await self._stage(translation.shadow_upserts)
        await self._publish(translation.events)
        self.crash_point("poller.after_publish")
        newest = _newest_change(batch, captured_at)
        if self.replica is not None:
            await self.replica.commit(
                batch.to_version,
                translation.shadow_upserts,
                translation.shadow_deletes,
                newest_change_at=newest,
                owners=translation.owners,
                owners_gone=translation.owners_gone,
            )
        self.store.commit(
            batch.to_version,
            translation.shadow_upserts,
            translation.shadow_deletes,
            newest_change_at=newest,
            owners=translation.owners,
            owners_gone=translation.owners_gone,
        )
        self._report(batch, len(translation.events), newest)
        unresolved = len(translation.unresolved_deletes) + len(
            translation.unresolved_keys
        )
        if unresolved:
            log.info(
                "deletes_without_shadow",
                count=unresolved,
                hint="rows inserted and deleted between two polls, or person rows "
                "never read: nothing to undo",
            )
        if translation.events:
            log.info(
                "changes_published",
                from_version=last,
                to_version=batch.to_version,
                events=len(translation.events),
            )
        return PollResult(
            from_version=last,
            to_version=batch.to_version,
            events=len(translation.events),
            unresolved_deletes=unresolved,
        )

    async def _stage(self, upserts: Sequence[ShadowEntry]) -> None:
        """Where rows are about to be published: locally, then in the state topic."""
        self.store.stage(upserts)
        if self.replica is not None:
            await self.replica.stage(upserts)

    async def _publish(self, events: Sequence[EnrolmentEvent]) -> None:
        """Publish with acks; with a lease, only after the broker confirmed it holds."""
        if events and self.replica is not None:
            await self.replica.confirm()
        await self.publisher.publish(events)

    def _report(self, batch: ChangeBatch, events: int, newest: datetime | None) -> None:
        """Tell the metrics what one saved iteration did."""
        metrics = self.metrics
        metrics.changes_read(len(batch.changes) + len(batch.key_changes))
        metrics.events_published("change", events)
        metrics.versions(source=batch.to_version, saved=batch.to_version)
        if newest is not None:
            metrics.change_seen(newest)
        metrics.poll_finished("ok")

    async def _live_terms(self) -> list[TermKey]:
        """The terms a person-table change is published for: configured, else live today.

        Read once per day (ACADEMICCALENDAR changes slowly).
        """
        if self.configured_terms:
            return self.configured_terms
        today = self.today()
        if self._live_today is None or self._live_today[0] != today:
            self._live_today = (today, list(await self.source.live_terms(today)))
        return self._live_today[1]

    async def initialise(self, *, reason: str) -> PollResult:
        """Publish the full state of the live terms as snapshot events and restart from it."""
        terms = self.configured_terms or list(
            await self.source.live_terms(self.today())
        )
        log.warning(
            "reinitialising",
            reason=reason,
            terms=[term.label() for term in terms],
            consequence="publishing the full state of every person in these "
            "terms as snapshot events; the shadow map is rebuilt for them",
        )
        snapshot = await self.source.read_snapshot(terms)
        captured_at = self.clock()
        events = snapshot_events(
            snapshot,
            source=self.source.name,
            captured_at=captured_at,
            snapshot_id=f"init-{self.source.name}-{snapshot.version}",
        )
        # Rows deleted or moved while changes could not be read incrementally:
        # only the shadow map remembers them, so say so before it is replaced.
        previous = self.store.entries(snapshot.terms)
        vanished = vanished_events(
            previous, snapshot, source=self.source.name, captured_at=captured_at
        )
        entries = [shadow_entry(row) for row in snapshot.rows]
        await self._stage(entries)
        await self._publish([*events, *vanished])
        self.crash_point("poller.after_publish")
        if self.replica is not None:
            kept = {entry.transcript_detail_id for entry in entries}
            await self.replica.commit(
                snapshot.version,
                entries,
                [
                    e.transcript_detail_id
                    for e in previous
                    if e.transcript_detail_id not in kept
                ],
                owners=snapshot.owners,
            )
        self.store.commit(
            snapshot.version,
            entries,
            [],
            replace_terms=snapshot.terms,
            owners=snapshot.owners,
        )
        self.metrics.events_published("snapshot", len(events) + len(vanished))
        self.metrics.versions(source=snapshot.version, saved=snapshot.version)
        self.metrics.poll_finished("reinitialised")
        log.warning(
            "reinitialised",
            version=snapshot.version,
            events=len(events),
            vanished_rows=len(vanished),
            rows=len(snapshot.rows),
        )
        return PollResult(
            from_version=None,
            to_version=snapshot.version,
            events=len(events) + len(vanished),
            initialised=True,
        )

    async def run(
        self, stop: asyncio.Event, *, interval_s: float, max_backoff_s: float
    ) -> None:
        """Poll every ``interval_s`` (drift-compensated) until ``stop`` is set.

        A retriable failure waits with exponential backoff (capped at
        ``max_backoff_s``) and tries again; a non-retriable one propagates.
        """
        failures = 0
        next_due = time.monotonic()
        while not stop.is_set():
            if self.heartbeat is not None:
                self.heartbeat.beat(time.monotonic())
            try:
                await self.run_once()
            except CdcError as exc:
                if not exc.retriable:
                    raise
                self.metrics.poll_finished("retry")
                failures += 1
                delay = min(max_backoff_s, interval_s * 2 ** min(failures, 16))
                log.warning(
                    "poll_failed_retrying",
                    error=str(exc),
                    error_type=type(exc).__name__,
                    attempt=failures,
                    retry_in_s=round(delay, 2),
                )
                next_due = time.monotonic() + delay
            else:
                if failures:
                    log.info("poll_recovered", after_attempts=failures)
                failures = 0
                next_due += interval_s
                next_due = max(next_due, time.monotonic())
            await _wait(stop, next_due - time.monotonic())


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector for the duration of an iteration.

    A burst's iteration builds a few million objects that all stay alive until
    it ends (rows, events, their JSON); every automatic collection meanwhile
    walks them again, for nothing: it was 40% of a 50,000-change iteration
    (bench/capture.py). Reference counting still frees everything as usual;
    only cycles wait until the collector is back on after the iteration. Left
    off if someone else had turned it off.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    if seconds <= 0:
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
