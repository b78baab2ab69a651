"""End-to-end benchmark: sandbox commit → poller → Kafka → consumer → Moodle simulator.

Deployed as in production: the Moodle simulator and the poller each run in their
own process, the consumer in this one (where the latencies are stamped).

Prints, for the zero-latency simulator and for the latency model fitted on real
Moodle timings (tests/data/moodle-golden/latency.json: ~34 ms a call + ~7.3 ms an
enrolment row, ~4.4 ms a user read; ``--concurrency`` PHP workers):

* latency from a PowerCampus commit to the change applied in Moodle, p50/p99,
  for single registrations committed at random moments (target p99 <= 2 s at a
  1 s poll interval);
* the same latency as ``/metrics`` sees it: the consumer's
  ``enrolstream_commit_to_applied_seconds`` histogram, measured from the commit
  time change tracking recorded (the event's ``committed_at``) to the change
  applied, its quantiles interpolated within buckets as PromQL's
  ``histogram_quantile`` does;
* the drain time and rate of a start-of-term burst of 50,000 new registrations
  (target >= 2,000 changes/s against the zero-latency simulator; against the
  real-latency model, within 1.25 x of what Moodle's own cost for the calls the
  consumer made allows at that many workers).

``--instructors SHARE`` (default 0.1) makes that share of the changes SECTIONPER
rows (a new instructor of a section) instead of registrations, in the latency
samples and in the burst; ``--instructors 0`` measures registrations alone.
The sandbox tracks every table enrolstream reads (SECTIONPER, ACADEMIC and the
person tables too), so each event carries them.

``--scale`` measures instead the burst's throughput with 1, 2 and 4 consumers in
one group at 4 and 8 PHP workers against the real-latency model, each beside
Moodle's own cost for the calls made: it must rise until the workers are the bound.

Run from the repository root: ``.venv/bin/python -m bench.e2e [--burst 50000]
[--latency-samples 60] [--instructors 0.1] [--interval 1.0] [--scale]`` (a
module, so that it shares ``bench/stack.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from bench.stack import quiet, wait_for_port
from cdc.poller import Poller
from connectors.kafka.publisher import KafkaEventPublisher, ensure_topics
from connectors.local.checkpoint import SqliteCheckpointStore
from connectors.prometheus import PrometheusMetrics
from consumers.runner import ApplyRunner, RunnerStats
from enrolstream.settings import (
    ConsumerSettings,
    KafkaSettings,
    MoodleSettings,
    Settings,
)
from enrolstream.wiring.apply import open_runner
from sandbox.broker import free_port, kafka_bootstrap
from sandbox.moodle_sim.faults import LatencyModel
from sandbox.moodle_sim.server import MoodleSimulator
from sandbox.moodle_sim.state import MoodleState
from sandbox.powercampus.database import PowerCampusSandbox
from sandbox.powercampus.source import SandboxChangeSource
from schemas.events import TermKey

TERM = TermKey(academic_year="2021", academic_term="Winter")
COURSES = 100
INSERT = (
    "INSERT INTO TRANSCRIPTDETAIL (PEOPLE_CODE, PEOPLE_ID, PEOPLE_CODE_ID, ACADEMIC_YEAR, "
    "ACADEMIC_TERM, ACADEMIC_SESSION, EVENT_ID, EVENT_SUB_TYPE, SECTION, ADD_DROP_WAIT) "
    "VALUES ('P', ?, ?, '2021', 'Winter', '01', ?, 'LEC', '01', 'A')"
)
TEACHES = (
    "INSERT INTO SECTIONPER (ACADEMIC_YEAR, ACADEMIC_TERM, ACADEMIC_SESSION, EVENT_ID, "
    "EVENT_SUB_TYPE, SECTION, PERSON_CODE_ID, PERCENTAGE) "
    "VALUES ('2021', 'Winter', '01', ?, 'LEC', '01', ?, 100)"
)
#: The figures of main before issue 13's speed work (one run, 2-core machine,
#: load ~2, ``--interval 0.25``), printed beside today's.
BEFORE = {
    "zero-latency": {
        "p99": "1.080 s",
        "burst": "target >= 4,000/s; before 1,950/s",
        "floor": "-",
    },
    "real-latency": {
        "p99": "1.185 s",
        "burst": "before 357/s",
        "floor": "1.24 x",
    },
}
#: Instructors are people of their own, numbered from here (never students).
FACULTY = 1_000_000
TOPICS = (
    "events_topic",
    "snapshot_topic",
    "ledger_topic",
    "parked_topic",
    "dead_letter_topic",
    "accounts_topic",
    "created_topic",
    "mappings_topic",
)


def person(n: int) -> str:
    """PEOPLE_CODE_ID number n."""
    return f"P{n:09d}"


def course_code(k: int) -> str:
    """EVENT_ID number k."""
    return f"C{k:04d}"


def build_moodle(people: int, faculty: int = 0) -> tuple[MoodleState, list[int]]:
    """Users for every person (and instructor) and one course per EVENT_ID."""
    state = MoodleState()
    for n in [*range(people), *range(FACULTY, FACULTY + faculty)]:
        state.add_user(person(n).lower(), idnumber=person(n)[1:])
    return state, [
        state.add_course(f"{course_code(k)}Winter2021") for k in range(COURSES)
    ]


def serve_moodle(
    port: int,
    token: str,
    people: tuple[int, int],
    latency: tuple[float, float, int, float],
    stop: Any,
    calls_out: Any,
) -> None:
    """Child process: the Moodle simulator (Moodle is a separate server)."""
    quiet()
    state, _ = build_moodle(*people)

    async def serve() -> None:
        model = LatencyModel(*latency)
        async with MoodleSimulator(state, token=token, port=port, latency=model) as sim:
            while not stop.is_set():
                await asyncio.sleep(0.05)
            calls_out.send([(call.function, call.rows) for call in sim.calls])

    asyncio.run(serve())


def run_poller(
    sandbox_path: str,
    state_path: str,
    bootstrap: str,
    topic: str,
    interval_s: float,
    stop: Any,
) -> None:
    """Child process: the change-tracking poller, as deployed."""
    quiet()

    async def poll() -> None:
        source = SandboxChangeSource(Path(sandbox_path), name="e2e")
        with SqliteCheckpointStore(Path(state_path), "e2e") as store:
            async with KafkaEventPublisher(
                {"bootstrap_servers": bootstrap}, topic
            ) as publisher:
                poller = Poller(source, publisher, store, live_terms=[TERM])
                halt = asyncio.Event()

                async def watch() -> None:
                    while not stop.is_set():
                        await asyncio.sleep(0.05)
                    halt.set()

                await asyncio.gather(
                    poller.run(halt, interval_s=interval_s, max_backoff_s=interval_s),
                    watch(),
                )
        await source.close()

    asyncio.run(poll())


@dataclass
class World:
    """The sandbox, Moodle's ids, the consumer, and the calls Moodle saw (at the end)."""

    sandbox: PowerCampusSandbox
    course_ids: list[int]
    users: dict[str, int]
    poller_pid: int
    runners: list[ApplyRunner] = field(default_factory=list)
    moodle_calls: list[tuple[str, int]] = field(default_factory=list)
    metrics: PrometheusMetrics = field(default_factory=PrometheusMetrics)

    @property
    def stats(self) -> RunnerStats:
        """The (first) consumer's counters."""
        if not self.runners:
            raise RuntimeError("the consumer is not running")
        return self.runners[0].stats

    def enrolled(self) -> int:
        """New enrolments made, by every consumer of the group."""
        return sum(runner.stats.enrolled for runner in self.runners)

    def applied_at(self, key: tuple[int, int]) -> float | None:
        """When a (course, user) was applied, by whichever consumer did it."""
        for runner in self.runners:
            if key in runner.stats.applied_at:
                return runner.stats.applied_at[key]
        return None


