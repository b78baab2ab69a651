"""Chunking and bisection of enrol/unenrol rows, with a scripted all-or-nothing sender."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from connectors.moodle.batch import EnrolRow, apply_rows, balanced_chunks
from connectors.moodle.errors import (
    MoodleCodingError,
    MoodleNotFound,
    MoodleRejected,
    MoodleUnavailable,
)
from consumers.tasks import run_all


class AllOrNothing:
    """Rejects a request if it holds any bad row, like Moodle's one transaction."""

    def __init__(
        self, bad: set[int], error: type[MoodleRejected] = MoodleNotFound
    ) -> None:
        self.bad = bad
        self.error = error
        self.requests: list[list[int]] = []
        self.landed: list[int] = []

    async def __call__(self, rows: Sequence[EnrolRow]) -> None:
        """One request: all rows land, or none."""
        ids = [row.userid for row in rows]
        self.requests.append(ids)
        if self.bad & set(ids):
            raise self.error("invalidrecordunknown", "Can't find data record")
        self.landed.extend(ids)


def rows(count: int) -> list[EnrolRow]:
    """count distinct rows with userid 0..count-1."""
    return [EnrolRow(userid, 2, 5) for userid in range(count)]


class TestApplyRows:
    """Good rows land past bad ones; exactly the bad ones are reported."""

    @pytest.mark.parametrize(
        ("count", "max_rows", "bad"),
        [
            (10, 4, set()),
            (10, 10, {3}),
            (10, 10, {0, 9}),
            (17, 5, {1, 2, 3, 16}),
            (1, 1, {0}),
            (64, 64, set(range(64))),
        ],
    )
    async def test_bisects(self, count: int, max_rows: int, bad: set[int]) -> None:
        """Applied + rejected partition the input; landed rows are exactly the good."""
        sender = AllOrNothing(bad)
        result = await apply_rows(rows(count), sender, max_rows=max_rows)
        assert [row.userid for row in result.applied] == [
            i for i in range(count) if i not in bad
        ]
        assert [row.userid for row, _ in result.rejected] == sorted(bad)
        assert all(isinstance(error, MoodleNotFound) for _, error in result.rejected)
        assert sorted(sender.landed) == [i for i in range(count) if i not in bad]
        assert max(len(request) for request in sender.requests) <= max_rows

    async def test_one_bad_row_costs_logarithmic_requests(self) -> None:
        """One bad row among 128 needs 1 + 2*log2(128) requests, not 128."""
        sender = AllOrNothing({77})
        await apply_rows(rows(128), sender, max_rows=128)
        assert len(sender.requests) == 1 + 2 * 7

    async def test_request_level_rejection_is_not_bisected(self) -> None:
        """A codingerror is not pinned on rows: the request's rows are reported, unsplit."""
        sender = AllOrNothing({0}, error=MoodleCodingError)
        result = await apply_rows(rows(8), sender, max_rows=8)
        assert len(sender.requests) == 1
        assert [row.userid for row, _ in result.unknown] == list(range(8))
        assert all(isinstance(e, MoodleCodingError) for _, e in result.unknown)
        assert (result.applied, result.rejected) == ([], [])

    async def test_unanswered_request_is_unknown(self) -> None:
        """An unanswered request's rows are unknown; nothing is reported applied."""

        async def down(chunk: Sequence[EnrolRow]) -> None:
            raise MoodleUnavailable("connection refused")

        result = await apply_rows(rows(3), down, max_rows=1)
        assert [row.userid for row, _ in result.unknown] == [0, 1, 2]
        assert result.applied == []

    async def test_siblings_keep_their_answers(self) -> None:
        """A chunk whose reply is lost never hides what the other chunks landed."""
        landed: list[int] = []

        async def second_chunk_lost(chunk: Sequence[EnrolRow]) -> None:
            landed.extend(row.userid for row in chunk)  # Moodle applies every chunk
            if chunk[0].userid == 4:
                raise MoodleUnavailable("reply lost after Moodle applied it")

        result = await apply_rows(
            rows(12), second_chunk_lost, max_rows=4, lanes=3, min_rows=1
        )
        assert sorted(landed) == list(range(12))
        assert [row.userid for row in result.applied] == [0, 1, 2, 3, 8, 9, 10, 11]
        assert [row.userid for row, _ in result.unknown] == [4, 5, 6, 7]

    async def test_rejects_nonpositive_chunk(self) -> None:
        """max_rows below 1 is a programming error."""
        with pytest.raises(ValueError, match="max_rows"):
            await apply_rows(rows(1), AllOrNothing(set()), max_rows=0)


class TestRunAll:
    """Concurrent awaiting that raises the first error itself."""

    async def test_results_in_order(self) -> None:
        """Results come back in input order."""

        async def value(item: int) -> int:
            return item * 2

        assert await run_all(value(i) for i in range(5)) == [0, 2, 4, 6, 8]

    async def test_raises_leaf_not_group(self) -> None:
        """The caller sees the typed error, not an ExceptionGroup."""

        async def fail() -> int:
            raise MoodleUnavailable("down")

        async def ok() -> int:
            return 1

        with pytest.raises(MoodleUnavailable):
            await run_all([ok(), fail()])


class TestBalancedChunks:
    """Chunks sized so concurrent requests finish together, within the field budget."""

    @pytest.mark.parametrize(
        ("items", "max_items", "lanes", "min_items", "sizes"),
        [
            (0, 166, 4, 25, []),
            (10, 166, 4, 25, [10]),
            (100, 166, 4, 25, [25, 25, 25, 25]),
            (167, 166, 1, 25, [84, 83]),
            (167, 166, 4, 25, [42, 42, 42, 41]),
            (2000, 166, 4, 25, [125] * 16),
            (60, 166, 4, 25, [30, 30]),
            (7, 3, 4, 1, [2, 2, 2, 1]),
        ],
    )
    def test_sizes(
        self, items: int, max_items: int, lanes: int, min_items: int, sizes: list[int]
    ) -> None:
        """Sizes are even, within max_items, a multiple of lanes unless chunks get too small."""
        chunks = balanced_chunks(
            list(range(items)), max_items, lanes=lanes, min_items=min_items
        )
        assert [len(chunk) for chunk in chunks] == sizes
        assert [x for chunk in chunks for x in chunk] == list(range(items))
