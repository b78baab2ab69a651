"""The JSON Schema of every record enrolstream puts on Kafka, checked in beside the models.

Consumers in other languages (or other teams) validate against these files. After
changing a model run ``python -m schemas.export``; ``tests/unit/test_schemas.py``
fails while a checked-in file differs from its model.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, TypeAdapter

from schemas.accounts import AccountEntry
from schemas.actions import MOODLE_ACTION, LedgerEntry
from schemas.created import CREATED_ENTRY
from schemas.dead_letter import DeadLetter
from schemas.events import EnrolmentEvent, EnrolmentEventV1, EnrolmentEventV2
from schemas.lmb import LmbDeadLetter, LmbGroupRecord, LmbPersonRecord
from schemas.mappings import PublishedMapping
from schemas.snapshot import SnapshotMarker

HERE = Path(__file__).resolve().parent

#: file name → (model, topic it travels on)
CONTRACTS: dict[str, tuple[type[BaseModel] | TypeAdapter[Any], str]] = {
    "enrolment_event.v1.schema.json": (EnrolmentEventV1, "enrolstream.enrolments"),
    "enrolment_event.v2.schema.json": (EnrolmentEventV2, "enrolstream.enrolments"),
    "enrolment_event.v3.schema.json": (EnrolmentEvent, "enrolstream.enrolments"),
    "snapshot_marker.v1.schema.json": (SnapshotMarker, "enrolstream.snapshots"),
    "ledger_entry.v1.schema.json": (LedgerEntry, "enrolstream.ledger"),
    "dead_letter.v1.schema.json": (DeadLetter, "enrolstream.dead-letters"),
    "account_entry.v1.schema.json": (AccountEntry, "enrolstream.accounts"),
    "lmb_person.v1.schema.json": (LmbPersonRecord, "enrolstream.lmb-state"),
    "lmb_group.v1.schema.json": (LmbGroupRecord, "enrolstream.lmb-state"),
    "lmb_dead_letter.v1.schema.json": (LmbDeadLetter, "enrolstream.lmb-dead-letters"),
    "moodle_action.v1.schema.json": (
        MOODLE_ACTION,
        "enrolstream.dead-letters (action)",
    ),
    "created_entry.v1.schema.json": (CREATED_ENTRY, "enrolstream.created"),
    "published_mapping.v1.schema.json": (PublishedMapping, "enrolstream.mappings"),
}


#: A model kept to read an older version is named ``<Name>V<n>``.
_OLDER = re.compile(r"(?P<name>\w+?)V\d+$")


def _published_names(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with ``<Name>V<n>`` definitions named as they were published.

    A model kept to read an older version (``RegistrationV2``) is the model that
    version was published with (``Registration``): its file must not change.
    """
    defs = schema.get("$defs", {})
    renames = {
        old: match["name"]
        for old in defs
        if (match := _OLDER.fullmatch(old)) and match["name"] not in defs
    }
    text = json.dumps(schema)
    for old, new in renames.items():
        text = text.replace(f'"#/$defs/{old}"', f'"#/$defs/{new}"')
        text = text.replace(f'"{old}": {{', f'"{new}": {{')
    renamed: dict[str, Any] = json.loads(text)
    return renamed


def render(name: str) -> str:
    """The schema file's exact text for ``name`` (stable: sorted keys, trailing newline)."""
    model, topic = CONTRACTS[name]
    schema = _published_names(
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
