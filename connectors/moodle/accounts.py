"""Accounts in Moodle: ``core_user_create_users`` and ``core_user_update_users``.

Built on one checked ``call`` (no aiohttp here). What the recordings of sequence 4
teach, and this module respects:

* ``core_user_create_users`` runs a request in one transaction and refuses any
  problem with a bare ``invalidparameter`` (which one: only in ``debuginfo``,
  with debugging on), so each account goes in a request of its own: a refusal
  is then that person's, and the others are created;
* no password is ever sent: ``createpassword=1`` where the policy says so;
* ``core_user_update_users`` answers ``{"warnings": [...]}``, updates each user
  in its own transaction and names each refused one in a warning
  (``useremailduplicate``, ``useremailinvalid``, ``invaliduserid``…): those are
  rejected, the rest done.

Every account is reported done, rejected (an ``ActionRejected``) or unknown.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence

import structlog

from connectors.moodle.errors import MoodleBadResponse, MoodleError, MoodleRejected
from connectors.moodle.form import ROUTING_FIELDS, chunk_by_fields, encode_params
from consumers.accounts import NewAccount
from consumers.errors import ActionRejected
from consumers.ports import AccountOutcomes
from consumers.tasks import run_all

__all__ = ["CREATE_USERS", "UPDATE_USERS", "MoodleAccountWrites"]

log = structlog.get_logger()

CREATE_USERS = "core_user_create_users"
UPDATE_USERS = "core_user_update_users"


class MoodleAccountWrites(ABC):
    """Account calls; subclasses provide ``call`` and ``max_input_vars``."""

    max_input_vars: int

    @abstractmethod
    async def call(self, function: str, params: Mapping[str, object]) -> object:
        """One checked web-service call (see ``MoodleClient.call``)."""

    async def create_accounts(self, accounts: Sequence[NewAccount]) -> AccountOutcomes:
        """Create each account in a request of its own; every one is reported."""
        outcomes = AccountOutcomes()

        async def create(account: NewAccount) -> None:
            person = account.people_code_id
            try:
                answer = await self.call(CREATE_USERS, {"users": [account.as_param()]})
                userid = _created_id(answer, account.username)
            except MoodleRejected as error:
                outcomes.rejected[person] = error
            except MoodleError as error:
                outcomes.unknown[person] = error
            else:
                outcomes.done[person] = userid

        await run_all(create(account) for account in accounts)
        log.info(
            "moodle_accounts_created",
            created=len(outcomes.done),
            rejected=len(outcomes.rejected),
            unknown=len(outcomes.unknown),
        )
        return outcomes

    async def update_accounts(
        self, updates: Sequence[tuple[str, int, Mapping[str, str]]]
    ) -> AccountOutcomes:
        """Set names and e-mail on accounts; a warning rejects that user only."""
        outcomes = AccountOutcomes()
        rows = [{"id": userid, **fields} for _, userid, fields in updates]
        person_of = {userid: person for person, userid, _ in updates}
        sizes = [len(encode_params({"users": [row]})) for row in rows]
        for chunk in chunk_by_fields(rows, sizes, self.max_input_vars - ROUTING_FIELDS):
            ids = [int(str(row["id"])) for row in chunk]
            try:
                answer = await self.call(UPDATE_USERS, {"users": chunk})
                refused = _warnings(answer)
            except MoodleError as error:
                for userid in ids:
                    if isinstance(error, ActionRejected):
                        outcomes.rejected[person_of[userid]] = error
                    else:
                        outcomes.unknown[person_of[userid]] = error
                continue
            for userid in ids:
                person = person_of[userid]
                if userid in refused:
                    outcomes.rejected[person] = refused[userid]
                else:
                    outcomes.done[person] = userid
        return outcomes


def _created_id(answer: object, username: str) -> int:
    if (
        not isinstance(answer, list)
        or len(answer) != 1
        or not isinstance(answer[0], dict)
        or "id" not in answer[0]
    ):
        raise MoodleBadResponse(f"{CREATE_USERS}: expected [{{id, username}}]")
    if answer[0].get("username") != username:
        raise MoodleBadResponse(f"{CREATE_USERS}: answered another username")
    return int(str(answer[0]["id"]))


def _warnings(answer: object) -> dict[int, MoodleRejected]:
    """The users a ``core_user_update_users`` answer refused, with why."""
    warnings = answer.get("warnings") if isinstance(answer, dict) else None
    if not isinstance(warnings, list):
        raise MoodleBadResponse(f"{UPDATE_USERS}: expected {{warnings: [...]}}")
    refused: dict[int, MoodleRejected] = {}
    for warning in warnings:
        if isinstance(warning, dict) and warning.get("item") == "user":
            refused[int(str(warning.get("itemid")))] = MoodleRejected(
                str(warning.get("warningcode", "")),
                str(warning.get("message", "")),
                function=UPDATE_USERS,
            )
    return refused
