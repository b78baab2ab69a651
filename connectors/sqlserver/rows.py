"""Pure conversions from the rows SQL Server returns to the port's value objects.

Rows become ``TranscriptRow`` through ``cdc.rows``, shared with the sandbox:
trailing spaces removed (``nvarchar`` padding), case kept. Keys are matched
case-insensitively, as the ``..._CI_AS`` collation does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, cast

from cdc.ports import (
    ChangeRow,
    CtOperation,
    KeyChange,
    PersonTerm,
    ShadowEntry,
    StandingRow,
    TeachingRow,
    TranscriptRow,
)
from cdc.rows import text, transcript_row
from schemas.collation import collate, person_term_key
from schemas.events import TermKey

Row = Sequence[Any]
R = TypeVar("R", TranscriptRow, TeachingRow, StandingRow)
_CHANGE_PREFIX = 4  # SYS_CHANGE_VERSION, CREATION_VERSION, OPERATION, key
_OPERATIONS = frozenset({"I", "U", "D"})


def change_row(values: Row, shadow: Mapping[int, ShadowEntry]) -> ChangeRow:
    """One row of the CHANGES query, with the shadow entry of its key if known.

    An I/U whose joined row is missing can only happen without snapshot
    isolation (the row was deleted after CHANGETABLE read it); it is reported
    as the delete it has become, so no reader sees an insert without a row.
    """
    key = int(values[3])
    operation = text(values[2])
    if operation not in _OPERATIONS:
        raise ValueError(f"unexpected SYS_CHANGE_OPERATION {operation!r}")
    joined = values[_CHANGE_PREFIX:]
    current = None if joined[0] is None else transcript_row(joined)
    if current is None:
        operation = "D"
    return ChangeRow(
        transcript_detail_id=key,
        operation=cast("CtOperation", operation),
        change_version=int(values[0]),
        creation_version=None if values[1] is None else int(values[1]),
        current=current,
        shadow=shadow.get(key),
    )


def commit_times(rows: Iterable[Row]) -> dict[int, datetime]:
    """``{version: UTC commit time}`` from the COMMIT_TIMES query's rows.

    Each row is (commit_ts, commit_time in the server's local time, the server's
    offset from UTC in minutes); rows without a time are left out.
    """
    found: dict[int, datetime] = {}
    for version, local, offset_minutes in rows:
        if local is None:
            continue
        moment = local - timedelta(minutes=int(offset_minutes or 0))
        found[int(version)] = moment.replace(tzinfo=UTC)
    return found


def changed_keys(rows: Iterable[Row]) -> list[int]:
    """The TranscriptDetailIds of CHANGES rows, in order."""
    return [int(row[3]) for row in rows]


def person_terms(changes: Iterable[ChangeRow]) -> list[PersonTerm]:
    """Every person-term a change touches: the row now and the row as last seen.

    The shadow entry matters for deletes (the only way to know whose row it
    was) and for updates that moved a row to another person or term.
    Duplicates (case-insensitively) are dropped; first-seen order is kept.
    """
    seen: dict[tuple[str, str, str], PersonTerm] = {}
    for change in changes:
        for source in (change.current, change.shadow):
            if source is None:
                continue
            person_term = PersonTerm(source.people_code_id, source.section.term)
            seen.setdefault(fold(person_term), person_term)
    return list(seen.values())


def fold(person_term: PersonTerm) -> tuple[str, str, str]:
    """A person-term as PowerCampus's collation compares it (``schemas.collation``)."""
    return person_term_key(person_term.people_code_id, person_term.term)


def term_key_params(keys: Sequence[PersonTerm]) -> list[str]:
    """The bound parameters of ``term_state_query(len(keys))``."""
    params: list[str] = []
    for key in keys:
        params += [key.people_code_id, key.term.academic_year, key.term.academic_term]
    return params


def group_term_state(
    keys: Sequence[PersonTerm], rows: Iterable[R]
) -> dict[PersonTerm, tuple[R, ...]]:
    """Rows grouped under the requested keys; a key with no rows maps to ``()``."""
    by_fold = {fold(key): key for key in keys}
    grouped: dict[PersonTerm, list[R]] = {key: [] for key in keys}
    for row in rows:
        key = by_fold.get(fold(PersonTerm(row.people_code_id, row.term)))
        if key is not None:
            grouped[key].append(row)
    return {key: tuple(found) for key, found in grouped.items()}


def person_table_persons(changes: Iterable[KeyChange]) -> list[str]:
    """The persons of person-table changes (no term of their own), first-seen order."""
    seen: dict[str, str] = {}
    for change in changes:
        if change.term is None and change.people_code_id is not None:
            seen.setdefault(collate(change.people_code_id), change.people_code_id)
    return list(seen.values())


def terms_of_persons(
    persons: Sequence[str], found: Iterable[Row], live: Sequence[TermKey]
) -> dict[str, list[TermKey]]:
    """(person, year, term) rows as each person's terms, only ``live`` ones if given."""
    wanted = {term.key() for term in live}
    terms: dict[str, dict[tuple[str, str], TermKey]] = {}
    for row in found:
        term = TermKey(academic_year=text(row[1]), academic_term=text(row[2]))
        if wanted and term.key() not in wanted:
            continue
        terms.setdefault(collate(text(row[0])), {}).setdefault(term.key(), term)
    return {p: list(terms.get(collate(p), {}).values()) for p in persons}


def touched(
    changes: Iterable[ChangeRow],
    keyed: Iterable[KeyChange],
    terms_of: Mapping[str, Sequence[TermKey]],
) -> list[PersonTerm]:
    """Every person-term a batch touches: rows, key changes, person-table changes."""
    seen: dict[tuple[str, str, str], PersonTerm] = {
        fold(key): key for key in person_terms(changes)
    }
    for change in keyed:
        if change.term is not None and change.people_code_id is not None:
            key = PersonTerm(change.people_code_id, change.term)
            seen.setdefault(fold(key), key)
    for person, terms in terms_of.items():
        for term in terms:
            seen.setdefault(fold(PersonTerm(person, term)), PersonTerm(person, term))
    return list(seen.values())


def term_params(terms: Sequence[TermKey]) -> list[str]:
    """The bound parameters of ``snapshot_query(len(terms))``."""
    params: list[str] = []
    for term in terms:
        params += [term.academic_year, term.academic_term]
    return params


def distinct_terms(rows: Iterable[Row]) -> list[TermKey]:
    """(year, term) rows as TermKeys, case-insensitive duplicates dropped."""
    seen: dict[tuple[str, str], TermKey] = {}
    for row in rows:
        term = TermKey(academic_year=text(row[0]), academic_term=text(row[1]))
        seen.setdefault(term.key(), term)
    return list(seen.values())
