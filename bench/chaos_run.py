"""One run of the fault matrix, from its seed to its verdict.

1. Seed the term in the sandbox, build the Moodle site (a teacher in every
   course, so that Moodle sends welcome messages) and the mapping, draw the plan.
2. Start the broker, ``moodle-sim``, ``consume`` and ``poll``; play the
   registrar's steps and the faults at their moments, crash points armed.
3. Heal (faults stop), then wait, on conditions and never on a fixed sleep, until
   the poller has saved the sandbox's current version, the consumer group has
   committed everything, Moodle has no request in flight and holds exactly what
   PowerCampus says. No reconcile is run.
4. Stop everything with SIGTERM, read the dead letters with ``enrolstream dlq
   list``, load the site the simulator saved and its write journal, and judge
   (``bench/chaos_verdict.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.chaos_faults import inject
from bench.chaos_kafka import GroupProgress, dump_topic
from bench.chaos_plan import RunPlan, draw_shape, plan_run
from bench.chaos_verdict import (
    Holdings,
    Verdict,
    compare,
    held_by_status,
    judge_creations,
    judge_dead_letters,
    judge_welcomes,
)
from bench.chaos_workload import Row, Section
from bench.chaos_world import Paths, World, write_config
from bench.stack import run_command
from consumers.mapping import load_mappings
from enrolstream.demo_site import build_site, expected_active
from enrolstream.settings import Settings, load_settings
from enrolstream.wiring.common import policy as consumer_policy
from sandbox.broker import EmbeddedBroker, free_port
from sandbox.moodle_sim.audit import read_journal
from sandbox.moodle_sim.state import MoodleState
from sandbox.powercampus.database import PowerCampusSandbox
from sandbox.powercampus.seed import SeedSummary, seed_term
from sandbox.powercampus.source import SandboxChangeSource
from schemas.events import TermKey

TERM = TermKey(academic_year="2021", academic_term="Winter")
#: Everything caught up but Moodle for this long: nothing is left to change it.
IDLE_GIVE_UP_S = 15.0


@dataclass
class RunResult:
    """What one run did and proved."""

    seed: int
    kinds: tuple[str, ...]
    quick: bool
    verdict: Verdict
    faults: Counter[str] = field(default_factory=Counter)
    converged_s: float | None = None
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    logged: dict[str, int] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)
    kept: Path | None = None

    @property
    def ok(self) -> bool:
        """Nothing lost, wrong, unexplained or unjustified; converged; no stray exit."""
        return not self.verdict.failures()

    def replay(self) -> str:
        """The command that replays this run's plan."""
        quick = " --quick" if self.quick else ""
        return (
            f".venv/bin/python -m bench.chaos --runs 1 --seed {self.seed} "
            f"--faults {','.join(self.kinds)} --together{quick} --keep"
        )

    def as_json(self) -> dict[str, Any]:
        """The result as plain data (``--json``)."""
        v = self.verdict
        return {
            "seed": self.seed,
            "kinds": list(self.kinds),
            "ok": self.ok,
            "faults": dict(self.faults),
            "converged_s": self.converged_s,
            "seconds": round(self.seconds, 1),
            "lost": v.lost,
            "wrong": v.wrong,
            "welcomes_new": v.welcomes_new,
            "welcomes_explained": v.welcomes_explained,
            "welcomes_unexplained": v.welcomes_unexplained,
            "created_suspended": v.created_suspended,
            "created_never_enrolled": v.created_never_enrolled,
            "created_then_dropped": v.created_then_dropped,
            "dead_letters": v.dead_letters,
            "dead_letters_redelivered": v.dead_letters_redelivered,
            "dead_letters_unjustified": v.dead_letters_unjustified,
            "poison_not_dead_lettered": v.poison_not_dead_lettered,
            "problems": v.problems,
            "notes": self.notes,
            "logged": self.logged,
            "calls": self.calls,
            "replay": self.replay(),
            "kept": str(self.kept) if self.kept else None,
        }


class Truth:
    """PowerCampus's truth now, by the product's decision function and settings."""

    def __init__(self, settings: Settings) -> None:
        self.mapping = load_mappings(settings.consumer.mappings)
        self.policy = consumer_policy(settings)
        self.source = SandboxChangeSource(settings.source.sandbox.path, name="truth")

    async def now(self) -> Holdings:
        """Who should hold each mapped course, from one consistent read."""
        snapshot = await self.source.read_snapshot([TERM])
        return expected_active(snapshot, self.mapping, self.policy)


def _seed(sandbox: PowerCampusSandbox, seed: int, *, quick: bool) -> SeedSummary:
    shape = draw_shape(seed, quick=quick)
    return seed_term(
        sandbox,
        term=TERM,
        people=shape.people,
        courses=shape.courses,
        crosslisted_pairs=shape.crosslisted_pairs,
        enrolments_per_person=shape.enrolments_per_person,
        random_seed=shape.random_seed,
    )