def bench_settings(
    bootstrap_port: int, token: str, mapping: Path, concurrency: int
) -> Settings:
    """Fresh topics and group, the simulator, the mapping."""
    run = uuid.uuid4().hex[:6]
    return Settings(
        kafka=KafkaSettings(**{name: f"e2e-{run}-{name}" for name in TOPICS}),
        moodle=MoodleSettings(
            url=f"http://127.0.0.1:{bootstrap_port}",
            token=SecretStr(token),
            concurrency=concurrency,
            request_timeout_s=600,
        ),
        consumer=ConsumerSettings(
            mappings={"2021/Winter": mapping},
            group_id=f"e2e-{run}",
            session_timeout_s=2.0,
        ),
    )


@contextlib.asynccontextmanager
async def running_world(
    workdir: Path,
    bootstrap: str,
    people: int,
    latency: LatencyModel,
    *,
    interval_s: float,
    concurrency: int,
    faculty: int = 0,
    consumers: int = 1,
) -> AsyncIterator[World]:
    """Moodle and the poller in their own processes, the consumer(s) in this one.

    ``consumers``: members of one group, each with ``concurrency`` requests in
    flight (they share this process's CPU; against the real-latency model they
    wait on Moodle, not on it)."""
    workdir.mkdir(parents=True)
    sandbox = PowerCampusSandbox(workdir / "pc.sqlite")
    sandbox.create()
    state, course_ids = build_moodle(people, faculty)
    mapping = workdir / "mapping.json"
    mapping.write_text(
        json.dumps(
            {
                f"{course_code(k)}Winter2021": {"courses": [course_code(k)], "id": cid}
                for k, cid in enumerate(course_ids)
            }
        )
    )
    port, token = free_port(), uuid.uuid4().hex
    settings = bench_settings(port, token, mapping, concurrency)
    await ensure_topics(
        {"bootstrap_servers": bootstrap},
        [settings.kafka.events_topic],
        partitions=4,
        replication_factor=1,
    )
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    calls_in, calls_out = context.Pipe(duplex=False)
    children = [
        context.Process(
            target=serve_moodle,
            args=(
                port,
                token,
                (people, faculty),
                (
                    latency.per_call_s,
                    latency.per_row_s,
                    latency.workers,
                    latency.per_read_row_s,
                ),
                stop,
                calls_out,
            ),
        ),
        context.Process(
            target=run_poller,
            args=(
                str(workdir / "pc.sqlite"),
                str(workdir / "state.sqlite"),
                bootstrap,
                settings.kafka.events_topic,
                interval_s,
                stop,
            ),
        ),
    ]
    for child in children:
        child.start()
    world = World(
        sandbox=sandbox,
        course_ids=course_ids,
        users={u.idnumber: u.id for u in state.users() if u.idnumber},
        poller_pid=children[1].pid or 0,
    )
    try:
        await wait_for_port(port)
        async with contextlib.AsyncExitStack() as members:
            for _ in range(consumers):
                world.runners.append(
                    await members.enter_async_context(
                        open_runner(settings, bootstrap, metrics=world.metrics)
                    )
                )
            halt = asyncio.Event()
            consuming = [
                asyncio.ensure_future(runner.run(halt, poll_timeout_ms=100))
                for runner in world.runners
            ]
            try:
                await settled(world.runners)
                yield world
            finally:
                halt.set()
                await asyncio.gather(*consuming)
    finally:
        stop.set()
        world.moodle_calls.extend(await asyncio.to_thread(calls_in.recv))
        for child in children:
            await asyncio.to_thread(child.join)
        sandbox.close()


