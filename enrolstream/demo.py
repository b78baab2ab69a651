"""``enrolstream demo``: the whole pipeline on the embedded stack, and a registrar's morning.

Broker (embedded unless KAFKA_BOOTSTRAP_SERVERS names one), a seeded PowerCampus
sandbox, the Moodle simulator, the poller and the consumer run in this process.
Once Moodle matches PowerCampus, scripted registrar actions are committed as
plain SQL and each is shown landing in Moodle with its latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import shutil
import signal
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pydantic import SecretStr
from rich.console import Console
from rich.table import Table

from cdc.poller import Poller
from connectors.kafka.options import client_options
from connectors.kafka.publisher import KafkaEventPublisher, ensure_topics
from connectors.local.checkpoint import SqliteCheckpointStore
from connectors.web import OpsServer
from consumers.mapping import load_mappings
from consumers.runner import ApplyRunner
from enrolstream.demo_mapping import generate_demo_mapping
from enrolstream.demo_ops import print_instructions
from enrolstream.demo_script import Scene, registrar_morning
from enrolstream.demo_site import build_site, expected_active, moodle_active
from enrolstream.settings import Settings
from enrolstream.wiring.apply import open_runner
from enrolstream.wiring.common import policy as policy_of
from enrolstream.wiring.consume import alarm_watch, consumer_probes
from enrolstream.wiring.operations import alive, heartbeat, probe_source, serve
from enrolstream.wiring.status_page import ConsumerStatusPage, StatusMetrics
from operations.health import Heartbeat, Probe
from operations.latency import LatencyWindow
from sandbox.broker import kafka_bootstrap
from sandbox.moodle_sim.faults import LatencyModel
from sandbox.moodle_sim.server import MoodleSimulator
from sandbox.moodle_sim.state import MoodleState
from sandbox.powercampus.database import PowerCampusSandbox
from sandbox.powercampus.seed import SeedSummary, seed_term
from sandbox.powercampus.source import SandboxChangeSource

console = Console(highlight=False)


@dataclass(frozen=True, slots=True)
class DemoOptions:
    """What the demo command was asked for."""

    workdir: Path
    people: int
    latency: str
    keep_running: bool
    timeout_s: float = 30.0


def demo_settings(
    base: Settings,
    workdir: Path,
    sim: MoodleSimulator,
    mapping: Path,
    *,
    external_broker: bool,
) -> Settings:
    """The settings of this demo run: fresh topics, the simulator, the sandbox file."""
    run = uuid.uuid4().hex[:6]
    kafka = base.kafka.model_copy(
        update={
            name: f"demo-{run}.{getattr(base.kafka, name).split('.', 1)[-1]}"
            for name in (
                "events_topic",
                "snapshot_topic",
                "ledger_topic",
                "parked_topic",
                "dead_letter_topic",
                "accounts_topic",
                "created_topic",
                "mappings_topic",
            )
        }
    )
    return base.model_copy(
        update={
            "kafka": kafka,
            "source": base.source.model_copy(
                update={
                    "kind": "sandbox",
                    "name": "demo",
                    "sandbox": base.source.sandbox.model_copy(
                        update={"path": workdir / "powercampus.sqlite"}
                    ),
                }
            ),
            "poller": base.poller.model_copy(
                update={
                    "state_path": workdir / "poller-state.sqlite",
                    "live_terms": ("2021/Winter",),
                }
            ),
            "moodle": base.moodle.model_copy(
                update={"url": sim.url, "token": SecretStr(sim.token)}
            ),
            "consumer": base.consumer.model_copy(
                update={
                    "mappings": {"2021/Winter": mapping},
                    "group_id": f"demo-{run}",
                    "parked_retry_s": 2.0,
                    "session_timeout_s": 6.0 if external_broker else 2.0,
                }
            ),
            "reconcile": base.reconcile.model_copy(
                update={"report_dir": workdir / "reports"}
            ),
        }
    )


async def wait_until(predicate: Callable[[], bool], timeout_s: float) -> float | None:
    """Seconds until ``predicate`` held (checked every 5 ms), or None on timeout."""
    start = time.perf_counter()
    while time.perf_counter() - start < timeout_s:
        if predicate():
            return time.perf_counter() - start
        await asyncio.sleep(0.005)
    return None


class Demo:
    """The running stack and the checks the script uses."""

    def __init__(
        self,
        *,
        sandbox: PowerCampusSandbox,
        source: SandboxChangeSource,
        sim: MoodleSimulator,
        runner: ApplyRunner,
        settings: Settings,
        summary: SeedSummary,
        course_ids: dict[str, int],
    ) -> None:
        self.sandbox = sandbox
        self.source = source
        self.sim = sim
        self.runner = runner
        self.settings = settings
        self.summary = summary
        self.course_ids = course_ids
        self.mapping = load_mappings(settings.consumer.mappings)
        self.policy = policy_of(settings)

    async def truth(self, *, with_accounts_only: bool = True) -> dict[int, set[str]]:
        """Who PowerCampus says should be active, per Moodle course."""
        snapshot = await self.source.read_snapshot([self.summary.term])
        expected = expected_active(snapshot, self.mapping, self.policy)
        if with_accounts_only:
            accounts = {f"P{u.idnumber}" for u in self.sim.state.users() if u.idnumber}
            expected = {cid: people & accounts for cid, people in expected.items()}
        return expected

    def moodle(self) -> dict[int, set[str]]:
        """Who Moodle holds as active, per mapped course."""
        return moodle_active(self.sim.state, list(self.course_ids.values()))

    def active(self, shortname: str, person: str) -> bool:
        """Is the person active in that Moodle course right now?"""
        return person in self.moodle()[self.course_ids[shortname]]

    def roles(self, shortname: str, person: str) -> set[int]:
        """The roles the person holds in that Moodle course right now."""
        user = next(
            (u.id for u in self.sim.state.users() if u.idnumber == person[1:]), None
        )
        if user is None:
            return set()
        return set(self.sim.state.roles_of(self.course_ids[shortname], user))


#: The web-service functions that change Moodle.
_WRITES = ("enrol_", "core_role_", "core_user_create", "core_user_update", "local_")


def _writes(demo: Demo) -> int:
    """Moodle write calls so far."""
    return sum(1 for c in demo.sim.calls if c.function.startswith(_WRITES))


async def play(
    demo: Demo, scenes: list[Scene], timeout_s: float
) -> list[tuple[str, float]]:
    """Commit each scene's SQL and wait for Moodle to show its outcome."""
    latencies: list[tuple[str, float]] = []
    for number, scene in enumerate(scenes, start=1):
        console.print(f"\n[bold]{number}. {scene.title}[/bold]")
        console.print(f"   [dim]{scene.explain}[/dim]")
        if scene.before is not None:
            await scene.before(demo)
        for statement in scene.sql:
            console.print(f"   [cyan]SQL>[/cyan] {statement}")
        writes_before = _writes(demo)
        if scene.sql:
            demo.sandbox.execute(";\n".join(scene.sql))
        seconds = await wait_until(functools.partial(scene.done, demo), timeout_s)
        writes = _writes(demo)
        if seconds is None:
            console.print(
                f"   [red]✗ not visible in Moodle after {timeout_s:.0f} s[/red]"
            )
            continue
        if scene.settle:
            await asyncio.sleep(scene.settle)  # show that nothing else happens
            writes = _writes(demo)
        latencies.append((scene.title, seconds))
        console.print(
            f"   [green]✓ {scene.outcome}[/green] — in Moodle after "
            f"[bold]{seconds * 1000:.0f} ms[/bold] ({writes - writes_before} "
            "Moodle write calls)"
        )
    return latencies


