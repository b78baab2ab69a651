"""PEOPLE_CODE_ID transforms, look-up classification, and the resolver over a fake."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from consumers.identity import (
    Ambiguous,
    Found,
    IdentityResolver,
    Missing,
    Resolution,
    Transform,
    UserField,
    classify_lookup,
    transform_people_code_id,
)


class TestTransform:
    """The PEOPLE_CODE_ID becomes the Moodle field value as configured."""

    @pytest.mark.parametrize(
        ("people_code_id", "transform", "expected"),
        [
            ("P000123456", "strip_p", "000123456"),
            ("p000123456", "strip_p", "000123456"),
            ("000123456", "strip_p", "000123456"),
            (" P000000001 ", "strip_p", "000000001"),
            ("PP12", "strip_p", "P12"),
            ("P", "strip_p", ""),
            ("P000123456", "none", "P000123456"),
            ("P000123456", "lower", "p000123456"),
        ],
    )
    def test_transform(
        self, people_code_id: str, transform: Transform, expected: str
    ) -> None:
        """Leading zeros survive; only one leading P is removed by strip_p."""
        assert transform_people_code_id(people_code_id, transform) == expected


USERS = [
    {"id": 4, "idnumber": "P000123456", "username": "p000123456"},
    {"id": 12, "idnumber": "P000123456", "username": "p000200004"},
    {"id": 5, "idnumber": "P000123457", "username": "p000123457"},
    {"id": 6, "idnumber": "000123458", "username": "p000123458"},
]


class TestClassifyLookup:
    """One value against a batched answer: found, missing or ambiguous."""

    @pytest.mark.parametrize(
        ("value", "field", "expected"),
        [
            ("P000123457", "idnumber", Found(5)),
            ("000123458", "idnumber", Found(6)),
            ("123458", "idnumber", Missing("no Moodle user has idnumber='123458'")),
            (
                "p000123457",
                "idnumber",
                Missing("no Moodle user has idnumber='p000123457'"),
            ),
            (
                "P000123456",
                "idnumber",
                Ambiguous((4, 12), "2 Moodle users share idnumber='P000123456'"),
            ),
            ("p000200004", "username", Found(12)),
            (
                "",
                "idnumber",
                Missing("empty idnumber: nothing to look up", code="empty_id"),
            ),
        ],
    )
    def test_classify(self, value: str, field: UserField, expected: Resolution) -> None:
        """Exact string match on the field decides; never a guess between accounts."""
        assert classify_lookup(value, USERS, field) == expected

    def test_same_user_twice_is_found(self) -> None:
        """A user appearing twice in the answer (two chunks) is still one user."""
        assert classify_lookup("P000123457", [USERS[2], USERS[2]], "idnumber") == Found(
            5
        )


class FakeLookup:
    """Answers from a list of users and records each call's values."""

    def __init__(self, users: list[dict[str, object]]) -> None:
        self.users = users
        self.calls: list[list[str]] = []

    async def get_users_by_field(
        self, field: UserField, values: Sequence[str]
    ) -> list[dict[str, object]]:
        """Users whose field is one of values."""
        self.calls.append(list(values))
        return [user for user in self.users if user.get(field) in values]


class TestIdentityResolver:
    """Batched look-ups, cached hits, uncached misses."""

    async def test_one_call_for_many_ids(self) -> None:
        """Uncached ids are looked up together, each transformed once."""
        lookup = FakeLookup([dict(u) for u in USERS])
        resolver = IdentityResolver(lookup, field="idnumber", transform="none")
        result = await resolver.resolve(["P000123457", "P000123456", "P000999999"])
        assert lookup.calls == [["P000123457", "P000123456", "P000999999"]]
        assert result["P000123457"] == Found(5)
        assert isinstance(result["P000123456"], Ambiguous)
        assert isinstance(result["P000999999"], Missing)

    async def test_found_is_cached_misses_are_not(self) -> None:
        """A second resolve asks only for what was not found, and finds a late user."""
        lookup = FakeLookup([dict(USERS[2])])
        resolver = IdentityResolver(lookup, transform="none")
        await resolver.resolve(["P000123457", "P000300000"])
        lookup.users.append({"id": 40, "idnumber": "P000300000"})
        result = await resolver.resolve(["P000123457", "P000300000"])
        assert lookup.calls[1] == ["P000300000"]
        assert result == {"P000123457": Found(5), "P000300000": Found(40)}

    async def test_all_cached_makes_no_call(self) -> None:
        """When every id is cached no look-up happens."""
        lookup = FakeLookup([dict(USERS[3])])
        resolver = IdentityResolver(lookup)  # strip_p on idnumber
        await resolver.resolve(["P000123458"])
        assert await resolver.resolve(["P000123458"]) == {"P000123458": Found(6)}
        assert len(lookup.calls) == 1

    async def test_empty_value_is_missing_without_lookup(self) -> None:
        """An id that transforms to nothing is Missing and never sent to Moodle."""
        lookup = FakeLookup([])
        result = await IdentityResolver(lookup).resolve(["P"])
        assert isinstance(result["P"], Missing)
        assert lookup.calls == []

    async def test_forget_looks_up_again(self) -> None:
        """After forget, a recreated account's new id is found instead of the cached one."""
        lookup = FakeLookup([{"id": 5, "idnumber": "000123457"}])
        resolver = IdentityResolver(lookup)
        assert await resolver.resolve(["P000123457"]) == {"P000123457": Found(5)}
        lookup.users = [{"id": 77, "idnumber": "000123457"}]  # merged into a new one
        assert await resolver.resolve(["P000123457"]) == {"P000123457": Found(5)}
        resolver.forget("P000123457")
        assert await resolver.resolve(["P000123457"]) == {"P000123457": Found(77)}
        assert lookup.calls == [["000123457"], ["000123457"]]

    async def test_forget_gone_account_is_missing(self) -> None:
        """A forgotten id whose account was deleted resolves Missing, not the stale id."""
        lookup = FakeLookup([{"id": 5, "idnumber": "000123457"}])
        resolver = IdentityResolver(lookup)
        await resolver.resolve(["P000123457"])
        lookup.users = []
        resolver.forget("P000123457")
        assert isinstance(
            (await resolver.resolve(["P000123457"]))["P000123457"], Missing
        )

    def test_forget_unknown_id_is_a_no_op(self) -> None:
        """Forgetting an id never resolved (or forgotten twice) raises nothing."""
        resolver = IdentityResolver(FakeLookup([]))
        resolver.forget("P000000001")
        resolver.forget("P000000001")
