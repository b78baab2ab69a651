"""Commands that unwind on SIGTERM and SIGINT, so nothing they started outlives them.

Python's default for SIGTERM is to die on the spot: no ``finally``, no
``__aexit__``. A command holding a child process (the embedded broker, started
in its own session so that Ctrl-C reaches us first) then left it running and
listening. ``run_until_signalled`` runs the command's coroutine with SIGTERM
and SIGINT cancelling it instead: every ``async with`` exits (the broker is
stopped), then ``Interrupted`` says which signal ended the run. A second signal
during that clean-up is ignored; the clean-up is bounded (the broker gets
SIGKILL after a grace period). The last resort, when this process is killed
with SIGKILL, is in ``sandbox/broker.py`` (the child dies with its parent).

Commands with their own graceful stop (``poll``, ``consume``, ``demo
--keep-running``) use ``stop_on_signals`` instead: SIGTERM and SIGINT set an
event that the loop checks, so the batch in flight finishes first.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Interrupted(Exception):
    """The command was stopped by a signal, after its clean-up ran."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"stopped by {signal.Signals(signum).name}")

    @property
    def exit_code(self) -> int:
        """The shell's convention for a process ended by a signal: 128 + its number."""
        return 128 + self.signum


def run_until_signalled(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)``, with SIGTERM and SIGINT cancelling ``main``.

    Returns what ``main`` returns; raises ``Interrupted`` once ``main`` has
    unwound after a signal.
    """
    received: list[int] = []

    async def guarded() -> T:
        task = asyncio.current_task()
        assert task is not None  # noqa: S101 - asyncio.run runs us in a task
        loop = asyncio.get_running_loop()

        def on_signal(signum: int) -> None:
            if not received:  # a second signal must not cut the clean-up short
                received.append(signum)
                task.cancel()

        for signum in SIGNALS:
            loop.add_signal_handler(signum, on_signal, signum)
        try:
            return await main
        finally:
            for signum in SIGNALS:
                loop.remove_signal_handler(signum)

    try:
        result = asyncio.run(guarded())
    except asyncio.CancelledError:
        if received:
            raise Interrupted(received[0]) from None
        raise
    if received:
        raise Interrupted(received[0])
    return result


@contextlib.asynccontextmanager
async def stop_on_signals() -> AsyncIterator[asyncio.Event]:
    """An event SIGTERM and SIGINT set while the block runs (handlers removed after)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in SIGNALS:
        loop.add_signal_handler(signum, stop.set)
    try:
        yield stop
    finally:
        for signum in SIGNALS:
            loop.remove_signal_handler(signum)


__all__ = ["SIGNALS", "Interrupted", "run_until_signalled", "stop_on_signals"]
