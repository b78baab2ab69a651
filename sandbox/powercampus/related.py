"""The sandbox's reads of the tables beside TRANSCRIPTDETAIL: SECTIONPER, ACADEMIC, people.

Each function takes a connection already inside the source's read transaction
(one WAL snapshot), so everything a poll reads agrees with one version. Keys
compare as PowerCampus's collation does (``ci``: trailing spaces ignored, case
folded); person-term keys are passed as one JSON parameter. The rows become
port values through ``cdc.rows``, exactly as the SQL Server adapter's do.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence

from cdc.ports import (
    KeyChange,
    PersonTerm,
    RowOwner,
    ShadowLookup,
    StandingRow,
    TeachingRow,
    TrackedTable,
)
from cdc.rows import (
    ACADEMIC_COLUMNS,
    SECTIONPER_COLUMNS,
    TABLE_KEYS,
    deleted_keys,
    key_change,
    person_details,
    standing_row,
    teaching_row,
    text,
)
from sandbox.powercampus import changetracking as ct
from sandbox.powercampus.schema import TRACKABLE_TABLES, ci
from schemas.collation import collate, person_term_key
from schemas.events import PersonDetails, TermKey

__all__ = [
    "key_changes",
    "people_details",
    "person_terms",
    "standing_rows",
    "teaching_rows",
]

_SP = ", ".join(f"sp.{c}" for c in SECTIONPER_COLUMNS)
_AC = ", ".join(f"ac.{c}" for c in ACADEMIC_COLUMNS)
#: An ACADEMIC row with CODE_ENROLLMENT's verdict on its ENROLL_SEPARATION.
_ACADEMIC = (
    f"SELECT {_AC}, ce.REQUIRE_SEPDATE FROM ACADEMIC AS ac "
    "LEFT JOIN CODE_ENROLLMENT AS ce "
    f"ON {ci('ce.CODE_VALUE_KEY')} = {ci('ac.ENROLL_SEPARATION')}"
)
#: Where an EmailAddress or PersonUser row that still exists belongs.
_OWNER_OF = {
    "EmailAddress": (
        "LEFT JOIN EmailAddress AS r ON r.EmailAddressId = ct.EmailAddressId",
        "r.PeopleOrgCodeId",
    ),
    "PersonUser": (
        (
            "LEFT JOIN PersonUser AS r ON r.PersonUserId = ct.PersonUserId "
            "LEFT JOIN PEOPLE AS p ON p.PersonId = r.PersonId"
        ),
        "p.PEOPLE_CODE_ID",
    ),
}


def _person_term_keys(wanted: Sequence[PersonTerm]) -> str:
    return json.dumps(
        sorted({person_term_key(p.people_code_id, p.term) for p in wanted})
    )


def key_changes(
    conn: sqlite3.Connection,
    tables: Sequence[TrackedTable],
    last: int,
    shadow: ShadowLookup,
) -> list[KeyChange]:
    """Net changes of every tracked table but TRANSCRIPTDETAIL, resolved to persons."""
    found: list[KeyChange] = []
    for table in tables:
        if table == "TRANSCRIPTDETAIL":
            continue
        spec = TRACKABLE_TABLES[table]
        keys = ", ".join(f"ct.{c}" for c in TABLE_KEYS[table])
        join, owner = _OWNER_OF.get(table, ("", "NULL"))
        rows = conn.execute(
            "SELECT ct.SYS_CHANGE_VERSION, ct.SYS_CHANGE_CREATION_VERSION, "
            f"ct.SYS_CHANGE_OPERATION, {owner}, {keys} "
            f"FROM ({ct.net_changes_sql(spec)}) AS ct {join} ORDER BY 1",
            {"last": last},
        ).fetchall()
        found += _resolve(table, rows, shadow)
    return found


def _resolve(
    table: TrackedTable, rows: Sequence[Sequence[object]], shadow: ShadowLookup
) -> list[KeyChange]:
    """CT rows as ``KeyChange``s (``cdc.rows.key_change``), deletes through the shadow."""
    deleted = deleted_keys(table, rows)
    owners = shadow.owners(table, deleted) if deleted else {}
    return [key_change(table, row, owners) for row in rows]


def person_terms(
    conn: sqlite3.Connection,
    persons: Sequence[str],
    live: Sequence[TermKey],
    *,
    teaching: bool,
) -> dict[str, list[TermKey]]:
    """Each person's terms with TRANSCRIPTDETAIL (or SECTIONPER) rows, only ``live`` ones."""
    if not persons:
        return {}
    keys = json.dumps(sorted({collate(p) for p in persons}))
    union = (
        f" UNION SELECT PERSON_CODE_ID, ACADEMIC_YEAR, ACADEMIC_TERM FROM SECTIONPER "
        f"WHERE {ci('PERSON_CODE_ID')} IN (SELECT value FROM json_each(:keys))"
        if teaching
        else ""
    )
    rows = conn.execute(
        "SELECT PEOPLE_CODE_ID, ACADEMIC_YEAR, ACADEMIC_TERM FROM TRANSCRIPTDETAIL "
        f"WHERE {ci('PEOPLE_CODE_ID')} IN (SELECT value FROM json_each(:keys))"
        f"{union}",
        {"keys": keys},
    ).fetchall()
    wanted = {term.key() for term in live}
    found: dict[str, dict[tuple[str, str], TermKey]] = {}
    for person, year, label in rows:
        term = TermKey(academic_year=text(year), academic_term=text(label))
        if wanted and term.key() not in wanted:
            continue
        found.setdefault(collate(text(person)), {}).setdefault(term.key(), term)
    return {p: list(found.get(collate(p), {}).values()) for p in persons}


