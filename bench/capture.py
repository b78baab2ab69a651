"""Capture benchmark: 50,000 changes in 100 transactions, sandbox → poller → broker.

Prints two figures sets:

* burst: all 100 transactions committed as fast as the sandbox takes them; the
  time from the first commit to the last event acknowledged by Kafka, and
  events per second (target ≥ 5,000/s);
* paced: the same volume spread over ``--paced-seconds``; the latency from each
  transaction's commit to the acknowledgement of its events, p50/p99, at the
  poll interval (target p99 ≤ 1.5 × interval + 100 ms).

* one-row commits (``--singles``) at random moments 0.05-0.6 s apart, as
  bench/e2e.py's latency samples: commit -> ack p50/p99, and where the
  slowest ones' time went (waiting for the poll, the read, translate and
  stage, publish until acked);
* idle: what polling costs the source when nothing changes, at the poll
  interval: polls, SQL statements and statements per second, rows read per
  poll and per second (``--idle-seconds``; compare ``--interval 1.0`` with
  ``--interval 0.25``).

``--state kafka`` runs the poller as ``enrolstream poll`` does: its state
written to the state topic behind the lease (``cdc/replica.py``), the local
file a copy; ``--state local`` (the default) keeps it in the local file only,
as before the state topic existed.

Uses the embedded broker unless KAFKA_BOOTSTRAP_SERVERS is set.
Run: ``.venv/bin/python bench/capture.py [--interval 1.0] [--state kafka]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from cdc.poller import Poller
from cdc.ports import ChangeBatch, CheckpointStore, ShadowLookup
from cdc.replica import StateReplica, catch_up
from connectors.kafka.lease import KafkaLease
from connectors.kafka.poller_state import KafkaStateLog
from connectors.kafka.publisher import KafkaEventPublisher, ensure_topics
from connectors.local.checkpoint import SqliteCheckpointStore
from connectors.local.replica_cache import ReplicaCacheStore
from sandbox.broker import kafka_bootstrap
from sandbox.powercampus.database import PowerCampusSandbox
from sandbox.powercampus.source import SandboxChangeSource
from schemas.events import EnrolmentEvent, TermKey

TERM = TermKey(academic_year="2021", academic_term="Winter")
INSERT = (
    "INSERT INTO TRANSCRIPTDETAIL (PEOPLE_CODE, PEOPLE_ID, PEOPLE_CODE_ID, ACADEMIC_YEAR, "
    "ACADEMIC_TERM, ACADEMIC_SESSION, EVENT_ID, EVENT_SUB_TYPE, SECTION, ADD_DROP_WAIT) "
    "VALUES ('P', ?, ?, '2021', 'Winter', '01', ?, 'LEC', '01', 'A')"
)


@dataclass
class PollTimes:
    """When one poll read its changes, and handed them to Kafka and had them acked."""

    fetch_start: float
    fetch_end: float = 0.0
    publish_start: float = 0.0
    acked: float = 0.0


class TimedSource(SandboxChangeSource):
    """The sandbox source, noting when each poll's read began and ended."""

    def __init__(self, path: Path, *, name: str) -> None:
        super().__init__(path, name=name)
        self.polls: list[PollTimes] = []

    async def fetch_since(
        self,
        last_version: int,
        shadow: ShadowLookup,
        *,
        live_terms: Sequence[TermKey] = (),
    ) -> ChangeBatch:
        times = PollTimes(time.perf_counter())
        self.polls.append(times)
        batch = await super().fetch_since(last_version, shadow, live_terms=live_terms)
        times.fetch_end = time.perf_counter()
        return batch


class TimedPublisher:
    """Wraps the real publisher and notes when each change version was acknowledged."""

    def __init__(self, inner: KafkaEventPublisher, source: TimedSource) -> None:
        self.inner = inner
        self.source = source
        self.acked_at: dict[int, float] = {}
        #: The poll that published each change version.
        self.poll_of: dict[int, PollTimes] = {}
        self.events = 0

    async def publish(self, events: Sequence[EnrolmentEvent]) -> None:
        poll = self.source.polls[-1] if self.source.polls else None
        if poll is not None:
            poll.publish_start = time.perf_counter()
        await self.inner.publish(events)
        now = time.perf_counter()
        if poll is not None:
            poll.acked = now
        self.events += len(events)
        for event in events:
            if event.change is not None:
                version = event.change.change_version
                self.acked_at.setdefault(version, now)
                if poll is not None:
                    self.poll_of.setdefault(version, poll)


