"""One run of the fault matrix, drawn from its seed: term, settings, workload and faults.

Pure: no I/O, no clock. Every draw comes from a ``random.Random`` seeded with
the run's seed and a purpose (``"{seed}:workload"``, ``"{seed}:fault:{kind}"`` …),
so a seed replays the same term, settings, registrar's workload and fault
schedule, and leaving a fault kind out (``--faults``) does not change the draws
of the others. What a seed cannot fix is the interleaving of real processes: the
moment an armed crash point fires, or which batch a kill -9 cuts.

The workload (``bench/chaos_workload.py``) is a registrar's morning on the
seeded term, one transaction per step.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.chaos_workload import Registrar, Row, Section, Step

#: Every fault kind, and what it does.
KINDS: dict[str, str] = {
    "poller-kill": "kill -9 of `enrolstream poll` at a random moment, then restarted",
    "poller-crash-after-publish": "the poller killed by its crash point between "
    "Kafka's acks and the saved version",
    "consumer-kill": "kill -9 of `enrolstream consume` mid-batch (a Moodle call in "
    "flight when there is one)",
    "consumer-crash-after-intent": "the consumer killed between its ledger intent "
    "and the Moodle call",
    "consumer-crash-after-moodle": "the consumer killed between Moodle's answer and "
    "the ledger write",
    "consumer-crash-after-ledger": "the consumer killed between the ledger write and "
    "the offset commit",
    "broker-pause": "the Kafka broker frozen with SIGSTOP for a while, then SIGCONT",
    "moodle-5xx": "Moodle answering 500/502/503 (for N requests or for a while)",
    "moodle-hang": "Moodle holding requests past the client timeout, applying them "
    "afterwards",
    "moodle-slow": "Moodle holding requests for less than the client timeout",
    "moodle-down": "`enrolstream moodle-sim` stopped with SIGTERM (in-flight requests "
    "answered 'Terminated: 15', then connections refused), started again",
    "moodle-lost-reply": "Moodle applying requests and dropping the connection "
    "before the answer",
    "moodle-terminated": "Moodle answering an HTML page with HTTP 200 ('Terminated: "
    "15', or a PHP fatal error), before or after applying",
    "ct-cleanup": "change-tracking cleanup past the poller's saved version while it "
    "is stopped (it must re-initialise)",
    "poison": "a record on the event topic that is not an event (must be "
    "dead-lettered with its reason)",
    "poller-failover": "a standby poller beside the active one; the active one "
    "killed, or frozen (SIGSTOP) past its lease and woken: the standby takes over, "
    "the woken one must be fenced",
    # Several consumers in one group (the run draws 2 to 4 when one of these is in
    # it): rebalances mid-burst.
    "member-join": "a consumer held back from the start joins the group mid-burst",
    "member-leave": "a consumer stopped with SIGTERM (finishes its batch, commits, "
    "leaves the group), started again a while later",
    "member-kill": "kill -9 of one consumer of the group, kept down past the "
    "session timeout (its partitions move), started again",
}

#: The kinds that need several consumers in the group.
MEMBER_KINDS = frozenset({"member-join", "member-leave", "member-kill"})

#: Crash-point kinds: the command they arm and the point.
CRASH_POINTS: dict[str, tuple[str, str]] = {
    "poller-crash-after-publish": ("poll", "poller.after_publish"),
    "consumer-crash-after-intent": ("consume", "consumer.after_intent"),
    "consumer-crash-after-moodle": ("consume", "consumer.after_moodle"),
    "consumer-crash-after-ledger": ("consume", "consumer.after_ledger"),
}

POISON_VALUES = (
    b"\xff\xfe\x00 not even text",
    b'{"schema_version": 1, "kind": "change"}',
    b"[]",
    b'{"hello": "world"',
)


@dataclass(frozen=True, slots=True)
class Shape:
    """The seeded term: ``sandbox.powercampus.seed.seed_term``'s arguments."""

    people: int
    courses: int
    crosslisted_pairs: int
    enrolments_per_person: int
    random_seed: int


@dataclass(frozen=True, slots=True)
class Tuning:
    """Settings drawn per run, so the matrix also covers how the stack is run."""

    concurrency: int
    batch_max_rows: int
    latency: str  # zero | real
    workers: int
    poll_interval_s: float
    request_timeout_s: float
    max_backoff_s: float