async def settled(runners: list[ApplyRunner]) -> None:
    """Until every consumer holds partitions and has sampled its lag.

    The lag is sampled after the loop read its tables again for its first
    assignment: changes committed from then on meet a consumer in its steady
    state (the start-up reads are not what a change at a random moment waits for).
    """
    deadline = time.monotonic() + 60
    while not all(runner.last_lags for runner in runners):
        if time.monotonic() > deadline:
            raise RuntimeError("the consumers never held their partitions")
        await asyncio.sleep(0.05)


def teaches(n: int, share: float) -> bool:
    """Whether change ``n`` is an instructor's (SECTIONPER) rather than a registration."""
    return share > 0 and int((n + 1) * share) > int(n * share)


async def measure_latency(
    world: World, samples: int, rng: random.Random, share: float
) -> list[float]:
    """Single changes at random moments: commit → applied in Moodle, seconds."""
    latencies: list[float] = []
    pending: dict[tuple[int, int], float] = {}
    for n in range(samples):
        k = rng.randrange(COURSES)
        if teaches(n, share):
            who = person(FACULTY + n)
            world.sandbox.execute(TEACHES, (course_code(k), who))
        else:
            who = person(n)
            world.sandbox.execute(INSERT, (who[1:], who, course_code(k)))
        pending[(world.course_ids[k], world.users[who[1:]])] = time.monotonic()
        await asyncio.sleep(rng.uniform(0.05, 0.6))
    deadline = time.monotonic() + 120
    while pending and time.monotonic() < deadline:
        for key in list(pending):
            applied = world.applied_at(key)
            if applied is not None:
                latencies.append(applied - pending.pop(key))
        await asyncio.sleep(0.01)
    if pending:
        raise RuntimeError(f"{len(pending)} changes never reached Moodle")
    return latencies


