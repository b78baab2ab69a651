"""``consume`` ends at SIGTERM wherever its start-up waits (issue: the hang of seed 8006)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from enrolstream.settings_operations import OperationsSettings
from enrolstream.wiring.consume import run_consume
from sandbox.broker import EmbeddedBroker
from tests.integration.conftest import CaptureStack
from tests.integration.pipeline import open_pipeline, until


class TestStopDuringStartUp:
    """The stop event ends the start-up too, not only the loop."""

    async def test_broker_frozen_after_moodle_was_asked(
        self,
        capture: CaptureStack,
        tmp_path: Path,
        broker_process: EmbeddedBroker | None,
        bootstrap_servers: str,
    ) -> None:
        """Kafka freezes while the tables load: SIGTERM still ends ``consume`` at once.

        The start-up's Kafka calls after the first contact (tables, group join)
        wait on the frozen broker; only the loop used to look at ``stop``.
        """
        if broker_process is None:
            pytest.skip("needs the embedded broker to pause it")
        async with open_pipeline(capture, tmp_path) as pipe:
            settings = pipe.settings.model_copy(
                update={"operations": OperationsSettings(consume_port=0)}
            )
            stop = asyncio.Event()
            with capture_logs() as logs:
                consuming = asyncio.ensure_future(
                    run_consume(
                        settings,
                        bootstrap_servers,
                        until_idle=False,
                        stop=stop,
                    )
                )
                try:
                    await until(
                        lambda: any(
                            e["event"] == "moodle_status_function" for e in logs
                        )
                    )
                    broker_process.pause()
                    stop.set()
                    # a guard, not a measure: without the race this waits for
                    # the broker (forever, while it stays frozen)
                    async with asyncio.timeout(10):
                        result = await consuming
                finally:
                    broker_process.resume()
                    consuming.cancel()
        assert result.summary is None
