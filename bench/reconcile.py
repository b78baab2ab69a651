"""Reconcile benchmark: 2,000 courses x 25 students (50,000 enrolments), 5 % drift.

Builds the Moodle state directly (``MoodleState``), the snapshot events and the
ledger in memory (the Kafka reads are not timed: they are the same for any
Moodle), then times, through the real ``MoodleClient`` over HTTP against
``MoodleSimulator``:

* gather: identity look-ups + the rosters (the dry run's cost), read either
  through the companion plugin's bulk read (``--rosters bulk``: many courses per
  call) or as two core listings per course (``--rosters core``: a site without
  the plugin, the reference); ``both`` runs each on its own copy of the site;
* plan: the pure planner;
* apply: the planned changes through enrol/unenrol, ledger written;
* a second dry run after apply, which must plan nothing (convergence).

With ``--groups on`` (or ``both``) every course takes two sections (01 and 02,
students split between them) with a section group each, as
``consumer.section_groups`` makes them, and 1 % of the students were moved to
the other section's group by hand: the dry run also checks group membership.

Latency models, each with the simulator's ``workers`` = client concurrency = 8
(8 PHP workers, 8 requests in flight): ``zero``; ``real``: each function whose
cost was recorded on its own (``latency_rosters.json``: the bulk read, the core
listing with the roster's fields, the identity look-ups) at that cost, every
other function at the shared fit of ``latency.json``; ``legacy``: the shared
fit for every function (what the reference figure was measured with: 4.4 ms per
listed user for any list, fitted on a default-fields read). The run prints which
cost each function uses. Target (issue 13): dry run <= 30 s for 50,000
enrolments and <= 2 min for 200,000 (``--courses 8000``) with the real model.

Run: ``.venv/bin/python -m bench.reconcile [--courses 2000] [--latency real]
[--rosters both] [--groups both] [--dry-run-only]``
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import structlog
from pydantic import SecretStr

from connectors.moodle.client import MoodleClient
from consumers.decisions import EnrolmentPolicy
from consumers.desired import group_idnumber
from consumers.identity import IdentityResolver
from consumers.ledger import Ledger
from consumers.mapping import MappingEntry, MappingSet, MoodleCourse
from consumers.reconcile.driver import gather_inputs, reconcile
from consumers.reconcile.guard import GuardLimits
from consumers.reconcile.snapshot_reader import LoadedSnapshot
from sandbox.moodle_sim.faults import LatencyModel
from sandbox.moodle_sim.server import MoodleSimulator
from sandbox.moodle_sim.site import (
    COMPANION_PLUGIN,
    COMPANION_READ_SERVICE_FUNCTIONS,
    WSCLIENT_USER_ID,
)
from sandbox.moodle_sim.state import MoodleState
from schemas.actions import LedgerEntry
from schemas.events import EnrolmentEvent, Registration, SectionKey, TermKey
from schemas.snapshot import SnapshotMarker

TERM = TermKey(academic_year="2021", academic_term="Winter")
STUDENT, TEACHER = 5, 4
GOLDEN_DIR = Path(__file__).resolve().parents[1] / "tests/data/moodle-golden"
GOLDEN, PER_FUNCTION = GOLDEN_DIR / "latency.json", GOLDEN_DIR / "latency_rosters.json"
TOKEN = "b" * 32
WORKERS = CONCURRENCY = 8
POLICY = EnrolmentPolicy(student_role_id=STUDENT, audit_role_id=STUDENT)
DRIFTS = (
    "unenrolled_by_hand",
    "suspended_by_hand",
    "role_changed",
    "missed",
    "dropped",
)


class MemoryTable:
    """An in-memory stand-in for the ledger topic."""

    def __init__(self) -> None:
        self.rows: dict[bytes, bytes] = {}

    async def load(self) -> dict[bytes, bytes]:
        return dict(self.rows)

    async def put(self, rows: Sequence[tuple[bytes, bytes | None]]) -> None:
        for key, value in rows:
            if value is None:
                self.rows.pop(key, None)
            else:
                self.rows[key] = value


class BenchGroups:
    """The section groups of ours (``GroupView``), as the created book holds them."""

    def __init__(self) -> None:
        self.by_course: dict[int, dict[str, int]] = {}

    def ids(self, courseid: int) -> Mapping[str, int]:
        return self.by_course.get(courseid, {})

    def ours(self, courseid: int) -> frozenset[int]:
        return frozenset(self.by_course.get(courseid, {}).values())


class Site:
    """The benchmark's Moodle state, snapshot, mapping and ledger."""

    def __init__(
        self,
        courses: int,
        per_course: int,
        drift: float,
        seed: int,
        *,
        groups: bool = False,
    ) -> None:
        rng = random.Random(seed)
        self.groups = BenchGroups() if groups else None
        self.state = MoodleState()
        persons = courses * per_course // 4  # each student takes four courses
        self.userids = [
            self.state.add_user(f"s{n}", idnumber=f"{n:09d}") for n in range(persons)
        ]
        self.course_ids = [
            self.state.add_course(f"C{i:04d}W21") for i in range(courses)
        ]
        self.mapping = MappingSet(
            [TERM],
            [
                MappingEntry(
                    MoodleCourse(cid, f"C{i:04d}W21", TERM),
                    (f"C{i:04d}",),
                    None,
                    Path(),
                )
                for i, cid in enumerate(self.course_ids)
            ],
        )
        seats = [(c, p) for c in range(courses) for p in range(per_course)]
        pairs = [(c, (c * per_course + p) % persons) for c, p in seats]
        drifted = rng.sample(range(len(pairs)), int(len(pairs) * drift))
        kinds = {index: DRIFTS[n % len(DRIFTS)] for n, index in enumerate(drifted)}
        self.table = MemoryTable()
        registrations: dict[int, list[Registration]] = {}
        entries: list[LedgerEntry] = []
        if self.groups is not None:
            for number, cid in enumerate(self.course_ids):
                keys = [group_idnumber(_section(number, code)) for code in ("01", "02")]
                self.groups.by_course[cid] = {
                    key: self.state.add_group(cid, key, idnumber=key) for key in keys
                }
        moved = (
            set(rng.sample(range(len(pairs)), len(pairs) // 100)) if groups else set()
        )
        for index, (course, person) in enumerate(pairs):
            kind = kinds.get(index)
            cid, uid = self.course_ids[course], self.userids[person]
            code = "02" if groups and person % 2 else "01"
            registrations.setdefault(person, []).append(
                _registration(index, course, "D" if kind == "dropped" else "A", code)
            )
            if kind == "missed":
                continue
            if self.groups is not None and kind != "unenrolled_by_hand":
                theirs = group_idnumber(_section(course, code))
                other = next(i for i in self.groups.by_course[cid] if i != theirs)
                chosen = other if index in moved else theirs
                self.state.set_group_member(
                    self.groups.by_course[cid][chosen], uid, member=True
                )
            entries.append(_entry(cid, uid))
            if kind == "unenrolled_by_hand":
                continue
            role = TEACHER if kind == "role_changed" else STUDENT
            self.state.enrol(
                cid, uid, role, status=1 if kind == "suspended_by_hand" else 0
            )
        self.drift = len(drifted)
        self.enrolments = len(pairs)
        now = datetime(2021, 2, 1, tzinfo=UTC)
        events = tuple(
            EnrolmentEvent(
                event_id=f"e{person}",
                kind="snapshot",
                source="bench",
                people_code_id=f"P{person:09d}",
                term=TERM,
                state_version=100,
                registrations=tuple(regs),
                snapshot_id="bench",
                captured_at=now,
            )
            for person, regs in registrations.items()
        )
        marker = SnapshotMarker(
            marker="end",
            snapshot_id="bench",
            source="bench",
            state_version=100,
            terms=(TERM,),
            events=len(events),
            created_at=now,
        )
        self.snapshot = LoadedSnapshot(marker, events)
        self._entries = entries

    async def ledger(self) -> Ledger:
        ledger = Ledger(self.table)
        await ledger.record(self._entries)
        return ledger


def _section(course: int, code: str = "01") -> SectionKey:
    return SectionKey(
        academic_year="2021",
        academic_term="Winter",
        academic_session="01",
        event_id=f"C{course:04d}",
        event_sub_type="LEC",
        section=code,
    )


def _registration(row: int, course: int, adw: str, code: str = "01") -> Registration:
    return Registration(
        transcript_detail_id=row, section=_section(course, code), add_drop_wait=adw
    )


def _entry(courseid: int, userid: int) -> LedgerEntry:
    return LedgerEntry(
        courseid=courseid,
        userid=userid,
        roleid=STUDENT,
        status="active",
        event_id="bench",
        state_version=50,
    )


async def run(
    site: Site,
    latency: LatencyModel,
    label: str,
    *,
    bulk: bool,
    dry_run_only: bool = False,
) -> None:
    """Time one dry run (and the apply and a second dry run unless ``dry_run_only``)."""
    ledger = await site.ledger()
    limits = GuardLimits(per_course=0.3, overall=0.05)
    # The site has the companion plugin and the token's service its functions;
    # the core path is the client told not to use them (a site without it).
    state = site.state
    state.site = replace(state.site, plugins=(COMPANION_PLUGIN,))
    state.add_token(TOKEN, WSCLIENT_USER_ID, functions=COMPANION_READ_SERVICE_FUNCTIONS)
    async with (
        MoodleSimulator(state, token=TOKEN, latency=latency) as sim,
        MoodleClient(sim.url, SecretStr(sim.token), concurrency=CONCURRENCY) as client,
    ):
        client.bulk_rosters = bulk
        resolver = IdentityResolver(client)
        options = {
            "mapping": site.mapping,
            "policy": replace(POLICY, section_groups=site.groups is not None),
            "groups": site.groups,
            "ledger": ledger,
            "limits": limits,
            "resolver": resolver,
            "moodle": client,
        }
        started = time.perf_counter()
        inputs = await gather_inputs(client, resolver, site.snapshot, site.mapping)
        gathered = time.perf_counter()
        dry = await reconcile(inputs, **options)  # type: ignore[arg-type]
        planned = time.perf_counter()
        reads = dict(sim.call_counts())
        if not dry_run_only:
            applied = await reconcile(inputs, apply=True, **options)  # type: ignore[arg-type]
            done = time.perf_counter()
            calls = sum(sim.call_counts().values())
            after = await gather_inputs(
                client,
                IdentityResolver(client),
                site.snapshot,
                site.mapping,
            )
            again = await reconcile(after, **options)  # type: ignore[arg-type]
    kinds: dict[str, int] = {}
    for change in dry.plan.changes:
        kinds[change.kind] = kinds.get(change.kind, 0) + 1
    print(
        f"[{label}] {len(site.course_ids)} courses, {site.enrolments} enrolments, "
        f"drift {site.drift}: planned {len(dry.plan.changes)} {kinds}; "
        f"guard tripped {dry.plan.guard.tripped}"
    )
    print(
        f"[{label}] dry run {planned - started:6.1f} s "
        f"(gather {gathered - started:.1f} s, plan {planned - gathered:.2f} s); "
        f"dry-run calls {reads}; load {_load()}"
    )
    if not dry_run_only:
        outcomes = {o.split(":")[0] for o in applied.outcomes}
        print(
            f"[{label}] apply {done - planned:6.1f} s (outcomes {sorted(outcomes)}); "
            f"{calls} Moodle calls; next run plans {len(again.plan.changes)}"
        )


def _load() -> str:
    """The machine's load averages (1, 5, 15 min): the machine is shared."""
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def _models() -> dict[str, LatencyModel]:
    legacy = LatencyModel.from_golden(GOLDEN, workers=WORKERS)
    return {
        "zero": LatencyModel(0.0, 0.0, WORKERS),
        "real": legacy.with_functions(PER_FUNCTION),
        "legacy": legacy,
    }


def main() -> None:
    """Build the site for each combination asked for and time it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--courses", type=int, default=2000)
    parser.add_argument("--students", type=int, default=25)
    parser.add_argument("--drift", type=float, default=0.05)
    parser.add_argument(
        "--latency", choices=("zero", "real", "legacy", "all"), default="real"
    )
    parser.add_argument("--rosters", choices=("bulk", "core", "both"), default="both")
    parser.add_argument("--groups", choices=("off", "on", "both"), default="both")
    parser.add_argument(
        "--dry-run-only", action="store_true", help="skip the apply and the re-check"
    )
    args = parser.parse_args()
    # Per-request debug lines would cost more than the simulator; keep warnings.
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING)
    )
    models = _models()
    chosen = list(models) if args.latency == "all" else [args.latency]
    paths = ["bulk", "core"] if args.rosters == "both" else [args.rosters]
    grouped = [False, True] if args.groups == "both" else [args.groups == "on"]
    for name in chosen:
        print(f"model {name!r}, function by function:")
        for function, cost in models[name].describe().items():
            print(f"  {function}: {cost}")
        for path in paths:
            for groups in grouped:
                label = (
                    f"{name}, rosters {path}, workers={WORKERS}, "
                    f"groups {'on' if groups else 'off'}"
                )
                started = time.perf_counter()
                site = Site(
                    args.courses, args.students, args.drift, seed=7, groups=groups
                )
                print(f"[{label}] site built in {time.perf_counter() - started:.1f} s")
                asyncio.run(
                    run(
                        site,
                        models[name],
                        label,
                        bulk=path == "bulk",
                        dry_run_only=args.dry_run_only,
                    )
                )


if __name__ == "__main__":
    main()
