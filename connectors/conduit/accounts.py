"""Accounts on a Conduit site: ``create`` and ``update`` rows of Conduit's user file.

``consumers.provisioning`` decides who needs an account and what changed, as for
web services; this adapter of ``MoodleAccounts`` writes its decisions as user rows
in the outbox's open window (delivered before the enrolment file of the same
window). Who has an account, and whose username or e-mail is taken, can only be
read in Moodle: ``get_users_by_field`` is the web-service client's (so accounts
need ``conduit.web_services``). A created account's number is the one the
Conduit sink gives the person (``conduit_userid``): Conduit finds them by idnumber.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from connectors.conduit.files import USERS, ConduitFormat
from connectors.conduit.identity import conduit_userid
from consumers.account_book import AccountBook
from consumers.accounts import NewAccount
from consumers.errors import TargetError
from consumers.identity import UserField
from consumers.outbox import Outbox
from consumers.ports import AccountOutcomes, MoodleAccounts

__all__ = ["ConduitAccounts"]


class ConduitAccounts:
    """``consumers.ports.MoodleAccounts`` writing Conduit's user file."""

    def __init__(
        self,
        moodle: MoodleAccounts,
        outbox: Outbox,
        file_format: ConduitFormat,
        book: AccountBook,
    ) -> None:
        """``moodle``: the web-service client, for the look-ups only."""
        self.moodle = moodle
        self.outbox = outbox
        self.format = file_format
        self.book = book

    async def get_users_by_field(
        self, field: UserField, values: Sequence[str]
    ) -> list[dict[str, object]]:
        """Moodle's users (read through web services)."""
        return await self.moodle.get_users_by_field(field, values)

    async def create_accounts(self, accounts: Sequence[NewAccount]) -> AccountOutcomes:
        """One ``create`` row per account, queued together."""
        rows = [
            self.format.row(
                USERS,
                {
                    "action": self.format.layout.create,
                    "username": account.username,
                    "idnumber": account.idnumber,
                    "firstname": account.firstname,
                    "lastname": account.lastname,
                    "email": account.email,
                    "auth": account.auth,
                },
            )
            for account in accounts
        ]
        outcomes = AccountOutcomes()
        try:
            self.outbox.queue(rows, {})
        except TargetError as error:
            outcomes.unknown = {a.people_code_id: error for a in accounts}
            return outcomes
        outcomes.done = {a.people_code_id: conduit_userid(a.idnumber) for a in accounts}
        return outcomes

    async def update_accounts(
        self, updates: Sequence[tuple[str, int, Mapping[str, str]]]
    ) -> AccountOutcomes:
        """One ``update`` row per account (every column: a blank one could clear it)."""
        rows = []
        outcomes = AccountOutcomes()
        for person, userid, changes in updates:
            entry = self.book.get(person)
            if entry is None:
                continue  # provisioning updates only accounts in the book
            values = {
                "username": entry.username,
                "idnumber": entry.idnumber,
                "firstname": entry.firstname,
                "lastname": entry.lastname,
                "email": entry.email,
                "auth": entry.auth,
                **changes,
                "action": self.format.layout.update,
            }
            rows.append(self.format.row(USERS, values))
            outcomes.done[person] = userid
        try:
            self.outbox.queue(rows, {})
        except TargetError as error:
            outcomes.unknown = dict.fromkeys(outcomes.done, error)
            outcomes.done = {}
        return outcomes
