"""Capture end to end: sandbox change tracking → poller → the real Kafka-protocol broker."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from cdc.changes import to_events
from cdc.errors import PublishFailed
from cdc.poller import Poller
from connectors.kafka.publisher import KafkaEventPublisher
from sandbox.broker import EmbeddedBroker, free_port
from schemas.events import EnrolmentEvent
from tests.integration.conftest import (
    TERM,
    CaptureStack,
    delete,
    registration,
    set_status,
)

pytestmark = pytest.mark.integration

ALICE, BOB = "P000000001", "P000000002"


def summary(
    event: EnrolmentEvent,
) -> tuple[str, str | None, frozenset[tuple[str, str, str]]]:
    """(person, operation, {(course, section, ADD_DROP_WAIT)}) of one event."""
    return (
        event.people_code_id,
        event.change.operation if event.change else None,
        frozenset(
            (r.section.event_id, r.section.section, r.add_drop_wait)
            for r in event.registrations
        ),
    )


class TestChangeScenarios:
    """Each registrar action becomes the event that carries the person's final state."""

    async def test_enroll(self, capture: CaptureStack) -> None:
        """A new registration is published as an insert carrying the added section."""
        capture.sql(registration(1, ALICE, "BSC5102"))
        await capture.poll()
        assert [summary(e) for e in await capture.changes()] == [
            (ALICE, "insert", frozenset({("BSC5102", "01", "A")}))
        ]

    async def test_drop_by_update(self, capture: CaptureStack) -> None:
        """An update A→D is published with the row now dropped."""
        capture.sql(registration(1, ALICE, "BSC5102"))
        await capture.poll()
        capture.sql(set_status(1, "D"))
        await capture.poll()
        assert [summary(e) for e in await capture.changes()][-1] == (
            ALICE,
            "update",
            frozenset({("BSC5102", "01", "D")}),
        )

    async def test_waitlist(self, capture: CaptureStack) -> None:
        """A wait-listed registration is published with ADD_DROP_WAIT W."""
        capture.sql(registration(1, ALICE, "BSC5102", adw="W"))
        await capture.poll()
        assert [summary(e) for e in await capture.changes()] == [
            (ALICE, "insert", frozenset({("BSC5102", "01", "W")}))
        ]

    async def test_delete_row(self, capture: CaptureStack) -> None:
        """A deleted row (CT gives only its key) is published for the right person."""
        capture.sql(
            registration(1, ALICE, "BSC5102"), registration(2, ALICE, "COUN6552", "02")
        )
        await capture.poll()
        capture.sql(delete(1))
        await capture.poll()
        last = (await capture.changes())[-1]
        assert summary(last) == (ALICE, "delete", frozenset({("COUN6552", "02", "A")}))
        assert last.change is not None
        assert last.change.section is not None
        assert last.change.section.event_id == "BSC5102"

    async def test_add_drop_add_inside_one_interval(
        self, capture: CaptureStack
    ) -> None:
        """A→D→A between two polls reads as one update with the final state A."""
        capture.sql(registration(1, ALICE, "BSC5102"))
        await capture.poll()
        capture.sql(set_status(1, "D"))
        capture.sql(set_status(1, "A"))
        await capture.poll()
        changes = await capture.changes()
        assert [summary(e) for e in changes[1:]] == [
            (ALICE, "update", frozenset({("BSC5102", "01", "A")}))
        ]

    async def test_insert_then_delete_inside_one_interval(
        self, capture: CaptureStack
    ) -> None:
        """A row added and removed between two polls publishes nothing and loses nothing."""
        capture.sql(registration(1, ALICE, "BSC5102"))
        capture.sql(delete(1))
        capture.sql(registration(2, BOB, "BSC5102"))
        result = await capture.poll()
        assert [summary(e) for e in await capture.changes()] == [
            (BOB, "insert", frozenset({("BSC5102", "01", "A")}))
        ]
        assert result.unresolved_deletes == 1

    async def test_cross_list_swap_in_one_transaction(
        self, capture: CaptureStack
    ) -> None:
        """A swap is two events, same version, both carrying the final state, in order."""
        capture.sql(registration(1, ALICE, "COUN6552", "02"))
        await capture.poll()
        version = capture.sql(
            set_status(1, "D"), registration(2, ALICE, "COUN8552", "02")
        )
        await capture.poll()
        swap = (await capture.changes())[1:]
        final = frozenset({("COUN6552", "02", "D"), ("COUN8552", "02", "A")})
        assert [summary(e) for e in swap] == [
            (ALICE, "update", final),
            (ALICE, "insert", final),
        ]
        assert {e.change.change_version for e in swap if e.change} == {version}


