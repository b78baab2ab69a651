"""SIGTERM: `enrolstream poll` and `enrolstream consume` finish what is in flight and exit 0."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import pytest

from cdc.checkpoint import SqliteCheckpointStore
from sandbox.powercampus.database import PowerCampusSandbox
from tests.integration.conftest import CaptureStack, registration
from tests.integration.pipeline import ALICE, BOB, open_pipeline

pytestmark = pytest.mark.integration
ENROLSTREAM = [sys.executable, "-c", "from enrolstream.cli import main; main()"]


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
