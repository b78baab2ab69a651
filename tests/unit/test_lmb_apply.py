"""The LMB source's decision: a message and the book in, new records and events out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from lmb.apply import APPLIED_KEPT, Outcome, apply_message
from lmb.book import Book
from lmb.events import Received
from lmb.messages import ImsGroup, ImsMember, ImsMessage, ImsObject, ImsPerson
from schemas.events import EnrolmentEvent, TermKey

T0 = datetime(2015, 1, 12, 9, tzinfo=UTC)
TERM = TermKey(academic_year="2015", academic_term="10")


def received(key: str, minutes: int = 0) -> Received:
    return Received(
        key=key, received_at=T0 + timedelta(minutes=minutes), source="banner"
    )


def member(
    person: str = "p1",
    section: str = "14482.201510",
    *,
    role: str = "01",
    active: bool = True,
    deleted: bool = False,
) -> ImsMember:
    return ImsMember(
        group=section,
        member=person,
        kind="person",
        roletype=role,
        active=active,
        recstatus="delete" if deleted else "add",
    )


class Feed:
    """A book that takes each outcome, as the intake does once Kafka acknowledged."""

    def __init__(self) -> None:
        self.book = Book()
        self.count = 0

    def send(self, *objects: ImsObject, key: str | None = None) -> Outcome:
        self.count += 1
        outcome = apply_message(
            ImsMessage(objects=objects),
            self.book,
            received(key or f"m{self.count}", self.count),
        )
        self.book.update(outcome.people.values(), outcome.groups.values())
        return outcome


def state(event: EnrolmentEvent) -> tuple[tuple[str, str], ...]:
    """(CRN, ADD_DROP_WAIT) of learners and (CRN, 'teach') of instructors."""
    learners = tuple((r.section.event_id, r.add_drop_wait) for r in event.registrations)
    teaching = tuple((t.section.event_id, "teach") for t in event.teaching or ())
    return learners + teaching


class TestMembershipTransitions:
    """Each transition LMB sends becomes the person's whole term state."""

    @pytest.mark.parametrize(
        ("steps", "operation", "expected"),
        [
            ([member()], "insert", (("14482", "A"),)),
            ([member(), member(active=False)], "update", (("14482", "D"),)),
            ([member(), member(active=False), member()], "update", (("14482", "A"),)),
            ([member(), member(deleted=True)], "delete", ()),
            ([member(deleted=True)], "delete", ()),
            ([member(role="02")], "insert", (("14482", "teach"),)),
            ([member(role="02"), member(role="02", active=False)], "update", ()),
            (
                [member(), member(role="02")],
                "insert",
                (("14482", "A"), ("14482", "teach")),
            ),
            (
                [member(), member(section="14483.201510")],
                "insert",
                (("14482", "A"), ("14483", "A")),
            ),
        ],
    )
    def test_transition(
        self, steps: list[ImsMember], operation: str, expected: tuple[object, ...]
    ) -> None:
        """The last step's event carries every membership of the term as it stands."""
        feed = Feed()
        for step in steps:
            outcome = feed.send(step)
        (event,) = outcome.events
        assert event.change is not None
        assert (event.change.table, event.change.operation) == (
            "LMB_MEMBERSHIP",
            operation,
        )
        assert state(event) == expected
        assert event.term == TERM
        assert event.people_code_id == "p1"
        assert event.standing is None

    def test_deleted_section_is_the_change(self) -> None:
        """A delete names the section, so the consumer re-decides its course."""
        feed = Feed()
        feed.send(member())
        (event,) = feed.send(member(deleted=True)).events
        assert event.change is not None
        assert event.change.section is not None
        assert event.change.section.event_id == "14482"
        assert event.registrations == ()

    def test_other_roles_are_kept_not_applied(self) -> None:
        """A mentor (06) is in the book, publishes nothing, and is noted."""
        outcome = Feed().send(member(role="06"))
        assert outcome.events == []
        assert "role 06" in outcome.notes[0]
        assert outcome.people["p1"].memberships[0].roletype == "06"

    def test_terms_are_kept_apart(self) -> None:
        """A membership of another term is not in this term's event."""
        feed = Feed()
        feed.send(member(section="200.201520"))
        (event,) = feed.send(member()).events
        assert state(event) == (("14482", "A"),)

    def test_state_version_rises(self) -> None:
        """Every message applied to the person raises the version events carry."""
        feed = Feed()
        first = feed.send(member()).events[0].state_version
        second = feed.send(member(active=False)).events[0].state_version
        assert second > first >= int(T0.timestamp() * 1000)


