"""The accounts book: every Moodle account enrolstream created, durably.

Home: a compacted Kafka topic keyed by PEOPLE_CODE_ID (as PowerCampus's
collation compares it), like the ledger; read whole at start-up. Only accounts
in the book are ever updated: an account someone else made is never touched.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import structlog

from consumers.ledger import TableStore
from schemas.accounts import AccountEntry
from schemas.collation import collate

log = structlog.get_logger()


def account_key(people_code_id: str) -> bytes:
    """The accounts topic's key for one person."""
    return collate(people_code_id).encode()


class AccountBook:
    """In-memory view of the accounts topic, written through on every change."""

    def __init__(self, table: TableStore) -> None:
        self._table = table
        self._entries: dict[bytes, AccountEntry] = {}

    async def load(self) -> int:
        """Read the whole topic; returns the number of accounts."""
        rows = await self._table.load()
        self._entries = {
            key: AccountEntry.model_validate_json(value) for key, value in rows.items()
        }
        log.info("accounts_loaded", accounts=len(self._entries))
        return len(self._entries)

    def get(self, people_code_id: str) -> AccountEntry | None:
        """The account we created for the person, if any."""
        return self._entries.get(account_key(people_code_id))

    def __iter__(self) -> Iterator[AccountEntry]:
        return iter(list(self._entries.values()))

    def __len__(self) -> int:
        return len(self._entries)

    async def record(self, entries: Sequence[AccountEntry]) -> None:
        """Write entries durably (acknowledged), then update the in-memory view."""
        if not entries:
            return
        rows = [(account_key(e.people_code_id), e) for e in entries]
        await self._table.put([(k, e.model_dump_json().encode()) for k, e in rows])
        self._entries.update(rows)

    async def forget(self, people_code_ids: Sequence[str]) -> None:
        """Delete entries (a creation Moodle refused: no account was made)."""
        keys = [account_key(p) for p in people_code_ids]
        if not keys:
            return
        await self._table.put([(key, None) for key in keys])
        for key in keys:
            self._entries.pop(key, None)