@dataclass(frozen=True, slots=True)
class Fault:
    """One fault at ``at_s`` seconds into the run; ``params`` as drawn."""

    at_s: float
    kind: str
    params: tuple[tuple[str, Any], ...] = ()

    def get(self, name: str) -> Any:
        """A parameter's value."""
        return dict(self.params)[name]

    def describe(self) -> str:
        """``kind(a=1, b=2)@3.2s``."""
        args = ", ".join(f"{k}={v}" for k, v in self.params)
        return f"{self.kind}({args})@{self.at_s:.1f}s"


@dataclass(frozen=True, slots=True)
class Arming:
    """A crash point armed in ``command`` with ``chance`` per pass, ``budget`` times."""

    kind: str
    command: str
    point: str
    chance: float
    budget: int


@dataclass(frozen=True, slots=True)
class RunPlan:
    """Everything a run does, drawn from its seed."""

    seed: int
    quick: bool
    kinds: tuple[str, ...]
    shape: Shape
    tuning: Tuning
    duration_s: float
    steps: tuple[Step, ...]
    faults: tuple[Fault, ...]
    armings: tuple[Arming, ...] = field(default=())
    #: Consumer processes in the group (at its largest: a joiner starts late).
    consumers: int = 1


def _rng(seed: int, purpose: str) -> random.Random:
    return random.Random(f"{seed}:{purpose}")


def _chance(rng: random.Random, probability: float) -> bool:
    return rng.random() < probability


def draw_kinds(seed: int, allowed: Sequence[str]) -> tuple[str, ...]:
    """The fault kinds of one run: one to four of ``allowed``, alone or together."""
    rng = _rng(seed, "kinds")
    count = min(len(allowed), rng.choices([1, 2, 3, 4], weights=[35, 30, 20, 15])[0])
    return tuple(sorted(rng.sample(list(allowed), count)))


def draw_shape(seed: int, *, quick: bool) -> Shape:
    """The term to seed."""
    rng = _rng(seed, "shape")
    if quick:
        return Shape(rng.randint(16, 24), 6, 1, 3, rng.randrange(1_000_000))
    return Shape(rng.randint(28, 44), rng.randint(6, 9), 2, 3, rng.randrange(1_000_000))


def draw_tuning(seed: int) -> Tuning:
    """How the stack is run this time."""
    rng = _rng(seed, "tuning")
    return Tuning(
        concurrency=rng.randint(1, 4),
        batch_max_rows=rng.choice([3, 10, 100]),
        latency=rng.choices(["zero", "real"], weights=[70, 30])[0],
        workers=rng.randint(1, 3),
        poll_interval_s=rng.choice([0.2, 0.3, 0.5]),
        request_timeout_s=1.5,
        max_backoff_s=rng.choice([1.0, 2.0]),
    )


def draw_consumers(seed: int, kinds: Sequence[str]) -> int:
    """How many consumers the group has: 2 to 4 with a member kind, else 1 to 4."""
    rng = _rng(seed, "consumers")
    if MEMBER_KINDS.intersection(kinds):
        return rng.choice([2, 3, 4])
    return rng.choices([1, 2, 3, 4], weights=[40, 25, 20, 15])[0]


