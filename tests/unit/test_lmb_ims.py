"""IMS Enterprise 1.1 messages, shaped as enrol_lmb and SHEBanG read them, parsed safely."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.lmb.ims import parse_ims
from lmb.errors import HostileMessage, MalformedMessage
from lmb.messages import ImsGroup, ImsMember, ImsPerson

DATA = Path(__file__).resolve().parents[1] / "data" / "lmb"


def parse(name: str) -> tuple[object, ...]:
    message = parse_ims((DATA / name).read_bytes())
    assert message.problems == ()
    return message.objects


class TestSamples:
    """Each sample reads as the plugins read it."""

    def test_person(self) -> None:
        """A person: sourcedid, names, e-mail, the Logon ID; enrol_lmb's recstatus 0 is an add."""
        (person,) = parse("person.xml")
        assert isinstance(person, ImsPerson)
        assert (person.sourcedid, person.recstatus) == ("usersourcedid", "add")
        assert (person.given, person.family, person.nickname) == (
            "First",
            "Last",
            "Nick Last",
        )
        assert person.email == "test@example.edu"
        assert person.userid("logon id") == "loginuserid"
        assert person.userid("SCTID") == "sctuserid"

    def test_passwords_are_never_read(self) -> None:
        """The userid password attributes stay out of what is parsed."""
        (person,) = parse("person.xml")
        assert "loginpass" not in repr(person)

    def test_term(self) -> None:
        """A Term group."""
        (term,) = parse("term.xml")
        assert isinstance(term, ImsGroup)
        assert (term.sourcedid, term.kind, term.long) == (
            "201310",
            "term",
            "Long Term 201310",
        )

    def test_section_with_its_relationships(self) -> None:
        """A CourseSection group with its Term and Course relationships."""
        (section,) = parse("section.xml")
        assert isinstance(section, ImsGroup)
        assert (section.sourcedid, section.kind) == ("10001.201310", "section")
        assert (section.term_id, section.course_id) == ("201310", "CRSPA-691")
        assert section.long == "DEP-101-001"

    def test_learner_membership(self) -> None:
        """`roletype = "01"` with spaces, status 1: an active learner."""
        (member,) = parse("membership_learner.xml")
        assert member == ImsMember(
            group="10001.201310",
            member="usersourcedid",
            kind="person",
            roletype="01",
            active=True,
        )

    def test_crosslist_members(self) -> None:
        """A cross-list membership has one member per section (idtype 2)."""
        members = parse("crosslist.xml")
        assert [(m.group, m.member, m.kind, m.active) for m in members] == [  # type: ignore[attr-defined]
            ("XLSAA201310", "10001.201310", "group", True),
            ("XLSAA201310", "10002.201310", "group", True),
        ]

    def test_crosslist_undone_as_the_maintainer_sends_it(self) -> None:
        """A bare membership root (no enterprise) with status 0 members: sections leave."""
        members = parse("crosslist_undone.xml")
        assert [(m.member, m.active) for m in members] == [  # type: ignore[attr-defined]
            ("14482.201510", False),
            ("14483.201510", False),
        ]

    def test_uppercase_names_and_role_recstatus_delete(self) -> None:
        """SHEBanG case-folds names; ROLE/@RECSTATUS 3 deletes whatever STATUS says."""
        (member,) = parse("membership_delete_uppercase.xml")
        assert isinstance(member, ImsMember)
        assert (member.roletype, member.deleted) == ("02", True)

    def test_external_dtd_reference_alone_is_read(self) -> None:
        """A DOCTYPE naming a DTD is allowed; it is never fetched."""
        (person,) = parse("external_dtd.xml")
        assert isinstance(person, ImsPerson)
        assert person.family == "Dtd"


class TestRefused:
    """Malformed and hostile documents are typed errors, never expanded or fetched."""

    @pytest.mark.parametrize("name", ["billion_laughs.xml", "external_entity.xml"])
    def test_entities_are_refused(self, name: str) -> None:
        """An entity declaration or an external entity: HostileMessage."""
        with pytest.raises(HostileMessage, match="refused unparsed"):
            parse_ims((DATA / name).read_bytes())

    def test_malformed(self) -> None:
        """A truncated message: MalformedMessage naming where."""
        with pytest.raises(MalformedMessage, match=r"not well-formed XML: .*line 1"):
            parse_ims((DATA / "malformed.xml").read_bytes())

    def test_no_ims_object(self) -> None:
        """Well-formed XML without person, group or membership is malformed for us."""
        with pytest.raises(MalformedMessage, match="root element 'html'"):
            parse_ims(b"<html><body>hello</body></html>")


class TestPartlyReadable:
    """An object that cannot be read is named; the others are still read."""

    def test_one_bad_member_among_good(self) -> None:
        """A member without idtype is a problem; the next member is read."""
        body = b"""<enterprise><membership><sourcedid><id>1.201510</id></sourcedid>
          <member><sourcedid><id>p1</id></sourcedid><role roletype="01">
            <status>1</status></role></member></membership>
          <membership><sourcedid><id>1.201510</id></sourcedid>
          <member><sourcedid><id>p2</id></sourcedid><idtype>1</idtype>
            <role roletype="01"><status>1</status></role></member></membership>
          </enterprise>"""
        message = parse_ims(body)
        assert message.problems == (
            "membership #1: member p1: idtype None is not 1 or 2",
        )
        assert [m.member for m in message.objects] == ["p2"]  # type: ignore[union-attr]

    @pytest.mark.parametrize(
        ("role", "problem"),
        [
            ('<role roletype="01"></role>', "role/status None is not 1 or 0"),
            (
                '<role roletype="01" recstatus="9"><status>1</status></role>',
                "recstatus '9'",
            ),
        ],
    )
    def test_member_problems(self, role: str, problem: str) -> None:
        """No status (unless deleted), or an unknown recstatus, is a problem."""
        body = (
            "<membership><sourcedid><id>1.201510</id></sourcedid><member>"
            f"<sourcedid><id>p1</id></sourcedid><idtype>1</idtype>{role}</member>"
            "</membership>"
        ).encode()
        message = parse_ims(body)
        assert message.objects == ()
        assert problem in message.problems[0]

    def test_deleted_member_needs_no_status(self) -> None:
        """recstatus 3 without a status element is a delete."""
        body = (
            b"<membership><sourcedid><id>1.201510</id></sourcedid><member>"
            b"<sourcedid><id>p1</id></sourcedid><idtype>1</idtype>"
            b'<role roletype="1" recstatus="3"/></member></membership>'
        )
        (member,) = parse_ims(body).objects
        assert isinstance(member, ImsMember)
        assert (member.roletype, member.deleted) == ("01", True)