def commit(sandbox: PowerCampusSandbox, start: int, rows: int) -> int:
    """One transaction of ``rows`` new registrations; returns its version."""
    values = [
        (f"{n:09d}", f"P{n:09d}", f"C{n % 400:04d}") for n in range(start, start + rows)
    ]
    with sandbox.transaction() as txn:
        txn.executemany(INSERT, values)
    assert txn.committed_version is not None  # noqa: S101 - inserts are tracked
    return txn.committed_version


@asynccontextmanager
async def poller_state(
    workdir: Path, options: dict[str, object], topic: str, *, in_kafka: bool
) -> AsyncIterator[tuple[CheckpointStore, StateReplica | None]]:
    """The poller's store, and with ``in_kafka`` the state topic behind a held lease."""
    if not in_kafka:
        with SqliteCheckpointStore(workdir / "state.sqlite", "bench") as store:
            yield store, None
        return
    await ensure_topics(
        options,
        [f"{topic}.state", f"{topic}.lease"],
        partitions=1,
        replication_factor=1,
        compacted=[f"{topic}.state"],
    )
    async with AsyncExitStack() as stack:
        cache = stack.enter_context(
            ReplicaCacheStore(workdir / "state.sqlite", "bench")
        )
        state_log = await stack.enter_async_context(
            KafkaStateLog(dict(options), f"{topic}.state")
        )
        lease = await stack.enter_async_context(
            KafkaLease(dict(options), f"{topic}.lease", topic, session_timeout_s=10.0)
        )
        assert await lease.acquire(asyncio.Event())  # noqa: S101 - alone in its group
        replica = StateReplica(state_log, lease, "bench")
        await catch_up(cache, state_log, replica)
        yield cache, replica


@dataclass
class RunningPoller:
    """A sandbox whose commits a polling ``Poller`` publishes through ``publisher``."""

    sandbox: PowerCampusSandbox
    publisher: TimedPublisher

    async def until_acked(self, version: int) -> None:
        """Wait until the event of ``version`` is acknowledged."""
        while version not in self.publisher.acked_at:
            await asyncio.sleep(0.01)


@asynccontextmanager
async def running_poller(
    workdir: Path, bootstrap: str, *, interval_s: float, in_kafka: bool
) -> AsyncIterator[RunningPoller]:
    """A fresh sandbox and topic, and a poller initialised on the empty term,
    polling every ``interval_s`` until the block ends."""
    workdir.mkdir(parents=True)
    sandbox = PowerCampusSandbox(workdir / "pc.sqlite")
    sandbox.create()
    topic = f"bench-{uuid.uuid4().hex[:8]}"
    options: dict[str, object] = {"bootstrap_servers": bootstrap}
    await ensure_topics(options, [topic], partitions=4, replication_factor=1)
    source = TimedSource(workdir / "pc.sqlite", name="bench")
    async with (
        poller_state(workdir, options, topic, in_kafka=in_kafka) as (
            store,
            replica,
        ),
        KafkaEventPublisher(dict(options), topic) as real,
    ):
        publisher = TimedPublisher(real, source)
        poller = Poller(source, publisher, store, live_terms=[TERM], replica=replica)
        await poller.run_once()  # initialise on the empty term
        stop = asyncio.Event()
        polling = asyncio.create_task(
            poller.run(stop, interval_s=interval_s, max_backoff_s=interval_s)
        )
        yield RunningPoller(sandbox, publisher)
        stop.set()
        await polling
    await source.close()
    sandbox.close()


async def run_phase(
    workdir: Path,
    bootstrap: str,
    *,
    transactions: int,
    rows: int,
    interval_s: float,
    spread_s: float,
    in_kafka: bool,
) -> tuple[float, int, list[float]]:
    """Commit the load, poll until every version is acked; (elapsed, events, latencies)."""
    committed_at: dict[int, float] = {}
    async with running_poller(
        workdir, bootstrap, interval_s=interval_s, in_kafka=in_kafka
    ) as running:
        first = time.perf_counter()
        for n in range(transactions):
            version = await asyncio.to_thread(commit, running.sandbox, n * rows, rows)
            committed_at[version] = time.perf_counter()
            if spread_s:
                await asyncio.sleep(spread_s / transactions)
        await running.until_acked(max(committed_at))
    publisher = running.publisher
    elapsed = max(publisher.acked_at.values()) - first
    latencies = [publisher.acked_at[v] - t for v, t in committed_at.items()]
    return elapsed, publisher.events, latencies


