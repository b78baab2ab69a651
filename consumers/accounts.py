"""Moodle accounts for people who have none, decided pure: person details in, an account out.

What an account is made from (``new_account``): PEOPLE's names (Nickname as the
first name when ``use_nickname`` and it is set), the primary EmailAddress (its
domain in ``email_domains`` when that is not empty), a username from the first
of ``username_sources`` that has a value (PersonUser.UserName, the e-mail's
local part, the idnumber; lowercased, as Moodle requires), the idnumber the
consumer finds people by, the configured ``auth`` plugin, and no password:
``createpassword=1`` where Moodle requires a password (its internal plugins,
recorded in sequence 4), nothing for external ones.

A person who cannot have an account made (no details, no e-mail, a domain not
allowed, no usable username) or whose username or e-mail another Moodle account
holds (``collision``) stays parked with that exact reason: a collision is never
guessed away by trying another name. Only names and e-mail of accounts we
created are kept up to date (``account_changes``); the username never changes.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from schemas.accounts import AccountEntry
from schemas.events import PersonDetails

__all__ = [
    "INTERNAL_AUTH",
    "AccountPolicy",
    "NewAccount",
    "UsernameSource",
    "account_changes",
    "account_entry",
    "account_fields",
    "collision",
    "new_account",
]

UsernameSource = Literal["personuser", "email_local_part", "idnumber"]
#: Moodle's own plugins whose ``is_internal()`` is true: an account needs a
#: password or ``createpassword`` (recorded: manual, nologin; read: the others).
INTERNAL_AUTH = frozenset({"manual", "nologin", "email", "none", "lti"})
#: Moodle's PARAM_USERNAME (without ``extendedusernamechars``), lowercase only.
_USERNAME = re.compile(r"[a-z0-9_.@-]+")
_EMAIL = re.compile(r"[^@\s]+@([^@\s]+\.[^@\s]+)")


@dataclass(frozen=True, slots=True)
class AccountPolicy:
    """The account settings (``[accounts]``)."""

    auth: str = "manual"
    use_nickname: bool = False
    username_sources: tuple[UsernameSource, ...] = (
        "personuser",
        "email_local_part",
        "idnumber",
    )
    email_domains: frozenset[str] = frozenset()
    create_password: bool | None = None

    def sends_createpassword(self) -> bool:
        """Whether new accounts get ``createpassword=1`` (Moodle makes and mails one)."""
        if self.create_password is not None:
            return self.create_password
        return self.auth in INTERNAL_AUTH


@dataclass(frozen=True, slots=True)
class NewAccount:
    """An account to create for one person."""

    people_code_id: str
    username: str
    idnumber: str
    auth: str
    firstname: str
    lastname: str
    middlename: str
    email: str
    createpassword: bool

    def as_param(self) -> dict[str, object]:
        """One ``users[i]`` item of ``core_user_create_users`` (never a password)."""
        user: dict[str, object] = {
            "username": self.username,
            "auth": self.auth,
            "firstname": self.firstname,
            "lastname": self.lastname,
            "email": self.email,
            "idnumber": self.idnumber,
        }
        if self.middlename:
            user["middlename"] = self.middlename
        if self.createpassword:
            user["createpassword"] = 1
        return user


def _names(person: PersonDetails, policy: AccountPolicy) -> tuple[str, str, str] | str:
    first = (person.first_name or "").strip()
    if policy.use_nickname and (person.nickname or "").strip():
        first = (person.nickname or "").strip()
    last = (person.last_name or "").strip()
    if not first or not last:
        return "PEOPLE has no first or last name for them (Moodle requires both)"
    return first, last, (person.middle_name or "").strip()


def _email(person: PersonDetails, policy: AccountPolicy) -> str:
    """The e-mail to use, or raises ``ValueError`` saying why there is none."""
    email = (person.email or "").strip()
    match = _EMAIL.fullmatch(email)
    if not email:
        raise ValueError("no active primary e-mail address in PowerCampus")
    if match is None:
        raise ValueError(f"the primary e-mail {email!r} is not an address")
    domain = match[1].lower()
    if policy.email_domains and domain not in policy.email_domains:
        allowed = ", ".join(sorted(policy.email_domains))
        raise ValueError(
            f"the primary e-mail {email!r} is not in an allowed domain ({allowed})"
        )
    return email


def _username(
    person: PersonDetails, email: str, idnumber: str, policy: AccountPolicy
) -> str:
    candidates: dict[UsernameSource, str] = {
        "personuser": (person.username or "").strip().lower(),
        "email_local_part": email.split("@", 1)[0].lower(),
        "idnumber": idnumber.strip().lower(),
    }
    refused: list[str] = []
    for source in policy.username_sources:
        name = candidates[source]
        if not name:
            continue
        if _USERNAME.fullmatch(name):
            return name
        refused.append(f"{source} {name!r}")
    detail = f" (not a Moodle username: {', '.join(refused)})" if refused else ""
    raise ValueError(f"no username from {', '.join(policy.username_sources)}{detail}")


def new_account(
    people_code_id: str,
    person: PersonDetails | None,
    idnumber: str,
    policy: AccountPolicy,
) -> NewAccount | str:
    """The account to create for the person, or the reason none can be made."""
    if person is None:
        return "no account details in the event (PEOPLE is not tracked)"
    names = _names(person, policy)
    if isinstance(names, str):
        return names
    try:
        email = _email(person, policy)
        username = _username(person, email, idnumber, policy)
    except ValueError as exc:
        return str(exc)
    first, last, middle = names
    return NewAccount(
        people_code_id=people_code_id,
        username=username,
        idnumber=idnumber,
        auth=policy.auth,
        firstname=first,
        lastname=last,
        middlename=middle,
        email=email,
        createpassword=policy.sends_createpassword(),
    )


def collision(
    account: NewAccount,
    by_username: Sequence[Mapping[str, object]],
    by_email: Sequence[Mapping[str, object]],
) -> str | None:
    """The exact reason another Moodle account stands in the way, or None.

    Called for a person the idnumber look-up did not find, so any account
    holding their username or e-mail is someone else's.
    """
    for user in by_username:
        if str(user.get("username", "")) == account.username:
            return (
                f"username {account.username!r} is taken by Moodle user "
                f"{user.get('id')} (idnumber {str(user.get('idnumber') or '')!r}); "
                "fix the login name in PowerCampus (PersonUser) or the other account"
            )
    for user in by_email:
        if str(user.get("email", "")).lower() == account.email.lower():
            return (
                f"e-mail {account.email!r} is taken by Moodle user {user.get('id')} "
                f"(username {str(user.get('username') or '')!r}); fix one of them"
            )
    return None


def account_fields(
    person: PersonDetails, policy: AccountPolicy
) -> dict[str, str] | None:
    """Names and e-mail as an account of the person should hold them (None: unknown)."""
    names = _names(person, policy)
    if isinstance(names, str):
        return None
    first, last, middle = names
    fields = {"firstname": first, "lastname": last, "middlename": middle}
    # an address that is missing or outside the allowed domains is not copied
    with contextlib.suppress(ValueError):
        fields["email"] = _email(person, policy)
    return fields


def account_changes(
    entry: AccountEntry, person: PersonDetails, policy: AccountPolicy
) -> dict[str, str]:
    """The names and e-mail that differ from what we last set (empty: none)."""
    wanted = account_fields(person, policy)
    if wanted is None:
        return {}  # an incomplete record never blanks an account
    held = {
        "firstname": entry.firstname,
        "lastname": entry.lastname,
        "middlename": entry.middlename,
        "email": entry.email,
    }
    return {key: value for key, value in wanted.items() if held[key] != value}


def account_entry(
    account: NewAccount,
    *,
    userid: int | None,
    event_id: str,
    state_version: int,
    uncertain: bool = False,
) -> AccountEntry:
    """The accounts book's entry for an account created (or being created)."""
    return AccountEntry(
        people_code_id=account.people_code_id,
        userid=userid,
        username=account.username,
        idnumber=account.idnumber,
        auth=account.auth,
        firstname=account.firstname,
        lastname=account.lastname,
        middlename=account.middlename,
        email=account.email,
        event_id=event_id,
        state_version=state_version,
        uncertain=uncertain,
    )
