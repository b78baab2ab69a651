"""``enrolstream mapping generate | publish | reveal``: a term's mapping made, put in force.

``generate`` prints the reviewed plan (found, missing, ambiguous, the difference
from the current file) and writes nothing unless ``--write``. Writing the file
changes no running consumer: a mapping is put in force by ``publish`` (the
mappings topic every consumer follows), so a live mapping never changes
silently.

Exit codes: 0 done; 1 the result or the file is invalid, or Moodle, PowerCampus
or Kafka failed; 2 the command is refused by its configuration (no term file to
write, no Kafka for ``--create-missing``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from cdc.errors import CdcError
from connectors.local.files import replace_text
from connectors.moodle.errors import MoodleError
from consumers.courses.generate import Generated
from consumers.errors import ConsumerError, MappingError
from enrolstream.cli.context import CONFIG_ERROR_EXIT, require_bootstrap, settings_of
from enrolstream.settings import Settings
from enrolstream.wiring.mapping import (
    configured_file,
    mapping_text,
    other_terms,
    run_generate,
    run_publish,
    run_reveal,
    validate_document,
)
from schemas.events import TermKey

__all__ = ["register"]

T = TypeVar("T")


def register(mapping_app: typer.Typer) -> None:
    """Add ``generate``, ``publish`` and ``reveal`` to the ``mapping`` group."""
    mapping_app.command("generate")(generate_command)
    mapping_app.command("publish")(publish_command)
    mapping_app.command("reveal")(reveal_command)


def _term(value: str) -> TermKey:
    try:
        return TermKey.parse(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--term") from None


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run; one line and exit 1 for a failure of ours (never a traceback)."""
    try:
        return asyncio.run(coroutine)
    except MappingError as exc:
        typer.echo(f"ERROR {exc.file}: {exc.key}: {exc.problem}", err=True)
    except (ConsumerError, CdcError, MoodleError) as exc:
        typer.echo(f"ERROR {type(exc).__name__}: {exc}", err=True)
    raise typer.Exit(1)


def print_plan(plan: Generated, compared_with: Path | None) -> None:
    """The reviewed plan, one line per course."""
    catalog = plan.catalog
    dates = (
        f"{catalog.start} .. {catalog.end}"
        if catalog.start and catalog.end
        else "no ACADEMICCALENDAR row"
    )
    typer.echo(
        f"term {catalog.term.label()}: {len(catalog.sections)} section(s), "
        f"{len(catalog.crosstallies)} cross-tally(ies); term dates {dates}"
    )
    for one in plan.matches:
        course = one.course
        line = f"{one.status:<9} {course.shortname}"
        if one.moodle_id is not None:
            line += f" -> Moodle course {one.moodle_id} (by {one.by})"
        if one.note:
            line += f"; {one.note}"
        typer.echo(line)
        for candidate in one.candidates:
            typer.echo(f"          candidate {candidate}")
    for shortname in plan.created:
        typer.echo(f"created   {shortname} (hidden until its day: mapping reveal)")
    for shortname in plan.revealed:
        typer.echo(f"revealed  {shortname}")
    counts = {s: len(plan.of(s)) for s in ("found", "missing", "ambiguous")}
    typer.echo(", ".join(f"{n} {s}" for s, n in counts.items()))
    against = str(compared_with) if compared_with else "(no current mapping)"
    diff = plan.difference
    if not diff:
        typer.echo(f"no difference from {against}")
        return
    typer.echo(f"difference from {against}:")
    for shortname in diff.added:
        typer.echo(f"  + {shortname}")
    for shortname in diff.removed:
        typer.echo(f"  - {shortname}")
    for shortname, changes in diff.changed.items():
        typer.echo(f"  ~ {shortname}: {'; '.join(changes)}")


def generate_command(
    ctx: typer.Context,
    term: Annotated[str, typer.Option("--term", help="YEAR/TERM, e.g. 2021/Winter")],
    write: Annotated[
        bool, typer.Option("--write", help="write the file (see --file)")
    ] = False,
    file: Annotated[
        Path | None,
        typer.Option(
            "--file",
            help="the mapping file compared with and written (default: the term's "
            "file in consumer.mappings)",
        ),
    ] = None,
    create_missing: Annotated[
        bool,
        typer.Option(
            "--create-missing",
            help="create the missing courses as hidden shells (needs Kafka: "
            "their records go to the created topic)",
        ),
    ] = False,
) -> None:
    """Build the term's mapping from PowerCampus and Moodle; print the plan."""
    settings = settings_of(ctx)
    key = _term(term)
    target = file or configured_file(settings, key)
    if write and target is None:
        typer.echo(
            f"--write needs a file: give --file, or map {key.label()} in "
            "consumer.mappings",
            err=True,
        )
        raise typer.Exit(CONFIG_ERROR_EXIT)
    bootstrap = (
        require_bootstrap(settings, "mapping generate --create-missing")
        if create_missing
        else None
    )
    plan = _run(
        run_generate(
            settings,
            key,
            against=target,
            create_missing=create_missing,
            bootstrap_servers=bootstrap,
        )
    )
    compared = target if target is not None and target.is_file() else None
    print_plan(plan, compared)
    text = mapping_text(plan.document)
    if write and target is not None:
        _write(settings, key, target, text)


def _write(settings: Settings, term: TermKey, target: Path, text: str) -> None:
    try:
        validate_document(text, target, term, other_terms(settings, term))
    except MappingError as exc:
        typer.echo(f"ERROR {exc.file}: {exc.key}: {exc.problem}", err=True)
        raise typer.Exit(1) from None
    replace_text(target, text)
    typer.echo(
        f"wrote {target}; running consumers do not use it until "
        f"`enrolstream mapping publish --term {term.label()} {target}`"
    )


def publish_command(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="the term's mapping file")],
    term: Annotated[str, typer.Option("--term", help="YEAR/TERM the file is for")],
) -> None:
    """Validate a term's mapping and put it in force in every running consumer."""
    settings = settings_of(ctx)
    key = _term(term)
    bootstrap = require_bootstrap(settings, "mapping publish")
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        typer.echo(f"ERROR {file}: (whole file): {exc.strerror}", err=True)
        raise typer.Exit(1) from None
    result = _run(run_publish(settings, bootstrap, key, file, text))
    if result.unchanged:
        typer.echo(f"{result.term}: revision {result.digest} is already in force")
        return
    typer.echo(
        f"published {result.term} revision {result.digest}: {result.courses} "
        f"course(s), {len(result.changed)} mapped anew or otherwise, "
        f"{result.events} person-term(s) republished to be decided at once"
    )


def reveal_command(ctx: typer.Context) -> None:
    """Show the hidden course shells of ours whose day has come."""
    settings = settings_of(ctx)
    bootstrap = require_bootstrap(settings, "mapping reveal")
    shown = _run(run_reveal(settings, bootstrap))
    for shortname in shown:
        typer.echo(f"revealed {shortname}")
    typer.echo(f"{len(shown)} course(s) revealed")