def _plan(
    sandbox: PowerCampusSandbox,
    summary: SeedSummary,
    seed: int,
    kinds: tuple[str, ...],
    *,
    quick: bool,
) -> RunPlan:
    rows = [
        Row(person, event_id, sub_type, section, adw, grade)
        for person, event_id, sub_type, section, adw, grade in sandbox.query(
            "SELECT PEOPLE_CODE_ID, EVENT_ID, EVENT_SUB_TYPE, SECTION, ADD_DROP_WAIT, "
            "FINAL_GRADE FROM TRANSCRIPTDETAIL ORDER BY TranscriptDetailId"
        )
    ]
    return plan_run(
        seed,
        kinds,
        quick=quick,
        rows=rows,
        sections=[
            Section(s.event_id, s.event_sub_type, s.section) for s in summary.sections
        ],
        crosslisted=[(g.event_ids, g.section) for g in summary.crosslisted],
        people=[p.people_code_id for p in summary.people],
    )


def describe_plan(seed: int, kinds: tuple[str, ...], *, quick: bool) -> list[str]:
    """A run's plan as text (seeded term, settings, crash points, steps and faults)."""
    with tempfile.TemporaryDirectory(prefix="chaos-plan-") as scratch:
        sandbox = PowerCampusSandbox(Path(scratch) / "powercampus.sqlite")
        sandbox.create()
        try:
            plan = _plan(
                sandbox, _seed(sandbox, seed, quick=quick), seed, kinds, quick=quick
            )
        finally:
            sandbox.close()
    lines = [
        f"seed {seed}: {plan.shape}",
        f"  {plan.tuning}, consumers {plan.consumers}",
    ]
    lines += [
        f"  crash point {a.point} armed in {a.command} at {a.chance} per pass, "
        f"{a.budget} time(s) ({a.kind})"
        for a in plan.armings
    ]
    moments = [(s.at_s, "step ", s.what) for s in plan.steps]
    moments += [(f.at_s, "FAULT", f.describe()) for f in plan.faults]
    lines += [f"  {at:6.2f} s {what} {text}" for at, what, text in sorted(moments)]
    return lines


@contextlib.asynccontextmanager
async def _broker(paths: Paths) -> AsyncIterator[EmbeddedBroker]:
    # A broker of its own per run: memory only, and frozen by some faults.
    async with EmbeddedBroker(paths.root / "broker.log") as broker:
        yield broker


async def run_one(
    seed: int, kinds: tuple[str, ...], *, quick: bool, root: Path, keep: bool
) -> RunResult:
    """Play one run of the matrix and judge it."""
    started = time.monotonic()
    paths = Paths(root / f"run-{seed}")
    shutil.rmtree(paths.root, ignore_errors=True)
    paths.root.mkdir(parents=True)
    sandbox = PowerCampusSandbox(paths.sandbox)
    sandbox.create()
    summary = _seed(sandbox, seed, quick=quick)
    plan = _plan(sandbox, summary, seed, kinds, quick=quick)
    state = MoodleState()
    site = build_site(summary, state, paths.root, held_back=())
    state.save(paths.moodle_state)
    people = {u.id: f"P{u.idnumber}" for u in state.users() if u.idnumber}
    names = {cid: shortname for shortname, cid in site.course_ids.items()}
    teacher = next(u.id for u in state.users() if u.username == "teacher")
    result = RunResult(seed, kinds, quick, Verdict())
    try:
        async with _broker(paths) as broker:
            write_config(
                paths,
                plan,
                bootstrap=broker.bootstrap_servers,
                moodle_port=free_port(),
                token=secrets.token_hex(16),
            )
            settings = load_settings(paths.config)
            world = World(plan, paths, settings, broker)
            truth = Truth(settings)
            try:
                final, ever = await _play(world, plan, sandbox, truth, result, people)
            finally:
                await truth.source.close()
            letters = await _dead_letters(paths)
            await _dump_topics(paths, broker.bootstrap_servers, settings)
        _judge(result, world, paths, final, ever, letters, people, names, teacher)
    finally:
        sandbox.close()
        result.seconds = time.monotonic() - started
    if result.ok and not keep:
        shutil.rmtree(paths.root, ignore_errors=True)
    else:
        result.kept = paths.root
    return result


async def _play(
    world: World,
    plan: RunPlan,
    sandbox: PowerCampusSandbox,
    truth: Truth,
    result: RunResult,
    people: dict[int, str],
) -> tuple[Holdings, Holdings]:
    """Workload and faults, heal, converge, stop; (final truth, ever enrolled)."""
    ever = await truth.now()
    async with world.running():
        stop = asyncio.Event()
        supervisor = asyncio.create_task(world.supervise(stop))
        t0 = time.monotonic()
        faults = [
            asyncio.create_task(_at(t0 + fault.at_s, inject(world, fault, sandbox)))
            for fault in plan.faults
        ]
        for step in plan.steps:
            await asyncio.sleep(max(0.0, t0 + step.at_s - time.monotonic()))
            sandbox.execute(";\n".join(step.statements))
            for course, held in (await truth.now()).items():
                ever.setdefault(course, set()).update(held)
        await asyncio.sleep(max(0.0, t0 + plan.duration_s - time.monotonic()))
        for outcome in await asyncio.gather(*faults, return_exceptions=True):
            if isinstance(outcome, BaseException):
                world.record.problems.append(f"fault action failed: {outcome!r}")
        await world.heal()
        final = await truth.now()
        result.converged_s = await _converge(world, sandbox, final, people, plan)
        status = await world.status()
        if status is not None:
            result.calls = dict(status["calls"])
        stop.set()
        await supervisor
        await world.stop_all()
    return final, ever


