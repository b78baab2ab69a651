"""The ``enrolstream`` command: one entry point, one sub-command per job.

Sub-command groups live beside the code they drive (``sandbox/cli.py``,
``cdc/cli.py``, ``consumers/cli.py`` …); this module only wires them together,
reads the settings once and configures logging.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Annotated

import structlog
import typer

from enrolstream.kafka_options import KafkaTlsError, check_tls, warn_about_security
from enrolstream.logs import configure_logging
from enrolstream.settings import (
    TLS_PROTOCOLS,
    Settings,
    SettingsError,
    load_settings,
    masked,
    unknown_environment_variables,
)

log = structlog.get_logger()

#: Exit code of a command refused because of its configuration (settings, mapping).
CONFIG_ERROR_EXIT = 2

app = typer.Typer(
    name="enrolstream",
    help="Keeps Moodle enrolments in step with PowerCampus.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Inspect the effective settings.", no_args_is_help=True)
app.add_typer(config_app, name="config")


class State:
    """What every sub-command gets: the settings read once."""

    settings: Settings


STATE = State()


@app.callback()
def _root(
    config: Annotated[
        Path | None,
        typer.Option("--config", help="TOML settings file (or ENROLSTREAM_CONFIG)"),
    ] = None,
) -> None:
    try:
        STATE.settings = load_settings(config)
    except SettingsError as exc:
        for problem in exc.problems:
            typer.echo(f"configuration error: {problem}", err=True)
        raise typer.Exit(CONFIG_ERROR_EXIT) from None
    configure_logging(STATE.settings.log_format, STATE.settings.log_level)
    for unknown in unknown_environment_variables():
        # pydantic-settings ignores them; the same typo in the TOML file is an error
        log.warning(
            "unknown_environment_variable",
            variable=unknown.name,
            did_you_mean=unknown.did_you_mean,
            consequence="ignored: it sets no setting",
        )


def settings() -> Settings:
    """The settings of this process (read by the root callback)."""
    return STATE.settings


def require_bootstrap(config: Settings, command: str) -> str:
    """The Kafka cluster ``command`` needs; says how to get one and exits 2 if unset.

    Also the start-up check of the Kafka security settings: warns about weakened
    protections, and exits 2 with the reason when TLS cannot work (a file that
    does not load, a certificate refused by either side).
    """
    bootstrap = config.kafka.bootstrap_servers
    if not bootstrap:
        typer.echo(
            f"{command} needs a Kafka cluster: set KAFKA_BOOTSTRAP_SERVERS (or "
            "kafka.bootstrap_servers in the settings), or run `enrolstream broker` "
            "for the embedded one",
            err=True,
        )
        raise typer.Exit(2)
    warn_about_security(config.kafka)
    if config.kafka.security_protocol in TLS_PROTOCOLS:
        try:
            asyncio.run(check_tls(config.kafka, bootstrap))
        except KafkaTlsError as exc:
            typer.echo(f"{command} cannot start: {exc}", err=True)
            raise typer.Exit(2) from exc
    return bootstrap


@config_app.command("show")
def config_show() -> None:
    """Print the effective settings as JSON, secrets masked."""
    typer.echo(json.dumps(masked(settings()), indent=2))


@app.command("demo")
def demo(
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
) -> None:
    """The whole pipeline on the embedded stack, playing a registrar's morning."""
    from enrolstream.demo import DemoOptions, run_demo  # noqa: PLC0415
    from enrolstream.signals import Interrupted, run_until_signalled  # noqa: PLC0415

    if latency not in {"zero", "real"}:
        raise typer.BadParameter("zero or real", param_hint="--latency")
    current = settings()
    if current.log_level == "info":
        # The demo prints its own story; with --keep-running it shows every row applied.
        configure_logging(current.log_format, "debug" if keep_running else "error")
    options = DemoOptions(
        workdir=workdir, people=people, latency=latency, keep_running=keep_running
    )
    try:
        # SIGTERM/SIGINT unwind the demo: broker, simulator and loops are stopped
        ok = run_until_signalled(run_demo(current, options))
    except Interrupted as stopped:
        typer.echo(f"demo {stopped}", err=True)
        raise typer.Exit(stopped.exit_code) from None
    raise typer.Exit(0 if ok else 1)


def _register_subcommands() -> None:
    # Imported here so that each group's heavy imports stay local to it.
    from cdc.cli import register as register_cdc  # noqa: PLC0415
    from consumers.cli import register as register_consumers  # noqa: PLC0415
    from sandbox.cli import register as register_sandbox  # noqa: PLC0415

    register_sandbox(app)
    register_cdc(app)
    register_consumers(app)


def main() -> None:
    """Console-script entry point.

    Commands report their own failures in one line; an error of ours that a
    command did not catch is still one line (exit 1), never a traceback.
    """
    from cdc.errors import CdcError  # noqa: PLC0415
    from consumers.errors import ConsumerError  # noqa: PLC0415
    from sandbox.broker import BrokerError  # noqa: PLC0415

    _register_subcommands()
    try:
        app()
    except (CdcError, ConsumerError, BrokerError) as exc:
        typer.echo(f"error: {type(exc).__name__}: {exc}", err=True)
        sys.exit(1)