@dataclass(frozen=True)
class Burst:
    """A burst's drain time and the CPU time each side spent on it."""

    drain_s: float
    #: The poller process's user + system CPU from the first commit to the last apply.
    poller_cpu_s: float
    #: This process's CPU over the same time less the sandbox inserts (the
    #: consumer(s), their Kafka clients and the bench's wait loop).
    consumer_cpu_s: float

    def per_10k(self, changes: int) -> str:
        """CPU seconds per 10,000 changes, both sides."""
        scale = 10_000 / changes
        return (
            f"poller {self.poller_cpu_s * scale:.2f} s, consumer "
            f"{self.consumer_cpu_s * scale:.2f} s"
        )


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (from /proc)."""
    stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    fields = stat.rsplit(")", 1)[1].split()
    # fields[0] is the state (field 3): utime and stime are fields 14 and 15
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure_burst(
    world: World, changes: int, first_person: int, share: float
) -> Burst:
    """A burst in 100 transactions, from the first commit to all applied.

    ``share`` of the changes are new instructors (SECTIONPER), each a person of
    their own teaching one section; the rest are registrations, five per student.
    """
    per_transaction = max(1, changes // 100)
    before = world.enrolled()
    poller_before = cpu_seconds(world.poller_pid)
    started, own_before = time.monotonic(), time.process_time()
    for start in range(0, changes, per_transaction):
        batch = range(start, min(changes, start + per_transaction))
        rows = [
            (
                person(first_person + n // 5)[1:],
                person(first_person + n // 5),
                course_code((n * 7 + n // 5) % COURSES),
            )
            for n in batch
            if not teaches(n, share)
        ]
        taught = [
            (course_code(n % COURSES), person(FACULTY + n))
            for n in batch
            if teaches(n, share)
        ]
        with world.sandbox.transaction() as txn:
            txn.executemany(INSERT, rows)
            txn.executemany(TEACHES, taught)
    # the inserts run before the consumer gets the loop back: their CPU alone
    inserts_cpu = time.process_time() - own_before
    while world.enrolled() - before < changes:
        await asyncio.sleep(0.05)
    return Burst(
        drain_s=time.monotonic() - started,
        poller_cpu_s=cpu_seconds(world.poller_pid) - poller_before,
        consumer_cpu_s=time.process_time() - own_before - inserts_cpu,
    )


def moodle_floor(
    calls: list[tuple[str, int]], latency: LatencyModel, users: int
) -> float:
    """What Moodle's own cost allows for these calls, at ``workers`` in parallel."""
    seconds = users * latency.per_read_row_s
    for function, rows in calls:
        if function.startswith("enrol_manual"):
            seconds += latency.cost(rows)
        else:
            seconds += latency.per_call_s
    return seconds / latency.workers


def histogram_quantile(metrics: PrometheusMetrics, share: float) -> tuple[float, int]:
    """(quantile, count) of the commit-to-applied histogram, as PromQL estimates it."""
    buckets: list[tuple[float, float]] = []
    for family in metrics.registry.collect():
        if family.name != "enrolstream_commit_to_applied_seconds":
            continue
        buckets = [
            (float(sample.labels["le"]), sample.value)
            for sample in family.samples
            if sample.name.endswith("_bucket")
        ]
    buckets.sort()
    total = buckets[-1][1] if buckets else 0.0
    if not total:
        return float("nan"), 0
    rank = share * total
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return lower_bound, int(total)
            width = count - lower_count
            inside = (rank - lower_count) / width if width else 0.0
            return lower_bound + (bound - lower_bound) * inside, int(total)
        lower_bound, lower_count = bound, count
    return lower_bound, int(total)


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


