"""``enrolstream sandbox …``: create, seed, query and age the PowerCampus sandbox.

The database path is ``source.sandbox.path`` of the settings; its directory is
created when missing.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from datetime import date, timedelta
from typing import TYPE_CHECKING, Annotated

import typer

from enrolstream.cli.context import settings_of
from sandbox.powercampus.database import PowerCampusSandbox, SandboxError
from sandbox.powercampus.seed import seed_term
from schemas.events import TermKey

if TYPE_CHECKING:
    from collections.abc import Iterator

sandbox_app = typer.Typer(
    help="The PowerCampus sandbox: SQLite with SQL Server change tracking reproduced.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    """Add the ``sandbox`` group to the root command."""
    app.add_typer(sandbox_app, name="sandbox")


@contextmanager
def _open(ctx: typer.Context, *, create: bool = False) -> Iterator[PowerCampusSandbox]:
    path = settings_of(ctx).source.sandbox.path
    if not create and not path.is_file():
        typer.echo(f"no sandbox at {path}: run `enrolstream sandbox init`", err=True)
        raise typer.Exit(1)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with PowerCampusSandbox(path) as sandbox:
            if create:
                sandbox.create()
            yield sandbox
    except SandboxError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc


@sandbox_app.command("init")
def init(ctx: typer.Context) -> None:
    """Create the database and enable change tracking (idempotent)."""
    with _open(ctx, create=True) as sandbox:
        typer.echo(
            f"sandbox ready at {sandbox.path} "
            f"(current version {sandbox.current_version()})"
        )


@sandbox_app.command("seed")
def seed(
    ctx: typer.Context,
    *,
    year: Annotated[str, typer.Option(help="ACADEMIC_YEAR")] = "2021",
    term: Annotated[str, typer.Option(help="ACADEMIC_TERM")] = "Winter",
    people: Annotated[int, typer.Option(min=1)] = 500,
    courses: Annotated[int, typer.Option(min=1)] = 40,
    sections_per_course: Annotated[int, typer.Option(min=1)] = 2,
    crosslisted_pairs: Annotated[int, typer.Option(min=0)] = 3,
    enrolments_per_person: Annotated[int, typer.Option(min=1)] = 4,
    random_seed: Annotated[int, typer.Option(help="same seed, same data")] = 42,
    covers_today: Annotated[
        bool, typer.Option(help="make the calendar include today (a live term)")
    ] = False,
) -> None:
    """Create (if needed) and fill one synthetic term in one tracked transaction."""
    with _open(ctx, create=True) as sandbox:
        summary = seed_term(
            sandbox,
            term=TermKey(academic_year=year, academic_term=term),
            people=people,
            courses=courses,
            sections_per_course=sections_per_course,
            crosslisted_pairs=crosslisted_pairs,
            enrolments_per_person=enrolments_per_person,
            random_seed=random_seed,
            calendar_covers=date.today() if covers_today else None,  # noqa: DTZ011
        )
    typer.echo(f"seeded {summary.term.label()} at version {summary.version}")
    typer.echo(
        f"people {len(summary.people)}, sections {len(summary.sections)}, "
        f"registrations {summary.enrolments} {summary.by_add_drop_wait}, "
        f"withdrawn grades {summary.withdrawn_grades}, audits {summary.audits}"
    )
    extra = summary.people_summary
    if extra is not None:
        collision = (
            f"{extra.collision[0]} wants the login name {extra.collision[1]!r}"
            if extra.collision
            else "none"
        )
        typer.echo(
            f"instructors {len(extra.instructors)} (faculty {len(extra.faculty)}), "
            f"term withdrawals {len(extra.separated)}, people with no Moodle account "
            f"{len(extra.without_account)}, login-name collision: {collision}"
        )
    for group in summary.crosslisted:
        typer.echo(
            f"cross-listed: {' + '.join(group.event_ids)} section {group.section} "
            f"-> {group.shortname(summary.term)}"
        )


@sandbox_app.command("sql")
def sql(
    ctx: typer.Context,
    statements: Annotated[
        str, typer.Argument(help="';'-separated SQL, one transaction")
    ],
) -> None:
    """Run statements in ONE tracked transaction; print the version or the rows."""
    with _open(ctx) as sandbox:
        result = sandbox.run(statements)
    if result.columns:
        typer.echo("\t".join(result.columns))
        for row in result.rows:
            typer.echo("\t".join("NULL" if v is None else str(v) for v in row))
    if result.version is None:
        typer.echo("no tracked change: no version consumed")
    else:
        typer.echo(f"committed version {result.version}")


@sandbox_app.command("cleanup")
def cleanup(
    ctx: typer.Context,
    retain_versions: Annotated[
        int | None, typer.Option(min=0, help="keep the latest N versions")
    ] = None,
    older_than_minutes: Annotated[
        float | None, typer.Option(min=0, help="purge commits older than this")
    ] = None,
) -> None:
    """Run change-tracking retention now; default: source.sandbox.retention_versions."""
    if retain_versions is None and older_than_minutes is None:
        retain_versions = settings_of(ctx).source.sandbox.retention_versions
        if retain_versions is None:
            typer.echo(
                "nothing to do: give --retain-versions or --older-than-minutes "
                "(or set source.sandbox.retention_versions)",
                err=True,
            )
            raise typer.Exit(2)
    older_than = (
        None if older_than_minutes is None else timedelta(minutes=older_than_minutes)
    )
    with _open(ctx) as sandbox:
        result = sandbox.cleanup(retain_versions=retain_versions, older_than=older_than)
    typer.echo(
        f"cleanup version {result.cleanup_version}: removed {result.deleted_changes} "
        f"changes and {result.deleted_commits} commits"
    )
    for table, version in result.min_valid_versions.items():
        typer.echo(f"min valid version {table}: {version}")


@sandbox_app.command("status")
def status(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Print the current version, each tracked table's min valid version and row counts."""
    with _open(ctx) as sandbox:
        current = sandbox.current_version()
        minimums = {t: sandbox.min_valid_version(t) for t in sandbox.tracked_tables()}
        counts = sandbox.row_counts()
        path = str(sandbox.path)
    if as_json:
        report = {
            "path": path,
            "current_version": current,
            "min_valid_version": minimums,
            "rows": counts,
        }
        typer.echo(json.dumps(report, indent=2))
        return
    typer.echo(f"path: {path}")
    typer.echo(f"current version: {current}")
    for table, version in minimums.items():
        typer.echo(f"min valid version {table}: {version}")
    for table, count in counts.items():
        typer.echo(f"rows {table}: {count}")
