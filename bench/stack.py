"""Process plumbing the benchmarks share: quiet logs, waiting for a port, CLI processes.

``bench/e2e.py`` runs the simulator and the poller as ``multiprocessing``
children; ``bench/chaos.py`` runs every part as the ``enrolstream`` command an
operator would start (``poll``, ``consume``, ``moodle-sim``, ``sandbox …``), so
it can kill -9 them, stop them with SIGTERM and start them again. Both wait for
a listening port the same way.

``Command`` is one long-running command as a service manager would run it:
started, killed (SIGKILL, no clean-up), stopped (SIGTERM, with a deadline after
which it is killed) and started again, each life appended to one log file with
a header line. ``run_command`` runs a one-shot command to completion.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import structlog

#: The ``enrolstream`` command, run with this interpreter (the project's .venv).
ENROLSTREAM = (sys.executable, "-c", "from enrolstream.cli.root import main; main()")


def quiet() -> None:
    """Warnings only: per-batch info lines would measure the terminal."""
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING)
    )


async def wait_for_port(port: int, timeout_s: float = 20.0) -> None:
    """Until something listens on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.025)
            continue
        writer.close()
        return
    raise RuntimeError(f"nothing listens on port {port}")


class Command:
    """One long-running ``enrolstream`` command, started and ended like a service.

    ``env`` is added to this process's environment; ``start(extra_env=…)`` adds
    more for one life only (a crash point armed for that life, for instance).
    """

    def __init__(
        self, name: str, args: list[str], *, log_path: Path, env: dict[str, str]
    ) -> None:
        self.name = name
        self.args = args
        self.log_path = log_path
        self.env = env
        self.process: asyncio.subprocess.Process | None = None
        self.lives = 0
        self.life_env: dict[str, str] = {}

    @property
    def running(self) -> bool:
        """Started and not exited yet."""
        return self.process is not None and self.process.returncode is None

    @property
    def returncode(self) -> int | None:
        """The exit status of the last life (negative: the signal), None while alive."""
        return None if self.process is None else self.process.returncode

    async def start(self, extra_env: dict[str, str] | None = None) -> None:
        """Start a new life (the previous one must have ended)."""
        if self.running:
            raise RuntimeError(f"{self.name} is already running")
        self.lives += 1
        self.life_env = dict(extra_env or {})
        with self.log_path.open("a", encoding="utf-8") as log:
            log.write(
                f"=== {self.name} life {self.lives} at {time.time():.3f} "
                f"env {self.life_env} ===\n"
            )
        with self.log_path.open("ab") as log_file:
            self.process = await asyncio.create_subprocess_exec(
                *ENROLSTREAM,
                *self.args,
                env={**os.environ, **self.env, **self.life_env},
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                # Its own session: a Ctrl-C meant for the harness does not reach it.
                start_new_session=True,
            )

    def send(self, signum: signal.Signals) -> None:
        """Send a signal to the running life (nothing if it has ended)."""
        if self.running and self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signum)

    async def kill(self) -> int | None:
        """kill -9: no ``finally``, no flush, no commit; returns the exit status."""
        self.send(signal.SIGKILL)
        return await self.wait()

    async def stop(self, timeout_s: float = 20.0) -> tuple[int | None, bool]:
        """SIGTERM and wait; killed after ``timeout_s``. (status, stopped in time)."""
        self.send(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.wait(), timeout_s), True
        except TimeoutError:
            return await self.kill(), False

    async def wait(self) -> int | None:
        """Until the current life ends; its exit status."""
        if self.process is None:
            return None
        return await self.process.wait()


async def run_command(
    args: list[str], *, env: dict[str, str], timeout_s: float = 60.0
) -> tuple[int, str]:
    """Run a one-shot ``enrolstream`` command; (exit status, stdout and stderr)."""
    process = await asyncio.create_subprocess_exec(
        *ENROLSTREAM,
        *args,
        env={**os.environ, **env},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(process.communicate(), timeout_s)
    except TimeoutError:
        process.kill()
        out, _ = await process.communicate()
    assert process.returncode is not None  # noqa: S101 - communicate() waited for it
    return process.returncode, out.decode(errors="replace")