async def single_changes(
    workdir: Path,
    bootstrap: str,
    *,
    samples: int,
    interval_s: float,
    in_kafka: bool,
    seed: int = 13,
) -> list[tuple[float, float, float, float, float]]:
    """One-row commits at random moments (as bench/e2e.py's latency samples).

    Per change: (commit -> ack, waiting for the poll, the poll's read, translate
    and stage (and the lease), publish until acked), in seconds.
    """
    rng = random.Random(seed)
    committed_at: dict[int, float] = {}
    async with running_poller(
        workdir, bootstrap, interval_s=interval_s, in_kafka=in_kafka
    ) as running:
        for n in range(samples):
            version = await asyncio.to_thread(commit, running.sandbox, n, 1)
            committed_at[version] = time.perf_counter()
            await asyncio.sleep(rng.uniform(0.05, 0.6))
        await running.until_acked(max(committed_at))
    publisher = running.publisher
    found = []
    for version, at in committed_at.items():
        poll = publisher.poll_of[version]
        found.append(
            (
                publisher.acked_at[version] - at,
                poll.fetch_start - at,
                poll.fetch_end - poll.fetch_start,
                poll.publish_start - poll.fetch_end,
                poll.acked - poll.publish_start,
            )
        )
    return found


class CountingCursor:
    """A sqlite cursor that counts the rows it hands out."""

    def __init__(self, cursor: sqlite3.Cursor, counter: Counter[str]) -> None:
        self.cursor = cursor
        self.counter = counter

    def fetchall(self) -> list[Any]:
        rows = self.cursor.fetchall()
        self.counter["rows"] += len(rows)
        return rows

    def fetchone(self) -> Any:
        row = self.cursor.fetchone()
        self.counter["rows"] += row is not None
        return row

    def __iter__(self) -> Iterator[Any]:
        for row in self.cursor:
            self.counter["rows"] += 1
            yield row


class CountingConnection:
    """The source's sqlite connection, counting statements by verb and rows returned."""

    def __init__(self, inner: sqlite3.Connection, counter: Counter[str]) -> None:
        self.inner = inner
        self.counter = counter

    def execute(self, sql: str, parameters: Any = ()) -> CountingCursor:
        self.counter[sql.split(None, 1)[0].upper()] += 1
        return CountingCursor(self.inner.execute(sql, parameters), self.counter)

    @property
    def in_transaction(self) -> bool:
        return self.inner.in_transaction

    def close(self) -> None:
        self.inner.close()


async def idle_cost(
    workdir: Path, bootstrap: str, *, interval_s: float, seconds: float
) -> tuple[int, Counter[str]]:
    """The poller on a term where nothing changes: (polls, statements by verb + rows)."""
    workdir.mkdir(parents=True)
    sandbox = PowerCampusSandbox(workdir / "pc.sqlite")
    sandbox.create()
    commit(sandbox, 0, 500)  # a term with registrations, read once at start
    topic = f"bench-{uuid.uuid4().hex[:8]}"
    options: dict[str, object] = {"bootstrap_servers": bootstrap}
    await ensure_topics(options, [topic], partitions=4, replication_factor=1)
    source = SandboxChangeSource(workdir / "pc.sqlite", name="bench")
    statements: Counter[str] = Counter()
    polls = 0
    async with (
        poller_state(workdir, options, topic, in_kafka=False) as (store, replica),
        KafkaEventPublisher(dict(options), topic) as publisher,
    ):
        poller = Poller(source, publisher, store, live_terms=[TERM], replica=replica)
        await poller.run_once()  # initialise: the term read whole, once
        connection = source._conn  # noqa: SLF001 - the bench counts what it runs
        assert connection is not None  # noqa: S101 - opened by the first poll
        counting = CountingConnection(connection, statements)
        source._conn = cast("sqlite3.Connection", counting)  # noqa: SLF001
        stop = time.perf_counter() + seconds
        while time.perf_counter() < stop:
            await poller.run_once()
            polls += 1
            await asyncio.sleep(interval_s)
        source._conn = connection  # noqa: SLF001
    await source.close()
    sandbox.close()
    return polls, statements