def teaching_rows(
    conn: sqlite3.Connection,
    *,
    wanted: Sequence[PersonTerm] = (),
    terms: Sequence[TermKey] = (),
) -> list[TeachingRow]:
    """SECTIONPER rows of the wanted person-terms, or of whole terms."""
    if terms:
        keys = json.dumps(sorted({t.key() for t in terms}))
        on = (
            f"{ci('sp.ACADEMIC_YEAR')} = k.value ->> 0 "
            f"AND {ci('sp.ACADEMIC_TERM')} = k.value ->> 1"
        )
    else:
        keys = _person_term_keys(wanted)
        on = (
            f"{ci('sp.PERSON_CODE_ID')} = k.value ->> 0 "
            f"AND {ci('sp.ACADEMIC_YEAR')} = k.value ->> 1 "
            f"AND {ci('sp.ACADEMIC_TERM')} = k.value ->> 2"
        )
    rows = conn.execute(
        f"SELECT {_SP} FROM json_each(:keys) AS k JOIN SECTIONPER AS sp ON {on}",
        {"keys": keys},
    ).fetchall()
    return [teaching_row(row) for row in rows]


def standing_rows(
    conn: sqlite3.Connection,
    *,
    wanted: Sequence[PersonTerm] = (),
    terms: Sequence[TermKey] = (),
) -> list[StandingRow]:
    """ACADEMIC rows (with CODE_ENROLLMENT's verdict) of person-terms, or whole terms."""
    if terms:
        keys = json.dumps(sorted({t.key() for t in terms}))
        where = (
            "(SELECT 1 FROM json_each(:keys) AS k WHERE "
            f"{ci('ac.ACADEMIC_YEAR')} = k.value ->> 0 "
            f"AND {ci('ac.ACADEMIC_TERM')} = k.value ->> 1)"
        )
    else:
        keys = _person_term_keys(wanted)
        where = (
            "(SELECT 1 FROM json_each(:keys) AS k WHERE "
            f"{ci('ac.PEOPLE_CODE_ID')} = k.value ->> 0 "
            f"AND {ci('ac.ACADEMIC_YEAR')} = k.value ->> 1 "
            f"AND {ci('ac.ACADEMIC_TERM')} = k.value ->> 2)"
        )
    rows = conn.execute(f"{_ACADEMIC} WHERE EXISTS {where}", {"keys": keys}).fetchall()
    return [standing_row(row) for row in rows]


def people_details(
    conn: sqlite3.Connection, persons: Sequence[str]
) -> tuple[Mapping[str, PersonDetails], list[RowOwner]]:
    """Account details of ``persons`` (PEOPLE, primary e-mail, login names) and row owners."""
    if not persons:
        return {}, []
    keys = json.dumps(sorted({collate(p) for p in persons}))
    rows = conn.execute(
        "SELECT p.PEOPLE_CODE_ID, p.FIRST_NAME, p.MIDDLE_NAME, p.LAST_NAME, "
        "p.Nickname, e.EmailAddressId, e.Email, u.PersonUserId, u.UserName "
        "FROM PEOPLE AS p "
        "LEFT JOIN EmailAddress AS e ON e.EmailAddressId = p.PrimaryEmailId "
        "AND e.IsActive = 1 "
        "LEFT JOIN PersonUser AS u ON u.PersonId = p.PersonId "
        f"WHERE {ci('p.PEOPLE_CODE_ID')} IN (SELECT value FROM json_each(:keys))",
        {"keys": keys},
    ).fetchall()
    details, owners = person_details(rows)
    by_fold = {collate(p): d for p, d in details.items()}
    return {p: by_fold[collate(p)] for p in persons if collate(p) in by_fold}, owners