def print_summary(
    demo: Demo, latencies: list[tuple[str, float]], initial_s: float
) -> None:
    """The figures of the run."""
    stats = demo.runner.stats
    table = Table(
        title="registrar's morning: commit in PowerCampus → visible in Moodle"
    )
    table.add_column("change")
    table.add_column("latency", justify="right")
    for title, seconds in latencies:
        table.add_row(title, f"{seconds * 1000:.0f} ms")
    if latencies:
        values = [s for _, s in latencies]
        table.add_row(
            "[bold]median / max[/bold]",
            f"{statistics.median(values) * 1000:.0f} / {max(values) * 1000:.0f} ms",
        )
    console.print()
    console.print(table)
    console.print(
        f"initial load: {sum(len(v) for v in demo.moodle().values())} active enrolments in "
        f"{len(demo.course_ids)} Moodle courses after {initial_s:.1f} s; events consumed "
        f"{stats.events}; enrolled {stats.enrolled}, dropped {stats.dropped}, "
        f"already in state {stats.already_in_state}; "
        f"parked now {len(demo.runner.parked)}; dead-lettered {stats.dead_lettered}; "
        f"welcome messages sent {len(demo.sim.state.notifications)}"
    )


async def run_demo(base: Settings, options: DemoOptions) -> bool:
    """Run the demo; True when every scene landed and Moodle matches PowerCampus."""
    workdir = options.workdir
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    console.print(f"[bold]enrolstream demo[/bold] — working directory {workdir}")
    async with kafka_bootstrap(
        base.kafka.bootstrap_servers, workdir / "broker.log"
    ) as bootstrap:
        sandbox = PowerCampusSandbox(workdir / "powercampus.sqlite")
        sandbox.create()
        summary = seed_term(
            sandbox,
            people=options.people,
            courses=10,
            crosslisted_pairs=2,
            calendar_covers=datetime.now(UTC).date(),
        )
        console.print(
            f"PowerCampus sandbox: {len(summary.people)} people, "
            f"{len(summary.sections)} sections, {summary.enrolments} registrations "
            f"({summary.by_add_drop_wait}), cross-listed {len(summary.crosslisted)}"
        )
        held_back = (summary.people[-1].people_code_id,)
        state = MoodleState()
        site = build_site(
            summary,
            state,
            workdir,
            held_back=held_back,
            accounts=base.accounts.enabled,
        )
        latency = (
            LatencyModel.recorded()
            if options.latency == "real"
            else LatencyModel.zero()
        )
        async with MoodleSimulator(state, latency=latency) as sim:
            console.print(
                f"Moodle simulator: {sim.url} ({len(site.course_ids)} courses, "
                f"latency {options.latency}); Kafka: {bootstrap}"
            )
            settings = demo_settings(
                base,
                workdir,
                sim,
                site.mapping_file,
                external_broker=bool(base.kafka.bootstrap_servers),
            )
            settings = await generate_demo_mapping(
                settings, summary.term, site.mapping_file, console
            )
            return await _run_stack(
                settings=settings,
                bootstrap=bootstrap,
                sandbox=sandbox,
                sim=sim,
                summary=summary,
                course_ids=site.course_ids,
                options=options,
            )


