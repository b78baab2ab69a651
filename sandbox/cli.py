"""Sub-commands of the embedded stand-ins: broker, PowerCampus sandbox, Moodle simulator."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    """Add ``broker``, ``sandbox …`` and ``moodle-sim`` to the root command."""
    from sandbox.moodle_sim.cli import register as register_moodle_sim  # noqa: PLC0415
    from sandbox.powercampus.cli import register as register_powercampus  # noqa: PLC0415

    app.command("broker")(broker)
    register_powercampus(app)
    register_moodle_sim(app)


def broker(
    port: Annotated[int, typer.Option(help="loopback port; 0 picks a free one")] = 9092,
) -> None:
    """Run the embedded Kafka-protocol broker (memory only) until Ctrl-C or SIGTERM."""
    from enrolstream.cli import settings  # noqa: PLC0415
    from enrolstream.signals import Interrupted, run_until_signalled  # noqa: PLC0415
    from sandbox.broker import EmbeddedBroker  # noqa: PLC0415

    async def serve() -> None:
        async with EmbeddedBroker(
            settings().kafka.broker_log, port=port or None
        ) as running:
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
