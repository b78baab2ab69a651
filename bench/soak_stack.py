"""The soak's world: a seeded term, its Moodle site, the settings, and the commands as deployed.

Built as ``bench/chaos_run.py`` builds a fault-matrix run (the same ``Paths``,
``build_site``, ``Command``s and verdict), without faults: the embedded broker in
its own process, ``enrolstream moodle-sim`` (state file, control routes, write
journal), ``poll`` and ``consume``, each with its operations listener on a port
of its own so that ``/metrics`` can be read. Some of the seed's people are held
back from the site (no Moodle user: parked whenever a change of theirs comes).
"""

from __future__ import annotations

import asyncio
import json
import random
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bench.chaos_run import TERM, Truth
from bench.chaos_verdict import (
    Holdings,
    Verdict,
    compare,
    held_by_status,
    judge_dead_letters,
    judge_welcomes,
)
from bench.chaos_workload import YEAR, Row, Section
from bench.chaos_world import CONTROL, Paths
from bench.soak_probe import DIRECTORY, EVERY, FRAMES, MID_AT, NAME, SITECUSTOMIZE
from bench.soak_sample import scrape
from bench.soak_workload import SoakWorkload, SteadyRegistrar, Teaching
from bench.stack import Command, run_command, wait_for_port
from connectors.local.checkpoint import SqliteCheckpointStore
from enrolstream.demo_site import build_site
from enrolstream.settings import Settings, load_settings
from sandbox.broker import free_port
from sandbox.moodle_sim.audit import read_journal
from sandbox.moodle_sim.state import MoodleState
from sandbox.powercampus.database import PowerCampusSandbox
from sandbox.powercampus.seed import seed_term

ROOT = Path(__file__).resolve().parents[1]
LAG = "enrolstream_consumer_lag_records"
#: Share of the seed's people without a Moodle user (parked when they change).
HELD_BACK = 0.05


@dataclass
class Site:
    """Who is who in the simulated Moodle site, for the verdict."""

    people: dict[int, str]
    names: dict[int, str]
    teacher: int


