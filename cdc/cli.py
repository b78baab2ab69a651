"""``enrolstream poll`` (and ``source check``): the capture side's commands."""

from __future__ import annotations

import asyncio
import signal
from typing import Annotated

import structlog
import typer

from enrolstream.kafka_options import client_options
from enrolstream.settings import Settings

log = structlog.get_logger()


def register(app: typer.Typer) -> None:
    """Add ``poll`` and the ``source`` group to the root command."""
    from cdc.snapshot_cli import register as register_snapshot  # noqa: PLC0415
    from cdc.source_cli import register as register_source  # noqa: PLC0415

    app.command("poll")(poll)
    register_snapshot(app)
    register_source(app)


def poll(
    once: Annotated[
        bool, typer.Option("--once", help="run one iteration and exit")
    ] = False,
) -> None:
    """Capture PowerCampus changes and publish them to Kafka until SIGTERM."""
    from enrolstream.cli import require_bootstrap, settings  # noqa: PLC0415

    config = settings()
    bootstrap = require_bootstrap(config, "poll")
    asyncio.run(run_poller(config, bootstrap, once=once))


async def run_poller(
    config: Settings,
    bootstrap_servers: str,
    *,
    once: bool,
    stop: asyncio.Event | None = None,
) -> None:
    """Wire source, publisher and checkpoint store; poll once or until ``stop``."""
    from cdc.checkpoint import SqliteCheckpointStore  # noqa: PLC0415
    from cdc.kafka import KafkaEventPublisher, ensure_topics  # noqa: PLC0415
    from cdc.poller import Poller, parse_terms  # noqa: PLC0415
    from cdc.wiring import build_source  # noqa: PLC0415

    kafka = config.kafka
    options = client_options(kafka, bootstrap_servers)
    await ensure_topics(
        options,
        [kafka.events_topic],
        partitions=kafka.partitions,
        replication_factor=kafka.replication_factor,
    )
    source = build_source(config.source)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        with SqliteCheckpointStore(config.poller.state_path, source.name) as store:
            async with KafkaEventPublisher(
                options,
                kafka.events_topic,
                enable_idempotence=kafka.enable_idempotence,
                ack_timeout_s=kafka.request_timeout_s,
            ) as publisher:
                poller = Poller(
                    source,
                    publisher,
                    store,
                    live_terms=parse_terms(config.poller.live_terms),
                )
                if once:
                    result = await poller.run_once()
                    typer.echo(
                        f"version {result.from_version} -> {result.to_version}: "
                        f"{result.events} events"
                    )
                else:
                    await poller.run(
                        stop,
                        interval_s=config.poller.poll_interval_s,
                        max_backoff_s=config.poller.max_backoff_s,
                    )
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        await source.close()
    log.info("poller_stopped")
