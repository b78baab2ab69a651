"""SIGTERM: `enrolstream poll` and `enrolstream consume` finish what is in flight and exit 0.

They also start before Kafka does: they wait for it, saying so on every attempt,
and SIGTERM still stops them promptly while they wait.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import pytest

from connectors.local.checkpoint import SqliteCheckpointStore
from sandbox.broker import EmbeddedBroker, free_port
from sandbox.powercampus.database import PowerCampusSandbox
from tests.integration.conftest import CaptureStack, registration
from tests.integration.pipeline import ALICE, BOB, open_pipeline

pytestmark = pytest.mark.integration
ENROLSTREAM = [sys.executable, "-c", "from enrolstream.cli.root import main; main()"]
MAPPING = Path(__file__).resolve().parents[2] / "data" / "mapping.example.json"


async def start(args: list[str], env: dict[str, str]) -> asyncio.subprocess.Process:
    """The enrolstream command as its own process, logging JSON to stderr."""
    return await asyncio.create_subprocess_exec(
        *ENROLSTREAM,
        *args,
        env={**os.environ, **env, "ENROLSTREAM_LOG_FORMAT": "json"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def until(condition: object, seconds: float = 30.0) -> None:
    """Wait for a condition another process makes true (polled; not a timing assertion)."""
    assert callable(condition)
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("the other process did not get there")
        await asyncio.sleep(0.05)


async def next_event(
    process: asyncio.subprocess.Process, event: str, seconds: float = 30.0
) -> dict[str, object]:
    """The next JSON log record named ``event`` on the process's stderr."""
    assert process.stderr is not None
    async with asyncio.timeout(seconds):
        while True:
            line = await process.stderr.readline()
            if not line:
                raise AssertionError(f"exited before logging {event}")
            record = json.loads(line)
            if record.get("event") == event:
                return dict(record)


async def stop(process: asyncio.subprocess.Process) -> tuple[int, str]:
    """SIGTERM, then the exit code and what it logged."""
    process.send_signal(signal.SIGTERM)
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode is not None
    return process.returncode, stderr.decode()


class TestPollSigterm:
    """The poller stops between iterations, its version saved."""

    async def test_poll_exits_cleanly(
        self, tmp_path: Path, bootstrap_servers: str, topic: str
    ) -> None:
        """After SIGTERM the poller exits 0 having saved the version it published."""
        sandbox = PowerCampusSandbox(tmp_path / "pc.sqlite")
        sandbox.create()
        sandbox.execute(registration(1, ALICE, "BSC5102"))
        state = tmp_path / "poller.sqlite"
        process = await start(
            ["poll"],
            {
                "KAFKA_BOOTSTRAP_SERVERS": bootstrap_servers,
                "ENROLSTREAM_KAFKA__EVENTS_TOPIC": topic,
                "ENROLSTREAM_SOURCE__SANDBOX__PATH": str(tmp_path / "pc.sqlite"),
                "ENROLSTREAM_POLLER__STATE_PATH": str(state),
                "ENROLSTREAM_POLLER__LIVE_TERMS": json.dumps(["2021/Winter"]),
                "ENROLSTREAM_POLLER__POLL_INTERVAL_S": "0.2",
            },
        )
        with SqliteCheckpointStore(state, "powercampus") as store:
            await until(lambda: store.load_version() is not None)
            version = sandbox.execute(registration(2, BOB, "BSC5102"))
            await until(lambda: store.load_version() == version)
            code, logged = await stop(process)
        assert code == 0, logged
        assert '"poller_stopped"' in logged
        sandbox.close()


