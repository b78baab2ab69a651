"""The ``enrolstream`` command: one entry point, one module per group of sub-commands.

The root callback reads the settings once (``--config``, ``ENROLSTREAM_CONFIG``,
the environment), puts them on the command context for every sub-command
(``enrolstream.cli.context.settings_of``) and configures logging. Each
sub-command parses its options and calls one ``run_*`` function of
``enrolstream.wiring``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import structlog
import typer

from cdc.errors import CdcError
from connectors.kafka.errors import KafkaAdapterError
from consumers.errors import ConsumerError
from enrolstream.cli import (
    apply,
    capture,
    lmb,
    mapping,
    moodle_sim,
    operations,
    powercampus,
    reconcile,
    replay,
    standins,
)
from enrolstream.cli.context import CONFIG_ERROR_EXIT, settings_of
from enrolstream.demo import DemoOptions, run_demo
from enrolstream.demo_lmb import run_lmb_demo
from enrolstream.logs import configure_logging
from enrolstream.settings import (
    SettingsError,
    load_settings,
    masked,
    unknown_environment_variables,
)
from enrolstream.signals import Interrupted, run_until_signalled
from lmb.errors import LmbError
from sandbox.broker import BrokerError

__all__ = ["app", "main"]

log = structlog.get_logger()

app = typer.Typer(
    name="enrolstream",
    help="Keeps Moodle enrolments in step with PowerCampus.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Inspect the effective settings.", no_args_is_help=True)
app.add_typer(config_app, name="config")


@app.callback()
def _root(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option("--config", help="TOML settings file (or ENROLSTREAM_CONFIG)"),
    ] = None,
) -> None:
    try:
        settings = load_settings(config)
    except SettingsError as exc:
        for problem in exc.problems:
            typer.echo(f"configuration error: {problem}", err=True)
        raise typer.Exit(CONFIG_ERROR_EXIT) from None
    ctx.obj = settings
    configure_logging(settings.log_format, settings.log_level)
    for unknown in unknown_environment_variables():
        # pydantic-settings ignores them; the same typo in the TOML file is an error
        log.warning(
            "unknown_environment_variable",
            variable=unknown.name,
            did_you_mean=unknown.did_you_mean,
            consequence="ignored: it sets no setting",
        )


@config_app.command("show")
def config_show(ctx: typer.Context) -> None:
    """Print the effective settings as JSON, secrets masked."""
    typer.echo(json.dumps(masked(settings_of(ctx)), indent=2))


@app.command("demo")
def demo(  # noqa: PLR0917 - typer passes each option by name
    ctx: typer.Context,
    keep_running: Annotated[
        bool,
        typer.Option(
            "--keep-running", help="leave the stack up afterwards and say how to use it"
        ),
    ] = False,
    latency: Annotated[
        str,
        typer.Option(
            help="Moodle simulator latency: zero, or real (fitted on real Moodle timings)"
        ),
    ] = "zero",
    people: Annotated[int, typer.Option(help="people in the seeded term")] = 200,
    workdir: Annotated[
        Path, typer.Option(help="where the demo keeps its files")
    ] = Path("var/demo"),
    source: Annotated[
        str,
        typer.Option(
            help="powercampus (a registrar's morning) or lmb (a Banner LMB session)"
        ),
    ] = "powercampus",
) -> None:
    """The whole pipeline on the embedded stack, playing a registrar's morning."""
    if latency not in {"zero", "real"}:
        raise typer.BadParameter("zero or real", param_hint="--latency")
    if source not in {"powercampus", "lmb"}:
        raise typer.BadParameter("powercampus or lmb", param_hint="--source")
    current = settings_of(ctx)
    if current.log_level == "info":
        # The demo prints its own story; with --keep-running it shows every row applied.
        configure_logging(current.log_format, "debug" if keep_running else "error")
    options = DemoOptions(
        workdir=workdir, people=people, latency=latency, keep_running=keep_running
    )
    try:
        # SIGTERM/SIGINT unwind the demo: broker, simulator and loops are stopped
        play = run_lmb_demo if source == "lmb" else run_demo
        ok = run_until_signalled(play(current, options))
    except Interrupted as stopped:
        typer.echo(f"demo {stopped}", err=True)
        raise typer.Exit(stopped.exit_code) from None
    raise typer.Exit(0 if ok else 1)


for group in (
    standins,
    powercampus,
    moodle_sim,
    capture,
    apply,
    mapping,
    reconcile,
    replay,
    operations,
    lmb,
):
    group.register(app)


def main() -> None:
    """Console-script entry point.

    Commands report their own failures in one line; an error of ours that a
    command did not catch is still one line (exit 1), never a traceback.
    """
    try:
        app()
    except (CdcError, ConsumerError, LmbError, KafkaAdapterError, BrokerError) as exc:
        typer.echo(f"error: {type(exc).__name__}: {exc}", err=True)
        sys.exit(1)
