"""One run's world: the seeded term, the Moodle site, the settings, and the processes.

Everything runs as an operator would run it: the embedded broker (its own
process, frozen with SIGSTOP), and the ``enrolstream`` commands ``moodle-sim``
(with its state file, the control routes and the write journal), ``poll`` and
``consume``, each restarted after it dies. The sandbox is written in-process,
one tracked transaction per registrar step, as PowerCampus's own application
would write it; ``enrolstream sandbox cleanup`` runs as a command.

A supervisor restarts a command that ended while no fault action holds it:
killed by an armed crash point (a fault, counted) or for any other reason (a
finding: the product is not meant to exit). Fault actions take the command's
lock, so a restart never races a kill or a cleanup.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import secrets
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bench.chaos_plan import Arming, RunPlan
from bench.chaos_workload import YEAR
from bench.stack import Command, wait_for_port
from connectors.local.checkpoint import SqliteCheckpointStore
from enrolstream.crashpoints import ENVIRONMENT_VARIABLE
from enrolstream.settings import Settings
from sandbox.broker import EmbeddedBroker

CONTROL = "/_control"
#: How long armed crash points may still fire once the other faults stopped.
LINGER_S = 6.0


@dataclass
class Paths:
    """Where one run keeps its files."""

    root: Path

    @property
    def sandbox(self) -> Path:
        """The PowerCampus sandbox."""
        return self.root / "powercampus.sqlite"

    @property
    def config(self) -> Path:
        """The settings every command reads (ENROLSTREAM_CONFIG)."""
        return self.root / "enrolstream.toml"

    @property
    def moodle_state(self) -> Path:
        """The simulated site, saved on SIGTERM."""
        return self.root / "moodle-state.json"

    @property
    def journal(self) -> Path:
        """The simulator's write journal."""
        return self.root / "moodle-audit.jsonl"

    @property
    def poller_state(self) -> Path:
        """The poller's checkpoint and shadow map."""
        return self.root / "poller-state.sqlite"

    @property
    def standby_state(self) -> Path:
        """The standby poller's local copy (its own machine, in a real deployment)."""
        return self.root / "poller-standby-state.sqlite"

    def log(self, name: str) -> Path:
        """A command's log (every life appended)."""
        return self.root / f"{name}.log"


def write_config(
    paths: Paths, plan: RunPlan, *, bootstrap: str, moodle_port: int, token: str
) -> None:
    """The TOML every command of the run reads, drawn settings included."""
    tuning = plan.tuning
    config = f"""log_format = "json"
log_level = "info"

[kafka]
bootstrap_servers = "{bootstrap}"

[source]
kind = "sandbox"

[source.sandbox]
path = "{paths.sandbox}"

[poller]
poll_interval_s = {tuning.poll_interval_s}
max_backoff_s = 1.0
state_path = "{paths.poller_state}"
lease_timeout_s = 2.0
live_terms = ["{YEAR}/Winter"]

[moodle]
url = "http://127.0.0.1:{moodle_port}"
token = "{token}"
concurrency = {tuning.concurrency}
request_timeout_s = {tuning.request_timeout_s}
max_backoff_s = {tuning.max_backoff_s}
# Moodle holds a request 4 s at most here: lost calls' pairs are read again
# after 6 s (a campus sets this above PHP's max_execution_time).
late_write_window_s = 6.0

[consumer]
group_id = "chaos-{plan.seed}"
session_timeout_s = 2.0
parked_retry_s = 1.0
batch_max_rows = {tuning.batch_max_rows}
mappings = {{"{YEAR}/Winter" = "{paths.root / "mapping.json"}"}}
"""
    paths.config.write_text(config)
    paths.config.chmod(0o600)


@dataclass
class Record:
    """What happened during the run, for the verdict and the report."""

    faults: Counter[str] = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    poison: list[tuple[int, int]] = field(default_factory=list)
    #: Pollers frozen past their lease and refused on waking (poller-failover).
    fenced: int = 0


