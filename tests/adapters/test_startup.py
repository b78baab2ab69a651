"""Waiting for Kafka at start-up: backoff, one log line per attempt, SIGTERM honoured."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from enrolstream.startup import wait_for_broker
from sandbox.broker import free_port

ENROLSTREAM = [sys.executable, "-c", "from enrolstream.cli.root import main; main()"]
MAPPING = Path(__file__).resolve().parents[2] / "data" / "mapping.example.json"


class Unreachable(Exception):
    """Stands for a side's retriable Kafka error."""


class Misconfigured(Exception):
    """Stands for an error no wait can cure."""


class FlakyBroker:
    """An attempt that fails ``failures`` times, then succeeds; counts the calls."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0
        self.called = asyncio.Event()

    async def attempt(self) -> None:
        """Fail while failures remain."""
        self.calls += 1
        self.called.set()
        if self.calls <= self.failures:
            raise Unreachable(f"refused (call {self.calls})")


async def _wait(attempt: FlakyBroker, stop: asyncio.Event, **kwargs: float) -> bool:
    return await wait_for_broker(
        attempt.attempt,
        stop=stop,
        retriable=(Unreachable,),
        bootstrap_servers="kafka-1:9092",
        max_backoff_s=kwargs.get("max_backoff_s", 1.0),
        first_backoff_s=kwargs.get("first_backoff_s", 0.01),
    )


class TestWaitForBroker:
    """``wait_for_broker`` retries the first contact until it answers or SIGTERM."""

    async def test_retries_with_growing_delays_and_says_so(self) -> None:
        """Each failed attempt logs its number, the error and the next delay (doubling)."""
        broker = FlakyBroker(failures=3)
        with capture_logs() as logs:
            assert await _wait(broker, asyncio.Event())
        waits = [entry for entry in logs if entry["event"] == "broker_unreachable"]
        assert [(w["attempt"], w["retry_in_s"]) for w in waits] == [
            (1, 0.01),
            (2, 0.02),
            (3, 0.04),
        ]
        assert all(w["log_level"] == "warning" for w in waits)
        assert waits[0]["error"] == "refused (call 1)"
        assert waits[0]["bootstrap_servers"] == "kafka-1:9092"
        assert logs[-1]["event"] == "broker_reachable"
        assert logs[-1]["attempts"] == 4

    async def test_delay_is_capped(self) -> None:
        """The delay doubles up to max_backoff_s and stays there."""
        broker = FlakyBroker(failures=5)
        with capture_logs() as logs:
            assert await _wait(broker, asyncio.Event(), max_backoff_s=0.03)
        delays = [e["retry_in_s"] for e in logs if e["event"] == "broker_unreachable"]
        assert delays == [0.01, 0.02, 0.03, 0.03, 0.03]

    async def test_answer_at_once_logs_nothing(self) -> None:
        """A broker that answers the first time costs no log line."""
        with capture_logs() as logs:
            assert await _wait(FlakyBroker(failures=0), asyncio.Event())
        assert logs == []

    async def test_stop_during_backoff(self) -> None:
        """SIGTERM while waiting between attempts ends the wait without another attempt."""
        broker = FlakyBroker(failures=1000)
        stop = asyncio.Event()
        waiting = asyncio.ensure_future(_wait(broker, stop, first_backoff_s=60.0))
        await broker.called.wait()
        stop.set()
        async with asyncio.timeout(5):
            assert await waiting is False
        assert broker.calls == 1

    async def test_stop_during_a_hanging_attempt(self) -> None:
        """SIGTERM while an attempt hangs (a silent broker) cancels that attempt."""
        started = asyncio.Event()
        cancelled = asyncio.Event()

        async def hang() -> None:
            started.set()
            try:
                await asyncio.Event().wait()
            finally:
                cancelled.set()

        stop = asyncio.Event()
        waiting = asyncio.ensure_future(
            wait_for_broker(
                hang,
                stop=stop,
                retriable=(Unreachable,),
                bootstrap_servers="kafka-1:9092",
                max_backoff_s=1.0,
            )
        )
        await started.wait()
        stop.set()
        async with asyncio.timeout(5):
            assert await waiting is False
        assert cancelled.is_set()

    async def test_other_errors_propagate(self) -> None:
        """An error that is not the side's retriable one is raised at once."""

        async def misconfigured() -> None:
            raise Misconfigured

        with pytest.raises(Misconfigured):
            await wait_for_broker(
                misconfigured,
                stop=asyncio.Event(),
                retriable=(Unreachable,),
                bootstrap_servers="kafka-1:9092",
                max_backoff_s=1.0,
            )


class TestUnreachableBroker:
    """One-shot commands fail fast on an unreachable Kafka: one line, exit 1."""

    @pytest.mark.parametrize(
        "args",
        [
            ["snapshot", "--term", "2021/Winter"],
            ["poll", "--once"],
            ["consume", "--until-idle"],
            ["reconcile"],
            ["ledger", "adopt", "--dry-run"],
            ["replay", "--from-beginning", "--dry-run"],
            ["dlq", "list"],
            ["dlq", "redrive", "--dry-run"],
        ],
        ids=" ".join,
    )
    def test_one_line_no_traceback(self, args: list[str], tmp_path: Path) -> None:
        """The real command prints one line naming the cluster and exits 1."""
        bootstrap = f"127.0.0.1:{free_port()}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("ENROLSTREAM_")}
        env |= {
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "ENROLSTREAM_LOG_FORMAT": "json",
            "ENROLSTREAM_CONSUMER__MAPPINGS": json.dumps({"2021/Winter": str(MAPPING)}),
        }
        done = subprocess.run(  # noqa: S603 - the installed command
            [*ENROLSTREAM, *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 1, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, done.stderr
        assert f"cannot connect to Kafka at {bootstrap}" in lines[0]
        assert "Traceback" not in done.stderr
