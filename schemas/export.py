"""The JSON Schema of every record enrolstream puts on Kafka, checked in beside the models.

Consumers in other languages (or other teams) validate against these files. After
changing a model run ``python -m schemas.export``; ``tests/unit/test_schemas.py``
fails while a checked-in file differs from its model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, TypeAdapter

from schemas.accounts import AccountEntry
from schemas.actions import MOODLE_ACTION, LedgerEntry
from schemas.created import CREATED_ENTRY
from schemas.dead_letter import DeadLetter
from schemas.events import EnrolmentEvent, EnrolmentEventV1
from schemas.mappings import PublishedMapping
from schemas.snapshot import SnapshotMarker

HERE = Path(__file__).resolve().parent

#: file name → (model, topic it travels on)
CONTRACTS: dict[str, tuple[type[BaseModel] | TypeAdapter[Any], str]] = {
    "enrolment_event.v1.schema.json": (EnrolmentEventV1, "enrolstream.enrolments"),
    "enrolment_event.v2.schema.json": (EnrolmentEvent, "enrolstream.enrolments"),
    "snapshot_marker.v1.schema.json": (SnapshotMarker, "enrolstream.snapshots"),
    "ledger_entry.v1.schema.json": (LedgerEntry, "enrolstream.ledger"),
    "dead_letter.v1.schema.json": (DeadLetter, "enrolstream.dead-letters"),
    "account_entry.v1.schema.json": (AccountEntry, "enrolstream.accounts"),
    "moodle_action.v1.schema.json": (
        MOODLE_ACTION,
        "enrolstream.dead-letters (action)",
    ),
    "created_entry.v1.schema.json": (CREATED_ENTRY, "enrolstream.created"),
    "published_mapping.v1.schema.json": (PublishedMapping, "enrolstream.mappings"),
}


def render(name: str) -> str:
    """The schema file's exact text for ``name`` (stable: sorted keys, trailing newline)."""
    model, topic = CONTRACTS[name]
    schema = (
        model.json_schema()
        if isinstance(model, TypeAdapter)
        else model.model_json_schema()
    )
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://enrolstream.invalid/schemas/{name}",
        "description": f"{schema.get('description', '')} Topic: {topic}.".strip(),
        **{key: value for key, value in schema.items() if key != "description"},
    }
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def export(directory: Path = HERE) -> list[Path]:
    """Write every schema file; returns the paths written."""
    written = []
    for name in CONTRACTS:
        path = directory / name
        path.write_text(render(name), encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":
    for path in export():
        print(path)  # noqa: T201 - a command's output
