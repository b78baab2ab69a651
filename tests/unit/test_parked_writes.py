"""The parked table is written when a wait changes, not on every retry round."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from consumers.parked import ParkedEvents
from schemas.events import EnrolmentEvent
from tests.fakes import MemoryTable
from tests.unit.test_dead_letters import ALICE, BOB, event

NOW = datetime(2021, 1, 10, 9, 0, tzinfo=UTC)
NO_USER = ("no Moodle user with idnumber", "no_user")
TWO_USERS = ("two Moodle users with idnumber", "several_users")


def waiting(
    item: EnrolmentEvent, why: tuple[str, str]
) -> tuple[EnrolmentEvent, str, str]:
    return (item, *why)


async def test_retries_that_change_nothing_write_nothing() -> None:
    table = MemoryTable()
    parked = ParkedEvents(table)
    first = event(ALICE, 5, {"MATH101": "A"})
    await parked.park([waiting(first, NO_USER)], NOW)
    for minute in range(1, 4):
        await parked.park([waiting(first, NO_USER)], NOW + timedelta(minutes=minute))

    assert len(table.writes) == 1
    entry = parked.get(ALICE, "2021/Winter")
    assert entry is not None
    assert entry.attempts == 4
    assert entry.parked_at == NOW


async def test_a_newer_event_or_another_reason_is_written() -> None:
    table = MemoryTable()
    parked = ParkedEvents(table)
    await parked.park([waiting(event(ALICE, 5, {"MATH101": "A"}), NO_USER)], NOW)
    await parked.park([waiting(event(ALICE, 5, {"MATH101": "A"}), TWO_USERS)], NOW)
    await parked.park([waiting(event(ALICE, 6, {"MATH101": "D"}), TWO_USERS)], NOW)
    await parked.park(
        [
            waiting(event(ALICE, 6, {"MATH101": "D"}), TWO_USERS),
            waiting(event(BOB, 7, {"ENG201": "A"}), NO_USER),
        ],
        NOW,
    )

    assert [key for key, _ in table.writes] == [
        b"P000000001|2021/Winter",
        b"P000000001|2021/Winter",
        b"P000000001|2021/Winter",
        b"P000000002|2021/Winter",
    ]
    reloaded = ParkedEvents(table)
    assert await reloaded.load() == 2
    alice = reloaded.get(ALICE, "2021/Winter")
    assert alice is not None
    assert alice.event.state_version == 6
    assert alice.reason_code == "several_users"