async def _run_stack(
    *,
    settings: Settings,
    bootstrap: str,
    sandbox: PowerCampusSandbox,
    sim: MoodleSimulator,
    summary: SeedSummary,
    course_ids: dict[str, int],
    options: DemoOptions,
) -> bool:
    options_kafka = client_options(settings.kafka, bootstrap)
    await ensure_topics(
        options_kafka,
        [settings.kafka.events_topic],
        partitions=settings.kafka.partitions,
        replication_factor=settings.kafka.replication_factor,
    )
    source = SandboxChangeSource(settings.source.sandbox.path, name="demo")
    window = LatencyWindow()
    metrics = StatusMetrics(window)
    beat = heartbeat(settings)
    page = ConsumerStatusPage(settings, bootstrap, source=source, window=window)
    mapping = load_mappings(settings.consumer.mappings)
    probes = {
        "source": probe_source(source),
        **consumer_probes(settings, bootstrap, mapping),
    }
    with SqliteCheckpointStore(settings.poller.state_path, source.name) as store:
        async with (
            _status_server(settings, beat, probes, metrics, page) as server,
            KafkaEventPublisher(
                options_kafka, settings.kafka.events_topic
            ) as publisher,
            open_runner(settings, bootstrap, metrics=metrics, heartbeat=beat) as runner,
        ):
            demo = Demo(
                sandbox=sandbox,
                source=source,
                sim=sim,
                runner=runner,
                settings=settings,
                summary=summary,
                course_ids=course_ids,
            )
            watch = alarm_watch(
                settings, runner, page, metrics, started=datetime.now(UTC)
            )
            page.attach(runner, watch)
            if server is not None:
                console.print(
                    f"Status page: [bold]{server.url}/[/bold] (metrics: {server.url}/metrics)"
                )
            poller = Poller(
                source,
                publisher,
                store,
                live_terms=[summary.term],
                metrics=metrics,
                heartbeat=beat,
            )
            started = time.perf_counter()
            stop = asyncio.Event()
            loops = [
                asyncio.ensure_future(
                    poller.run(
                        stop,
                        interval_s=settings.poller.poll_interval_s,
                        max_backoff_s=settings.poller.max_backoff_s,
                    )
                ),
                asyncio.ensure_future(runner.run(stop)),
                asyncio.ensure_future(
                    watch.run(stop, interval_s=settings.alarm.check_interval_s)
                ),
            ]
            try:
                ok, scenes = await _script(demo, started, options)
                if options.keep_running:
                    loop = asyncio.get_running_loop()
                    for signum in (signal.SIGINT, signal.SIGTERM):
                        loop.add_signal_handler(signum, stop.set)
                    print_instructions(console, demo, bootstrap, server, scenes)
                    await stop.wait()
                elif server is not None:
                    console.print(
                        f"Status page was {server.url}/ — `./run demo --keep-running` "
                        "keeps it up."
                    )
            finally:
                stop.set()  # the loops finish their iteration in flight, then return
                await asyncio.gather(*loops)
    await source.close()
    sandbox.close()
    return ok


