"""The demo's mapping, made as a site would make it: ``enrolstream mapping generate``.

The demo's Moodle already holds the term's courses (``demo_site``), named as
campus-enrollment-sync's hand-written files name them. The mapping the consumer
uses is generated from the sandbox's SECTIONS and SECTIONCROSSTALLY and found
in that Moodle, exactly as the command does, then written next to the
hand-written one and compared with it: the courses found are the same; the
unshared sections of the cross-listed courses, which the hand-written file
leaves unmapped, are reported missing (``--create-missing`` would make them).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from rich.console import Console

from enrolstream.settings import Settings
from enrolstream.wiring.mapping import mapping_text, run_generate
from schemas.events import TermKey

__all__ = ["generate_demo_mapping"]


async def generate_demo_mapping(
    settings: Settings, term: TermKey, hand_written: Path, console: Console
) -> Settings:
    """Generate the term's mapping, write it, say how it compares; the settings using it."""
    plan = await run_generate(settings, term, against=hand_written)
    target = hand_written.with_name("mapping.generated.json")
    await asyncio.to_thread(
        target.write_text, mapping_text(plan.document), encoding="utf-8"
    )
    missing = [m.course.shortname for m in plan.of("missing")]
    same = not plan.difference  # compared entry by entry, ids included
    console.print(
        f"enrolstream mapping generate --term {term.label()} --write: "
        f"{len(plan.of('found'))} courses found in Moodle, {len(missing)} missing "
        f"({', '.join(missing) or 'none'}), {len(plan.of('ambiguous'))} ambiguous; "
        f"{'the same as' if same else 'DIFFERENT from'} the hand-written "
        f"{hand_written.name} -> {target}"
    )
    consumer = settings.consumer.model_copy(update={"mappings": {term.label(): target}})
    return settings.model_copy(update={"consumer": consumer})
