"""``enrolstream ledger show``: the ownership ledger, read from its topic, for people.

``--course SHORTNAME`` is looked up in the mapping files (no Moodle needed);
``--person ID`` asks Moodle which user carries the person (one look-up), since
the ledger is keyed by Moodle ids. Role ids read as Moodle's standard role names.
"""

from __future__ import annotations

from dataclasses import dataclass

from connectors.kafka import read_topic
from consumers.identity import Found
from consumers.mapping import load_mappings
from consumers.roles import role_name
from enrolstream.settings import Settings
from enrolstream.wiring.common import identity_resolver, kafka_options, open_moodle
from schemas.actions import LedgerEntry
from schemas.collation import collate

__all__ = ["LedgerRow", "read_ledger"]


@dataclass(frozen=True, slots=True)
class LedgerRow:
    """One ledger entry with its course's shortname and its role's name."""

    course: str
    courseid: int
    userid: int
    status: str
    role: str
    owned: bool
    uncertain: bool
    state_version: int


async def read_ledger(
    settings: Settings,
    bootstrap_servers: str,
    *,
    person: str | None = None,
    course: str | None = None,
) -> list[LedgerRow]:
    """The ledger's entries, all or of one person or course; ``ValueError`` if unknown."""
    mapping = load_mappings(settings.consumer.mappings)
    names = {e.course.id: e.course.shortname for e in mapping.entries()}
    courseid = None
    if course is not None:
        found = [i for i, n in names.items() if collate(n) == collate(course)]
        if not found:
            raise ValueError(f"no mapped Moodle course has the shortname {course!r}")
        courseid = found[0]
    userid = None
    if person is not None:
        async with open_moodle(settings, attempts=1) as client:
            resolution = (await identity_resolver(client, settings).resolve([person]))[
                person
            ]
        if not isinstance(resolution, Found):
            raise ValueError(f"{person}: {resolution.reason}")
        userid = resolution.userid
    records = await read_topic(
        kafka_options(settings, bootstrap_servers), settings.kafka.ledger_topic
    )
    latest: dict[bytes, bytes | None] = {}
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        if record.key is not None:
            latest[record.key] = record.value
    rows = []
    for value in latest.values():
        if not value:
            continue
        entry = LedgerEntry.model_validate_json(value).normalised()
        if courseid is not None and entry.courseid != courseid:
            continue
        if userid is not None and entry.userid != userid:
            continue
        rows.append(
            LedgerRow(
                course=names.get(entry.courseid, f"course {entry.courseid}"),
                courseid=entry.courseid,
                userid=entry.userid,
                status=entry.status,
                role=role_name(entry.roleid),
                owned=entry.owned,
                uncertain=entry.uncertain,
                state_version=entry.state_version,
            )
        )
    return sorted(rows, key=lambda r: (r.course, r.userid))