class TestConsumeSigterm:
    """The consumer finishes its batch, commits and leaves."""

    async def test_consume_exits_cleanly(
        self, capture: CaptureStack, tmp_path: Path
    ) -> None:
        """After SIGTERM the consumer exits 0 and everything it applied is committed."""
        async with open_pipeline(capture, tmp_path) as pipe:
            capture.sql(
                registration(1, ALICE, "BSC5102"), registration(2, BOB, "BSC5102")
            )
            await capture.poll()
            kafka, consumer = pipe.settings.kafka, pipe.settings.consumer
            process = await start(
                ["consume"],
                {
                    "KAFKA_BOOTSTRAP_SERVERS": pipe.bootstrap,
                    **{
                        f"ENROLSTREAM_KAFKA__{name.upper()}": getattr(kafka, name)
                        for name in (
                            "events_topic",
                            "ledger_topic",
                            "parked_topic",
                            "dead_letter_topic",
                        )
                    },
                    "ENROLSTREAM_MOODLE__URL": pipe.sim.url,
                    "ENROLSTREAM_MOODLE__TOKEN": pipe.sim.token,
                    "ENROLSTREAM_CONSUMER__MAPPINGS": json.dumps(
                        {term: str(path) for term, path in consumer.mappings.items()}
                    ),
                    "ENROLSTREAM_CONSUMER__GROUP_ID": consumer.group_id,
                    "ENROLSTREAM_CONSUMER__SESSION_TIMEOUT_S": "2",
                },
            )
            await until(
                lambda: pipe.moodle() == pipe.truth() and any(pipe.truth().values())
            )
            code, logged = await stop(process)
            assert code == 0, logged
            assert pipe.sim.state.token(pipe.sim.token) is not None
            assert pipe.sim.token not in logged
            # everything applied was committed: a new consumer has nothing to do
            async with pipe.runner() as again:
                await again.run(asyncio.Event(), until_idle=True, poll_timeout_ms=300)
                assert again.stats.events == 0


class TestWaitForKafka:
    """Long-running commands wait for a broker that is not up yet."""

    async def test_poll_waits_for_a_late_broker(self, tmp_path: Path) -> None:
        """poll started before the broker logs each attempt, then publishes once it is up."""
        sandbox = PowerCampusSandbox(tmp_path / "pc.sqlite")
        sandbox.create()
        sandbox.execute(registration(1, ALICE, "BSC5102"))
        state = tmp_path / "poller.sqlite"
        port = free_port()
        process = await start(
            ["poll"],
            {
                "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}",
                "ENROLSTREAM_SOURCE__SANDBOX__PATH": str(tmp_path / "pc.sqlite"),
                "ENROLSTREAM_POLLER__STATE_PATH": str(state),
                "ENROLSTREAM_POLLER__LIVE_TERMS": json.dumps(["2021/Winter"]),
                "ENROLSTREAM_POLLER__POLL_INTERVAL_S": "0.2",
                "ENROLSTREAM_POLLER__MAX_BACKOFF_S": "1",
            },
        )
        first = await next_event(process, "broker_unreachable")
        second = await next_event(process, "broker_unreachable")
        assert (first["attempt"], second["attempt"]) == (1, 2)
        assert first["retry_in_s"] == 0.5
        assert second["retry_in_s"] == 1.0
        assert f"127.0.0.1:{port}" in str(first["error"])
        async with EmbeddedBroker(tmp_path / "late-broker.log", port=port):
            with SqliteCheckpointStore(state, "powercampus") as store:
                await until(lambda: store.load_version() is not None)
            code, logged = await stop(process)
        assert code == 0, logged
        assert '"broker_reachable"' in logged
        sandbox.close()

    async def test_sigterm_while_kafka_is_silent(self, tmp_path: Path) -> None:
        """consume waiting on a broker that accepts but never answers stops at once on SIGTERM."""
        accepted = asyncio.Event()

        async def silent(
            reader: asyncio.StreamReader, writer: asyncio.StreamWriter
        ) -> None:
            accepted.set()
            try:
                await reader.read()
            finally:
                writer.close()

        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            process = await start(
                ["consume"],
                {
                    "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}",
                    # the attempt would hang for two minutes: SIGTERM must not wait
                    "ENROLSTREAM_KAFKA__REQUEST_TIMEOUT_S": "120",
                    "ENROLSTREAM_CONSUMER__MAPPINGS": json.dumps(
                        {"2021/Winter": str(MAPPING)}
                    ),
                },
            )
            async with asyncio.timeout(30):
                await accepted.wait()
            process.send_signal(signal.SIGTERM)
            async with asyncio.timeout(5):
                _, stderr = await process.communicate()
        assert process.returncode == 0, stderr.decode()
        assert b"Traceback" not in stderr
