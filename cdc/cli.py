"""``enrolstream poll`` (and ``source check``): the capture side's commands."""

from __future__ import annotations

import asyncio
import signal
from typing import Annotated, Any

import structlog
import typer

from cdc.errors import CdcError, PublishFailed
from enrolstream.kafka_options import client_options
from enrolstream.settings import Settings
from enrolstream.startup import wait_for_broker

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
    """Capture PowerCampus changes and publish them to Kafka until SIGTERM.

    Waits for Kafka at start-up (with backoff, saying so) unless --once.
    """
    from enrolstream.cli import require_bootstrap, settings  # noqa: PLC0415

    config = settings()
    bootstrap = require_bootstrap(config, "poll")
    try:
        asyncio.run(run_poller(config, bootstrap, once=once))
    except CdcError as exc:
        typer.echo(f"poll failed: {exc}", err=True)
        raise typer.Exit(1) from None


async def run_poller(
    config: Settings,
    bootstrap_servers: str,
    *,
    once: bool,
    stop: asyncio.Event | None = None,
) -> None:
    """Wire source, publisher and checkpoint store; poll once or until ``stop``.

    Until ``stop`` (not ``once``), an unreachable Kafka is waited for with
    backoff; with ``once`` it raises ``PublishFailed`` at once.
    """
    from cdc.kafka import ensure_topics  # noqa: PLC0415

    kafka = config.kafka
    options = client_options(kafka, bootstrap_servers)

    async def create_topics() -> None:
        await ensure_topics(
            options,
            [kafka.events_topic],
            partitions=kafka.partitions,
            replication_factor=kafka.replication_factor,
        )

    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        if once:
            await create_topics()
        elif not await wait_for_broker(
            create_topics,
            stop=stop,
            retriable=(PublishFailed,),
            bootstrap_servers=bootstrap_servers,
            max_backoff_s=config.poller.max_backoff_s,
        ):
            log.info("poller_stopped", reason="stopped before Kafka answered")
            return
        await _poll(config, options, once=once, stop=stop)
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    log.info("poller_stopped")


async def _poll(
    config: Settings, options: dict[str, Any], *, once: bool, stop: asyncio.Event
) -> None:
    from cdc.checkpoint import SqliteCheckpointStore  # noqa: PLC0415
    from cdc.kafka import KafkaEventPublisher  # noqa: PLC0415
    from cdc.poller import Poller, parse_terms  # noqa: PLC0415
    from cdc.wiring import build_source  # noqa: PLC0415

    kafka = config.kafka
    source = build_source(config.source)
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
        await source.close()
