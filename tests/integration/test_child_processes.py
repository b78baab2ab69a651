"""The embedded broker never outlives the command that started it.

Real processes: `enrolstream broker` and `./run demo` are started, stopped with
SIGTERM (or the parent killed with SIGKILL), and the broker's process and port
are checked afterwards, polling with a deadline.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from sandbox.broker import free_port

pytestmark = pytest.mark.integration
ENROLSTREAM = [sys.executable, "-c", "from enrolstream.cli.root import main; main()"]
RUN = Path(__file__).resolve().parents[2] / "run"
#: ./run checks for libodbc first; this stand-in says it is there (no apt-get).
FAKE_LDCONFIG = (
    '#!/bin/sh\necho "libodbc.so.2 (libc6,x86-64) => /usr/lib/libodbc.so.2"\n'
)


def _clean_env(**extra: str) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.upper().startswith("ENROLSTREAM_")
        and name != "KAFKA_BOOTSTRAP_SERVERS"
    }
    return {**env, **extra}


def brokers_started_by(pid: int) -> list[int]:
    """Live (not zombie) broker processes whose parent is ``pid``, from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if b"--listener-url" not in command:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if int(ppid) == pid and state != "Z":
            found.append(int(entry.name))
    return found


def running(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie (an exited, unreaped child)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def listening(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:``port``."""
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def broker_port(pid: int) -> int:
    """The port the Tansu process ``pid`` listens on, from its command line."""
    arguments = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    url = arguments[arguments.index(b"--listener-url") + 1].decode()
    return int(url.rsplit(":", 1)[1])


async def until(condition: Callable[[], object], seconds: float = 30.0) -> None:
    """Poll ``condition`` until it holds; TimeoutError after ``seconds``."""
    async with asyncio.timeout(seconds):
        while not condition():  # noqa: ASYNC110 - another process's state: no event
            await asyncio.sleep(0.05)


async def the_broker_child(process: asyncio.subprocess.Process) -> int:
    """The pid of the broker ``process`` started, once it listens."""
    found: list[int] = []

    def started() -> bool:
        found[:] = brokers_started_by(process.pid)
        return bool(found) and listening(broker_port(found[0]))

    await until(started, 60)
    return found[0]


async def gone(child: int, port: int) -> None:
    """Wait until the broker process has ended and its port is closed."""
    await until(lambda: not running(child) and not listening(port), 15)


class TestBrokerCommand:
    """`enrolstream broker` takes its broker down with it."""

    async def start(self, tmp_path: Path) -> tuple[asyncio.subprocess.Process, int]:
        """The command on a free port, and the port."""
        port = free_port()
        process = await asyncio.create_subprocess_exec(
            *ENROLSTREAM,
            "broker",
            "--port",
            str(port),
            env=_clean_env(ENROLSTREAM_KAFKA__BROKER_LOG=str(tmp_path / "broker.log")),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        return process, port

    @pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
    async def test_signal_stops_the_broker(
        self, tmp_path: Path, signum: signal.Signals
    ) -> None:
        """SIGTERM (or Ctrl-C's SIGINT) stops the broker, closes its port, exits 0."""
        process, port = await self.start(tmp_path)
        child = await the_broker_child(process)
        process.send_signal(signum)
        async with asyncio.timeout(30):
            _, stderr = await process.communicate()
        assert process.returncode == 0, stderr.decode()
        await gone(child, port)

    @pytest.mark.skipif(
        not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only"
    )
    async def test_kill_9_of_the_parent_stops_the_broker(self, tmp_path: Path) -> None:
        """Even killed with SIGKILL (no clean-up at all), the broker goes with it."""
        process, port = await self.start(tmp_path)
        child = await the_broker_child(process)
        process.kill()
        await process.wait()
        await gone(child, port)


class TestRunDemo:
    """`./run demo` stopped with SIGTERM leaves no broker behind."""

    async def test_sigterm_stops_the_broker(self, tmp_path: Path) -> None:
        """SIGTERM mid-demo unwinds it: the broker is stopped, exit 128 + 15."""
        fake_bin = tmp_path / "bin"
        fake_bin.mkdir()
        (fake_bin / "ldconfig").write_text(FAKE_LDCONFIG)
        (fake_bin / "ldconfig").chmod(0o755)
        process = await asyncio.create_subprocess_exec(
            str(RUN),
            "demo",
            "--people",
            "20",
            "--workdir",
            str(tmp_path / "demo"),
            cwd=tmp_path,
            env=_clean_env(PATH=f"{fake_bin}:{os.environ['PATH']}"),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        child = await the_broker_child(process)
        port = broker_port(child)
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            _, stderr = await process.communicate()
        assert process.returncode == 128 + signal.SIGTERM, stderr.decode()
        assert b"Traceback" not in stderr
        await gone(child, port)
