"""PEOPLE_CODE_ID -> Moodle user id, never guessing.

``transform_people_code_id`` and ``classify_lookup`` are pure; ``IdentityResolver``
adds the look-up (one ``get_users_by_field`` call per ``resolve``, which the
client splits into requests within ``max_input_vars``) and a cache of users found.
Misses and ambiguities are not cached: an account created or fixed later must be
found on the next attempt. A found id that Moodle later says does not exist (an
account merged or recreated) is dropped with ``forget``.

Ids are compared as strings only: ``P000123456`` becomes ``000123456`` under
``strip_p`` and keeps its leading zeros.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

__all__ = [
    "Ambiguous",
    "Found",
    "IdentityResolver",
    "Missing",
    "Resolution",
    "Transform",
    "UserField",
    "UserLookup",
    "classify_lookup",
    "transform_people_code_id",
]

Transform = Literal["strip_p", "none", "lower"]
#: The Moodle user field a person is looked up by.
UserField = Literal["id", "idnumber", "username", "email"]


@dataclass(frozen=True, slots=True)
class Found:
    """Exactly one Moodle account carries the value."""

    userid: int


@dataclass(frozen=True, slots=True)
class Missing:
    """No Moodle account carries the value (or it cannot be looked up)."""

    reason: str
    #: The reason as a closed vocabulary (a metric label): ``no_user``,
    #: ``empty_id`` or ``not_looked_up``.
    code: str = "no_user"


@dataclass(frozen=True, slots=True)
class Ambiguous:
    """Several Moodle accounts carry the value; an operator must merge or fix them."""

    userids: tuple[int, ...]
    reason: str
    code: str = "several_users"


Resolution = Found | Missing | Ambiguous


class UserLookup(Protocol):
    """The one client call the resolver needs (``MoodleClient`` satisfies it)."""

    async def get_users_by_field(
        self, field: UserField, values: Sequence[str]
    ) -> list[dict[str, object]]:
        """Users whose ``field`` equals one of ``values``; unknown values are absent."""
        ...


def transform_people_code_id(people_code_id: str, transform: Transform) -> str:
    """The Moodle field value for a PEOPLE_CODE_ID (surrounding blanks removed first).

    ``strip_p`` drops one leading ``P``/``p`` (``P000123456`` -> ``000123456``) and
    leaves a value without one unchanged; ``none`` keeps the id; ``lower`` lowercases
    it (for ``username``).
    """
    value = people_code_id.strip()
    if transform == "strip_p":
        return value[1:] if value[:1] in {"P", "p"} else value
    if transform == "lower":
        return value.lower()
    return value


def classify_lookup(
    value: str, users: Iterable[Mapping[str, object]], field: UserField
) -> Resolution:
    """Decide what the users returned for a look-up mean for one ``value``.

    Only users whose ``field`` equals ``value`` exactly (as strings) count, so one
    batched answer can be classified per value.
    """
    if not value:
        return Missing(reason=f"empty {field}: nothing to look up", code="empty_id")
    userids = sorted(
        {
            int(str(user["id"]))
            for user in users
            if str(user.get(field, "")) == value and "id" in user
        }
    )
    if not userids:
        return Missing(reason=f"no Moodle user has {field}={value!r}")
    if len(userids) > 1:
        return Ambiguous(
            userids=tuple(userids),
            reason=f"{len(userids)} Moodle users share {field}={value!r}",
        )
    return Found(userid=userids[0])


class IdentityResolver:
    """Resolve PEOPLE_CODE_IDs to Moodle user ids through ``field`` and ``transform``.

    Found users are cached (an id does not move to another account in normal
    operation) until ``forget`` drops one: the caller does so when Moodle answers
    that the cached user does not exist, so the next ``resolve`` looks it up again.
    """

    def __init__(
        self,
        client: UserLookup,
        *,
        field: UserField = "idnumber",
        transform: Transform = "strip_p",
    ) -> None:
        self._client = client
        self.field: UserField = field
        self.transform: Transform = transform
        self._found: dict[str, int] = {}
        #: Moodle user id → full name, as the look-ups answered (for reports).
        self.fullnames: dict[int, str] = {}

    async def resolve(self, people_code_ids: Iterable[str]) -> dict[str, Resolution]:
        """A ``Resolution`` for every distinct id given, keyed by the id as given.

        Uncached ids are looked up with one ``get_users_by_field`` call. Client
        errors (``TargetUnavailable``, ``TargetRefused``...) propagate.
        """
        result: dict[str, Resolution] = {}
        pending: dict[str, str] = {}
        for people_code_id in dict.fromkeys(people_code_ids):
            if people_code_id in self._found:
                result[people_code_id] = Found(self._found[people_code_id])
            else:
                pending[people_code_id] = transform_people_code_id(
                    people_code_id, self.transform
                )
        values = [value for value in dict.fromkeys(pending.values()) if value]
        users = (
            await self._client.get_users_by_field(self.field, values) if values else []
        )
        for user in users:
            name = user.get("fullname")
            if name and "id" in user:
                self.fullnames[int(str(user["id"]))] = str(name)
        # Grouped by the field once: classifying each value against every user
        # was quadratic (600 people a batch of a burst: 360,000 comparisons).
        by_value: dict[str, list[Mapping[str, object]]] = {}
        for user in users:
            by_value.setdefault(str(user.get(self.field, "")), []).append(user)
        for people_code_id, value in pending.items():
            resolution = classify_lookup(value, by_value.get(value, []), self.field)
            if isinstance(resolution, Found):
                self._found[people_code_id] = resolution.userid
            result[people_code_id] = resolution
        return result

    def forget(self, people_code_id: str) -> None:
        """Drop the cached user id of ``people_code_id`` (no-op when none is cached).

        For an account an operator merged or recreated: the next ``resolve`` asks
        Moodle again instead of answering with an id that no longer exists.
        """
        self._found.pop(people_code_id, None)
