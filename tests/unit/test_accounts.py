"""Accounts for new people, decided pure: what is made, what collides, what changes."""

from __future__ import annotations

import pytest

from consumers.accounts import (
    AccountPolicy,
    NewAccount,
    account_changes,
    account_entry,
    collision,
    new_account,
)
from schemas.events import PersonDetails

PERSON = PersonDetails(
    first_name="Amara",
    middle_name="Jo",
    last_name="Chen",
    nickname="Mara",
    email="Amara.Chen@students.example.edu",
    username="Amara.Chen",
)
POLICY = AccountPolicy()
NO_LOGIN = PERSON.model_copy(update={"username": None})
BAD_LOGIN = PERSON.model_copy(update={"username": "A Chen"})
ORG_ONLY = AccountPolicy(email_domains=frozenset({"example.org"}))
LOGIN_ONLY = AccountPolicy(username_sources=("personuser",))


def made(policy: AccountPolicy = POLICY, person: PersonDetails = PERSON) -> NewAccount:
    """The account made for PERSON (fails the test when none is)."""
    account = new_account("P000074001", person, "000074001", policy)
    assert isinstance(account, NewAccount), account
    return account


class TestNewAccount:
    """An account from PEOPLE, the primary e-mail and PersonUser, never with a password."""

    def test_from_powercampus(self) -> None:
        """Names, e-mail, a lowercased username, the idnumber, no password."""
        account = made()
        assert account.as_param() == {
            "username": "amara.chen",
            "auth": "manual",
            "firstname": "Amara",
            "lastname": "Chen",
            "email": "Amara.Chen@students.example.edu",
            "idnumber": "000074001",
            "middlename": "Jo",
            "createpassword": 1,
        }

    def test_nickname_when_configured(self) -> None:
        """use_nickname puts Nickname in the first name."""
        assert made(AccountPolicy(use_nickname=True)).firstname == "Mara"

    @pytest.mark.parametrize(
        ("auth", "createpassword"),
        [("manual", True), ("nologin", True), ("ldap", False), ("oauth2", False),
         ("saml2", False), ("oidc", False)],
    )  # fmt: skip
    def test_password_only_where_moodle_requires_one(
        self, auth: str, createpassword: bool
    ) -> None:
        """createpassword for Moodle's internal plugins (as recorded), never a password."""
        account = made(AccountPolicy(auth=auth))
        assert account.createpassword is createpassword
        assert "password" not in account.as_param()

    @pytest.mark.parametrize(
        ("sources", "person", "username"),
        [
            (("personuser", "email_local_part", "idnumber"), PERSON, "amara.chen"),
            (("email_local_part",), PERSON, "amara.chen"),
            (("idnumber",), PERSON, "000074001"),
            (("personuser", "idnumber"), NO_LOGIN, "000074001"),
            (("personuser", "email_local_part"), BAD_LOGIN, "amara.chen"),
        ],
    )  # fmt: skip
    def test_username_falls_back_only_when_missing(
        self,
        sources: tuple[str, ...],
        person: PersonDetails,
        username: str,
    ) -> None:
        """The first source with a usable value (a missing or invalid one is skipped)."""
        policy = AccountPolicy(username_sources=sources)  # type: ignore[arg-type]
        assert made(policy, person).username == username

    @pytest.mark.parametrize(
        ("person", "policy", "reason"),
        [
            (None, POLICY, "PEOPLE is not tracked"),
            (PERSON.model_copy(update={"email": None}), POLICY, "no active primary e-mail"),
            (PERSON.model_copy(update={"last_name": " "}), POLICY, "no first or last name"),
            (PERSON, ORG_ONLY, "not in an allowed domain"),
            (NO_LOGIN, LOGIN_ONLY, "no username from personuser"),
        ],
    )  # fmt: skip
    def test_none_made_says_why(
        self, person: PersonDetails | None, policy: AccountPolicy, reason: str
    ) -> None:
        """A person without what an account needs gets a reason, not a guess."""
        result = new_account("P000074001", person, "000074001", policy)
        assert isinstance(result, str)
        assert reason in result

    def test_allowed_domain_is_case_insensitive(self) -> None:
        """Domains compare lowercased."""
        policy = AccountPolicy(email_domains=frozenset({"students.example.edu"}))
        assert made(policy).email == PERSON.email


class TestCollision:
    """A username or e-mail held by another account parks the person, exactly why."""

    def test_username_taken(self) -> None:
        """The reason names the username and the account that holds it."""
        reason = collision(
            made(), [{"id": 12, "username": "amara.chen", "idnumber": ""}], []
        )
        assert reason is not None
        assert "username 'amara.chen' is taken by Moodle user 12" in reason

    def test_email_taken_in_any_case(self) -> None:
        """Moodle compares e-mails case-insensitively (recorded), so do we."""
        taken = [{"id": 9, "email": "amara.chen@students.example.edu"}]
        reason = collision(made(), [], taken)
        assert reason is not None
        assert "is taken by Moodle user 9" in reason

    def test_free(self) -> None:
        """Look-up answers for other values are no collision."""
        assert collision(made(), [{"id": 1, "username": "other"}], []) is None


class TestAccountChanges:
    """Only names and e-mail of accounts we made are kept as PowerCampus has them."""

    def test_changes(self) -> None:
        """A new last name and e-mail differ from what we set; the username never."""
        entry = account_entry(made(), userid=40, event_id="e", state_version=1)
        renamed = PERSON.model_copy(
            update={"last_name": "Chen-Li", "email": "a.chenli@students.example.edu"}
        )
        assert account_changes(entry, renamed, POLICY) == {
            "lastname": "Chen-Li",
            "email": "a.chenli@students.example.edu",
        }
        assert account_changes(entry, PERSON, POLICY) == {}

    def test_incomplete_record_never_blanks(self) -> None:
        """A missing name or e-mail leaves the account's value as it is."""
        entry = account_entry(made(), userid=40, event_id="e", state_version=1)
        assert (
            account_changes(entry, PERSON.model_copy(update={"email": None}), POLICY)
            == {}
        )
        assert (
            account_changes(
                entry, PERSON.model_copy(update={"first_name": None}), POLICY
            )
            == {}
        )
