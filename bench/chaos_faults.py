"""The fault actions of the matrix, one per kind (crash points are armed, not acted).

Each action takes the lock of what it breaks, so the supervisor never restarts a
command a fault is holding down, and heals what it broke before it returns:
a killed command is started again, a paused broker resumed, a stopped site
started. Moodle's own faults are queued in the simulator's fault plan through
its control routes and heal themselves (a count, or a time window).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import time
from typing import Any

from bench.chaos_kafka import produce_poison
from bench.chaos_plan import POISON_VALUES, Fault
from bench.chaos_world import World, tail
from bench.stack import Command, run_command
from sandbox.powercampus.database import PowerCampusSandbox

#: A tracked change that leaves every registration as it is.
TOUCH = (
    "UPDATE TRANSCRIPTDETAIL SET REVISION_OPID = 'CHAOS' WHERE TranscriptDetailId = "
    "(SELECT MIN(TranscriptDetailId) FROM TRANSCRIPTDETAIL)"
)
#: A poller-failover waits for a lease holder this many lease timeouts (+ 5 s
#: for a restarted command to start): a takeover needs one, a loaded machine more.
HOLDER_WAIT_LEASES = 4


async def inject(world: World, fault: Fault, sandbox: PowerCampusSandbox) -> None:
    """Carry out ``fault`` now; counted in ``world.record.faults`` when it took effect."""
    kind = fault.kind
    if kind == "poller-kill":
        await _kill(world, world.poller, fault)
    elif kind == "consumer-kill":
        await _kill_mid_batch(world, fault)
    elif kind == "broker-pause":
        await _pause_broker(world, fault)
    elif kind == "moodle-down":
        await _stop_moodle(world, fault)
    elif kind == "ct-cleanup":
        await _cleanup(world, fault, sandbox)
    elif kind == "poison":
        await _poison(world, fault)
    elif kind == "poller-failover":
        await _fail_over(world, fault)
    elif kind in {"member-join", "member-leave", "member-kill"}:
        await _member(world, fault)
    else:
        await _moodle_plan(world, fault)


async def _kill(world: World, command: Command, fault: Fault) -> None:
    async with world.locks[command.name]:
        if not command.running:
            return  # dead already: the supervisor's to restart
        await _kill_held(world, command, fault)


async def _kill_held(world: World, command: Command, fault: Fault) -> None:
    """kill -9, start again after the fault's pause (the command's lock held)."""
    await command.kill()
    world.accounted[command.name].add(command.lives)
    world.record.faults[fault.kind] += 1
    await asyncio.sleep(fault.get("restart_after_s"))
    await world.start(command)


async def _member(world: World, fault: Fault) -> None:
    """A consumer joins the group, leaves it (SIGTERM) or dies in it (kill -9)."""
    if fault.kind == "member-join":
        joiner = world.joiner
        if joiner is None:
            return
        async with world.locks[joiner.name]:
            if joiner.lives == 0:
                await world.start(joiner)
                world.record.faults[fault.kind] += 1
        return
    running = [c for c in world.consumers if c.running]
    if not running:
        return
    member = running[fault.get("member") % len(running)]
    async with world.locks[member.name]:
        if not member.running:
            return  # dead already: the supervisor's to restart
        if fault.kind == "member-leave":
            await world.stop(member)
            await asyncio.sleep(fault.get("away_s"))
        else:
            await member.kill()
            world.accounted[member.name].add(member.lives)
            await asyncio.sleep(fault.get("down_s"))
        world.record.faults[fault.kind] += 1
        await world.start(member)


async def _kill_mid_batch(world: World, fault: Fault) -> None:
    """kill -9 of the consumer while a Moodle call is in flight, if one comes soon."""
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        status = await world.status()
        if status is not None and status["in_flight"] > 0:
            world.record.notes.append("consumer killed with a Moodle call in flight")
            break
        await asyncio.sleep(0.02)
    await _kill(world, world.consumer, fault)


async def _pause_broker(world: World, fault: Fault) -> None:
    if world.broker is None:
        world.record.notes.append("broker-pause skipped: an external cluster")
        return
    async with world.broker_lock:
        world.broker.pause()
        world.record.faults[fault.kind] += 1
        try:
            await asyncio.sleep(fault.get("paused_s"))
        finally:
            world.broker.resume()


async def _stop_moodle(world: World, fault: Fault) -> None:
    """SIGTERM the site (in-flight requests answered 'Terminated: 15'), start it later."""
    async with world.locks[world.sim.name]:
        status, in_time = await world.stop(world.sim)
        world.record.faults[fault.kind] += 1
        if status != 0 or not in_time:
            world.record.problems.append(
                f"moodle-sim did not stop cleanly (status {status}): "
                f"{tail(world.sim.log_path)}"
            )
        await asyncio.sleep(fault.get("down_s"))
        await world.start(world.sim)


async def _cleanup(world: World, fault: Fault, sandbox: PowerCampusSandbox) -> None:
    """Stop the poller, let commits happen, purge their history, start it again."""
    # A poller that never saved has nothing to lose: wait for the first save,
    # which may come after a crash, a restart and a lease expiry (seed 1004:
    # 7 s on a loaded machine) - as long as the fail-over waits for a holder.
    deadline = time.monotonic() + _lease_wait_s(world)
    while world.saved_version() is None and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    async with contextlib.AsyncExitStack() as held:
        for poller in world.pollers:  # a standby would read what must be purged
            await held.enter_async_context(world.locks[poller.name])
            await world.stop(poller)
        await asyncio.sleep(fault.get("stopped_s"))
        saved, current = world.saved_version(), sandbox.current_version()
        if saved is not None and saved == current:
            # No registrar commit in the window: a clerk touches a record, so
            # there is history the poller has not read for the cleanup to purge.
            sandbox.execute(TOUCH)
            current = sandbox.current_version()
        if saved is not None and saved < current:
            code, out = await run_command(
                ["sandbox", "cleanup", "--retain-versions", "0"],
                env={"ENROLSTREAM_CONFIG": str(world.paths.config)},
            )
            if code == 0:
                world.record.faults[fault.kind] += 1
            else:
                world.record.problems.append(f"sandbox cleanup failed: {out[-300:]}")
        else:
            world.record.notes.append(
                f"ct-cleanup without effect: saved {saved}, current {current}"
            )
        for poller in world.pollers:
            await world.start(poller)


async def _poison(world: World, fault: Fault) -> None:
    rng = random.Random(f"{world.plan.seed}:poison:{fault.at_s}")
    value = POISON_VALUES[fault.get("value")]
    for _ in range(fault.get("records")):
        key = f"P{rng.randrange(74000, 74100):09d}".encode()
        where = await produce_poison(
            world.bootstrap, world.settings.kafka.events_topic, key, value
        )
        world.record.poison.append(where)
        world.record.faults[fault.kind] += 1


async def _fail_over(world: World, fault: Fault) -> None:
    """Kill or freeze the poller holding the lease; a frozen one must be fenced on waking.

    The lease may be between holders when the fault comes (a poller-kill of the
    active one a moment before, a cleanup stopping both): the fault waits for the
    next holder, as long as a takeover may take, so a planned fail-over is always
    carried out; no holder by then is capture stalled, a problem of the run.
    It waits likewise while the other poller is down (another fault's).
    """
    async with contextlib.AsyncExitStack() as held:
        active = await _lease_holder(world, held)
        if active is None:
            return
        if fault.get("how") == "kill":
            await _kill_held(world, active, fault)
        else:
            await _freeze(world, active, fault)


def _lease_wait_s(world: World) -> float:
    """How long a fault waits for the lease to be taken (and a first save)."""
    return HOLDER_WAIT_LEASES * world.settings.poller.lease_timeout_s + 5.0


async def _lease_holder(
    world: World, held: contextlib.AsyncExitStack
) -> Command | None:
    """The poller holding the lease, its lock taken in ``held``; waits for one
    (and for the other poller to be running, to take over)."""
    wait_s = _lease_wait_s(world)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        active = world.active_poller()
        # A fail-over needs the other poller there to take over.
        if active is not None and all(c.running for c in world.pollers):
            lock = world.locks[active.name]
            await lock.acquire()
            # Another fault may have killed or stopped it meanwhile.
            if world.active_poller() is active:
                held.callback(lock.release)
                return active
            lock.release()
        await asyncio.sleep(0.1)
    world.record.problems.append(
        f"poller-failover: no poller held the lease beside a running standby for "
        f"{wait_s:.0f} s: "
        + "; ".join(f"{c.name}: {tail(c.log_path)}" for c in world.pollers)
    )
    return None


async def _freeze(world: World, active: Command, fault: Fault) -> None:
    """SIGSTOP past (or within) the lease, SIGCONT; fenced if the other took over."""
    other = next(c for c in world.pollers if c is not active)
    mark = world.log_size(other)
    active.send(signal.SIGSTOP)
    world.record.faults[fault.kind] += 1
    try:
        await asyncio.sleep(fault.get("paused_s"))
    finally:
        woke = world.log_size(active)
        active.send(signal.SIGCONT)
    if "lease_acquired" not in world.logged_since(other, mark):
        return  # the lease outlived the pause: nothing to fence
    deadline = time.monotonic() + 15.0
    while "lease_lost" not in world.logged_since(active, woke):
        if time.monotonic() > deadline or not active.running:
            world.record.problems.append(
                f"{active.name} woke after {other.name} took its lease and was "
                f"not fenced: {tail(active.log_path)}"
            )
            return
        await asyncio.sleep(0.1)
    world.record.fenced += 1
    world.record.notes.append(f"{active.name} fenced on waking")


_PLAN_FAULTS = {
    "moodle-hang": lambda f: {
        "fault": "hang_next",
        "n": f.get("n"),
        "seconds": f.get("seconds"),
    },
    "moodle-slow": lambda f: {
        "fault": "delay_next",
        "n": f.get("n"),
        "seconds": f.get("seconds"),
    },
    "moodle-lost-reply": lambda f: {
        "fault": "drop_next",
        "n": f.get("n"),
        "after": f.get("after"),
    },
    "moodle-terminated": lambda f: {
        "fault": "terminate_next"
        if f.get("page") == "terminated"
        else "php_fatal_next",
        "n": f.get("n"),
        "after": f.get("after"),
    },
}


async def _moodle_plan(world: World, fault: Fault) -> None:
    """Queue the fault in the simulator's plan (waiting while the site is down)."""
    if fault.kind == "moodle-5xx":
        params = dict(fault.params)
        body: dict[str, Any] = (
            {
                "fault": "fail_for",
                "seconds": params["for_s"],
                "status": params["status"],
            }
            if "for_s" in params
            else {"fault": "fail_next", "n": params["n"], "status": params["status"]}
        )
    else:
        body = _PLAN_FAULTS[fault.kind](fault)
    async with world.locks[world.sim.name]:
        await world.control(body)
        world.record.faults[fault.kind] += 1