async def _at(moment: float, action: Awaitable[None]) -> None:
    await asyncio.sleep(max(0.0, moment - time.monotonic()))
    await action


async def _converge(
    world: World,
    sandbox: PowerCampusSandbox,
    final: Holdings,
    people: dict[int, str],
    plan: RunPlan,
) -> float | None:
    """Seconds until everything caught up (None: not within the deadline)."""
    started = time.monotonic()
    deadline = started + (60.0 if plan.quick else 90.0)
    why, idle_since = "", None
    async with GroupProgress(
        world.bootstrap,
        world.settings.kafka.events_topic,
        world.settings.consumer.group_id,
    ) as group:
        while time.monotonic() < deadline:
            saved, current = world.saved_version(), sandbox.current_version()
            status = await world.status()
            behind = await group.behind()
            held = None if status is None else held_by_status(status, people, final)
            if (
                saved == current
                and status is not None
                and status["in_flight"] == 0
                and behind == 0
                and held == final
            ):
                return time.monotonic() - started
            in_flight = None if status is None else status["in_flight"]
            why = (
                f"poller saved {saved} of {current}; consumer {behind} records "
                f"behind; Moodle in flight {in_flight}; Moodle matches: {held == final}"
            )
            idle = saved == current and behind == 0 and in_flight == 0
            idle_since = (idle_since or time.monotonic()) if idle else None
            if (
                idle_since is not None
                and time.monotonic() - idle_since > IDLE_GIVE_UP_S
            ):
                why += f" (everything else idle for {IDLE_GIVE_UP_S:.0f} s)"
                break
            await asyncio.sleep(0.25)
    world.record.problems.append(f"did not catch up within the deadline: {why}")
    return None


async def _dead_letters(paths: Paths) -> list[dict[str, Any]]:
    code, out = await run_command(
        ["dlq", "list", "--json"], env={"ENROLSTREAM_CONFIG": str(paths.config)}
    )
    letters = []
    for line in out.splitlines():
        if line.startswith("{") and '"source_offset"' in line:
            letters.append(json.loads(line))
    if code != 0:
        raise RuntimeError(f"dlq list failed ({code}): {out[-500:]}")
    return letters


async def _dump_topics(paths: Paths, bootstrap: str, settings: Settings) -> None:
    """The event and ledger topics as files, for a post-mortem of a kept run."""
    for name in ("events_topic", "ledger_topic"):
        records = await dump_topic(bootstrap, getattr(settings.kafka, name))
        with (paths.root / f"{name.removesuffix('_topic')}.jsonl").open("w") as out:
            out.writelines(json.dumps(record) + "\n" for record in records)


def _judge(
    result: RunResult,
    world: World,
    paths: Paths,
    final: Holdings,
    ever: Holdings,
    letters: list[dict[str, Any]],
    people: dict[int, str],
    names: dict[int, str],
    teacher: int,
) -> None:
    verdict = result.verdict
    verdict.problems += world.record.problems
    result.faults = world.record.faults
    result.notes = world.record.notes
    site = MoodleState.load(paths.moodle_state)
    journal = read_journal(paths.journal)
    compare(verdict, final, site, journal, people=people, names=names, teacher=teacher)
    judge_welcomes(verdict, journal, people=people, names=names)
    judge_creations(verdict, journal, ever, final, people=people, names=names)
    judge_dead_letters(
        verdict, letters, world.record.poison, world.settings.kafka.events_topic
    )
    polled, consumed = world.log_events("poll"), world.log_events("consume")
    polled += world.log_events("poll-standby")
    for member in world.consumers[1:]:
        consumed += world.log_events(member.name)
    result.logged = {
        "poller_reinitialisations": polled["reinitialising_again"],
        "poller_first_starts": polled["reinitialising_first"],
        "read_backs": consumed["uncertain_entries_read"],
        "unknown_outcomes": consumed["moodle_outcome_unknown"],
        "apply_paused": consumed["apply_paused"],
        "tracebacks": polled["Traceback"] + consumed["Traceback"],
        "poller_takeovers": polled["lease_acquired"],
        # Every lease a poller lost: a rebalance it did not survive, a broker
        # pause past its session, being fenced.
        "poller_leases_lost": polled["lease_lost"],
        # Only those the fail-over fault saw refused on waking from a freeze.
        "poller_fenced": world.record.fenced,
        "consumers": world.plan.consumers,
        "batches_dropped_on_rebalance": consumed["batch_dropped_on_rebalance"],
    }
    if (
        world.record.faults["ct-cleanup"]
        and not result.logged["poller_reinitialisations"]
    ):
        verdict.problems.append(
            "ct-cleanup purged history but the poller never re-initialised"
        )