def print_singles(singles: list[tuple[float, float, float, float, float]]) -> None:
    """Commit -> ack of one-row commits, and where the slowest ones' time went."""
    latencies = [sample[0] for sample in singles]
    print(
        f"  {len(singles)} one-row commits, latency commit -> ack: "
        f"p50 {statistics.median(latencies):.3f} s, "
        f"p99 {percentile(latencies, 0.99):.3f} s, max {max(latencies):.3f} s"
    )
    parts = ("waiting for the poll", "read", "translate+stage", "publish+ack")
    means = [statistics.mean(sample[i + 1] for sample in singles) for i in range(4)]
    print(
        "    mean: "
        + ", ".join(
            f"{name} {mean:.3f} s" for name, mean in zip(parts, means, strict=True)
        )
    )
    for sample in sorted(singles, reverse=True)[:3]:
        print(
            f"    slow {sample[0]:.3f} s: "
            + ", ".join(
                f"{name} {value:.3f} s"
                for name, value in zip(parts, sample[1:], strict=True)
            )
        )


def percentile(values: list[float], share: float) -> float:
    """The nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval", type=float, default=1.0, help="poll interval, s")
    parser.add_argument("--transactions", type=int, default=100)
    parser.add_argument("--rows", type=int, default=500, help="changes per transaction")
    parser.add_argument("--paced-seconds", type=float, default=20.0)
    parser.add_argument(
        "--idle-seconds", type=float, default=10.0, help="the idle phase's length"
    )
    parser.add_argument(
        "--singles",
        type=int,
        default=60,
        help="one-row commits at random moments (0.05-0.6 s apart, as bench/e2e)",
    )
    parser.add_argument(
        "--state",
        choices=["local", "kafka"],
        default="local",
        help="where the poller keeps its state (kafka: as `enrolstream poll`)",
    )
    args = parser.parse_args()
    in_kafka = args.state == "kafka"
    total = args.transactions * args.rows
    configured = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    with tempfile.TemporaryDirectory() as tmp:
        async with kafka_bootstrap(configured, Path(tmp) / "broker.log") as bootstrap:
            burst, events, burst_lat = await run_phase(
                Path(tmp) / "burst",
                bootstrap,
                transactions=args.transactions,
                rows=args.rows,
                interval_s=args.interval,
                spread_s=0,
                in_kafka=in_kafka,
            )
            _, _, paced = await run_phase(
                Path(tmp) / "paced",
                bootstrap,
                transactions=args.transactions,
                rows=args.rows,
                interval_s=args.interval,
                spread_s=args.paced_seconds,
                in_kafka=in_kafka,
            )
            singles = await single_changes(
                Path(tmp) / "singles",
                bootstrap,
                samples=args.singles,
                interval_s=args.interval,
                in_kafka=in_kafka,
            )
            polls, statements = await idle_cost(
                Path(tmp) / "idle",
                bootstrap,
                interval_s=args.interval,
                seconds=args.idle_seconds,
            )
    target = 1.5 * args.interval + 0.1
    print(
        f"capture benchmark: {total:,} changes in {args.transactions} transactions, "
        f"poll interval {args.interval:.2f} s, broker "
        f"{'external' if configured else 'embedded (Tansu)'}, poller state "
        f"{'in the state topic behind the lease' if in_kafka else 'in the local file'}"
    )
    print(
        f"  burst: first commit -> last event acknowledged {burst:.2f} s, "
        f"{events:,} events, {events / burst:,.0f} events/s (target >= 5,000/s)"
    )
    print(
        f"  burst latency commit -> ack: p50 {statistics.median(burst_lat):.3f} s, "
        f"p99 {percentile(burst_lat, 0.99):.3f} s"
    )
    print(
        f"  paced over {args.paced_seconds:.0f} s, latency commit -> ack: "
        f"p50 {statistics.median(paced):.3f} s, p99 {percentile(paced, 0.99):.3f} s "
        f"(target p99 <= {target:.2f} s)"
    )
    print_singles(singles)
    rows = statements.pop("rows", 0)
    total_statements = sum(statements.values())
    verbs = ", ".join(f"{verb} {n}" for verb, n in statements.most_common())
    print(
        f"  idle (nothing changes) for {args.idle_seconds:.0f} s: {polls} polls, "
        f"{total_statements} SQL statements = "
        f"{total_statements / args.idle_seconds:.1f} statements/s, "
        f"{total_statements / max(1, polls):.1f} a poll ({verbs}); "
        f"{rows} rows read = {rows / args.idle_seconds:.1f} rows/s, "
        f"{rows / max(1, polls):.1f} a poll"
    )


if __name__ == "__main__":
    asyncio.run(main())
