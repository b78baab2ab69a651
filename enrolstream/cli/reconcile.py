"""``enrolstream reconcile`` and ``enrolstream ledger adopt``: options, progress, exit codes.

Exit codes: 0 ok; 3 the mass-drop guard tripped and nothing was applied;
1 errors (no usable snapshot, Kafka or Moodle failing, rows Moodle rejected,
mapping invalid, no Kafka configured, ``enrolstream consume`` running).

``reconcile --apply`` and ``ledger adopt`` refuse while ``enrolstream consume``
runs (``enrolstream.wiring.reconcile``). There is deliberately no override: stop
the consumer first, or run the reconcile in its maintenance window.

A progress bar (rich) is drawn on stderr when it is a terminal; otherwise the
stages are logged (structlog), which is what cron and containers want.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Annotated, Any, TypeVar

import structlog
import typer
from rich.console import Console
from rich.progress import Progress

from consumers.errors import ConsumerError
from consumers.reconcile.adopt import AdoptionPlan
from consumers.reconcile.driver import ProgressTask, ReconcileResult
from enrolstream.cli.context import require_bootstrap, settings_of
from enrolstream.wiring.operations import reconcile_textfile
from enrolstream.wiring.reconcile import run_adopt, run_reconcile, write_report

__all__ = ["register"]

log = structlog.get_logger()
T = TypeVar("T")

ledger_app = typer.Typer(help="The ownership ledger.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add ``reconcile`` and the ``ledger`` group to the root command."""
    app.command("reconcile")(reconcile_command)
    app.add_typer(ledger_app, name="ledger")


def _leaves(group: BaseExceptionGroup[BaseException]) -> Iterator[BaseException]:
    for error in group.exceptions:
        if isinstance(error, BaseExceptionGroup):
            yield from _leaves(error)
        else:
            yield error


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run; a ``ConsumerError`` (even inside a task group) becomes exit code 1."""
    failures: list[BaseException] = []
    try:
        return asyncio.run(coroutine)
    except* ConsumerError as group:
        failures.extend(_leaves(group))
    for error in failures:
        typer.echo(f"ERROR {type(error).__name__}: {error}", err=True)
    raise typer.Exit(1)


@contextlib.contextmanager
def _progress() -> Iterator[ProgressTask]:
    """A progress-task factory: rich bars on a terminal, log lines otherwise."""
    if not sys.stderr.isatty():

        def logged(description: str, total: int) -> Callable[[int], None]:
            log.info("reconcile_stage", stage=description, total=total)
            done = [0]

            def advance(step: int) -> None:
                done[0] += step
                if done[0] >= total:
                    log.info("reconcile_stage_done", stage=description, total=total)

            return advance

        yield logged
        return
    with Progress(console=Console(stderr=True), transient=False) as bar:

        def task(description: str, total: int) -> Callable[[int], None]:
            task_id = bar.add_task(description, total=total)
            return lambda step: bar.advance(task_id, step)

        yield task


def reconcile_command(
    ctx: typer.Context,
    apply: Annotated[
        bool,
        typer.Option(
            "--apply",
            help="change Moodle and the ledger (default: dry run); refused while "
            "`enrolstream consume` runs",
        ),
    ] = False,
    force: Annotated[
        bool,
        typer.Option("--force", help="apply even when the mass-drop guard trips"),
    ] = False,
    snapshot: Annotated[
        str | None,
        typer.Option("--snapshot", help="snapshot id (default: latest complete)"),
    ] = None,
    report: Annotated[
        Path | None,
        typer.Option(
            "--report", help="report directory (default: reconcile.report_dir)"
        ),
    ] = None,
) -> None:
    """Compare PowerCampus (a snapshot), the ledger and Moodle; plan or apply the fix.

    --apply writes the ownership ledger, which a running consumer would
    overwrite: it is refused (exit 1, naming the live members) while the apply
    consumer group has any. Stop `enrolstream consume` first, or run the
    reconcile in its maintenance window; there is no override.
    """
    config = settings_of(ctx)
    bootstrap = require_bootstrap(config, "reconcile")

    async def run() -> ReconcileResult:
        with _progress() as progress:
            return await run_reconcile(
                config,
                bootstrap,
                apply=apply,
                force=force,
                snapshot_id=snapshot,
                progress=progress,
            )

    result = _run(run())
    directory = report or config.reconcile.report_dir
    write_report(directory, result)
    reconcile_textfile(config, result)
    _echo_summary(result, directory)
    raise typer.Exit(result.exit_code)


def _echo_summary(result: ReconcileResult, directory: Path) -> None:
    plan = result.plan
    for note in result.notes:
        typer.echo(f"NOTE {note}", err=True)
    kinds: dict[str, int] = {}
    for change in plan.changes:
        kinds[change.kind] = kinds.get(change.kind, 0) + 1
    by_kind = ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())) or "none"
    mode = "applied" if result.applied else "dry run"
    typer.echo(
        f"snapshot {plan.snapshot_id}: {len(plan.changes)} changes ({by_kind}); "
        f"unowned differences {len(plan.unowned)}; unresolved persons "
        f"{len(plan.unresolved)}; rejected {result.rejected} [{mode}]"
    )
    for trip in plan.guard.trips:
        typer.echo(f"GUARD {trip.describe()}", err=True)
    if result.blocked:
        typer.echo("nothing applied: the mass-drop guard tripped", err=True)
    for error in result.errors:
        typer.echo(f"ERROR {error}", err=True)
    typer.echo(f"report: {directory}")


@ledger_app.command("adopt")
def adopt_command(
    ctx: typer.Context,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="show what would be adopted (allowed while the consumer runs)",
        ),
    ] = False,
    snapshot: Annotated[
        str | None,
        typer.Option("--snapshot", help="snapshot id (default: latest complete)"),
    ] = None,
) -> None:
    """Record as owned the Moodle enrolments PowerCampus also says should exist.

    Writes the ownership ledger, which a running consumer would overwrite: it
    is refused (exit 1, naming the live members) while the apply consumer group
    has any. Stop `enrolstream consume` first; there is no override.
    """
    config = settings_of(ctx)
    bootstrap = require_bootstrap(config, "ledger adopt")

    async def run() -> AdoptionPlan:
        with _progress() as progress:
            return await run_adopt(
                config,
                bootstrap,
                dry_run=dry_run,
                snapshot_id=snapshot,
                progress=progress,
            )

    plan = _run(run())
    verb = "would adopt" if dry_run else "adopted"
    typer.echo(
        f"{verb} {len(plan.entries)} enrolments; already in the ledger "
        f"{plan.already_owned}; left unowned: Moodle-only {len(plan.moodle_only)}, "
        f"role differs {len(plan.role_differs)}; PowerCampus-only (reconcile will "
        f"enrol) {len(plan.powercampus_only)}"
    )
