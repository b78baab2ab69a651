"""Several consumers in one group: a rebalance mid-burst loses nothing, and two
members never write for one person at once.

Three members take turns on a burst of registrations (enrol, drop, enrol again,
a second course): A starts alone, B joins, A leaves (SIGTERM's path: finish the
batch, commit, leave), C joins as its own ``enrolstream consume`` process and is
SIGKILLed after its first write, B finishes alone. Every member has its own
Moodle token, and the simulator's calls are timed per member, so the test can
see who wrote for whom, and when.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from consumers.runner import ApplyRunner
from enrolstream.wiring.apply import open_runner
from sandbox.moodle_sim.audit import WriteAudit
from sandbox.moodle_sim.faults import LatencyModel
from sandbox.moodle_sim.site import WSCLIENT_USER_ID
from tests.integration.conftest import CaptureStack, registration, set_status
from tests.integration.pipeline import Pipeline, open_pipeline, until

pytestmark = pytest.mark.integration

ENROLSTREAM = [sys.executable, "-c", "from enrolstream.cli.root import main; main()"]
PEOPLE = tuple(f"P000000{n:03d}" for n in range(100, 148))
WRITES = frozenset(
    {
        "enrol_manual_enrol_users",
        "enrol_manual_unenrol_users",
        "core_role_assign_roles",
        "core_role_unassign_roles",
    }
)


@dataclass(frozen=True)
class Call:
    """One write Moodle handled: which member sent it, for whom, from when to when."""

    member: str
    userids: frozenset[int]
    started: float
    ended: float


def _userids(value: Any) -> set[int]:
    if isinstance(value, dict):
        found = {int(v) for k, v in value.items() if k == "userid"}
        return found.union(*(_userids(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(_userids(v) for v in value))
    return set()


class MemberCalls:
    """Times every write call per member (each member has its own token)."""

    def __init__(self, pipe: Pipeline) -> None:
        self.calls: list[Call] = []
        self.members: dict[str, str] = {}
        #: Members whose writes wait at Moodle's door until the event is set.
        self.held: dict[str, asyncio.Event] = {}
        self.waiting = 0
        self.pipe = pipe
        serve = pipe.sim._serve

        async def timed(params: dict[str, Any], **kwargs: Any) -> Any:
            started = time.monotonic()
            try:
                gate = self.held.get(self.members.get(str(params.get("wstoken")), ""))
                if gate is not None and params.get("wsfunction") in WRITES:
                    self.waiting += 1
                    await gate.wait()
                return await serve(params, **kwargs)
            finally:
                if params.get("wsfunction") in WRITES:
                    member = self.members.get(str(params.get("wstoken")), "?")
                    userids = frozenset(_userids(params))
                    self.calls.append(Call(member, userids, started, time.monotonic()))

        pipe.sim._serve = timed  # type: ignore[method-assign]

    def token_for(self, member: str) -> str:
        """A token of the member's own."""
        token = secrets.token_hex(16)
        self.pipe.sim.state.add_token(token, WSCLIENT_USER_ID)
        self.members[token] = member
        return token

    def by(self, member: str) -> list[Call]:
        """The member's writes so far."""
        return [call for call in self.calls if call.member == member]

    def overlaps(self, *, ignore: Callable[[Call], bool]) -> list[tuple[Call, Call]]:
        """Pairs of writes by two members for one person that ran at the same time."""
        found = []
        ordered = sorted(
            (c for c in self.calls if not ignore(c)), key=lambda c: c.started
        )
        for i, first in enumerate(ordered):
            for second in ordered[i + 1 :]:
                if second.started >= first.ended:
                    break
                if second.member != first.member and first.userids & second.userids:
                    found.append((first, second))
        return found


@contextlib.asynccontextmanager
async def member(
    pipe: Pipeline, calls: MemberCalls, name: str
) -> AsyncIterator[tuple[ApplyRunner, asyncio.Event]]:
    """A consumer in this process, running until the event is set; leaves on exit."""
    moodle = pipe.settings.moodle.model_copy(
        update={"token": SecretStr(calls.token_for(name))}
    )
    settings = pipe.settings.model_copy(update={"moodle": moodle})
    stop = asyncio.Event()
    async with open_runner(settings, pipe.bootstrap, mapping=pipe.mapping) as runner:
        task = asyncio.create_task(runner.run(stop, poll_timeout_ms=100))
        try:
            yield runner, stop
        finally:
            stop.set()
            await task


async def killable_member(
    pipe: Pipeline, calls: MemberCalls, name: str, tmp_path: Path
) -> asyncio.subprocess.Process:
    """``enrolstream consume`` as its own process, in the same group."""
    kafka, consumer = pipe.settings.kafka, pipe.settings.consumer
    env = {
        **os.environ,
        "ENROLSTREAM_LOG_FORMAT": "json",
        "KAFKA_BOOTSTRAP_SERVERS": pipe.bootstrap,
        **{
            f"ENROLSTREAM_KAFKA__{field.upper()}": getattr(kafka, field)
            for field in (
                "events_topic",
                "snapshot_topic",
                "ledger_topic",
                "parked_topic",
                "dead_letter_topic",
                "accounts_topic",
            )
        },
        "ENROLSTREAM_MOODLE__URL": pipe.sim.url,
        "ENROLSTREAM_MOODLE__TOKEN": calls.token_for(name),
        "ENROLSTREAM_CONSUMER__MAPPINGS": json.dumps(
            {term: str(path) for term, path in consumer.mappings.items()}
        ),
        "ENROLSTREAM_CONSUMER__GROUP_ID": consumer.group_id,
        "ENROLSTREAM_CONSUMER__SESSION_TIMEOUT_S": str(consumer.session_timeout_s),
        "ENROLSTREAM_CONSUMER__PARKED_RETRY_S": str(consumer.parked_retry_s),
        "ENROLSTREAM_OPERATIONS__CONSUME_PORT": "0",
    }
    with (tmp_path / f"{name}.log").open("wb") as log:
        return await asyncio.create_subprocess_exec(
            *ENROLSTREAM, "consume", env=env, stdout=log, stderr=log
        )


