"""PowerCampus's collation, one rule: every key the code builds from its values uses it.

SQL Server compares PowerCampus values case-insensitively and ignores trailing
(not leading) spaces. Each row of the table is a pair of values; every key
function of every adapter and module must call them the same exactly when the
rule (``schemas.collation``) does, and must build the rule's own key.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from cdc import changes, rows
from cdc import state as cdc_state
from cdc.ports import ChangeBatch, PersonTerm
from connectors.sqlserver import rows as sqlserver_rows
from consumers import account_book, dead_letters
from consumers.decisions import EnrolmentPolicy, is_enrolled
from consumers.mapping import load_mappings, normalise
from sandbox.powercampus import source as sandbox_source
from schemas.collation import collate, person_term_key, section_key, term_key
from schemas.events import (
    EnrolmentEvent,
    PersonDetails,
    Registration,
    SectionKey,
    TermKey,
)

PersonTermKey = Callable[[str, TermKey], object]

#: (people code, term) pairs: the same person-term, or not, under the rule.
PERSON_TERMS = [
    (("P000123456", TermKey(academic_year="2021", academic_term="Winter")),
     ("p000123456 ", TermKey(academic_year="2021 ", academic_term="WINTER  ")), True),
    (("P000123456", TermKey(academic_year="2021", academic_term="Winter")),
     ("P000123456", TermKey(academic_year="2021", academic_term="winter")), True),
    (("P000123456", TermKey(academic_year="2021", academic_term="Winter")),
     (" P000123456", TermKey(academic_year="2021", academic_term="Winter")), False),
    (("P000123456", TermKey(academic_year="2021", academic_term="Winter")),
     ("P000123457", TermKey(academic_year="2021", academic_term="Winter")), False),
    (("P000123456", TermKey(academic_year="2021", academic_term="Winter")),
     ("P000123456", TermKey(academic_year="2021", academic_term="Fall")), False),
]  # fmt: skip


def _event(people_code_id: str, term: TermKey) -> EnrolmentEvent:
    return EnrolmentEvent.model_validate(
        {
            "event_id": "e",
            "kind": "snapshot",
            "source": "pc",
            "people_code_id": people_code_id,
            "term": term.model_dump(),
            "state_version": 1,
            "registrations": [],
            "captured_at": "2021-01-11T00:00:00Z",
        }
    )


#: Every function that keys a person-term, by where it lives.
PERSON_TERM_KEYS: dict[str, PersonTermKey] = {
    "schemas.collation": person_term_key,
    "EnrolmentEvent.person_term_key": lambda p, t: _event(p, t).person_term_key(),
    "cdc.changes (capture)": changes.fold,
    "connectors.sqlserver.rows": lambda p, t: sqlserver_rows.fold(PersonTerm(p, t)),
    "sandbox.powercampus.source": sandbox_source._fold,
    "consumers.dead_letters": lambda p, t: dead_letters._person_term(_event(p, t)),
}


class TestPersonTermKeys:
    """Capture (SQL Server and sandbox), events and dead letters agree with the rule."""

    @pytest.mark.parametrize("where", PERSON_TERM_KEYS)
    @pytest.mark.parametrize(("first", "second", "same"), PERSON_TERMS)
    def test_same_exactly_when_the_rule_says(
        self,
        where: str,
        first: tuple[str, TermKey],
        second: tuple[str, TermKey],
        same: bool,
    ) -> None:
        """Two person-terms share a key exactly when the collation says they are one."""
        key = PERSON_TERM_KEYS[where]
        assert (key(*first) == key(*second)) is same
        assert key(*first) == person_term_key(*first)


class TestTermsAndSections:
    """Terms, sections, mapping entries and the values decided on."""

    @pytest.mark.parametrize(("first", "second", "same"), PERSON_TERMS)
    def test_terms(
        self, first: tuple[str, TermKey], second: tuple[str, TermKey], same: bool
    ) -> None:
        """TermKey.matches and the SQL Server adapter's term list follow the rule."""
        (_, one), (_, other) = first, second
        rule = term_key(one) == term_key(other)
        assert one.matches(other) is rule
        distinct = sqlserver_rows.distinct_terms(
            [
                (one.academic_year, one.academic_term),
                (other.academic_year, other.academic_term),
            ]
        )
        assert len(distinct) == (1 if rule else 2)

    @pytest.mark.parametrize(
        ("value", "other", "same"),
        [
            ("BSC5102", "bsc5102  ", True),
            ("BSC5102", " BSC5102", False),
            ("01", "02", False),
        ],
    )
    def test_values(self, value: str, other: str, same: bool) -> None:
        """Row values, mapping keys and sections collate as the rule does."""
        assert (collate(value) == collate(other)) is same
        assert (normalise(value) == normalise(other)) is same
        assert rows.text(f"{value}   ") == value
        one = SectionKey(
            academic_year="2021", academic_term="Winter", academic_session="",
            event_id=value, event_sub_type="LEC", section="01",
        )  # fmt: skip
        two = one.model_copy(update={"event_id": other})
        assert (one.key() == two.key()) is same
        assert one.key() == section_key(one)

    def test_mapping_feeds_every_spelling(self, tmp_path: Path) -> None:
        """A mapped course is found from any spelling the collation calls the same."""
        mapping_file = tmp_path / "m.json"
        mapping_file.write_text(
            '{"BSC5102Winter2021": {"courses": ["BSC5102"], "id": 7}}'
        )
        mapping = load_mappings({"2021/Winter": mapping_file})
        for year, term, event_id in [
            ("2021", "Winter", "BSC5102"),
            ("2021 ", "WINTER ", "bsc5102   "),
        ]:
            section = SectionKey(
                academic_year=year, academic_term=term, academic_session="",
                event_id=event_id, event_sub_type="LAB", section="02",
            )  # fmt: skip
            assert [c.id for c in mapping.courses_for(section)] == [7]

    @pytest.mark.parametrize("status", ["A", "a", "A  "])
    def test_add_drop_wait_and_grades(self, status: str) -> None:
        """ADD_DROP_WAIT and withdrawn grades are compared under the collation too."""
        policy = EnrolmentPolicy(
            student_role_id=5, audit_role_id=5, withdrawn_grades=frozenset({"W"})
        )
        section = SectionKey(
            academic_year="2021", academic_term="Winter", academic_session="",
            event_id="BSC5102", event_sub_type="LEC", section="01",
        )  # fmt: skip
        added = Registration(
            transcript_detail_id=1, section=section, add_drop_wait=status
        )
        withdrawn = added.model_copy(update={"final_grade": "w  "})
        assert is_enrolled(added, policy)
        assert not is_enrolled(withdrawn, policy)


