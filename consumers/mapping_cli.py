"""``enrolstream mapping validate``: check mapping files before a term starts.

Exit codes: 0 valid; 1 a file is invalid, or (``--against-moodle``) a course
does not match Moodle; 2 Moodle could not be asked (unreachable, token refused).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from consumers.errors import MappingError, MoodleError
from consumers.mapping import load_mappings
from consumers.preflight import MoodleCheckProblem, check_against_moodle

if TYPE_CHECKING:
    from collections.abc import Mapping

    from consumers.mapping import MappingSet

#: The term files are checked under when ``--term`` is not given. The content
#: checks do not depend on it: shortnames and Moodle ids must be unique across
#: terms anyway.
UNSPECIFIED_TERM = "0000/unspecified"

mapping_app = typer.Typer(
    help="Check course mapping files (campus-enrollment-sync's format).",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    """Add the ``mapping`` group to the root command."""
    app.add_typer(mapping_app, name="mapping")


@mapping_app.command("validate")
def validate(
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
        _check_moodle(mapping)


def _check_moodle(mapping: MappingSet) -> None:
    from consumers.moodle import MoodleClient  # noqa: PLC0415 - aiohttp only when asked
    from enrolstream.cli import settings  # noqa: PLC0415 - read by the root callback

    config = settings().moodle

    async def run() -> list[MoodleCheckProblem]:
        async with MoodleClient(
            config.url,
            config.token,
            max_input_vars=config.max_input_vars,
            concurrency=config.concurrency,
            request_timeout_s=config.request_timeout_s,
        ) as client:

            async def fetch(course_id: int) -> Mapping[str, object] | None:
                courses = await client.get_courses_by_field("id", str(course_id))
                return courses[0] if courses else None

            return await check_against_moodle(mapping, fetch)

    try:
        problems = asyncio.run(run())
    except* MoodleError as group:
        for error in group.exceptions:
            typer.echo(f"ERROR asking Moodle: {error}", err=True)
        raise typer.Exit(2) from None
    for problem in problems:
        typer.echo(f"ERROR {problem}", err=True)
    if problems:
        raise typer.Exit(1)
    typer.echo(f"OK Moodle: {len(mapping)} course(s) match")


__all__ = ["MoodleCheckProblem", "check_against_moodle", "register", "validate"]