@contextlib.asynccontextmanager
async def _status_server(
    settings: Settings,
    beat: Heartbeat,
    probes: dict[str, Probe],
    metrics: StatusMetrics,
    page: ConsumerStatusPage,
) -> AsyncIterator[OpsServer | None]:
    """The demo's listener: the consume port when free, else any free port."""
    for port in (settings.operations.consume_port or 0, 0):
        async with serve(
            settings,
            port=port,
            live=alive(beat),
            probes=probes,
            metrics=metrics,
            backend=page,
        ) as server:
            if server is not None:
                yield server
                return
    yield None


async def _script(
    demo: Demo, started: float, options: DemoOptions
) -> tuple[bool, list[Scene]]:
    expected = await demo.truth()
    initial = await wait_until(lambda: demo.moodle() == expected, options.timeout_s * 2)
    if initial is None:
        console.print("[red]initial load did not converge[/red]")
        return False, []
    initial_s = time.perf_counter() - started
    console.print(
        f"initial load: Moodle matches PowerCampus after {initial_s:.1f} s "
        "(the poller's first start publishes a snapshot of the live term)"
    )
    scenes = registrar_morning(demo)
    latencies = await play(demo, scenes, options.timeout_s)
    truth, moodle = await demo.truth(), demo.moodle()
    converged = moodle == truth
    print_summary(demo, latencies, initial_s)
    if converged:
        console.print("[green]Moodle matches PowerCampus.[/green]")
    else:
        console.print("[red]Moodle does NOT match PowerCampus:[/red]")
        names = {cid: name for name, cid in demo.course_ids.items()}
        for courseid in sorted(truth):
            missing = truth[courseid] - moodle.get(courseid, set())
            extra = moodle.get(courseid, set()) - truth[courseid]
            if missing or extra:
                console.print(
                    f"  {names[courseid]}: missing {sorted(missing)}, "
                    f"not expected {sorted(extra)}"
                )
    return converged and len(latencies) == len(scenes), scenes