class World:
    """The running stack of one run and the operations faults are made of."""

    def __init__(
        self,
        plan: RunPlan,
        paths: Paths,
        settings: Settings,
        broker: EmbeddedBroker | None,
    ) -> None:
        self.plan = plan
        self.paths = paths
        self.settings = settings
        self.record = Record()
        self.broker = broker
        self.bootstrap = settings.kafka.bootstrap_servers or ""
        self.moodle_port = int(settings.moodle.url.rsplit(":", 1)[1])
        self.control_token = secrets.token_hex(16)
        # Listeners on ports the system picks: runs side by side (two fault
        # matrices on one machine) took each other's default ports.
        env = {
            "ENROLSTREAM_CONFIG": str(paths.config),
            "ENROLSTREAM_OPERATIONS__POLL_PORT": "0",
            "ENROLSTREAM_OPERATIONS__CONSUME_PORT": "0",
        }
        tuning = plan.tuning
        self.sim = Command(
            "moodle-sim",
            [
                "moodle-sim",
                "--port", str(self.moodle_port),
                "--token", settings.moodle.token.get_secret_value(),
                "--state", str(paths.moodle_state),
                "--control-token", self.control_token,
                "--audit", str(paths.journal),
                "--latency", tuning.latency,
                "--workers", str(tuning.workers),
            ],
            log_path=paths.log("moodle-sim"),
            env=env,
        )  # fmt: skip
        self.poller = Command("poll", ["poll"], log_path=paths.log("poll"), env=env)
        self.pollers: tuple[Command, ...] = (self.poller,)
        if "poller-failover" in plan.kinds:
            standby_env = {
                **env,
                "ENROLSTREAM_POLLER__STATE_PATH": str(paths.standby_state),
            }
            self.pollers += (
                Command(
                    "poll-standby",
                    ["poll"],
                    log_path=paths.log("poll-standby"),
                    env=standby_env,
                ),
            )
        self.consumer = Command(
            "consume", ["consume"], log_path=paths.log("consume"), env=env
        )
        # The group's other members (same settings).
        member_env = env
        self.consumers: tuple[Command, ...] = (
            self.consumer,
            *(
                Command(
                    f"consume-{n}",
                    ["consume"],
                    log_path=paths.log(f"consume-{n}"),
                    env=member_env,
                )
                for n in range(2, plan.consumers + 1)
            ),
        )
        #: The member held back from the start, for ``member-join``.
        self.joiner = (
            self.consumers[-1]
            if "member-join" in plan.kinds and len(self.consumers) > 1
            else None
        )
        self.commands = (self.sim, *self.pollers, *self.consumers)
        self.locks = {c.name: asyncio.Lock() for c in self.commands}
        self.broker_lock = asyncio.Lock()
        self.budget = {a.kind: a.budget for a in plan.armings}
        self.armed: dict[str, Arming | None] = {c.name: None for c in self.commands}
        self.turn: Counter[str] = Counter()
        self.accounted: dict[str, set[int]] = {c.name: set() for c in self.commands}
        self.chaos = True
        self.restart_rng = random.Random(f"{plan.seed}:restarts")
        self._http: aiohttp.ClientSession | None = None

    # -- lifecycle ----------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[World]:
        """Start the simulator, then the poller and the consumer; end them all."""
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        try:
            await self.sim.start()
            await wait_for_port(self.moodle_port)
            for consumer in self.consumers:
                if consumer is not self.joiner:
                    await self.start(consumer)
            for poller in self.pollers:
                await self.start(poller)
            yield self
        finally:
            for command in self.commands:
                if command.running:
                    await command.kill()
            await self._http.close()

    async def start(self, command: Command) -> None:
        """A new life, armed with the next crash point of its budget while chaos lasts."""
        arming = self._next_arming(command.name)
        self.armed[command.name] = arming
        extra = {}
        if arming is not None:
            extra[ENVIRONMENT_VARIABLE] = f"{arming.point}={arming.chance}"
        await command.start(extra)
        if command is self.sim:
            await wait_for_port(self.moodle_port)

    def _next_arming(self, name: str) -> Arming | None:
        """The command's crash points in turn, one per life, while budgets last."""
        if not self.chaos:
            return None
        # every member of the group is armed (each holds only some partitions)
        role = "consume" if name.startswith("consume") else name
        mine = [a for a in self.plan.armings if a.command == role]
        for _ in mine:
            arming = mine[self.turn[name] % len(mine)]
            self.turn[name] += 1
            if self.budget[arming.kind] > 0:
                return arming
        return None

    async def supervise(self, stop: asyncio.Event) -> None:
        """Restart any command that ended while no fault action held it."""
        while not stop.is_set():
            for command in self.commands:
                lock = self.locks[command.name]
                if lock.locked() or command.running or not command.lives:
                    continue
                async with lock:
                    await self._after_death(command)
            await asyncio.sleep(0.1)

    async def _after_death(self, command: Command) -> None:
        self.account_death(command)
        await asyncio.sleep(self.restart_rng.uniform(0.1, 1.0))
        await self.start(command)

    def account_death(self, command: Command) -> None:
        """Count a life that ended on its own: a crash point's kill, or a finding.

        Called with the command's lock held, before a fault action or the
        supervisor starts the next life; a life is accounted once.
        """
        if command.running or command.lives in self.accounted[command.name]:
            return
        self.accounted[command.name].add(command.lives)
        status, arming = command.returncode, self.armed[command.name]
        if status == -9 and arming is not None:  # noqa: PLR2004 - SIGKILL
            self.record.faults[arming.kind] += 1
            self.budget[arming.kind] -= 1
        else:
            self.record.problems.append(
                f"{command.name} exited with status {status} on its own (life "
                f"{command.lives}): {tail(command.log_path)}"
            )

    async def stop(self, command: Command) -> tuple[int | None, bool]:
        """SIGTERM a life on a fault's behalf (its lock held); (status, in time).

        A crash point that fires while the command finishes its work counts.
        """
        self.account_death(command)
        status, in_time = await command.stop()
        if in_time and status == -9 and self.armed[command.name] is not None:  # noqa: PLR2004
            self.account_death(command)
        self.accounted[command.name].add(command.lives)
        return status, in_time

    async def heal(self) -> None:
        """Faults stop: Moodle's plan cleared, broker running, every command unarmed.

        Armed crash points get up to ``LINGER_S`` more while the stack catches
        up (a consumer that spent the whole fault phase in retries has passed
        none of its points yet): the kill -9 the plan drew still happens, with
        nothing else broken at that moment.
        """
        if self.broker is not None:
            async with self.broker_lock:
                self.broker.resume()
        async with self.locks[self.sim.name]:
            await self.control({"fault": "clear"})
        deadline = time.monotonic() + LINGER_S
        while time.monotonic() < deadline and any(
            self.armed[c.name] is not None for c in (self.poller, *self.consumers)
        ):
            await asyncio.sleep(0.1)
        self.chaos = False
        for command in (self.poller, *self.consumers):
            if not command.lives:
                continue  # a joiner whose moment never came
            async with self.locks[command.name]:
                if command.running and self.armed[command.name] is None:
                    continue
                if not command.running:
                    await self._after_death(command)
                    continue
                _, in_time = await self.stop(command)
                if not in_time:
                    self.record.notes.append(f"{command.name}: SIGTERM took > 20 s")
                await self.start(command)

    async def stop_all(self) -> dict[str, int | None]:
        """SIGTERM the consumers (together, as a scale-down does: one by one, each
        leaving starts a rebalance the next one is caught in), the poller, then the
        simulator (which saves the site)."""
        statuses: dict[str, int | None] = {}
        consumers = [c for c in self.consumers if c.lives]  # a joiner may never have
        stops = await asyncio.gather(*(self._stop_locked(c) for c in consumers))
        for command, stopped in zip(consumers, stops, strict=True):
            self._judge_stop(command, *stopped, statuses)
        for command in (*self.pollers, self.sim):
            self._judge_stop(command, *await self._stop_locked(command), statuses)
        return statuses

    async def _stop_locked(self, command: Command) -> tuple[int | None, bool]:
        async with self.locks[command.name]:
            return await command.stop()

    def _judge_stop(
        self,
        command: Command,
        status: int | None,
        in_time: bool,
        statuses: dict[str, int | None],
    ) -> None:
        statuses[command.name] = status
        if status == -signal.SIGTERM and in_time:
            # Still starting: its handler was not installed yet, nothing done.
            self.record.notes.append(f"{command.name}: SIGTERM during start-up")
        elif status != 0 or not in_time:
            self.record.problems.append(
                f"{command.name} did not stop cleanly on SIGTERM (status {status}"
                f"{'' if in_time else ', killed after 20 s'}): {tail(command.log_path)}"
            )

    # -- what faults and the convergence check use -----------------------------------
    async def control(self, body: dict[str, Any]) -> dict[str, Any]:
        """A request to the simulator's control routes (the caller holds its lock)."""
        assert self._http is not None  # noqa: S101 - set by running()
        url = f"http://127.0.0.1:{self.moodle_port}{CONTROL}"
        headers = {"Authorization": f"Bearer {self.control_token}"}
        if body:
            request = self._http.post(f"{url}/faults", json=body, headers=headers)
        else:
            request = self._http.get(f"{url}/status", headers=headers)
        async with request as response:
            response.raise_for_status()
            answer: dict[str, Any] = await response.json()
            return answer

    async def status(self) -> dict[str, Any] | None:
        """The simulator's counters and holdings, None while it is down."""
        if not self.sim.running:
            return None
        try:
            return await self.control({})
        except (aiohttp.ClientError, TimeoutError):
            return None

    def saved_version(self) -> int | None:
        """The pollers' saved change-tracking version (the active one's is the highest)."""
        saved = []
        for path in (self.paths.poller_state, self.paths.standby_state):
            if path.exists():
                with SqliteCheckpointStore(path, self.settings.source.name) as store:
                    saved.append(store.load_version())
        versions = [version for version in saved if version is not None]
        return max(versions) if versions else None

    def active_poller(self) -> Command | None:
        """The running poller whose current life holds the lease, by its log."""
        for command in self.pollers:
            if not command.running or not command.log_path.exists():
                continue
            life = command.log_path.read_text(errors="replace").rpartition("=== ")[2]
            held = False
            for event in _events(life):
                held = event == "lease_acquired" or (
                    held and event not in {"lease_lost", "standing_by"}
                )
            if held:
                return command
        return None

    @staticmethod
    def log_size(command: Command) -> int:
        """Where a command's log ends now (to read what it logs from here on)."""
        return command.log_path.stat().st_size if command.log_path.exists() else 0

    @staticmethod
    def logged_since(command: Command, mark: int) -> list[str]:
        """The event names a command logged after ``mark``."""
        if not command.log_path.exists():
            return []
        with command.log_path.open("rb") as log_file:
            log_file.seek(mark)
            return _events(log_file.read().decode(errors="replace"))

    def log_events(self, name: str) -> Counter[str]:
        """Event names a command logged (JSON lines), over all its lives."""
        counts: Counter[str] = Counter()
        path = self.paths.log(name)
        if not path.exists():
            return counts
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                with contextlib.suppress(json.JSONDecodeError):
                    logged = json.loads(line)
                    counts[str(logged.get("event"))] += 1
                    if logged.get("event") == "reinitialising":
                        first = str(logged.get("reason", "")).startswith("first start")
                        counts["reinitialising_" + ("first" if first else "again")] += 1
            elif line.startswith("Traceback"):
                counts["Traceback"] += 1
        return counts


def _events(text: str) -> list[str]:
    """The event names of JSON log lines."""
    names = []
    for line in text.splitlines():
        if line.startswith("{"):
            with contextlib.suppress(json.JSONDecodeError):
                names.append(str(json.loads(line).get("event")))
    return names


def tail(path: Path, lines: int = 6) -> str:
    """The last lines of a log, on one line."""
    if not path.exists():
        return "(no log)"
    text = path.read_text(errors="replace").splitlines()[-lines:]
    return " | ".join(line[:300] for line in text)
