"""``enrolstream mapping validate``: check mapping files before a term starts.

Exit codes: 0 valid; 1 a file is invalid, or (``--against-moodle``) a course
does not match Moodle; 2 Moodle could not be asked (unreachable, token refused).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Annotated

import typer

from connectors.moodle.checks import MoodleCheckProblem, check_courses
from connectors.moodle.errors import MoodleError
from consumers.errors import MappingError
from consumers.mapping import MappingSet, load_mappings
from enrolstream.cli import mapping_generate
from enrolstream.cli.context import settings_of
from enrolstream.settings import Settings
from enrolstream.wiring.common import moodle_client

#: The term files are checked under when ``--term`` is not given. The content
#: checks do not depend on it: shortnames and Moodle ids must be unique across
#: terms anyway.
UNSPECIFIED_TERM = "0000/unspecified"

mapping_app = typer.Typer(
    help="Course mapping files (campus-enrollment-sync's format): generate, "
    "validate, publish.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    """Add the ``mapping`` group to the root command."""
    mapping_generate.register(mapping_app)
    app.add_typer(mapping_app, name="mapping")


@mapping_app.command("validate")
def validate(
    ctx: typer.Context,
    files: Annotated[list[Path], typer.Argument(help="mapping JSON file(s)")],
    term: Annotated[
        str | None,
        typer.Option("--term", help="YEAR/TERM the files are for, e.g. 2021/Winter"),
    ] = None,
    against_moodle: Annotated[
        bool,
        typer.Option(
            "--against-moodle",
            help="also check ids, shortnames and manual instances in Moodle "
            "(uses the moodle settings)",
        ),
    ] = False,
) -> None:
    """Validate mapping files as one term's mapping; print counts or the problem."""
    try:
        mapping = load_mappings({term or UNSPECIFIED_TERM: files})
    except MappingError as exc:
        typer.echo(f"ERROR {exc.file}: {exc.key}: {exc.problem}", err=True)
        raise typer.Exit(1) from None
    counts = Counter(entry.file for entry in mapping.entries())
    for file in files:
        typer.echo(f"OK {file}: {counts[file]} Moodle course(s)")
    for overlap in mapping.overlaps():
        section = overlap.section or "every section"
        first, second = overlap.shortnames
        typer.echo(
            f"warning: {overlap.event_id} ({section}) feeds both "
            f"{first!r} and {second!r}",
            err=True,
        )
    if against_moodle:
        _check_moodle(settings_of(ctx), mapping)


def _check_moodle(config: Settings, mapping: MappingSet) -> None:
    async def run() -> list[MoodleCheckProblem]:
        async with moodle_client(config) as client:
            return await check_courses(mapping, client)

    try:
        problems = asyncio.run(run())
    except MoodleError as error:
        typer.echo(f"ERROR asking Moodle: {error}", err=True)
        raise typer.Exit(2) from None
    for problem in problems:
        typer.echo(f"ERROR {problem}", err=True)
    if problems:
        raise typer.Exit(1)
    typer.echo(f"OK Moodle: {len(mapping)} course(s) match")


__all__ = ["register", "validate"]