class TestPeople:
    """A person message sets the account details and republishes every term."""

    def test_person_update_publishes_each_term(self) -> None:
        """Details reach every term the person has memberships in, as LMB_PERSON."""
        feed = Feed()
        feed.send(member(), member(section="200.201520"))
        person = ImsPerson(
            sourcedid="p1",
            given="Ada",
            family="Lovelace",
            email="ada@example.edu",
            userids=(("Logon ID", "alovelace"),),
        )
        events = feed.send(person).events
        assert sorted(e.term.label() for e in events) == ["2015/10", "2015/20"]
        for event in events:
            assert event.change is not None
            assert (event.change.table, event.change.section) == ("LMB_PERSON", None)
            assert event.person is not None
            assert (event.person.first_name, event.person.username) == (
                "Ada",
                "alovelace",
            )

    def test_person_without_memberships_publishes_nothing(self) -> None:
        """Details are kept for the first membership's event."""
        feed = Feed()
        assert feed.send(ImsPerson(sourcedid="p1", given="Ada")).events == []
        (event,) = feed.send(member()).events
        assert event.person is not None
        assert event.person.first_name == "Ada"


class TestRepeats:
    """LMB's repeats are recognised; replays give the same ids."""

    def test_same_message_again_is_a_duplicate(self) -> None:
        """The same key applied to the same person again: nothing changes."""
        feed = Feed()
        feed.send(member(), key="k1")
        again = feed.send(member(), key="k1")
        assert again.duplicate
        assert again.events == []
        assert again.people == {}

    def test_stale_repeat_after_a_drop_does_not_re_add(self) -> None:
        """An add sent again after the drop that followed it is still a duplicate."""
        feed = Feed()
        feed.send(member(), key="add")
        feed.send(member(active=False), key="drop")
        again = feed.send(member(), key="add")
        assert again.duplicate
        assert feed.book.people["p1"].memberships[0].active is False

    def test_recomputed_message_has_the_same_event_ids(self) -> None:
        """A message applied again to the state before it (a crash) gives the same ids."""
        book = Book()
        first = apply_message(ImsMessage(objects=(member(),)), book, received("k"))
        later = apply_message(ImsMessage(objects=(member(),)), book, received("k", 5))
        assert [e.event_id for e in first.events] == [e.event_id for e in later.events]

    def test_applied_keys_are_bounded(self) -> None:
        """A record remembers the last APPLIED_KEPT message keys."""
        feed = Feed()
        for _ in range(APPLIED_KEPT + 5):
            feed.send(member())
        assert len(feed.book.people["p1"].applied) == APPLIED_KEPT


class TestGroups:
    """Groups and cross-lists go to the book only."""

    def test_crosslist_join_and_undo(self) -> None:
        """Sections join a cross-list with status 1 and leave with status 0."""
        feed = Feed()
        join = [
            ImsMember(
                group="XLSAA201510", member=s, kind="group", roletype="02", active=True
            )
            for s in ("14482.201510", "14483.201510")
        ]
        outcome = feed.send(*join)
        assert outcome.events == []
        assert "regenerate" in outcome.notes[0]
        group = feed.book.groups["XLSAA201510"]
        assert (group.kind, group.term, group.sections) == (
            "crosslist",
            "201510",
            ("14482.201510", "14483.201510"),
        )
        feed.send(
            ImsMember(
                group="XLSAA201510",
                member="14482.201510",
                kind="group",
                roletype="02",
                active=False,
            )
        )
        assert feed.book.groups["XLSAA201510"].sections == ("14483.201510",)

    def test_section_group_knows_its_term(self) -> None:
        """A section group's term comes from its Term relationship."""
        feed = Feed()
        feed.send(
            ImsGroup(
                sourcedid="14482.201510",
                kind="section",
                typevalue="CourseSection",
                long="MATH-101-001",
                term_id="201510",
            )
        )
        group = feed.book.groups["14482.201510"]
        assert (group.title, group.term) == ("MATH-101-001", "201510")


class TestRejected:
    """What cannot be placed is rejected with its reason; the rest is applied."""

    def test_section_not_crn_term(self) -> None:
        """A section id that is not CRN.TERM, and no group says its term."""
        outcome = Feed().send(member(section="MATH101"), member(person="p2"))
        assert outcome.rejected == [
            (
                "membership of p1 in MATH101: section id 'MATH101' is not CRN.TERM "
                "(e.g. 14482.201510)"
            )
        ]
        assert [e.people_code_id for e in outcome.events] == ["p2"]
        assert not outcome.duplicate

    def test_section_placed_by_its_group(self) -> None:
        """A section id of another form is placed by the group message's term."""
        feed = Feed()
        feed.send(
            ImsGroup(
                sourcedid="MATH101",
                kind="section",
                typevalue="CourseSection",
                term_id="201510",
            )
        )
        (event,) = feed.send(member(section="MATH101")).events
        assert event.term == TERM
        assert state(event) == (("MATH101", "A"),)
