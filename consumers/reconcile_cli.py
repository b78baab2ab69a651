"""``enrolstream reconcile`` and ``enrolstream ledger adopt``.

Exit codes: 0 ok; 3 the mass-drop guard tripped and nothing was applied;
1 errors (no usable snapshot, Kafka or Moodle failing, rows Moodle rejected,
mapping invalid, no Kafka configured, ``enrolstream consume`` running).

``reconcile --apply`` and ``ledger adopt`` write the ownership ledger, which the
running consumer holds in memory and would overwrite: while the apply group
(``consumer.group_id``) has live members they refuse (``LiveConsumerRefused``),
before reading anything and again just before the first write. There is
deliberately no override: stop ``enrolstream consume`` first, or run the
reconcile in its maintenance window. Dry runs only read and are always allowed.

A progress bar (rich) is drawn on stderr when it is a terminal; otherwise the
stages are logged (structlog), which is what cron and containers want.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import structlog
import typer

from consumers.errors import ConsumerError
from enrolstream.settings import Settings

if TYPE_CHECKING:
    from consumers.adopt import AdoptionPlan
    from consumers.decisions import EnrolmentPolicy
    from consumers.identity import IdentityResolver
    from consumers.ledger import Ledger
    from consumers.mapping import MappingSet
    from consumers.moodle import MoodleClient
    from consumers.reconcile import ReconcileInputs, ReconcileResult

__all__ = [
    "open_session",
    "refuse_live_consumer",
    "register",
    "run_adopt",
    "run_reconcile",
]

log = structlog.get_logger()
T = TypeVar("T")
#: Start a progress task (description, total); returns its ``advance(step)``.
ProgressTask = Callable[[str, int], Callable[[int], None]]

ledger_app = typer.Typer(help="The ownership ledger.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add ``reconcile`` and the ``ledger`` group to the root command."""
    app.command("reconcile")(reconcile_command)
    app.add_typer(ledger_app, name="ledger")


def _bootstrap(config: Settings) -> str:
    from enrolstream.cli import require_bootstrap  # noqa: PLC0415

    return require_bootstrap(config, "reconcile")


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
    from rich.console import Console  # noqa: PLC0415 - only on a terminal
    from rich.progress import Progress  # noqa: PLC0415

    with Progress(console=Console(stderr=True), transient=False) as bar:

        def task(description: str, total: int) -> Callable[[int], None]:
            task_id = bar.add_task(description, total=total)
            return lambda step: bar.advance(task_id, step)

        yield task


@dataclass(frozen=True, slots=True)
class _Session:
    """Everything one reconcile or adopt run holds open."""

    inputs: ReconcileInputs
    moodle: MoodleClient
    resolver: IdentityResolver
    ledger: Ledger
    mapping: MappingSet
    policy: EnrolmentPolicy


@contextlib.asynccontextmanager
async def open_session(
    config: Settings,
    bootstrap: str,
    snapshot_id: str | None = None,
    progress: ProgressTask | None = None,
) -> AsyncIterator[_Session]:
    """Read the mapping, the snapshot, the ledger, identities and rosters; hold the
    Moodle client and the ledger's producer open for the caller."""
    # Imported here: aiohttp and aiokafka only load for the commands that use them.
    from consumers.decisions import EnrolmentPolicy  # noqa: PLC0415
    from consumers.identity import IdentityResolver  # noqa: PLC0415
    from consumers.kafka import KafkaRecordSink, KafkaTable  # noqa: PLC0415
    from consumers.ledger import Ledger  # noqa: PLC0415
    from consumers.mapping import load_mappings  # noqa: PLC0415
    from consumers.preflight import moodle_ready  # noqa: PLC0415
    from consumers.reconcile import gather_inputs  # noqa: PLC0415
    from consumers.snapshot_reader import read_snapshot  # noqa: PLC0415
    from consumers.wiring import ensure_all_topics, moodle_client  # noqa: PLC0415
    from enrolstream.kafka_options import client_options  # noqa: PLC0415

    mapping = load_mappings(config.consumer.mappings)
    kafka = config.kafka
    options = client_options(kafka, bootstrap)
    await ensure_all_topics(kafka, bootstrap)
    snapshot = await read_snapshot(options, kafka.snapshot_topic, snapshot_id)
    async with contextlib.AsyncExitStack() as stack:
        moodle = await stack.enter_async_context(moodle_client(config))
        moodle.status_function = await moodle_ready(
            moodle, drop_action=config.consumer.drop_action, attempts=3
        )
        sink = await stack.enter_async_context(
            KafkaRecordSink(
                options, kafka.ledger_topic, ack_timeout_s=kafka.request_timeout_s
            )
        )
        ledger = Ledger(KafkaTable(options, kafka.ledger_topic, sink))
        await ledger.load()
        resolver = IdentityResolver(
            moodle,
            field=config.moodle.user_field,
            transform=config.moodle.user_transform,
        )
        inputs = await gather_inputs(
            moodle,
            resolver,
            snapshot,
            mapping,
            concurrency=config.moodle.concurrency,
            progress=progress,
        )
        yield _Session(
            inputs=inputs,
            moodle=moodle,
            resolver=resolver,
            ledger=ledger,
            mapping=mapping,
            policy=EnrolmentPolicy.from_settings(config.consumer),
        )