def burst_round(round_: int) -> list[str]:
    """One round of the burst: every person changes (each a transaction of its own)."""
    statements = []
    for n, person in enumerate(PEOPLE):
        first, second = 1000 + n, 2000 + n
        if round_ == 0:
            statements.append(registration(first, person, "BSC5102"))
        elif round_ == 1:
            statements.append(registration(second, person, "COUN6552", "02"))
        else:
            statements.append(set_status(first, "ADW"[(n + round_) % 3]))
            statements.append(set_status(second, "AD"[(n * round_) % 2]))
    return statements


async def registrar(
    capture: CaptureStack, calls: MemberCalls, stop: asyncio.Event
) -> None:
    """Round after round until ``stop``, each published once Moodle saw a write
    since the last one: the members always have a backlog while they join,
    leave and die."""
    round_ = 0
    while not stop.is_set():
        for statement in burst_round(round_):
            capture.sql(statement)
        await capture.poll()
        round_ += 1
        seen = len(calls.calls)
        await until(lambda: len(calls.calls) > seen, timeout_s=60)  # noqa: B023


class TestRebalanceMidBurst:
    """Members join, leave and die while a burst is applied."""

    async def test_join_leave_and_kill_lose_nothing(
        self, capture: CaptureStack, tmp_path: Path
    ) -> None:
        """Moodle ends equal to PowerCampus, no enrolment is made twice (no second
        welcome), and no two members wrote for one person at the same time."""
        async with open_pipeline(
            capture,
            tmp_path,
            people=PEOPLE,
            latency=LatencyModel(per_call_s=0.05, per_row_s=0.05, workers=8),
        ) as pipe:
            pipe.sim.audit = WriteAudit(tmp_path / "audit.jsonl")
            calls = MemberCalls(pipe)
            end_of_burst = asyncio.Event()
            burst = asyncio.create_task(registrar(capture, calls, end_of_burst))
            async with member(pipe, calls, "B") as (b_runner, _):
                await until(lambda: bool(calls.by("B")))
                # B's next write hangs in Moodle while A joins: the partitions
                # must not move to A before B's batch stopped writing. The gate
                # opens once A was given partitions, or after five session
                # timeouts (a rebalance takes about one here) if it never is.
                calls.held["B"] = gate = asyncio.Event()
                await until(lambda: calls.waiting > 0)
                async with contextlib.AsyncExitStack() as a_stack:
                    # A starts beside the held call (its start-up waits for the group)
                    joining = asyncio.create_task(
                        a_stack.enter_async_context(member(pipe, calls, "A"))
                    )
                    with contextlib.suppress(TimeoutError):
                        await until(
                            lambda: (
                                joining.done()
                                and joining.result()[0].stream.assignment_epoch() > 0
                            ),
                            timeout_s=5 * pipe.settings.consumer.session_timeout_s,
                        )
                    gate.set()
                    a_runner, _ = await joining
                    # A joined the group mid-burst: wait until it wrote
                    await until(lambda: bool(calls.by("A")), timeout_s=60)
                # A left mid-burst (finished its batch, committed, left the group)
                c_process = await killable_member(pipe, calls, "C", tmp_path)
                try:
                    await until(lambda: bool(calls.by("C")), timeout_s=60)
                finally:
                    c_process.send_signal(signal.SIGKILL)
                    await c_process.wait()
                killed_at = time.monotonic()
                # B takes C's partitions once C's session expired: the rest of the
                # burst is still to come
                written = len(calls.by("B"))
                await until(lambda: len(calls.by("B")) > written + 2, timeout_s=60)
                end_of_burst.set()
                await burst
                await until(
                    lambda: pipe.moodle() == pipe.truth() and not b_runner.parked.all(),
                    timeout_s=90,
                )
            assert pipe.moodle() == pipe.truth()
            # nothing left uncommitted either: a new member has nothing to do
            async with open_runner(
                pipe.settings, pipe.bootstrap, mapping=pipe.mapping
            ) as again:
                await again.run(asyncio.Event(), until_idle=True, poll_timeout_ms=200)
            assert pipe.moodle() == pipe.truth()
            assert a_runner.stats.events
            assert b_runner.stats.events
        # Moodle welcomes a user when an enrolment is created: at most once per pair
        with (tmp_path / "audit.jsonl").open() as journal:
            created = Counter(
                (line["courseid"], line["userid"])
                for line in map(json.loads, journal)
                if line["function"] == "enrol_manual_enrol_users"
                and not line["existed"]
            )
        assert created
        assert max(created.values()) == 1, created.most_common(3)
        # A killed process's calls in flight may still land (late writes, read back
        # by the next owner): only calls C had finished before it died count.
        overlaps = calls.overlaps(
            ignore=lambda c: c.member == "C" and c.ended >= killed_at
        )
        assert not overlaps, overlaps[:3]