class TestResume:
    """The saved version: advanced only after acks, re-initialised when too old."""

    async def test_cleanup_past_saved_version_reinitialises(
        self, capture: CaptureStack
    ) -> None:
        """Retention past the saved version gives snapshot events, then incremental again."""
        capture.sql(registration(1, ALICE, "BSC5102"))
        await capture.poll()
        capture.sql(registration(2, BOB, "BSC5102"))
        capture.sql(set_status(1, "D"))
        capture.sandbox.cleanup(retain_versions=0)
        result = await capture.poll()
        assert result.initialised
        snapshot = [e for e in await capture.events() if e.kind == "snapshot"]
        assert {summary(e) for e in snapshot} == {
            (ALICE, None, frozenset({("BSC5102", "01", "D")})),
            (BOB, None, frozenset({("BSC5102", "01", "A")})),
        }
        capture.sql(delete(2))
        after = await capture.poll()
        assert not after.initialised
        bobs = [e for e in await capture.changes() if e.people_code_id == BOB]
        assert summary(bobs[-1]) == (BOB, "delete", frozenset())

    async def test_rows_deleted_during_the_gap_are_published(
        self, capture: CaptureStack
    ) -> None:
        """Deletes that history no longer shows still reach consumers at re-initialisation."""
        capture.sql(
            registration(1, ALICE, "BSC5102"),
            registration(2, BOB, "BSC5102"),
            registration(3, BOB, "COUN6552", "02"),
        )
        await capture.poll()
        capture.sql(delete(1), delete(3))
        capture.sandbox.cleanup(retain_versions=0)
        result = await capture.poll()
        assert result.initialised
        deletes = [
            e
            for e in await capture.changes()
            if e.change is not None and e.change.operation == "delete"
        ]
        assert {
            (e.people_code_id, e.change.section.event_id)
            for e in deletes
            if e.change and e.change.section
        } == {(ALICE, "BSC5102"), (BOB, "COUN6552")}
        assert {summary(e) for e in deletes} == {
            (ALICE, "delete", frozenset()),
            (BOB, "delete", frozenset({("BSC5102", "01", "A")})),
        }

    async def test_delete_of_a_row_only_carried_in_state(
        self, capture: CaptureStack
    ) -> None:
        """A row first seen inside another row's event (not live, not changed) resolves later."""
        spring = registration(7, ALICE, "BSC5102").replace("'Winter'", "'Spring'")
        other = registration(8, ALICE, "COUN6552", "02").replace("'Winter'", "'Spring'")
        capture.sql(spring, other)
        capture.sandbox.cleanup(retain_versions=0)
        assert (await capture.poll()).initialised  # live terms: Winter only
        capture.sql(set_status(7, "D"))  # the event carries rows 7 and 8
        await capture.poll()
        capture.sql(delete(8))
        result = await capture.poll()
        assert result.unresolved_deletes == 0
        last = (await capture.changes())[-1]
        assert last.change is not None
        assert (last.people_code_id, last.change.operation) == (ALICE, "delete")

    async def test_killed_between_publish_and_save(self, capture: CaptureStack) -> None:
        """A crash after the acks republishes at most that batch, same ids, nothing missing."""
        capture.sql(registration(1, ALICE, "BSC5102"), registration(2, BOB, "BSC5102"))
        saved = capture.store.load_version()
        poller = capture.poller()
        batch = await capture.source.fetch_since(saved or 0, capture.store)
        translation = to_events(batch, source="pc", captured_at=poller.clock())
        await capture.publisher.publish(translation.events)
        # the process dies here: the version is not saved
        assert capture.store.load_version() == saved
        await capture.poll()
        ids = [e.event_id for e in await capture.changes()]
        assert sorted(Counter(ids).values()) == [2, 2]
        assert capture.store.load_version() == batch.to_version


class TestBrokerOutages:
    """Kafka unreachable: no lost change, no advanced version."""

    async def test_broker_paused_during_polling(
        self, capture: CaptureStack, broker_process: EmbeddedBroker | None
    ) -> None:
        """While the broker is frozen polls fail and the version stays; afterwards all arrive."""
        if broker_process is None:
            pytest.skip("needs the embedded broker to pause it")
        saved = capture.store.load_version()
        capture.sql(registration(1, ALICE, "BSC5102"))
        broker_process.pause()
        try:
            with pytest.raises(PublishFailed):
                await capture.poll()
            assert capture.store.load_version() == saved
        finally:
            broker_process.resume()
        capture.sql(registration(2, BOB, "BSC5102"))
        await capture.poll()
        people = {e.people_code_id for e in await capture.changes()}
        assert people == {ALICE, BOB}

    async def test_broker_not_yet_up(self, tmp_path: Path) -> None:
        """Before the broker is up nothing is saved; once up, the next poll publishes all."""
        port = free_port()
        stack = CaptureStack(tmp_path, f"127.0.0.1:{port}", "late")
        stack.sql(registration(1, ALICE, "BSC5102"))
        with pytest.raises(PublishFailed):
            async with KafkaEventPublisher(stack.options, "late", ack_timeout_s=3.0):
                pass
        assert stack.store.load_version() is None
        async with EmbeddedBroker(tmp_path / "late-broker.log", port=port):
            async with KafkaEventPublisher(stack.options, "late") as publisher:
                poller = Poller(stack.source, publisher, stack.store, live_terms=[TERM])
                await poller.run_once()
            events = await stack.events()
        assert {(e.kind, e.people_code_id) for e in events} == {("snapshot", ALICE)}
        assert stack.store.load_version() == stack.sandbox.current_version()
        stack.store.close()
        stack.sandbox.close()
        await stack.source.close()
