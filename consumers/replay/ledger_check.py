"""Replay's ledger check: make the ledger tell the truth about a restored Moodle.

Why: the consumer skips a Moodle call when the ledger shows the desired state
already held. After Moodle is restored from a backup taken at time T, the
ledger still records what was applied after T, which Moodle has lost; a plain
replay from T would skip exactly those enrolments as "already in state".

What: every ledger entry whose latest record was written at or after T (the
ledger topic's record timestamps; ``check_since_ms`` derives T from the replay's
start) is compared with Moodle's roster of its
course, read-only (the ``Rosters`` port), and rewritten to what
Moodle holds (``consumers.decisions.settle``, as the consumer does after an
unknown outcome): active with a role of ours → ``active`` (with the roles of
ours it holds), active without any → ``role_removed``, inactive →
``suspended``, absent → ``unenrolled``; an
uncertain entry becomes certain. ``owned``, ``event_id`` and ``state_version``
are kept, so the events replayed from T (which include the ones that wrote
these entries) are not stale and re-apply what was lost. Entries already
accurate are left alone, so a second check corrects nothing.

``check_since_ms``, ``latest_entries`` and ``correct_entry`` are pure;
``verify_ledger`` adds the reads.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from consumers.decisions import Held, settle
from consumers.ports import RawMessage, RosterEntry, Rosters
from consumers.replay.offsets import FromBeginning, ReplayStart, Since
from schemas.actions import LedgerEntry


@dataclass(frozen=True, slots=True)
class LedgerRecord:
    """The latest ledger value of one (course, user) and when it was written."""

    entry: LedgerEntry
    written_at_ms: int


@dataclass(frozen=True, slots=True)
class Correction:
    """A ledger entry that did not match Moodle, and what it becomes."""

    before: LedgerEntry
    after: LedgerEntry
    moodle: str

    def describe(self) -> str:
        """One line for the operator."""
        return (
            f"course {self.before.courseid} user {self.before.userid}: ledger "
            f"{_label(self.before)} -> {_label(self.after)} (Moodle: {self.moodle})"
        )


@dataclass(frozen=True, slots=True)
class LedgerCheck:
    """What the check examined and what it would correct (or corrected)."""

    since_ms: int
    examined: int
    corrections: list[Correction]


def _label(entry: LedgerEntry) -> str:
    roles = ", ".join(f"{s} {r}" for s, r in sorted(entry.our_roles().items()))
    return f"{entry.status} (roles {roles})"


def latest_entries(
    records: Iterable[RawMessage],
) -> dict[tuple[int, int], LedgerRecord]:
    """The ledger as a table: latest value per key, tombstones delete (compaction aside)."""
    table: dict[bytes, LedgerRecord] = {}
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        if record.key is None:
            continue
        if record.value is None:
            table.pop(record.key, None)
        else:
            entry = LedgerEntry.model_validate_json(record.value)
            table[record.key] = LedgerRecord(entry, record.timestamp_ms)
    return {(r.entry.courseid, r.entry.userid): r for r in table.values()}


def _moodle_holds(
    entry: LedgerEntry, roster: Mapping[int, RosterEntry]
) -> tuple[LedgerEntry, str]:
    """The entry settled on what Moodle holds, and how that reads."""
    held = roster.get(entry.userid)
    view = None if held is None else Held(held.status == "active", held.roleids)
    settled = settle(entry, view)
    if held is None:
        return settled, "no enrolment"
    if held.status == "inactive":
        return settled, "enrolment not active"
    return settled, f"active with roles {sorted(held.roleids)}"


def correct_entry(
    entry: LedgerEntry, roster: Mapping[int, RosterEntry]
) -> Correction | None:
    """The correction that makes ``entry`` say what ``roster`` holds, or None."""
    after, moodle = _moodle_holds(entry, roster)
    if after == entry:
        return None
    return Correction(before=entry, after=after, moodle=moodle)


def check_since_ms(
    start: ReplayStart, target_timestamps: Iterable[int | None] = ()
) -> int:
    """From when the ledger check examines entries, for a replay from ``start``.

    Every start needs the check: whatever is replayed, the entries its events
    wrote may describe a Moodle since restored. ``--since T``: T.
    ``--from-beginning``: 0 (every entry). ``--to-offsets``: the earliest of
    ``target_timestamps``, the timestamps of the records at the target offsets
    (an entry those events wrote was written after they were published); 0 when
    any is unknown (None, or negative: no timestamp), or none was given.
    """
    if isinstance(start, Since):
        return start.timestamp_ms
    if isinstance(start, FromBeginning):
        return 0
    stamps = list(target_timestamps)
    if not stamps or any(stamp is None or stamp < 0 for stamp in stamps):
        return 0
    return min(stamp for stamp in stamps if stamp is not None)


def recorded_since(
    table: Mapping[tuple[int, int], LedgerRecord], since_ms: int
) -> list[LedgerEntry]:
    """Entries whose latest value was written at or after ``since_ms``."""
    return [r.entry for r in table.values() if r.written_at_ms >= since_ms]


async def verify_ledger(
    table: Mapping[tuple[int, int], LedgerRecord],
    moodle: Rosters,
    *,
    since_ms: int,
) -> LedgerCheck:
    """Compare the entries written since ``since_ms`` with Moodle's rosters (read-only)."""
    entries = recorded_since(table, since_ms)
    rosters = await moodle.read_rosters(sorted({e.courseid for e in entries}))
    corrections = [
        correction
        for entry in sorted(entries, key=lambda e: (e.courseid, e.userid))
        if (correction := correct_entry(entry, rosters.get(entry.courseid, {})))
        is not None
    ]
    return LedgerCheck(
        since_ms=since_ms, examined=len(entries), corrections=corrections
    )


def apply_corrections(
    table: Mapping[tuple[int, int], LedgerRecord], corrections: Sequence[Correction]
) -> dict[tuple[int, int], LedgerEntry]:
    """The ledger view after the corrections (for a dry run's plan)."""
    view = {key: record.entry for key, record in table.items()}
    for correction in corrections:
        view[(correction.after.courseid, correction.after.userid)] = correction.after
    return view