async def scenario(
    name: str,
    bootstrap: str,
    tmp: Path,
    latency: LatencyModel,
    args: argparse.Namespace,
) -> None:
    """Latency, then the burst, against one latency model."""
    samples, people = args.latency_samples, args.burst // 5
    share = args.instructors
    taught = sum(teaches(n, share) for n in range(args.burst))
    async with running_world(
        tmp / f"{name}-latency",
        bootstrap,
        samples,
        latency,
        interval_s=args.interval,
        concurrency=args.concurrency,
        faculty=samples,
    ) as world:
        lat = await measure_latency(world, samples, random.Random(7), share)
    print(
        f"[{name}] commit -> applied in Moodle: p50 {statistics.median(lat):.3f} s, "
        f"p99 {percentile(lat, 0.99):.3f} s over {len(lat)} changes at random moments "
        f"(poll interval {args.interval:.2f} s; instructors {share:.0%}; target p99 "
        f"<= 0.5 s at a 0.25 s poll, before {BEFORE[name]['p99']})"
    )
    p50, seen = histogram_quantile(world.metrics, 0.5)
    p99, _ = histogram_quantile(world.metrics, 0.99)
    print(
        f"[{name}] the same, as /metrics sees it (enrolstream_commit_to_applied_seconds, "
        f"from change tracking's commit time): p50 ~{p50:.3f} s, p99 ~{p99:.3f} s over "
        f"{seen} changes (interpolated within buckets, as histogram_quantile does)"
    )
    async with running_world(
        tmp / f"{name}-burst",
        bootstrap,
        people,
        latency,
        interval_s=args.interval,
        concurrency=args.concurrency,
        faculty=args.burst if share > 0 else 0,
    ) as world:
        burst = await measure_burst(world, args.burst, 0, share)
    drain = burst.drain_s
    print(
        f"[{name}] burst of {args.burst:,} changes ({taught:,} instructors, "
        f"{taught / args.burst:.0%}) drained in {drain:.1f} s = "
        f"{args.burst / drain:,.0f} changes/s ({BEFORE[name]['burst']}); "
        f"{len(world.moodle_calls)} Moodle calls"
    )
    print(
        f"[{name}] CPU seconds per 10,000 changes: {burst.per_10k(args.burst)} "
        "(process CPU time over the drain; the consumer's without the sandbox inserts)"
    )
    if latency.per_call_s:
        # every person is looked up once: the students and each new instructor
        floor = moodle_floor(world.moodle_calls, latency, people + taught)
        print(
            f"[{name}] Moodle's own cost for those calls at {latency.workers} workers: "
            f"{floor:.1f} s; the burst drained in {drain / floor:.2f} x of it "
            f"(target <= 1.10 x, before {BEFORE[name]['floor']})"
        )


async def scaling(bootstrap: str, tmp: Path, args: argparse.Namespace) -> None:
    """Burst throughput of 1, 2 and 4 consumers at 4 and 8 PHP workers (real model)."""
    share = args.instructors
    taught = sum(teaches(n, share) for n in range(args.burst))
    for workers in (4, 8):
        latency = LatencyModel.recorded(workers=workers)
        for consumers in (1, 2, 4):
            async with running_world(
                tmp / f"scale-{workers}-{consumers}",
                bootstrap,
                args.burst // 5,
                latency,
                interval_s=args.interval,
                concurrency=workers,
                faculty=args.burst if share > 0 else 0,
                consumers=consumers,
            ) as world:
                drain = (await measure_burst(world, args.burst, 0, share)).drain_s
            floor = moodle_floor(world.moodle_calls, latency, args.burst // 5 + taught)
            print(
                f"[scale] {workers} PHP workers, {consumers} consumer(s) of "
                f"{workers} requests in flight each: {args.burst:,} changes in "
                f"{drain:.1f} s = {args.burst / drain:,.0f} changes/s; Moodle's own "
                f"cost for the calls made {floor:.1f} s ({drain / floor:.2f} x)"
            )


async def main() -> None:
    quiet()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--burst", type=int, default=50_000)
    parser.add_argument("--latency-samples", type=int, default=60)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument(
        "--concurrency",
        type=int,
        default=4,
        help="client requests in flight = PHP workers modelled",
    )
    parser.add_argument("--only", choices=["zero", "real"], default=None)
    parser.add_argument(
        "--scale",
        action="store_true",
        help="instead: the burst's throughput with 1, 2 and 4 consumers at 4 and 8 "
        "PHP workers (real-latency model)",
    )
    parser.add_argument(
        "--instructors",
        type=float,
        default=0.1,
        help="share of the changes that are new instructors (SECTIONPER rows)",
    )
    args = parser.parse_args()
    configured = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    with tempfile.TemporaryDirectory() as tmp:
        async with kafka_bootstrap(configured, Path(tmp) / "broker.log") as bootstrap:
            if args.scale:
                await scaling(bootstrap, Path(tmp), args)
                return
            if args.only in (None, "zero"):
                await scenario(
                    "zero-latency", bootstrap, Path(tmp), LatencyModel.zero(), args
                )
            if args.only in (None, "real"):
                await scenario(
                    "real-latency",
                    bootstrap,
                    Path(tmp),
                    LatencyModel.recorded(workers=args.concurrency),
                    args,
                )


if __name__ == "__main__":
    asyncio.run(main())