@dataclass
class Stack:
    """The running soak: settings, commands, and what the verdict needs."""

    paths: Paths
    settings: Settings
    site: Site
    sim: Command
    poller: Command
    consumer: Command
    control_token: str
    ports: dict[str, int]
    poison: list[tuple[int, int]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def commands(self) -> tuple[Command, ...]:
        """Every command, in start order."""
        return (self.sim, self.consumer, self.poller)

    async def status(self, http: aiohttp.ClientSession) -> dict[str, Any] | None:
        """The simulator's counters and holdings (None while it does not answer)."""
        url = f"http://127.0.0.1:{self.ports['moodle']}{CONTROL}/status"
        headers = {"Authorization": f"Bearer {self.control_token}"}
        try:
            async with http.get(url, headers=headers) as response:
                response.raise_for_status()
                answer: dict[str, Any] = await response.json()
                return answer
        except (aiohttp.ClientError, TimeoutError):
            return None

    def saved_version(self) -> int | None:
        """The poller's saved change-tracking version."""
        if not self.paths.poller_state.exists():
            return None
        with SqliteCheckpointStore(
            self.paths.poller_state, self.settings.source.name
        ) as store:
            return store.load_version()


def build_world(
    paths: Paths, *, people: int, courses: int, seed: int
) -> tuple[PowerCampusSandbox, SoakWorkload, Site]:
    """Seed the term, build the site (some people held back) and the workload."""
    paths.root.mkdir(parents=True, exist_ok=True)
    sandbox = PowerCampusSandbox(paths.sandbox)
    sandbox.create()
    summary = seed_term(
        sandbox,
        term=TERM,
        people=people,
        courses=courses,
        crosslisted_pairs=max(1, courses // 10),
        enrolments_per_person=4,
        random_seed=seed,
    )
    extra = summary.people_summary
    assert extra is not None  # noqa: S101 - seed_term always writes the people
    rng = random.Random(seed)
    codes = [p.people_code_id for p in summary.people]
    held = tuple(sorted(rng.sample(codes, max(1, int(len(codes) * HELD_BACK)))))
    state = MoodleState()
    site = build_site(summary, state, paths.root, held_back=held)
    state.save(paths.moodle_state)
    rows = [
        Row(person, event_id, sub_type, section, adw, grade)
        for person, event_id, sub_type, section, adw, grade in sandbox.query(
            "SELECT PEOPLE_CODE_ID, EVENT_ID, EVENT_SUB_TYPE, SECTION, ADD_DROP_WAIT, "
            "FINAL_GRADE FROM TRANSCRIPTDETAIL ORDER BY TranscriptDetailId"
        )
    ]
    sections = [
        Section(s.event_id, s.event_sub_type, s.section) for s in summary.sections
    ]
    registrar = SteadyRegistrar(
        rng,
        rows,
        sections,
        [(g.event_ids, g.section) for g in summary.crosslisted],
        codes,
    )
    teaching = [
        Teaching(
            i.people_code_id,
            Section(i.section.event_id, i.section.event_sub_type, i.section.section),
            int(i.percentage),
        )
        for i in extra.instructors
    ]
    standings = {
        str(person): str(code)
        for person, code in sandbox.query(
            "SELECT PEOPLE_CODE_ID, ENROLL_SEPARATION FROM ACADEMIC "
            "WHERE ACADEMIC_YEAR = ?",
            (YEAR,),
        )
    }
    workload = SoakWorkload(
        rng,
        registrar,
        faculty=[f[0] for f in extra.faculty],
        sections=sections,
        teaching=teaching,
        standings=standings,
    )
    users = state.users()
    return (
        sandbox,
        workload,
        Site(
            people={u.id: f"P{u.idnumber}" for u in users if u.idnumber},
            names={cid: name for name, cid in site.course_ids.items()},
            teacher=next(u.id for u in users if u.username == "teacher"),
        ),
    )


def write_config(paths: Paths, bootstrap: str, ports: dict[str, int]) -> Settings:
    """The TOML every command reads; the settings it gives."""
    paths.config.write_text(f"""log_format = "json"
log_level = "info"

[kafka]
bootstrap_servers = "{bootstrap}"

[source]
kind = "sandbox"

[source.sandbox]
path = "{paths.sandbox}"

[poller]
poll_interval_s = 1.0
state_path = "{paths.poller_state}"
live_terms = ["{YEAR}/Winter"]

[moodle]
url = "http://127.0.0.1:{ports["moodle"]}"
token = "{secrets.token_hex(16)}"
concurrency = 4

[consumer]
group_id = "soak"
parked_retry_s = 5.0
mappings = {{"{YEAR}/Winter" = "{paths.root / "mapping.json"}"}}

[operations]
poll_port = {ports["poll"]}
consume_port = {ports["consume"]}
""")
    paths.config.chmod(0o600)
    return load_settings(paths.config)


def commands(
    paths: Paths,
    settings: Settings,
    site: Site,
    *,
    latency: str,
    probe: float | None,
    frames: int = 1,
) -> Stack:
    """The three commands (not started); ``probe``: when to take the first snapshot."""
    env = {"ENROLSTREAM_CONFIG": str(paths.config)}
    probed = dict(env)
    if probe is not None:
        probe_dir = paths.root / "probe"
        probe_dir.mkdir(exist_ok=True)
        (probe_dir / "sitecustomize.py").write_text(SITECUSTOMIZE)
        probed |= {
            "PYTHONPATH": f"{probe_dir}:{ROOT}",
            DIRECTORY: str(probe_dir),
            EVERY: "30",
            MID_AT: str(probe),
            FRAMES: str(frames),
        }
    control = secrets.token_hex(16)
    moodle_port = int(settings.moodle.url.rsplit(":", 1)[1])
    ports = {
        "moodle": moodle_port,
        "poll": settings.operations.poll_port or 0,
        "consume": settings.operations.consume_port or 0,
    }
    sim = Command(
        "moodle-sim",
        [
            "moodle-sim", "--port", str(moodle_port),
            "--token", settings.moodle.token.get_secret_value(),
            "--state", str(paths.moodle_state), "--control-token", control,
            "--audit", str(paths.journal), "--latency", latency, "--workers", "4",
        ],
        log_path=paths.log("moodle-sim"),
        env=env,
    )  # fmt: skip
    return Stack(
        paths=paths,
        settings=settings,
        site=site,
        sim=sim,
        poller=Command(
            "poll", ["poll"], log_path=paths.log("poll"), env={**probed, NAME: "poll"}
        ),
        consumer=Command(
            "consume",
            ["consume"],
            log_path=paths.log("consume"),
            env={**probed, NAME: "consume"},
        ),
        control_token=control,
        ports=ports,
    )


def free_ports() -> dict[str, int]:
    """A port for Moodle and for each command's operations listener."""
    return {name: free_port() for name in ("moodle", "poll", "consume")}


async def start(stack: Stack) -> None:
    """The simulator first (waited for), then the consumer and the poller."""
    await stack.sim.start()
    await wait_for_port(stack.ports["moodle"])
    await stack.consumer.start()
    await stack.poller.start()


async def restart_dead(stack: Stack, elapsed: float) -> None:
    """A command that ended on its own is a finding (it is not meant to): restarted."""
    for command in stack.commands:
        if command.lives and not command.running:
            stack.problems.append(
                f"{command.name} exited with status {command.returncode} at "
                f"{elapsed:.0f} s (see {command.log_path})"
            )
            await command.start()


async def converge(
    stack: Stack,
    sandbox: PowerCampusSandbox,
    truth: Truth,
    http: aiohttp.ClientSession,
    timeout_s: float,
) -> tuple[float | None, Holdings]:
    """Seconds until the poller, the consumer and Moodle caught up with PowerCampus.

    The truth leaves out the people the site holds back (no Moodle user: they
    wait, parked). Caught up: the poller saved the sandbox's version, the
    consumer's lag gauge is 0, Moodle has nothing in flight and holds the truth.
    """
    started = time.monotonic()
    known = set(stack.site.people.values())
    final = {
        course: {p for p in people if p in known}
        for course, people in (await truth.now()).items()
    }
    why = ""
    while time.monotonic() - started < timeout_s:
        saved, current = stack.saved_version(), sandbox.current_version()
        status = await stack.status(http)
        lag = (await scrape(http, stack.ports["consume"])).get(LAG)
        held = None
        if status is not None:
            held = held_by_status(status, stack.site.people, final)
        if (
            saved == current
            and lag == 0
            and status is not None
            and status["in_flight"] == 0
            and held == final
        ):
            return time.monotonic() - started, final
        why = (
            f"poller saved {saved} of {current}; consumer lag {lag}; "
            f"Moodle matches: {held == final}"
        )
        await asyncio.sleep(0.5)
    stack.problems.append(f"did not catch up within {timeout_s:.0f} s: {why}")
    return None, final


async def stop_and_judge(stack: Stack, final: Holdings) -> Verdict:
    """SIGTERM the consumer, the poller, the simulator; Moodle against PowerCampus."""
    verdict = Verdict()
    for command in (stack.consumer, stack.poller, stack.sim):
        status, in_time = await command.stop()
        if status != 0 or not in_time:
            verdict.problems.append(
                f"{command.name} did not stop cleanly on SIGTERM (status {status})"
            )
    code, out = await run_command(
        ["dlq", "list", "--json"], env={"ENROLSTREAM_CONFIG": str(stack.paths.config)}
    )
    if code != 0:
        verdict.problems.append(f"dlq list failed ({code}): {out[-300:]}")
    letters = [
        json.loads(line)
        for line in out.splitlines()
        if line.startswith("{") and '"source_offset"' in line
    ]
    site = MoodleState.load(stack.paths.moodle_state)
    journal = read_journal(stack.paths.journal)
    people, names = stack.site.people, stack.site.names
    compare(
        verdict, final, site, journal, people=people, names=names,
        teacher=stack.site.teacher,
    )  # fmt: skip
    judge_welcomes(verdict, journal, people=people, names=names)
    judge_dead_letters(
        verdict, letters, stack.poison, stack.settings.kafka.events_topic
    )
    verdict.problems += stack.problems
    return verdict
