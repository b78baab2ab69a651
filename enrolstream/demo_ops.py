"""The demo's operations: its settings file for other terminals, and a visible first edit.

``write_demo_config`` writes everything a person needs to point ``snapshot``,
``reconcile``, ``replay``, ``dlq`` (and ``status``, ``parked list``, ``ledger
show``) at the running demo stack into one TOML file (0600: it holds the
simulator's token), so one ``export ENROLSTREAM_CONFIG=…`` replaces the dozen
variables the commands would otherwise need.

``first_edit`` picks a registration whose drop changes something anyone can see:
an enrolled student with a Moodle account, in a mapped course, whom the
registrar's morning did not touch.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from connectors.local.files import write_private_text

if TYPE_CHECKING:
    from rich.console import Console

    from connectors.web import OpsServer
    from enrolstream.demo import Demo
    from enrolstream.demo_script import Scene
    from enrolstream.settings import Settings

__all__ = ["FirstEdit", "first_edit", "print_instructions", "write_demo_config"]


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(str(value))  # a TOML basic string: JSON's escapes are TOML's


def write_demo_config(settings: Settings, bootstrap: str, path: Path) -> Path:
    """Write the demo stack's settings as TOML to ``path`` (mode 0600); its absolute path."""
    kafka, consumer = settings.kafka, settings.consumer
    tables: dict[str, dict[str, object]] = {
        "kafka": {
            "bootstrap_servers": bootstrap,
            "events_topic": kafka.events_topic,
            "snapshot_topic": kafka.snapshot_topic,
            "ledger_topic": kafka.ledger_topic,
            "parked_topic": kafka.parked_topic,
            "dead_letter_topic": kafka.dead_letter_topic,
            "partitions": kafka.partitions,
            "enable_idempotence": kafka.enable_idempotence,
        },
        "source": {"kind": "sandbox", "name": settings.source.name},
        "source.sandbox": {"path": settings.source.sandbox.path.resolve()},
        "poller": {
            "state_path": settings.poller.state_path.resolve(),
            "live_terms": list(settings.poller.live_terms),
        },
        "moodle": {
            "url": settings.moodle.url,
            "token": settings.moodle.token.get_secret_value(),
        },
        "consumer": {"group_id": consumer.group_id},
        "consumer.mappings": {
            term: mapping.resolve() for term, mapping in consumer.mappings.items()
        },
        "reconcile": {"report_dir": settings.reconcile.report_dir.resolve()},
        # another terminal's commands must not take the demo's listener port
        "operations": {"poll_port": 0, "consume_port": 0},
    }
    lines = [
        "# The running `enrolstream demo` stack: export ENROLSTREAM_CONFIG=<this file>.",
        "# Holds the Moodle simulator's token: readable by you only.",
    ]
    for table, values in tables.items():
        lines.append(f"\n[{table}]")
        lines.extend(
            f"{json.dumps(key)} = {_toml(value)}" for key, value in values.items()
        )
    target = path.resolve()
    write_private_text(target, "\n".join(lines) + "\n")
    return target


@dataclass(frozen=True, slots=True)
class FirstEdit:
    """A drop to try, and where it shows."""

    transcript_detail_id: int
    people_code_id: str
    shortname: str
    courseid: int

    def sql(self) -> str:
        """The statement to run."""
        return (
            "UPDATE TRANSCRIPTDETAIL SET ADD_DROP_WAIT = 'D' "
            f"WHERE TranscriptDetailId = {self.transcript_detail_id}"
        )


def first_edit(demo: Demo, touched: set[str]) -> FirstEdit | None:
    """An active registration of a student who has access in Moodle now, not in ``touched``."""
    held = demo.moodle()
    for shortname, courseid in sorted(demo.course_ids.items()):
        for entry in demo.mapping.entries():
            if entry.course.id != courseid:
                continue
            marks = ", ".join(f"'{e}'" for e in entry.event_ids)
            section = (
                f" AND rtrim(SECTION) = '{entry.section}'" if entry.section else ""
            )
            rows = demo.sandbox.query(
                "SELECT TranscriptDetailId, PEOPLE_CODE_ID FROM TRANSCRIPTDETAIL "
                f"WHERE rtrim(EVENT_ID) IN ({marks}){section} AND ADD_DROP_WAIT = 'A' "
                "AND FINAL_GRADE IS NULL ORDER BY TranscriptDetailId"
            )
            for row_id, stored in rows:
                person = str(stored).rstrip()
                if person in touched or person not in held.get(courseid, set()):
                    continue
                # one enrolled registration only: dropping it takes the role away
                same = [p for _, p in rows if str(p).rstrip() == person]
                if len(same) == 1:
                    return FirstEdit(int(row_id), person, shortname, courseid)
    return None


def print_instructions(
    console: Console,
    demo: Demo,
    bootstrap: str,
    server: OpsServer | None,
    scenes: list[Scene],
) -> None:
    config = write_demo_config(
        demo.settings,
        bootstrap,
        demo.settings.source.sandbox.path.parent / "enrolstream.toml",
    )
    touched = {
        person
        for scene in scenes
        for statement in scene.sql
        for person in re.findall(r"P\d{9}", statement)
    }
    edit = first_edit(demo, touched)
    console.print("\n[bold]The stack keeps running.[/bold]")
    if server is not None:
        console.print(
            f"  status page:    {server.url}/   (metrics: {server.url}/metrics)"
        )
    console.print(
        "In another terminal, from this directory, one variable points every command "
        "at this stack:\n"
        f"  export ENROLSTREAM_CONFIG={config}\n"
        "  ./run status            the page's block as text (--json)\n"
        "  ./run snapshot && ./run reconcile     (a dry run; its report shows on the page)\n"
        "  ./run dlq list · ./run parked list · ./run ledger show --course SHORTNAME\n"
        "  ./run replay --since 1h --dry-run   (replay itself refuses while "
        "this demo's consumer runs: stop the demo first)"
    )
    if edit is not None:
        console.print(
            "[bold]Try a first edit[/bold] — drop a student in PowerCampus:\n"
            f'  ./run sandbox sql "{edit.sql()}"\n'
            f"  → within a second or two {edit.people_code_id} loses the Student role in "
            f"{edit.shortname} (Moodle course {edit.courseid}): the status page counts "
            "the drop and the latency chart gains a bar;\n"
            f"    ./run ledger show --course {edit.shortname}   then shows them "
            "role_removed.\n"
            "  Put it back with ADD_DROP_WAIT = 'A': the role returns, no welcome message."
        )
    console.print(
        "Changes applied to Moodle are logged below. Ctrl-C stops everything."
    )