class TestTermLabels:
    """One parser for ``YEAR/TERM`` wherever a label is read."""

    @pytest.mark.parametrize(
        ("label", "term"),
        [
            ("2021/Winter", "Winter"),
            (" 2021 / Fall ", "Fall"),
            ("2021/Spring 2", "Spring 2"),
        ],
    )
    def test_parses(self, label: str, term: str) -> None:
        """Blanks around the parts are dropped; the term may contain spaces."""
        assert TermKey.parse(label) == TermKey(academic_year="2021", academic_term=term)

    @pytest.mark.parametrize(
        "label", ["Winter", "21/Winter", "2021/", "2021/ ", "2021/a/b"]
    )
    def test_refuses(self, label: str) -> None:
        """Anything but a four-digit year, a slash and a term is refused, saying so."""
        with pytest.raises(ValueError, match="is not YEAR/TERM"):
            TermKey.parse(label)


def _details_found(people_code_id: str) -> bool:
    """Whether the capture finds P000123456's details for this spelling."""
    state = cdc_state.TermStates.of(
        ChangeBatch(0, 0, (), {}, people={"P000123456": PersonDetails()})
    )
    return (state.people or {}).get(collate(people_code_id)) is not None


#: Every function that keys a person alone (accounts, account details, person terms).
PERSON_KEYS: dict[str, Callable[[str], object]] = {
    "schemas.collation": collate,
    "consumers.account_book": account_book.account_key,
    "connectors.sqlserver.rows (person terms)": lambda p: list(
        sqlserver_rows.terms_of_persons([p], [("P000123456", "2021", "Winter")], [])[p]
    ),
    "cdc.state (account details)": _details_found,
}


class TestPersonKeys:
    """Accounts and account details find a person under any spelling the rule allows."""

    @pytest.mark.parametrize("where", PERSON_KEYS)
    @pytest.mark.parametrize(
        ("first", "second", "same"),
        [
            ("P000123456", "p000123456  ", True),
            ("P000123456", " P000123456", False),
            ("P000123456", "P000123457", False),
        ],
    )
    def test_same_exactly_when_the_rule_says(
        self, where: str, first: str, second: str, same: bool
    ) -> None:
        """Two spellings are one person's exactly when the collation says so."""
        key = PERSON_KEYS[where]
        if where.startswith(("connectors", "cdc")):
            # these look a stored person up: the stored one is P000123456
            assert bool(key(second)) is (collate(second) == collate("P000123456"))
        else:
            assert (key(first) == key(second)) is same
