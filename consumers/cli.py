"""``enrolstream consume``, ``dlq list|redrive`` and ``mapping validate``."""

from __future__ import annotations

import asyncio
import json
import signal
from typing import Annotated

import typer

from consumers.errors import BrokerUnavailable, ConsumerError, MappingError
from enrolstream.settings import Settings
from enrolstream.startup import wait_for_broker

dlq_app = typer.Typer(help="Show and re-queue dead letters.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add the apply side's commands to the root command."""
    from consumers.mapping_cli import register as register_mapping  # noqa: PLC0415
    from consumers.reconcile_cli import register as register_reconcile  # noqa: PLC0415
    from consumers.replay_cli import register as register_replay  # noqa: PLC0415

    app.command("consume")(consume)
    app.add_typer(dlq_app, name="dlq")
    register_mapping(app)
    register_reconcile(app)
    register_replay(app)


def _bootstrap(config: Settings) -> str:
    from enrolstream.cli import require_bootstrap  # noqa: PLC0415

    return require_bootstrap(config, "this command")


def consume(
    until_idle: Annotated[
        bool,
        typer.Option(
            "--until-idle", help="exit once every event read so far is applied"
        ),
    ] = False,
) -> None:
    """Apply enrolment events to Moodle until SIGTERM.

    Waits for Kafka at start-up (with backoff, saying so) unless --until-idle.
    """
    from enrolstream.cli import CONFIG_ERROR_EXIT, settings  # noqa: PLC0415

    config = settings()
    bootstrap = _bootstrap(config)
    from consumers.preflight import StartupRefused  # noqa: PLC0415

    try:
        asyncio.run(_consume(config, bootstrap, until_idle=until_idle))
    except (MappingError, StartupRefused) as exc:
        typer.echo(f"start-up refused: {exc}", err=True)
        raise typer.Exit(CONFIG_ERROR_EXIT) from exc
    except ConsumerError as exc:
        typer.echo(f"consume failed: {exc}", err=True)
        raise typer.Exit(1) from None


async def _consume(config: Settings, bootstrap: str, *, until_idle: bool) -> None:
    from consumers.mapping import load_mappings  # noqa: PLC0415
    from consumers.wiring import ensure_all_topics, open_runner  # noqa: PLC0415

    # The mapping first: a configuration error is reported before any waiting.
    mapping = load_mappings(config.consumer.mappings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    async def create_topics() -> None:
        await ensure_all_topics(config.kafka, bootstrap)

    if until_idle:
        await create_topics()
    elif not await wait_for_broker(
        create_topics,
        stop=stop,
        retriable=(BrokerUnavailable,),
        bootstrap_servers=bootstrap,
        max_backoff_s=config.moodle.max_backoff_s,
    ):
        return
    async with open_runner(config, bootstrap, mapping=mapping, stop=stop) as runner:
        await runner.run(stop, until_idle=until_idle)
        typer.echo(f"{runner.stats.summary()}, parked {len(runner.parked)}")


@dlq_app.command("list")
def dlq_list(
    as_json: Annotated[
        bool, typer.Option("--json", help="one JSON record per line")
    ] = False,
) -> None:
    """Show every dead letter with its reason."""
    from consumers.dead_letters import read_dead_letters  # noqa: PLC0415
    from enrolstream.cli import settings  # noqa: PLC0415

    config = settings()
    try:
        letters = asyncio.run(read_dead_letters(config.kafka, _bootstrap(config)))
    except ConsumerError as exc:
        typer.echo(f"dlq list failed: {exc}", err=True)
        raise typer.Exit(1) from None
    for offset, letter in letters:
        if as_json:
            typer.echo(json.dumps({"offset": offset, **letter.model_dump(mode="json")}))
        else:
            typer.echo(
                f"[{offset}] {letter.dead_lettered_at:%Y-%m-%d %H:%M:%S} "
                f"{letter.error_type} key={letter.key}: {letter.reason}"
            )
    typer.echo(f"{len(letters)} dead letters", err=True)


@dlq_app.command("redrive")
def dlq_redrive(
    error_type: Annotated[
        str | None, typer.Option(help="only letters of this error type")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run")] = False,
) -> None:
    """Re-queue dead letters onto the event topic as their person-term's newest state.

    Letters of one person and term become one full-state event built from the
    newest event of that person-term; letters that are not valid events are
    re-queued as they were.
    """
    from consumers.dead_letters import redrive  # noqa: PLC0415
    from enrolstream.cli import settings  # noqa: PLC0415

    config = settings()
    try:
        count = asyncio.run(
            redrive(
                config.kafka, _bootstrap(config), error_type=error_type, dry_run=dry_run
            )
        )
    except ConsumerError as exc:
        typer.echo(f"dlq redrive failed: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(
        f"{'would re-queue' if dry_run else 're-queued'} {count.events} events "
        f"for {count.letters} dead letters"
    )
