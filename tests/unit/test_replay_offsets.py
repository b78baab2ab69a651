"""Where a replay starts: parsing the operator's choice, computing and checking offsets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import typer

from consumers.replay.offsets import (
    FromBeginning,
    InvalidReplayOffsets,
    PartitionMove,
    Since,
    ToOffsets,
    check_offsets,
    parse_offsets_file,
    parse_since,
    plan_moves,
    time_targets,
)
from enrolstream.cli.replay import choose_start

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


class TestParseSince:
    """--since takes an ISO 8601 time or a duration ago."""

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("2024-05-01T08:00:00+00:00", datetime(2024, 5, 1, 8, tzinfo=UTC)),
            ("2024-05-01T08:00:00Z", datetime(2024, 5, 1, 8, tzinfo=UTC)),
            ("90m", NOW - timedelta(minutes=90)),
            ("2h", NOW - timedelta(hours=2)),
            ("1.5d", NOW - timedelta(days=1.5)),
            ("30s", NOW - timedelta(seconds=30)),
        ],
    )
    def test_accepted(self, text: str, expected: datetime) -> None:
        """Absolute and relative forms give the same instant as written."""
        assert parse_since(text, now=NOW) == expected

    def test_naive_time_is_local(self) -> None:
        """A time without an offset is read as the machine's local time."""
        parsed = parse_since("2024-05-01T08:00:00", now=NOW)
        assert parsed.tzinfo is not None
        assert parsed.replace(tzinfo=None).isoformat() == "2024-05-01T08:00:00"

    @pytest.mark.parametrize("text", ["yesterday", "2h ago", "", "5w"])
    def test_refused(self, text: str) -> None:
        """Anything else is refused with the accepted forms named."""
        with pytest.raises(InvalidReplayOffsets, match="ISO 8601"):
            parse_since(text, now=NOW)

    def test_timestamp_ms(self) -> None:
        """Since counts milliseconds as Kafka record timestamps do."""
        assert Since(datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC)).timestamp_ms == 1000


class TestParseOffsetsFile:
    """--to-offsets reads {"<partition>": offset} and says exactly what is wrong."""

    def test_read(self, tmp_path: Path) -> None:
        """Partition keys become ints."""
        path = tmp_path / "o.json"
        path.write_text('{"0": 5, "3": 0}')
        assert parse_offsets_file(path) == {0: 5, 3: 0}

    @pytest.mark.parametrize(
        ("content", "problem"),
        [
            ("{", "not JSON"),
            ("[]", "non-empty object"),
            ("{}", "non-empty object"),
            ('{"a": 1}', "'a' is not a partition number"),
            ('{"0": -1}', "offset -1 is not a whole number"),
            ('{"0": "5"}', "offset '5' is not a whole number"),
            ('{"0": true}', "offset True is not a whole number"),
            ('{"0": 1.5}', "offset 1.5 is not a whole number"),
        ],
    )
    def test_refused(self, tmp_path: Path, content: str, problem: str) -> None:
        """Bad files are refused with the problem named."""
        path = tmp_path / "o.json"
        path.write_text(content)
        with pytest.raises(InvalidReplayOffsets, match=problem):
            parse_offsets_file(path)

    def test_missing_file(self, tmp_path: Path) -> None:
        """A file that cannot be read is named."""
        with pytest.raises(InvalidReplayOffsets, match="cannot read"):
            parse_offsets_file(tmp_path / "absent.json")


class TestTimeTargets:
    """offsets_for_times answers become offsets; "none after" means the end."""

    @pytest.mark.parametrize(
        ("found", "expected"),
        [
            ({0: (3, 1_000)}, 3),  # a record at or after the time
            ({0: None}, 10),  # Apache Kafka: nothing at or after the time
            ({0: (0, -1)}, 10),  # the embedded broker's answer for the same
            ({}, 10),  # no answer for the partition
            ({0: (12, 1_000)}, 10),  # never beyond the end
        ],
    )
    def test_targets(
        self, found: dict[int, tuple[int, int] | None], expected: int
    ) -> None:
        """Each answer maps to the offset the group should restart from."""
        assert time_targets(found, {0: 10}) == {0: expected}


class TestCheckOffsets:
    """Requested offsets must exist on the topic."""

    def test_within_bounds(self) -> None:
        """Offsets between the first held record and the end are accepted."""
        assert check_offsets({0: 2, 1: 7}, {0: 0, 1: 2}, {0: 5, 1: 7}, topic="t") == {
            0: 2,
            1: 7,
        }

    @pytest.mark.parametrize(
        ("wanted", "problem"),
        [
            ({4: 0}, "partition 4 does not exist \\(the topic has 0, 1\\)"),
            ({0: 6}, "partition 0: offset 6 is beyond the end \\(5\\)"),
            ({1: 1}, "partition 1: offset 1 is before the first record still held"),
        ],
    )
    def test_refused(self, wanted: dict[int, int], problem: str) -> None:
        """Unknown partitions and offsets outside the log are named."""
        with pytest.raises(InvalidReplayOffsets, match=problem):
            check_offsets(wanted, {0: 0, 1: 2}, {0: 5, 1: 7}, topic="t")


class TestPlanMoves:
    """Moves report where each partition was, goes, and how much will be re-read."""

    def test_moves(self) -> None:
        """Events are counted from the target to the end; unknown commits show None."""
        moves = plan_moves({1: 4, 0: 0}, {0: 5}, {0: 5, 1: 9})
        assert moves == [
            PartitionMove(partition=0, committed=5, target=0, end=5),
            PartitionMove(partition=1, committed=None, target=4, end=9),
        ]
        assert [move.events for move in moves] == [5, 5]


class TestChooseStart:
    """The replay command takes exactly one of its three starting points."""

    @pytest.mark.parametrize(
        ("since", "beginning", "offsets"),
        [(None, False, None), ("2h", True, None), ("2h", False, Path("o.json"))],
    )
    def test_exactly_one(
        self, since: str | None, beginning: bool, offsets: Path | None
    ) -> None:
        """None or several is a usage error naming the three options."""
        with pytest.raises(typer.BadParameter, match="exactly one of --since"):
            choose_start(since, beginning, offsets, now=NOW)

    def test_each(self, tmp_path: Path) -> None:
        """Each option gives its start."""
        path = tmp_path / "o.json"
        path.write_text('{"1": 2}')
        assert choose_start("2h", False, None, now=NOW) == Since(
            NOW - timedelta(hours=2)
        )
        assert choose_start(None, True, None, now=NOW) == FromBeginning()
        assert choose_start(None, False, path, now=NOW) == ToOffsets({1: 2})
