"""Waiting for Kafka at start-up: long-running commands start before the broker does.

``enrolstream poll`` and ``enrolstream consume`` are started by a service
manager that does not know whether the broker is up yet (a reboot, a cluster
upgrade, ``docker compose up``). Exiting there makes the manager restart them
in a loop at its own pace, with a traceback each time. ``wait_for_broker``
retries the first contact instead, with exponential backoff, says so on every
attempt (``broker_unreachable`` with ``attempt`` and ``retry_in_s``), and gives
up only when ``stop`` is set (SIGTERM), also in the middle of an attempt.

One-shot commands (snapshot, reconcile, dlq, replay, ``poll --once``,
``consume --until-idle``) do not wait: they report the typed error in one line.

Generic over the error types: each side passes its own retriable Kafka error
(``cdc.errors.PublishFailed``, ``consumers.errors.BrokerUnavailable``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import TypeVar

import structlog

log = structlog.get_logger()

T = TypeVar("T")

FIRST_BACKOFF_S = 0.5


async def _stopped_within(stop: asyncio.Event, seconds: float) -> bool:
    """Wait up to ``seconds``; True as soon as ``stop`` is set."""
    try:
        async with asyncio.timeout(seconds):
            await stop.wait()
    except TimeoutError:
        return False
    return True


async def _attempt_unless_stopped(
    attempt: Callable[[], Awaitable[None]],
    stop: asyncio.Event,
    retriable: tuple[type[Exception], ...],
) -> bool:
    """Run one attempt; False (the attempt cancelled) if ``stop`` is set first.

    A connection to an unreachable host can take the whole request timeout to
    fail (30 s by default); SIGTERM must not wait for that.
    """

    async def run() -> None:
        await attempt()

    task = asyncio.ensure_future(run())
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, *retriable):
                await task
    if task.cancelled():
        return False
    task.result()  # raises the attempt's error
    return True


async def wait_for_broker(
    attempt: Callable[[], Awaitable[None]],
    *,
    stop: asyncio.Event,
    retriable: tuple[type[Exception], ...],
    bootstrap_servers: str,
    max_backoff_s: float,
    first_backoff_s: float = FIRST_BACKOFF_S,
) -> bool:
    """Run ``attempt`` until it succeeds (True) or ``stop`` is set (False).

    A ``retriable`` error logs ``broker_unreachable`` (attempt number, the error,
    the delay before the next attempt) and waits, doubling the delay up to
    ``max_backoff_s``; any other error propagates at once.
    """
    delay = first_backoff_s
    number = 1
    while True:
        try:
            if not await _attempt_unless_stopped(attempt, stop, retriable):
                return False
        except retriable as exc:
            log.warning(
                "broker_unreachable",
                bootstrap_servers=bootstrap_servers,
                attempt=number,
                error=str(exc),
                retry_in_s=round(delay, 3),
            )
            if await _stopped_within(stop, delay):
                return False
            delay = min(delay * 2, max_backoff_s)
            number += 1
            continue
        if number > 1:
            log.info(
                "broker_reachable", bootstrap_servers=bootstrap_servers, attempts=number
            )
        return True


@contextlib.asynccontextmanager
async def entered_unless_stopped(
    context: AbstractAsyncContextManager[T], stop: asyncio.Event
) -> AsyncIterator[T | None]:
    """Enter ``context`` racing ``stop``: its value, or None if ``stop`` came first.

    A start-up has many waits (Moodle, the tables, the group join, a broker that
    froze in the middle of them) and SIGTERM must end any of them within moments:
    when ``stop`` is set first the entering is cancelled, which unwinds whatever
    it had opened, and the block runs with None. Once entered, ``context`` is
    exited after the block as usual.
    """
    entering = asyncio.ensure_future(context.__aenter__())
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({entering, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        if not entering.done():
            entering.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await entering
    if entering.cancelled():
        yield None
        return
    value = entering.result()  # raises the start-up's error
    async with contextlib.AsyncExitStack() as exits:
        exits.push_async_exit(context.__aexit__)
        yield value


__all__ = ["FIRST_BACKOFF_S", "entered_unless_stopped", "wait_for_broker"]
