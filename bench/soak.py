"""Soak: the deployed stack under a steady registrar for half an hour; nothing may grow.

The embedded broker, ``enrolstream moodle-sim``, ``poll`` and ``consume`` run as
separate processes, as deployed (``bench/soak_stack.py``), while a registrar
commits a few changes a second (``--rate``) for ``--minutes``: registrations
added, dropped, re-added, moved between sections, withdrawn, deleted; instructors
added, removed and moved between primary and secondary; term withdrawals set and
cleared; people without a Moodle user (parked) and now and then a poison record
on the event topic (dead-lettered) (``bench/soak_workload.py``). The same people
come back again and again, and the workload holds the registrations at their
seeded level, so the state that is bounded by the population stays bounded.

Every ``--sample-s`` it records, per process (poller, consumer, and the
simulator and broker for context), the resident size, open fds and threads, and
the sizes that could grow: ledger entries, parked persons and dead letters (the
compacted topics' live keys), the poller's state cache (bytes, shadow rows), the
consumer's ``/metrics`` gauges and series count, every topic's end offset
(``bench/soak_sample.py``); it prints a line per sample as it goes. At the end:
first/last/max of each, the least-squares slope of each process's resident size
over the second half in MB per hour, and a verdict per process: "flat" when that
slope over 24 h stays under ``--bound-mb-day``, else "GROWS" with the figure;
then the stack catches up and Moodle is compared with PowerCampus by the fault
matrix's verdict (``bench/chaos_verdict.py``).

``--probe`` runs ``poll`` and ``consume`` under tracemalloc with object counts
(``bench/soak_probe.py``) and prints, at the end, the source lines and object
types that grew from half-way to the end (the resident sizes then include
tracemalloc's own overhead).

Run from the repository root (it shares the machine: ``nice``)::

    nice -n 10 .venv/bin/python -m bench.soak [--minutes 30] [--rate 3] [--sample-s 30]
        [--people 200] [--courses 20] [--latency zero|real] [--probe] [--json FILE]

Exits 1 when a process grows, Moodle differs from PowerCampus, or a command
exited on its own.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.chaos_kafka import produce_poison
from bench.chaos_plan import POISON_VALUES
from bench.chaos_run import Truth
from bench.chaos_world import Paths
from bench.soak_probe import growth, request_last
from bench.soak_sample import (
    TopicWatch,
    judge,
    process_sample,
    scrape,
    state_file,
)
from bench.soak_stack import (
    Stack,
    build_world,
    commands,
    converge,
    free_ports,
    restart_dead,
    start,
    stop_and_judge,
    write_config,
)
from bench.soak_workload import SoakWorkload
from bench.stack import Command, quiet
from sandbox.broker import EmbeddedBroker
from sandbox.powercampus.database import PowerCampusSandbox

PROCESSES = ("poll", "consume", "moodle-sim", "broker")
#: The columns of the progress table: (heading, sample key, format).
COLUMNS = (
    ("min", "minutes", "{:.1f}"),
    ("poll MB", "poll.rss_mb", "{:.1f}"),
    ("cons MB", "consume.rss_mb", "{:.1f}"),
    ("sim MB", "moodle-sim.rss_mb", "{:.1f}"),
    ("brk MB", "broker.rss_mb", "{:.1f}"),
    ("fds p/c", "fds", "{}"),
    ("thr p/c", "threads", "{}"),
    ("ledger", "ledger", "{:.0f}"),
    ("parked", "parked", "{:.0f}"),
    ("dlq", "dead_letters", "{:.0f}"),
    ("poll cpu", "poll.cpu_s", "{:.0f}"),
    ("cons cpu", "consume.cpu_s", "{:.0f}"),
    ("shadow", "poll.state.rows_shadow", "{:.0f}"),
    ("state KB", "poll.state.kb", "{:.0f}"),
    ("series c", "consume.metrics.series", "{:.0f}"),
    ("events", "events_end", "{:.0f}"),
    ("steps", "steps", "{:.0f}"),
)
WIDTH = 8


def _pid(command: Command) -> int | None:
    process = command.process
    return process.pid if command.running and process is not None else None


def probed(stack: Stack) -> list[str]:
    """The probe's file stems of the running poller and consumer."""
    return [
        f"{command.name}-{pid}"
        for command in (stack.poller, stack.consumer)
        if (pid := _pid(command)) is not None
    ]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument(
        "--rate", type=float, default=3.0, help="registrar steps a second"
    )
    parser.add_argument("--sample-s", type=float, default=30.0)
    parser.add_argument(
        "--poison-every-s",
        type=float,
        default=60.0,
        help="a record that is not an event on the event topic this often",
    )
    parser.add_argument("--people", type=int, default=200)
    parser.add_argument("--courses", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--latency", choices=["zero", "real"], default="real")
    parser.add_argument(
        "--bound-mb-day",
        type=float,
        default=50.0,
        help="a process is flat when its RSS slope over the second half, x 24 h, "
        "stays under this",
    )
    parser.add_argument("--probe", action="store_true")
    parser.add_argument(
        "--probe-frames",
        type=int,
        default=1,
        help="with --probe: frames kept per allocation (more: the calls that led "
        "to what grew, at a higher cost)",
    )
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the run's files")
    return parser.parse_args(argv)


class Recorder:
    """The samples, and the line each prints."""

    def __init__(self, stack: Stack, broker_pid: int | None, watch: TopicWatch) -> None:
        self.stack = stack
        self.broker_pid = broker_pid
        self.watch = watch
        self.samples: list[dict[str, Any]] = []
        kafka = stack.settings.kafka
        self.topics = {
            "ledger": f"live:{kafka.ledger_topic}",
            "parked": f"live:{kafka.parked_topic}",
            "dead_letters": f"end:{kafka.dead_letter_topic}",
        }

    async def sample(
        self, http: aiohttp.ClientSession, elapsed: float, steps: int
    ) -> None:
        """One sample of every process and size, printed as a table row."""
        stack = self.stack
        pids = {
            "poll": _pid(stack.poller),
            "consume": _pid(stack.consumer),
            "moodle-sim": _pid(stack.sim),
            "broker": self.broker_pid,
        }
        row: dict[str, Any] = {"seconds": round(elapsed, 1), "steps": steps}
        row["minutes"] = elapsed / 60
        for name, pid in pids.items():
            for key, value in process_sample(pid).items():
                row[f"{name}.{key}"] = value
        state = state_file(stack.paths.poller_state)
        row |= {f"poll.state.{k}": v for k, v in state.items()}
        row["poll.state.kb"] = state.get("bytes", 0) / 1024
        for name in ("poll", "consume"):
            found = await scrape(http, stack.ports[name])
            row |= {f"{name}.metrics.{k}": v for k, v in found.items()}
        topics = await self.watch.sample()
        row |= {f"kafka.{k}": v for k, v in topics.items()}
        for short, topic in self.topics.items():
            row[short] = topics.get(topic, 0)
        row["events_end"] = topics.get(f"end:{stack.settings.kafka.events_topic}", 0)
        row["fds"] = f"{row.get('poll.fds', '-')}/{row.get('consume.fds', '-')}"
        row["threads"] = (
            f"{row.get('poll.threads', '-')}/{row.get('consume.threads', '-')}"
        )
        self.samples.append(row)
        if len(self.samples) % 20 == 1:
            print(" ".join(f"{h:>{WIDTH}}" for h, _, _ in COLUMNS), flush=True)
        print(self.line(row), flush=True)

    @staticmethod
    def line(row: dict[str, Any]) -> str:
        """A sample as a table row."""
        cells = []
        for _, key, fmt in COLUMNS:
            value = row.get(key)
            cells.append(f"{'-' if value is None else fmt.format(value):>{WIDTH}}")
        return " ".join(cells)

    def series(self, key: str) -> list[tuple[float, float]]:
        """(seconds, value) of one numeric key, where sampled."""
        return [
            (float(s["seconds"]), float(s[key]))
            for s in self.samples
            if isinstance(s.get(key), int | float)
        ]


async def drive(
    stack: Stack,
    sandbox: PowerCampusSandbox,
    workload: SoakWorkload,
    recorder: Recorder,
    args: argparse.Namespace,
) -> None:
    """The registrar's steps at ``--rate`` and a sample every ``--sample-s``."""
    rng = random.Random(f"{args.seed}:timing")
    duration, started = args.minutes * 60, time.monotonic()
    next_sample, steps, next_poison = 0.0, 0, args.poison_every_s / 2
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        while (elapsed := time.monotonic() - started) < duration:
            if elapsed >= next_sample:
                await recorder.sample(http, elapsed, steps)
                next_sample += args.sample_s
            for step in workload.step(elapsed):
                sandbox.execute(";\n".join(step.statements))
                steps += 1
            if elapsed >= next_poison:
                await poison(stack, rng)
                next_poison += args.poison_every_s
            await restart_dead(stack, elapsed)
            await asyncio.sleep(rng.expovariate(args.rate))
        await recorder.sample(http, time.monotonic() - started, steps)


async def poison(stack: Stack, rng: random.Random) -> None:
    """A record on the event topic that is not an event (it must be dead-lettered)."""
    key = f"P{rng.randrange(74000, 74200):09d}".encode()
    value = POISON_VALUES[rng.randrange(len(POISON_VALUES))]
    where = await produce_poison(
        stack.settings.kafka.bootstrap_servers or "",
        stack.settings.kafka.events_topic,
        key,
        value,
    )
    stack.poison.append(where)


def report(recorder: Recorder, args: argparse.Namespace) -> list[str]:
    """First/last/max, the second half's slope and a verdict per process; the sizes."""
    growing = []
    print(
        f"\nresident size over {args.minutes:g} min (slope: least squares over the "
        f"second half; flat: slope x 24 h < {args.bound_mb_day:g} MB)"
    )
    for name in PROCESSES:
        points = recorder.series(f"{name}.rss_mb")
        if not points:
            continue
        j = judge(points, args.bound_mb_day)
        context = "" if name in ("poll", "consume") else " (context)"
        print(
            f"  {name:10} first {j.first:7.1f}  last {j.last:7.1f}  max {j.most:7.1f} "
            f"MB  slope {j.slope_per_hour:+7.2f} MB/h  {j.verdict('MB')}{context}"
        )
        if not j.flat and not context:
            growing.append(f"{name}: resident size {j.verdict('MB')}")
    print("sizes (first / last / max; slope of the second half, per hour)")
    keys = sorted(
        {
            k
            for s in recorder.samples
            for k, v in s.items()
            if isinstance(v, int | float)
            and not k.endswith(".rss_mb")
            and k not in ("seconds", "minutes", "steps")
        }
    )
    for key in keys:
        j = judge(recorder.series(key), float("inf"))
        print(
            f"  {key:58} {j.first:10,.0f} / {j.last:10,.0f} / {j.most:10,.0f}"
            f"   {j.slope_per_hour:+10,.1f}/h"
        )
    return growing


async def run(args: argparse.Namespace, root: Path) -> int:
    """Build, soak, catch up, judge; the exit status."""
    paths = Paths(root)
    sandbox, workload, site = build_world(
        paths, people=args.people, courses=args.courses, seed=args.seed
    )
    # the first snapshot: before the second half (its jump in RSS is not judged)
    mid = time.time() + args.minutes * 60 * 0.4 + 20
    try:
        async with EmbeddedBroker(paths.root / "broker.log") as broker:
            settings = write_config(paths, broker.bootstrap_servers, free_ports())
            stack = commands(
                paths, settings, site, latency=args.latency,
                probe=mid if args.probe else None, frames=args.probe_frames,
            )  # fmt: skip
            kafka = settings.kafka
            topics = [
                kafka.events_topic, kafka.ledger_topic, kafka.parked_topic,
                kafka.dead_letter_topic, kafka.accounts_topic, kafka.created_topic,
                kafka.mappings_topic, kafka.state_topic(), kafka.lease_topic(),
            ]  # fmt: skip
            watch = TopicWatch(broker.bootstrap_servers, topics, topics[1:3])
            process = getattr(broker, "_process", None)  # for its RSS (context)
            recorder = Recorder(stack, getattr(process, "pid", None), watch)
            await start(stack)
            await watch.start()
            truth = Truth(settings)
            try:
                await drive(stack, sandbox, workload, recorder, args)
                growing = report(recorder, args)
                http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
                async with http:
                    caught_up, final = await converge(stack, sandbox, truth, http, 180)
                if args.probe:
                    await asyncio.to_thread(request_last, root / "probe", probed(stack))
                verdict = await stop_and_judge(stack, final)
            finally:
                await watch.stop()
                await truth.source.close()
                for command in stack.commands:
                    if command.running:  # interrupted: nothing left behind
                        await command.kill()
    finally:
        sandbox.close()
    print(f"workload: {workload.counts}; poison records {len(stack.poison)}")
    took = "NEVER" if caught_up is None else f"in {caught_up:.1f} s"
    print(
        f"caught up {took}; "
        f"Moodle == PowerCampus: lost {len(verdict.lost)}, wrong {len(verdict.wrong)}; "
        f"welcomes {verdict.welcomes_new} new, {len(verdict.welcomes_unexplained)} "
        f"unexplained; dead letters {verdict.dead_letters} for {len(stack.poison)} "
        "poison records"
    )
    failures = verdict.failures()
    for line in failures[:20]:
        print(f"  FAIL {line}")
    if args.probe:
        print(
            "\nwhat grew inside (tracemalloc, from 40 % of the run to the end; with --probe the "
            "resident sizes above include tracemalloc and its snapshots: judge "
            "them on a run without it):"
        )
        for line in growth(paths.root / "probe"):
            print(f"  {line}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "args": {k: str(v) for k, v in vars(args).items()},
                    "samples": recorder.samples,
                    "growing": growing,
                    "failures": failures,
                },
                indent=1,
            )
        )
    print("verdict:", "OK" if not growing and not failures else "FAILED")
    return 0 if not growing and not failures else 1


def main(argv: list[str] | None = None) -> int:
    """Parse, run in a work directory (kept with ``--keep`` or on failure)."""
    quiet()
    args = parse_args(argv)
    root = args.workdir or Path(tempfile.mkdtemp(prefix="soak-"))
    status = asyncio.run(run(args, root))
    if status == 0 and not args.keep and args.workdir is None:
        shutil.rmtree(root, ignore_errors=True)
    else:
        print(f"files kept in {root}")
    return status


if __name__ == "__main__":
    sys.exit(main())
