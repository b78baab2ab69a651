"""Replay's ledger check, pure part: what Moodle's roster says each entry must become."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from consumers.ports import RawMessage, RosterEntry, RosterStatus
from consumers.replay.ledger_check import (
    LedgerRecord,
    apply_corrections,
    check_since_ms,
    correct_entry,
    latest_entries,
    recorded_since,
)
from consumers.replay.offsets import FromBeginning, ReplayStart, Since, ToOffsets
from enrolstream.wiring.replay import uncovered_notes
from schemas.actions import LedgerEntry, LedgerStatus


def entry(
    status: LedgerStatus = "active", roleid: int = 5, **kw: object
) -> LedgerEntry:
    """A ledger entry for course 10, user 7."""
    fields: dict[str, object] = {
        "courseid": 10,
        "userid": 7,
        "roleid": roleid,
        "status": status,
        "event_id": "e1",
        "state_version": 42,
        **kw,
    }
    return LedgerEntry.model_validate(fields)


def roster(status: RosterStatus, *roles: int) -> dict[int, RosterEntry]:
    """Moodle's roster of course 10 holding user 7."""
    return {7: RosterEntry(7, "000000007", "u7", frozenset(roles), status)}


def record(
    offset: int, value: LedgerEntry | None, ts: int, key: bytes = b"10:7"
) -> RawMessage:
    """A ledger topic record."""
    body = None if value is None else value.model_dump_json().encode()
    return RawMessage("ledger", 0, offset, key, body, ts)


class TestCorrectEntry:
    """Each entry is rewritten to what Moodle holds, or left alone if it already says so."""

    @pytest.mark.parametrize(
        ("before", "moodle", "after"),
        [
            (entry("active"), {}, ("unenrolled", 5)),
            (entry("active"), roster("inactive", 5), ("suspended", 5)),
            (entry("suspended"), roster("active", 5), ("active", 5)),
            (entry("unenrolled"), roster("active", 5), ("active", 5)),
            (entry("active", roleid=5), roster("active", 9, 3), ("role_removed", 5)),
            (entry("active"), roster("active"), ("role_removed", 5)),
            (entry("role_removed"), roster("active", 5), ("active", 5)),
        ],
    )
    def test_corrected(
        self,
        before: LedgerEntry,
        moodle: dict[int, RosterEntry],
        after: tuple[str, int],
    ) -> None:
        """Absent → unenrolled, inactive → suspended, active → active or role_removed."""
        correction = correct_entry(before, moodle)
        assert correction is not None
        assert (correction.after.status, correction.after.roleid) == after
        kept = ("owned", "event_id", "state_version", "courseid", "userid")
        assert all(getattr(correction.after, f) == getattr(before, f) for f in kept)
        assert "course 10 user 7" in correction.describe()

    @pytest.mark.parametrize(
        ("before", "moodle"),
        [
            (entry("active"), roster("active", 5, 3)),
            (entry("suspended"), roster("inactive", 5)),
            (entry("unenrolled"), {}),
            (entry("role_removed"), roster("active", 3)),
        ],
    )
    def test_accurate_left_alone(
        self, before: LedgerEntry, moodle: dict[int, RosterEntry]
    ) -> None:
        """An entry that matches Moodle needs no correction."""
        assert correct_entry(before, moodle) is None

    def test_not_owned_stays_not_owned(self) -> None:
        """A correction never claims an enrolment the ledger marks as not ours."""
        correction = correct_entry(entry("active", owned=False), {})
        assert correction is not None
        assert correction.after.owned is False


class TestLatestEntries:
    """The ledger topic read as a table, with when each key was last written."""

    def test_latest_wins_and_tombstones_delete(self) -> None:
        """The last record per key counts; a tombstone removes the key."""
        table = latest_entries(
            [
                record(1, entry("suspended"), 2_000),
                record(0, entry("active"), 1_000),
                record(2, entry("active"), 3_000, key=b"10:8"),
                record(3, None, 4_000, key=b"10:8"),
            ]
        )
        assert list(table) == [(10, 7)]
        assert table[10, 7] == LedgerRecord(entry("suspended"), 2_000)

    def test_recorded_since(self) -> None:
        """Only entries last written at or after the time are examined."""
        table = latest_entries([record(0, entry(), 1_000)])
        assert recorded_since(table, 1_000) == [entry()]
        assert recorded_since(table, 1_001) == []

    def test_apply_corrections(self) -> None:
        """A dry run plans against the ledger as corrected."""
        table = latest_entries([record(0, entry(), 1_000)])
        correction = correct_entry(entry(), {})
        assert correction is not None
        assert apply_corrections(table, [correction])[10, 7].status == "unenrolled"


class TestUncoveredNotes:
    """Replay warns about corrections no replayed event will re-apply."""

    def test_event_not_replayed(self) -> None:
        """A correction whose writing event is not among the records is named."""
        correction = correct_entry(entry(), {})
        assert correction is not None
        (note,) = uncovered_notes([correction], [])
        assert "course 10 user 7" in note
        assert "is not replayed (older than the start" in note


T = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
T_MS = 1_714_550_400_000
TO = ToOffsets({0: 3, 1: 5})


class TestCheckSinceMs:
    """Every replay start checks the ledger, from a time its records justify."""

    @pytest.mark.parametrize(
        ("start", "stamps", "since_ms"),
        [
            (Since(T), [], T_MS),
            (FromBeginning(), [], 0),
            (FromBeginning(), [T_MS], 0),
            (TO, [T_MS + 5, T_MS], T_MS),
            (TO, [T_MS, None], 0),
            (TO, [T_MS, -1], 0),
            (TO, [], 0),
        ],
        ids=[
            "since: its time",
            "from-beginning: every entry",
            "from-beginning ignores records",
            "to-offsets: earliest target record",
            "to-offsets: a record not found",
            "to-offsets: a record without timestamp",
            "to-offsets: nothing known",
        ],
    )
    def test_since(
        self, start: ReplayStart, stamps: list[int | None], since_ms: int
    ) -> None:
        """The check starts at the time named, 0 for the beginning or unknown times."""
        assert check_since_ms(start, stamps) == since_ms
