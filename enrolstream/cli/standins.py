"""``enrolstream broker``: the embedded Kafka-protocol broker, alone."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from enrolstream.cli.context import settings_of
from enrolstream.signals import Interrupted, run_until_signalled
from sandbox.broker import EmbeddedBroker


def register(app: typer.Typer) -> None:
    """Add ``broker`` to the root command."""
    app.command("broker")(broker)


def broker(
    ctx: typer.Context,
    port: Annotated[int, typer.Option(help="loopback port; 0 picks a free one")] = 9092,
) -> None:
    """Run the embedded Kafka-protocol broker (memory only) until Ctrl-C or SIGTERM."""
    log_path = settings_of(ctx).kafka.broker_log

    async def serve() -> None:
        async with EmbeddedBroker(log_path, port=port or None) as running:
            typer.echo(f"export KAFKA_BOOTSTRAP_SERVERS={running.bootstrap_servers}")
            typer.echo(
                f"broker log: {running.log_path}  (Ctrl-C stops it; "
                "memory only: topics are lost when it stops)"
            )
            await asyncio.Event().wait()

    try:
        run_until_signalled(serve())
    except Interrupted as stopped:
        # the way to stop this command: the broker is stopped, exit 0
        typer.echo(f"broker {stopped}", err=True)
