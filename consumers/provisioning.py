"""Accounts for new people, and names kept up to date: the runner's step before planning.

``Provisioning.provide`` runs after identities are resolved. A person the
idnumber look-up did not find, who some decision wants enrolled, and whose
event carries account details, gets an account (``consumers.accounts``): first
the collision check (``core_user_get_users_by_field`` by username, and by e-mail,
which finds nobody for a token that may not see e-mails: then Moodle's own
refusal names it, with debugging on), then ``core_user_create_users`` one
account per request, so each refusal is the person's own. The intent is
recorded in the accounts book first (``uncertain``): a creation whose answer
was lost is recognised next time, when the idnumber look-up finds the account.
A person who cannot get one stays ``Missing`` with the exact reason, and is
parked with it.

``Provisioning.update`` keeps names and e-mail of the accounts in the book (and
only those) as PowerCampus has them, with ``core_user_update_users``; a refusal
(another account holds the new e-mail) is logged and retried with the next
change. An unknown outcome of either raises the error (the batch is retried).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import structlog

from consumers.account_book import AccountBook
from consumers.accounts import (
    AccountPolicy,
    NewAccount,
    account_changes,
    account_entry,
    collision,
    new_account,
)
from consumers.batching import Decision
from consumers.errors import ActionRejected
from consumers.identity import (
    Found,
    Missing,
    Resolution,
    Transform,
    transform_people_code_id,
)
from consumers.ports import MoodleAccounts
from schemas.accounts import AccountEntry
from schemas.collation import collate
from schemas.events import EnrolmentEvent

log = structlog.get_logger()

__all__ = ["Provisioning", "ProvisioningStats"]


@dataclass(slots=True)
class ProvisioningStats:
    """Counters since start."""

    created: int = 0
    updated: int = 0
    refused: int = 0


def _latest(events: Sequence[EnrolmentEvent]) -> dict[str, EnrolmentEvent]:
    """The newest event of each person (by state_version, the later on a tie)."""
    latest: dict[str, EnrolmentEvent] = {}
    for event in events:
        held = latest.get(collate(event.people_code_id))
        if held is None or held.state_version <= event.state_version:
            latest[collate(event.people_code_id)] = event
    return latest


def _refused(account: NewAccount, error: ActionRejected) -> str:
    """The parked reason for a creation Moodle refused, as exactly as Moodle says it."""
    detail = getattr(error, "debuginfo", None)
    why = (
        f" ({detail})"
        if detail
        else " (Moodle says which only with debugging on: e.g. an e-mail taken in "
        f"another case, or the auth plugin {account.auth!r} is not installed)"
    )
    return f"Moodle refused to create account {account.username!r}: {error}{why}"


class Provisioning:
    """Creates the Moodle accounts people lack and keeps ours up to date."""

    def __init__(
        self,
        moodle: MoodleAccounts,
        book: AccountBook,
        policy: AccountPolicy,
        *,
        transform: Transform = "strip_p",
    ) -> None:
        self.moodle = moodle
        self.book = book
        self.policy = policy
        self.transform: Transform = transform
        self.stats = ProvisioningStats()

    async def provide(
        self,
        events: Sequence[EnrolmentEvent],
        decisions: Sequence[Decision],
        identities: Mapping[str, Resolution],
    ) -> dict[str, Resolution]:
        """``identities`` with an account made for each person who needs one and can have it."""
        result = dict(identities)
        latest = _latest(events)
        wanted = {d.desired.people_code_id for d in decisions if d.desired.active}
        accounts: dict[str, NewAccount] = {}
        for person in sorted(wanted):
            if not isinstance(result.get(person), Missing):
                continue
            event = latest[collate(person)]
            idnumber = transform_people_code_id(person, self.transform)
            made = new_account(person, event.person, idnumber, self.policy)
            if isinstance(made, str):
                result[person] = Missing(f"no Moodle account, and none is made: {made}")
            else:
                accounts[person] = made
        accounts = await self._without_collisions(accounts, result)
        if accounts:
            await self._create(accounts, latest, result)
        return result

    async def _without_collisions(
        self, accounts: dict[str, NewAccount], result: dict[str, Resolution]
    ) -> dict[str, NewAccount]:
        if not accounts:
            return {}
        names = [a.username for a in accounts.values()]
        emails = [a.email for a in accounts.values()]
        by_username = await self.moodle.get_users_by_field("username", names)
        by_email = await self.moodle.get_users_by_field("email", emails)
        free: dict[str, NewAccount] = {}
        for person, account in accounts.items():
            reason = collision(account, by_username, by_email)
            if reason is None:
                free[person] = account
            else:
                self.stats.refused += 1
                result[person] = Missing(
                    f"no Moodle account, and none is made: {reason}"
                )
        return free

    async def _create(
        self,
        accounts: Mapping[str, NewAccount],
        latest: Mapping[str, EnrolmentEvent],
        result: dict[str, Resolution],
    ) -> None:
        def entry(
            person: str, userid: int | None, *, uncertain: bool = False
        ) -> AccountEntry:
            event = latest[collate(person)]
            return account_entry(
                accounts[person],
                userid=userid,
                event_id=event.event_id,
                state_version=event.state_version,
                uncertain=uncertain,
            )

        # Intent first: a creation cut off after Moodle made it is recognised.
        await self.book.record([entry(p, None, uncertain=True) for p in accounts])
        outcomes = await self.moodle.create_accounts(list(accounts.values()))
        await self.book.record([entry(p, uid) for p, uid in outcomes.done.items()])
        await self.book.forget(list(outcomes.rejected))
        for person, userid in outcomes.done.items():
            result[person] = Found(userid)
            self.stats.created += 1
            log.info(
                "account_created",
                people_code_id=person,
                userid=userid,
                username=accounts[person].username,
            )
        for person, error in outcomes.rejected.items():
            self.stats.refused += 1
            result[person] = Missing(
                f"no Moodle account, and none is made: {_refused(accounts[person], error)}"
            )
        if outcomes.unknown:
            raise next(iter(outcomes.unknown.values()))

    async def update(
        self,
        events: Sequence[EnrolmentEvent],
        identities: Mapping[str, Resolution],
    ) -> None:
        """Set changed names and e-mail on the accounts we created (never on others)."""
        latest = _latest(events)
        updates: list[tuple[str, int, Mapping[str, str]]] = []
        settled = []
        for person, resolution in identities.items():
            entry = self.book.get(person)
            event = latest.get(collate(person))
            if entry is None or event is None or not isinstance(resolution, Found):
                continue
            if entry.userid is None:
                # our creation's answer was lost; the idnumber found the account
                entry = entry.model_copy(
                    update={"userid": resolution.userid, "uncertain": False}
                )
                settled.append(entry)
            if entry.userid != resolution.userid or event.person is None:
                continue  # not the account we made (merged, recreated by hand)
            if event.state_version < entry.state_version:
                continue
            changes = account_changes(entry, event.person, self.policy)
            if changes:
                updates.append((person, resolution.userid, changes))
        await self.book.record(settled)
        if not updates:
            return
        outcomes = await self.moodle.update_accounts(updates)
        await self._record_updates(updates, outcomes.done, latest)
        for person, error in outcomes.rejected.items():
            log.warning(
                "account_update_refused",
                people_code_id=person,
                reason=str(error),
                hint="retried with the person's next change",
            )
        if outcomes.unknown:
            raise next(iter(outcomes.unknown.values()))

    async def _record_updates(
        self,
        updates: Sequence[tuple[str, int, Mapping[str, str]]],
        done: Mapping[str, int],
        latest: Mapping[str, EnrolmentEvent],
    ) -> None:
        entries = []
        for person, _, changes in updates:
            entry = self.book.get(person)
            if person not in done or entry is None:
                continue
            event = latest[collate(person)]
            entries.append(
                entry.model_copy(
                    update={
                        **changes,
                        "event_id": event.event_id,
                        "state_version": event.state_version,
                    }
                )
            )
            self.stats.updated += 1
            log.info("account_updated", people_code_id=person, fields=sorted(changes))
        await self.book.record(entries)
