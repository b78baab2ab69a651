"""The randomized fault matrix: a registrar's workload under faults, alone and together.

Each run draws a seed, seeds a PowerCampus term in the sandbox, builds the
matching Moodle site and mapping, and runs the product as an operator would:
the embedded broker and the ``enrolstream`` commands ``moodle-sim``, ``poll``
and ``consume``, each its own process. A registrar's workload (adds, drops,
re-adds, swaps between cross-listed sections and between sections, wait-list
moves W→A, withdrawn grades, deletes, bursts) is committed at random moments
while faults strike, alone and together (``bench/chaos_plan.py`` lists the
kinds): kill -9 of the poller and the consumer (also through the crash points
between Kafka's acks and the saved version, the intent and the call, Moodle's
answer and the ledger, the ledger and the commit), the broker frozen, Moodle
answering 5xx, hanging past the client timeout, slow, stopped and started,
losing replies after applying, answering ``Terminated: 15``; change-tracking
cleanup past the poller's saved version; poison records on the event topic;
and, with 2 to 4 consumers in the group (their number drawn per run), a member
joining, leaving (SIGTERM) and killed mid-burst.

Then the faults stop, the harness waits (on conditions) until everything has
caught up, and judges without running reconcile (``bench/chaos_verdict.py``):
Moodle must equal PowerCampus as the product's own decision function computes
it; no welcome message other than for a new enrolment unless explained; no
enrolment created only to be dropped; every dead letter a poison record.

Run from the repository root:

    .venv/bin/python -m bench.chaos [--runs 200] [--seed S] [--faults k1,k2] [--quick]

``--together`` gives every run all of ``--faults`` (no draw), ``--cover``
splits ``--faults`` over the runs so that N runs cover every kind, ``--json
FILE`` writes every run's result, ``--keep`` keeps each run's directory (logs,
the saved site, the simulator's journal, the event and ledger topics; failing
runs are always kept), ``--plan`` prints the plans without running them. A
failing run prints the command that replays its plan: the same term, settings,
workload and faults at the same moments (the processes' interleaving, and the
moment an armed crash point fires, are not the seed's to fix). Exits 1 when any
run failed.
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
from collections import Counter
from pathlib import Path

from bench.chaos_plan import KINDS, draw_kinds
from bench.chaos_run import RunResult, describe_plan, run_one
from bench.stack import quiet


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.chaos", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=None, help="first run's seed")
    parser.add_argument(
        "--faults",
        default=",".join(KINDS),
        help=f"comma-separated kinds (default all): {', '.join(KINDS)}",
    )
    parser.add_argument("--quick", action="store_true", help="smaller, shorter runs")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--together", action="store_true", help="every run: all kinds")
    mode.add_argument(
        "--cover", action="store_true", help="split the kinds over the runs"
    )
    parser.add_argument("--json", type=Path, default=None, help="write results here")
    parser.add_argument("--keep", action="store_true", help="keep every run's files")
    parser.add_argument(
        "--plan",
        action="store_true",
        help="print each run's plan instead of running it",
    )
    parser.add_argument(
        "--workdir", type=Path, default=None, help="default: a temporary directory"
    )
    args = parser.parse_args(argv)
    unknown = set(args.faults.split(",")) - set(KINDS)
    if unknown:
        parser.error(f"unknown fault kinds {sorted(unknown)}; known: {list(KINDS)}")
    return args


def kinds_for(args: argparse.Namespace, index: int, seed: int) -> tuple[str, ...]:
    """The fault kinds of run ``index``."""
    allowed = [k for k in KINDS if k in args.faults.split(",")]
    if args.together:
        return tuple(allowed)
    if args.cover:
        return tuple(allowed[index :: args.runs])
    return draw_kinds(seed, allowed)


def line(index: int, result: RunResult) -> str:
    """One run, one line."""
    faults = ", ".join(f"{k} {n}" for k, n in sorted(result.faults.items())) or "none"
    caught = (
        f"caught up in {result.converged_s:.1f} s"
        if result.converged_s is not None
        else "did NOT catch up"
    )
    verdict = "ok" if result.ok else "FAILED"
    return (
        f"run {index + 1} seed {result.seed}: {verdict} ({result.seconds:.0f} s; "
        f"{caught}); faults: {faults}"
    )


def explanations(results: list[RunResult]) -> list[str]:
    """The explained welcome messages by explanation, with the seeds they came from."""
    by_reason: dict[str, Counter[int]] = {}
    for result in results:
        for text in result.verdict.welcomes_explained:
            reason = text.rpartition(": ")[2]
            by_reason.setdefault(reason, Counter())[result.seed] += 1
    return [
        f"  explained, {sum(seeds.values())}: {reason} (seeds "
        + ", ".join(f"{seed}: {n}" for seed, n in sorted(seeds.items()))
        + ")"
        for reason, seeds in by_reason.items()
    ]


def summary(results: list[RunResult], elapsed_s: float) -> list[str]:
    """The figures of the whole matrix."""
    faults: Counter[str] = Counter()
    for result in results:
        faults.update(result.faults)
    failed = [r for r in results if not r.ok]
    v = [r.verdict for r in results]
    explained = [w for x in v for w in x.welcomes_explained]
    unexplained = sum(len(x.welcomes_unexplained) for x in v)
    unseen = ", ".join(k for k in KINDS if not faults[k]) or "none"
    out = [
        f"runs: {len(results)} ({len(failed)} failed) in {elapsed_s / 60:.1f} min",
        f"faults by kind ({sum(faults.values())} in all): "
        + ", ".join(f"{k} {faults[k]}" for k in KINDS),
        f"kinds never seen: {unseen}",
        f"enrolments lost: {sum(len(x.lost) for x in v)}",
        f"enrolments wrong: {sum(len(x.wrong) for x in v)}",
        f"welcome messages for new enrolments: {sum(x.welcomes_new for x in v)}",
        (
            "welcome messages other than for a new enrolment: "
            f"{len(explained) + unexplained} ({len(explained)} explained, "
            f"{unexplained} unexplained)"
        ),
        *explanations(results),
        (
            "enrolments created only to be suspended: "
            f"{sum(len(x.created_suspended) for x in v)}"
        ),
        (
            "enrolments created for a registration PowerCampus never held (only to "
            f"have the role removed): {sum(len(x.created_never_enrolled) for x in v)}"
        ),
        (
            "enrolments created, then dropped because PowerCampus dropped them later "
            f"(not a defect): {sum(x.created_then_dropped for x in v)}"
        ),
        (
            f"dead letters: {sum(x.dead_letters for x in v)} for {faults['poison']} "
            "poison records; unjustified "
            f"{sum(len(x.dead_letters_unjustified) for x in v)}, redelivered after a "
            f"kill {sum(x.dead_letters_redelivered for x in v)}, poison records not "
            f"dead-lettered {sum(len(x.poison_not_dead_lettered) for x in v)}"
        ),
        (
            "poller re-initialisations (saved version too old, after a cleanup): "
            f"{sum(r.logged.get('poller_reinitialisations', 0) for r in results)}; "
            "read-backs after unknown outcomes: "
            f"{sum(r.logged.get('read_backs', 0) for r in results)}"
        ),
        (
            "poller leases taken (first starts, restarts and fail-overs): "
            f"{sum(r.logged.get('poller_takeovers', 0) for r in results)}; leases "
            f"lost: {sum(r.logged.get('poller_leases_lost', 0) for r in results)}; "
            "pollers frozen past their lease and fenced on waking: "
            f"{sum(r.logged.get('poller_fenced', 0) for r in results)}"
        ),
    ]
    for result in failed:
        out.append(f"FAILED seed {result.seed} (files: {result.kept}):")
        out += [f"  {failure}" for failure in result.verdict.failures()[:20]]
        out.append(f"  replay: {result.replay()}")
    return out


async def main(argv: list[str] | None = None) -> int:
    """Run the matrix; 0 when every run passed."""
    quiet()
    args = parse_args(argv)
    first = args.seed if args.seed is not None else random.randrange(1, 1_000_000)
    print(f"fault matrix: {args.runs} runs from seed {first}", flush=True)
    if args.plan:
        for index in range(args.runs):
            seed = first + index
            kinds = kinds_for(args, index, seed)
            print("\n".join(describe_plan(seed, kinds, quick=args.quick)))
        return 0
    results: list[RunResult] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="chaos-") as scratch:
        root = args.workdir or Path(scratch)
        for index in range(args.runs):
            seed = first + index
            kinds = kinds_for(args, index, seed)
            result = await run_one(
                seed, kinds, quick=args.quick, root=root, keep=args.keep
            )
            results.append(result)
            print(line(index, result), flush=True)
            if not result.ok:
                for failure in result.verdict.failures()[:10]:
                    print(f"    {failure}", flush=True)
                print(f"    replay: {result.replay()}", flush=True)
            if args.json is not None:
                args.json.write_text(
                    json.dumps([r.as_json() for r in results], indent=1)
                )
        if args.workdir is None and any(not r.ok for r in results):
            # Failing runs' files must outlive the temporary directory.
            kept = Path(tempfile.mkdtemp(prefix="chaos-failed-"))
            for result in results:
                if result.kept is not None and result.kept.exists():
                    target = kept / result.kept.name
                    shutil.move(result.kept, target)
                    result.kept = target
    print()
    for text in summary(results, time.monotonic() - started):
        print(text)
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