async def refuse_live_consumer(config: Settings, bootstrap: str, command: str) -> None:
    """Raise ``LiveConsumerRefused`` while the apply group has live members."""
    from consumers.kafka.groups import describe_consumer_group  # noqa: PLC0415
    from consumers.reconcile import LiveConsumerRefused  # noqa: PLC0415
    from enrolstream.kafka_options import client_options  # noqa: PLC0415

    group_id = config.consumer.group_id
    options = client_options(config.kafka, bootstrap)
    state = await describe_consumer_group(options, group_id)
    if state.live:
        log.warning(
            "ledger_write_refused",
            command=command,
            group=group_id,
            state=state.state,
            members=list(state.members),
        )
        raise LiveConsumerRefused(command, group_id, state.state, state.members)


async def run_reconcile(
    config: Settings,
    bootstrap: str,
    *,
    apply: bool = False,
    force: bool = False,
    snapshot_id: str | None = None,
    progress: ProgressTask | None = None,
) -> ReconcileResult:
    """One reconcile run as the command does it, without the report or exit code.

    With ``apply``, ``LiveConsumerRefused`` while ``enrolstream consume`` runs
    (checked before reading and again before the first write).
    """
    from consumers.reconcile import reconcile  # noqa: PLC0415
    from consumers.reconcile_guard import GuardLimits  # noqa: PLC0415

    async def before_writing() -> None:
        await refuse_live_consumer(config, bootstrap, "reconcile --apply")

    if apply:
        await before_writing()
    async with open_session(config, bootstrap, snapshot_id, progress) as session:
        return await reconcile(
            session.inputs,
            mapping=session.mapping,
            policy=session.policy,
            ledger=session.ledger,
            limits=GuardLimits.from_settings(config.reconcile),
            resolver=session.resolver,
            moodle=session.moodle,
            apply=apply,
            force=force,
            progress=progress,
            before_writing=before_writing,
        )


async def run_adopt(
    config: Settings,
    bootstrap: str,
    *,
    dry_run: bool = False,
    snapshot_id: str | None = None,
    progress: ProgressTask | None = None,
) -> AdoptionPlan:
    """One ``ledger adopt`` run as the command does it.

    Unless ``dry_run``, ``LiveConsumerRefused`` while ``enrolstream consume``
    runs (checked before reading and again before writing the ledger).
    """
    from consumers.adopt import adopt  # noqa: PLC0415

    async def before_writing() -> None:
        await refuse_live_consumer(config, bootstrap, "ledger adopt")

    if not dry_run:
        await before_writing()
    async with open_session(config, bootstrap, snapshot_id, progress) as session:
        return await adopt(
            session.inputs,
            session.mapping,
            session.policy,
            session.ledger,
            dry_run=dry_run,
            before_writing=before_writing,
        )


def reconcile_command(
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
    from consumers.reconcile_report import write_report  # noqa: PLC0415
    from enrolstream.cli import settings  # noqa: PLC0415

    config = settings()
    bootstrap = _bootstrap(config)

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
    _echo_summary(result, directory)
    raise typer.Exit(result.exit_code)


def _echo_summary(result: ReconcileResult, directory: Path) -> None:
    plan = result.plan
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
    from enrolstream.cli import settings  # noqa: PLC0415

    config = settings()
    bootstrap = _bootstrap(config)

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