def plan_run(
    seed: int,
    kinds: Sequence[str],
    *,
    quick: bool,
    rows: Sequence[Row],
    sections: Sequence[Section],
    crosslisted: Sequence[tuple[tuple[str, ...], str]],
    people: Sequence[str],
) -> RunPlan:
    """The run's workload and faults over the seeded term's ``rows``."""
    duration = 10.0 if quick else 18.0
    faults: list[Fault] = []
    armings: list[Arming] = []
    for kind in kinds:
        rng = _rng(seed, f"fault:{kind}")
        if kind in CRASH_POINTS:
            command, point = CRASH_POINTS[kind]
            # The poller passes its point every poll, the consumer once per write
            # or batch. A quick run is short: there the point fires at its first
            # pass, so that the kill happens; a full run draws when it does.
            low, high = (0.1, 0.3) if command == "poll" else (0.3, 0.8)
            chance = 1.0 if quick else round(rng.uniform(low, high), 3)
            budget = 1 if quick else rng.randint(1, 2)
            armings.append(Arming(kind, command, point, chance, budget))
            continue
        # one member joins per run (the one held back from the start)
        for _ in range(1 if kind == "member-join" else rng.randint(1, 2)):
            at = round(rng.uniform(0.3, duration - 1.0), 2)
            faults.append(Fault(at, kind, draw_params(kind, rng, quick=quick)))
    registrar = Registrar(_rng(seed, "workload"), rows, sections, crosslisted, people)
    count = registrar.rng.randint(*((12, 16) if quick else (22, 32)))
    moments = [
        (round(registrar.rng.uniform(0.3, duration), 2), False) for _ in range(count)
    ]
    # Commits while the poller is stopped for a cleanup: their history is purged,
    # so they can only reach Moodle through the re-initialisation.
    moments += [
        (round(f.at_s + f.get("stopped_s") / 2, 2), True)
        for f in faults
        if f.kind == "ct-cleanup"
    ]
    # In time order, so that the model sees the changes as the database will.
    steps = [
        step
        for at, purge in sorted(moments)
        for step in registrar.step(at, purge=purge)
    ]
    return RunPlan(
        seed=seed,
        quick=quick,
        kinds=tuple(kinds),
        shape=draw_shape(seed, quick=quick),
        tuning=draw_tuning(seed),
        duration_s=duration,
        steps=tuple(sorted(steps, key=lambda s: s.at_s)),
        faults=tuple(sorted(faults, key=lambda f: f.at_s)),
        armings=tuple(armings),
        consumers=draw_consumers(seed, kinds),
    )


def draw_params(  # noqa: C901, PLR0911, PLR0912 - one branch per kind reads as a table
    kind: str, rng: random.Random, *, quick: bool
) -> tuple[tuple[str, Any], ...]:
    """The parameters of one fault of ``kind``."""
    longest = 3.0 if quick else 5.0
    if kind in {"poller-kill", "consumer-kill"}:
        return (("restart_after_s", round(rng.uniform(0.1, 1.5), 2)),)
    if kind == "broker-pause":
        return (("paused_s", round(rng.uniform(1.0, longest), 2)),)
    if kind == "moodle-5xx":
        if _chance(rng, 0.5):
            return (("for_s", round(rng.uniform(0.5, longest - 1), 2)), ("status", 503))
        return (("n", rng.randint(1, 4)), ("status", rng.choice([500, 502, 503])))
    if kind == "moodle-hang":
        return (("n", rng.randint(1, 2)), ("seconds", round(rng.uniform(2.0, 4.0), 2)))
    if kind == "moodle-slow":
        return (("n", rng.randint(2, 6)), ("seconds", round(rng.uniform(0.2, 1.2), 2)))
    if kind == "moodle-down":
        return (("down_s", round(rng.uniform(0.5, longest - 1), 2)),)
    if kind == "moodle-lost-reply":
        return (("n", rng.randint(1, 3)), ("after", _chance(rng, 0.8)))
    if kind == "moodle-terminated":
        page = rng.choices(["terminated", "php_fatal"], weights=[75, 25])[0]
        return (("n", rng.randint(1, 2)), ("page", page), ("after", _chance(rng, 0.5)))
    if kind == "ct-cleanup":
        return (("stopped_s", round(rng.uniform(0.8, 2.0), 2)),)
    if kind == "poller-failover":
        if _chance(rng, 0.4):
            return (
                ("how", "kill"),
                ("restart_after_s", round(rng.uniform(0.1, 1.5), 2)),
            )
        # mostly past the lease (2 s in the run's settings), sometimes within it
        return (("how", "pause"), ("paused_s", round(rng.uniform(1.0, 5.0), 2)))
    if kind == "member-join":
        return ()
    if kind == "member-leave":
        return (("member", rng.randrange(4)), ("away_s", round(rng.uniform(0.5, 3), 2)))
    if kind == "member-kill":
        # mostly past the session timeout (2 s in the run's settings)
        return (("member", rng.randrange(4)), ("down_s", round(rng.uniform(1, 4), 2)))
    if kind == "poison":
        return (
            ("records", rng.randint(1, 2)),
            ("value", rng.randrange(len(POISON_VALUES))),
        )
    raise ValueError(f"unknown fault kind {kind!r}")
