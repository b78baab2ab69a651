"""Shared fixtures: the Kafka-protocol broker for the whole run, unique topic names."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from sandbox.broker import EmbeddedBroker

# The recorded real-Moodle exchanges (and latency figures) the simulator is proven on.
GOLDEN_DIR = Path(__file__).resolve().parent / "data" / "moodle-golden"


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    """Each test starts and ends with structlog's defaults (CLI tests configure it)."""
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()


@pytest.fixture(name="broker_process", scope="session")
def _broker_process(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[EmbeddedBroker | None]:
    """The embedded broker, started once per run (None when a real cluster is named)."""
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield None
        return
    broker = EmbeddedBroker(tmp_path_factory.mktemp("broker") / "broker.log")
    asyncio.run(broker.start())
    try:
        yield broker
    finally:
        asyncio.run(broker.stop())


@pytest.fixture(name="bootstrap_servers", scope="session")
def _bootstrap_servers(broker_process: EmbeddedBroker | None) -> str:
    """host:port of the broker the integration tests use."""
    if broker_process is None:
        return os.environ["KAFKA_BOOTSTRAP_SERVERS"]
    return broker_process.bootstrap_servers


@pytest.fixture(name="topic")
def _topic() -> str:
    """A fresh topic name, so tests never see each other's messages."""
    return f"test-{uuid.uuid4().hex[:12]}"
