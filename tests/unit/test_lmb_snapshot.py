"""The LMB state as a snapshot (``lmb/snapshot.py``): state in, snapshot events out."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from lmb.apply import apply_message
from lmb.book import Book, state_rows
from lmb.errors import SnapshotRefused
from lmb.events import Received
from lmb.messages import ImsMember, ImsMessage, ImsObject, ImsPerson
from lmb.snapshot import check_state, snapshot_events, snapshot_version, state_terms
from schemas.events import EnrolmentEvent, TermKey

T0 = datetime(2015, 1, 12, 9, tzinfo=UTC)
AT = datetime(2015, 1, 13, 2, tzinfo=UTC)
FALL = TermKey(academic_year="2015", academic_term="10")
SPRING = TermKey(academic_year="2015", academic_term="20")


def member(
    person: str, section: str, *, role: str = "01", active: bool = True
) -> ImsMember:
    return ImsMember(
        group=section,
        member=person,
        kind="person",
        roletype=role,
        active=active,
        recstatus="add",
    )


def deleted(person: str, section: str) -> ImsMember:
    return ImsMember(
        group=section,
        member=person,
        kind="person",
        roletype="01",
        active=True,
        recstatus="delete",
    )


#: A session: adds, a drop, a delete, an instructor, a second term, a person message.
SESSION: list[ImsObject] = [
    ImsPerson("B001", given="Ada", family="Lovelace", email="ada@example.edu"),
    member("B001", "14482.201510"),
    member("B001", "14483.201510"),
    member("B001", "14482.201510", active=False),
    member("B002", "14482.201510"),
    member("B002", "14484.201510"),
    deleted("B002", "14484.201510"),
    member("B009", "14483.201510", role="02"),
    member("B003", "22001.201520"),
    member("B001", "22001.201520"),
]


def replay(
    objects: list[ImsObject],
) -> tuple[Book, dict[tuple[str, str], EnrolmentEvent]]:
    """The book after the session, loaded back from its state rows as the command
    loads it, and the latest change event per (person, term)."""
    book = Book()
    latest: dict[tuple[str, str], EnrolmentEvent] = {}
    for number, obj in enumerate(objects):
        outcome = apply_message(
            ImsMessage(objects=(obj,)),
            book,
            Received(key=f"m{number}", received_at=T0, source="banner"),
        )
        book.update(outcome.people.values(), outcome.groups.values())
        for event in outcome.events:
            latest[(event.people_code_id, event.term.label())] = event
    loaded, unreadable = Book.load(
        dict(state_rows(book.people.values(), book.groups.values()))
    )
    assert unreadable == []
    return loaded, latest


def events(book: Book, *terms: TermKey) -> list[EnrolmentEvent]:
    return snapshot_events(
        book, terms, source="banner", snapshot_id="snap-1", captured_at=AT
    )


class TestSnapshotEvents:
    """One snapshot event per person and term, the state the consumer was last told."""

    def test_same_state_as_the_latest_change_events(self) -> None:
        """Registrations, teaching and person details equal each latest change event's."""
        book, latest = replay(SESSION)
        found = events(book, FALL, SPRING)
        assert [(e.people_code_id, e.term.label()) for e in found] == [
            ("B001", "2015/10"),
            ("B001", "2015/20"),
            ("B002", "2015/10"),
            ("B003", "2015/20"),
            ("B009", "2015/10"),
        ]
        for event in found:
            change = latest[(event.people_code_id, event.term.label())]
            assert event.registrations == change.registrations
            assert event.teaching == change.teaching
            assert event.person == change.person
            # the person's version: at least their latest event's in this term
            record = book.people[event.people_code_id]
            assert event.state_version == record.state_version
            assert event.state_version >= change.state_version
            assert event.kind == "snapshot"
            assert event.snapshot_id == "snap-1"
            assert event.change is None
            assert event.source == "banner"
            assert event.captured_at == AT

    def test_whole_term_state(self) -> None:
        """A drop stays a 'D', a deleted membership is gone, an instructor teaches."""
        book, _ = replay(SESSION)
        state = {
            e.people_code_id: (
                {r.section.event_id: r.add_drop_wait for r in e.registrations},
                [t.section.event_id for t in e.teaching or ()],
            )
            for e in events(book, FALL)
        }
        assert state == {
            "B001": ({"14482": "D", "14483": "A"}, []),
            "B002": ({"14482": "A"}, []),
            "B009": ({}, ["14483"]),
        }

    def test_only_the_terms_asked_for(self) -> None:
        """A snapshot of Spring says nothing of Fall."""
        book, _ = replay(SESSION)
        assert {(e.people_code_id, e.term.label()) for e in events(book, SPRING)} == {
            ("B001", "2015/20"),
            ("B003", "2015/20"),
        }
        assert events(book, TermKey(academic_year="2016", academic_term="10")) == []

    def test_ids_unique_and_stable(self) -> None:
        """Distinct per person and term; the same state gives the same ids."""
        book, _ = replay(SESSION)
        ids = [e.event_id for e in events(book, FALL, SPRING)]
        assert len(set(ids)) == len(ids)
        assert ids == [e.event_id for e in events(book, FALL, SPRING)]


class TestTermsAndVersion:
    def test_state_terms(self) -> None:
        book, _ = replay(SESSION)
        assert state_terms(book) == [FALL, SPRING]

    def test_version_is_the_highest_person_version(self) -> None:
        """No ledger entry written from this state is newer than the snapshot."""
        book, _ = replay(SESSION)
        assert snapshot_version(book) == max(
            p.state_version for p in book.people.values()
        )
        assert snapshot_version(book) == book.people["B001"].state_version


class TestRefused:
    """A state that cannot make a whole snapshot is refused, with one line."""

    def test_empty_state(self) -> None:
        with pytest.raises(SnapshotRefused, match="holds no person"):
            check_state(Book(), [])

    def test_unreadable_record(self) -> None:
        book, _ = replay(SESSION)
        with pytest.raises(SnapshotRefused, match=r"1 records .*\(person:B004\)"):
            check_state(book, ["person:B004"])

    def test_whole_state_accepted(self) -> None:
        book, _ = replay(SESSION)
        check_state(book, [])

    def test_unreadable_row_from_the_topic(self) -> None:
        """A record the book cannot parse is reported by ``Book.load``, then refused."""
        book, _ = replay(SESSION)
        rows = dict(state_rows(book.people.values(), book.groups.values()))
        rows[b"person:B004"] = b"{not json"
        loaded, unreadable = Book.load(rows)
        with pytest.raises(SnapshotRefused):
            check_state(loaded, unreadable)
