"""SandboxChangeSource implements the ChangeSource port over the sandbox."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from cdc.errors import (
    ChangeTrackingVersionTooOld,
    SourceError,
    SourceMisconfigured,
    SourceUnavailable,
)
from cdc.ports import ChangeSource, PersonTerm, ShadowEntry, TrackedTable
from sandbox.powercampus import changetracking
from sandbox.powercampus.database import PowerCampusSandbox
from sandbox.powercampus.source import SandboxChangeSource, translate_sqlite_error
from schemas.events import SectionKey, TermKey

WINTER = TermKey(academic_year="2021", academic_term="Winter")
SPRING = TermKey(academic_year="2021", academic_term="Spring")


def section(event_id: str, code: str = "01", term: TermKey = WINTER) -> SectionKey:
    """A LEC section of session 01."""
    return SectionKey(
        academic_year=term.academic_year,
        academic_term=term.academic_term,
        academic_session="01",
        event_id=event_id,
        event_sub_type="LEC",
        section=code,
    )


def ins(
    pk: int, person: str, key: SectionKey, adw: str = "A", grade: str = "NULL"
) -> str:
    """An INSERT of one registration (values are used as given, padding included)."""
    return (
        "INSERT INTO TRANSCRIPTDETAIL (TranscriptDetailId, PEOPLE_ID, PEOPLE_CODE_ID, "
        "ACADEMIC_YEAR, ACADEMIC_TERM, ACADEMIC_SESSION, EVENT_ID, EVENT_SUB_TYPE, "
        f"SECTION, ADD_DROP_WAIT, FINAL_GRADE) VALUES ({pk}, '{person[1:]}', '{person}', "
        f"'{key.academic_year}', '{key.academic_term}', '{key.academic_session}', "
        f"'{key.event_id}', '{key.event_sub_type}', '{key.section}', '{adw}', {grade})"
    )


class DictShadow:
    """A dict-backed ShadowLookup that records what it was asked."""

    def __init__(self, entries: Sequence[ShadowEntry] = ()) -> None:
        self.entries = {e.transcript_detail_id: e for e in entries}
        self.asked: list[list[int]] = []
        self.owned: dict[tuple[str, str], str] = {}

    def owners(self, table: TrackedTable, keys: Sequence[str]) -> Mapping[str, str]:
        """Row owners the dict knows (``owned``)."""
        return {k: self.owned[(table, k)] for k in keys if (table, k) in self.owned}

    def lookup(self, transcript_detail_ids: Sequence[int]) -> Mapping[int, ShadowEntry]:
        """Entries the dict knows."""
        self.asked.append(list(transcript_detail_ids))
        return {i: self.entries[i] for i in transcript_detail_ids if i in self.entries}


@pytest.fixture(name="sandbox")
def sandbox_fixture(tmp_path: Path) -> Iterator[PowerCampusSandbox]:
    """A fresh sandbox."""
    with PowerCampusSandbox(tmp_path / "pc.sqlite") as sandbox:
        sandbox.create()
        yield sandbox


@pytest.fixture(name="source")
async def source_fixture(
    sandbox: PowerCampusSandbox,
) -> AsyncIterator[SandboxChangeSource]:
    """The source over the sandbox file, closed after the test."""
    source = SandboxChangeSource(sandbox.path, name="pc-test", busy_timeout_s=0)
    yield source
    await source.close()


class TestFetchSince:
    """fetch_since: net changes joined back, shadow resolution and complete term state."""

    def test_is_a_change_source(self, source: SandboxChangeSource) -> None:
        """The class satisfies the ChangeSource protocol (checked by mypy here)."""
        port: ChangeSource = source
        assert port.name == "pc-test"

    async def test_changes_are_joined_back_and_normalised(
        self, sandbox: PowerCampusSandbox, source: SandboxChangeSource
    ) -> None:
        """I/U rows carry the current row, trailing spaces stripped, case kept."""
        sandbox.execute(ins(1, "P000000001 ", section("bsc5102  ", "01 ")))
        sandbox.execute(ins(2, "P000000002", section("BSC5102"), adw="W"))
        batch = await source.fetch_since(0, DictShadow())
        assert (batch.from_version, batch.to_version) == (0, 2)
        assert [
            (c.transcript_detail_id, c.operation, c.change_version)
            for c in batch.changes
        ] == [
            (1, "I", 1),
            (2, "I", 2),
        ]
        current = batch.changes[0].current
        assert current is not None
        assert current.people_code_id == "P000000001"
        assert current.section == section("bsc5102")
        assert batch.changes[0].creation_version == 1

    async def test_commit_times_of_the_batch_versions(
        self, tmp_path: Path, source: SandboxChangeSource
    ) -> None:
        """Each version read comes with the UTC time the sandbox committed it."""
        moments = iter(
            [
                datetime(2021, 1, 11, 9, 0, tzinfo=timezone(timedelta(hours=1))),
                datetime(2021, 1, 11, 8, 5, tzinfo=UTC),
            ]
        )
        with PowerCampusSandbox(source.path, clock=lambda: next(moments)) as writer:
            writer.execute(ins(1, "P000000001", section("BSC5102")))
            writer.execute(ins(2, "P000000002", section("BSC5102")))
        batch = await source.fetch_since(0, DictShadow())
        assert batch.commit_times == {
            1: datetime(2021, 1, 11, 8, 0, tzinfo=UTC),
            2: datetime(2021, 1, 11, 8, 5, tzinfo=UTC),
        }
        assert (await source.fetch_since(2, DictShadow())).commit_times == {}

    async def test_delete_resolved_from_shadow_and_term_state_complete(
        self, sandbox: PowerCampusSandbox, source: SandboxChangeSource
    ) -> None:
        """A delete gets its shadow entry; the person-term holds every remaining row."""
        person, withdrawn = "P000000001", "'W'"
        sandbox.execute(
            f"{ins(1, person, section('BSC5102'))}; {ins(2, person, section('PSY2010'), 'D')};"
            f"{ins(3, person, section('EDU3300'), 'W', withdrawn)};"
            f"{ins(4, person, section('BSC5102', term=SPRING))};"
            f"{ins(5, 'P000000002', section('BSC5102'))}"
        )
        sandbox.execute("DELETE FROM TRANSCRIPTDETAIL WHERE TranscriptDetailId = 1")
        shadow = DictShadow([ShadowEntry(1, person, section("BSC5102"))])
        batch = await source.fetch_since(1, shadow)
        (change,) = batch.changes
        assert (change.operation, change.current, change.shadow) == (
            "D",
            None,
            ShadowEntry(1, person, section("BSC5102")),
        )
        assert shadow.asked == [[1]]
        rows = batch.term_state[PersonTerm(person, WINTER)]
        assert [
            (r.transcript_detail_id, r.add_drop_wait, r.final_grade) for r in rows
        ] == [
            (2, "D", None),
            (3, "W", "W"),
        ]
        assert list(batch.term_state) == [PersonTerm(person, WINTER)]

    async def test_person_with_no_rows_left_maps_to_empty(
        self, sandbox: PowerCampusSandbox, source: SandboxChangeSource
    ) -> None:
        """Deleting a person's last row of a term leaves an empty tuple, not a missing key."""
        sandbox.execute(ins(1, "P000000001", section("BSC5102")))
        sandbox.execute("DELETE FROM TRANSCRIPTDETAIL")
        shadow = DictShadow([ShadowEntry(1, "P000000001", section("BSC5102"))])
        batch = await source.fetch_since(0, shadow)
        assert batch.changes[0].operation == "D"
        assert batch.term_state == {PersonTerm("P000000001", WINTER): ()}

    async def test_unknown_delete_touches_no_person(
        self, sandbox: PowerCampusSandbox, source: SandboxChangeSource
    ) -> None:
        """A delete the shadow never saw (insert+delete in the window) has no shadow."""
        sandbox.execute(ins(1, "P000000001", section("BSC5102")))
        sandbox.execute("DELETE FROM TRANSCRIPTDETAIL")
        batch = await source.fetch_since(0, DictShadow())
        assert [(c.operation, c.shadow) for c in batch.changes] == [("D", None)]
        assert batch.term_state == {}

    async def test_update_that_moved_terms_touches_both(
        self, sandbox: PowerCampusSandbox, source: SandboxChangeSource
    ) -> None:
        """An I/U row the shadow knows carries the entry; the old person-term is read too."""
        sandbox.execute(ins(1, "P000000001", section("BSC5102")))
        sandbox.execute(
            "UPDATE TRANSCRIPTDETAIL SET ACADEMIC_TERM = 'Spring', PEOPLE_CODE_ID = "
            "'P000000002' WHERE TranscriptDetailId = 1"
        )
        old = ShadowEntry(1, "P000000001", section("BSC5102"))
        batch = await source.fetch_since(1, DictShadow([old]))
        (change,) = batch.changes
        assert change.shadow == old
        assert change.current is not None
        assert change.current.section == section("BSC5102", term=SPRING)
        assert batch.term_state == {
            PersonTerm("P000000002", SPRING): (change.current,),
            PersonTerm("P000000001", WINTER): (),
        }

    async def test_term_state_is_batched(
        self, sandbox: PowerCampusSandbox, source: SandboxChangeSource
    ) -> None:
        """Fifty touched people cost the same number of queries as one."""
        statements: list[str] = []

        async def count_queries(people: int, first_pk: int) -> int:
            script = "; ".join(
                ins(first_pk + n, f"P{first_pk + n:09d}", section("BSC5102"))
                for n in range(people)
            )
            last = sandbox.current_version()
            sandbox.execute(script)
            statements.clear()
            batch = await source.fetch_since(last, DictShadow())
            assert len(batch.term_state) == people
            return len(statements)

        await source.read_snapshot([])  # opens the connection
        assert source._conn is not None
        source._conn.set_trace_callback(statements.append)
        assert await count_queries(1, 1) == await count_queries(50, 100)

    async def test_one_consistent_read(
        self, sandbox: PowerCampusSandbox, source: SandboxChangeSource
    ) -> None:
        """A commit landing mid-fetch is invisible to the batch and shows up next poll."""
        sandbox.execute(ins(1, "P000000001", section("BSC5102")))

        class WritingShadow(DictShadow):
            def lookup(self, ids: Sequence[int]) -> Mapping[int, ShadowEntry]:
                sandbox.execute(ins(2, "P000000001", section("PSY2010")))
                return super().lookup(ids)

        batch = await source.fetch_since(0, WritingShadow())
        assert batch.to_version == 1
        assert [
            r.transcript_detail_id
            for r in batch.term_state[PersonTerm("P000000001", WINTER)]
        ] == [1]
        later = await source.fetch_since(batch.to_version, DictShadow())
        assert [(c.transcript_detail_id, c.change_version) for c in later.changes] == [
            (2, 2)
        ]

    @pytest.mark.parametrize(
        ("prepare", "min_valid"),
        [
            (lambda s: s.cleanup(retain_versions=1), 2),
            (lambda s: s.truncate("TRANSCRIPTDETAIL"), 4),
        ],
        ids=["cleanup", "truncate"],
    )
    async def test_below_min_valid_version(
        self,
        sandbox: PowerCampusSandbox,
        source: SandboxChangeSource,
        prepare: object,
        min_valid: int,
    ) -> None:
        """A baseline below the min valid version raises; at it the fetch succeeds."""
        for pk in (1, 2, 3):
            sandbox.execute(ins(pk, "P000000001", section(f"BSC510{pk}")))
        prepare(sandbox)  # type: ignore[operator]
        with pytest.raises(ChangeTrackingVersionTooOld) as caught:
            await source.fetch_since(min_valid - 1, DictShadow())
        assert (caught.value.last_version, caught.value.min_valid_version) == (
            min_valid - 1,
            min_valid,
        )
        assert not caught.value.retriable
        assert await source.min_valid_version() == min_valid
        await source.fetch_since(min_valid, DictShadow())


class TestIdlePoll:
    """Nothing committed since the saved version: the versions are all a poll reads."""

    async def test_begin_one_select_commit(
        self, sandbox: PowerCampusSandbox, source: SandboxChangeSource
    ) -> None:
        sandbox.execute(ins(1, "P000000001", section("BSC5102")))
        first = await source.fetch_since(0, DictShadow())
        sent: list[str] = []
        assert source._conn is not None
        source._conn.set_trace_callback(sent.append)
        idle = await source.fetch_since(first.to_version, DictShadow())
        assert [statement.split()[0] for statement in sent] == [
            "BEGIN",
            "SELECT",
            "COMMIT",
        ]
        assert (idle.to_version, idle.changes, idle.key_changes) == (1, (), ())
        sandbox.execute(ins(2, "P000000002", section("BSC5102")))
        later = await source.fetch_since(idle.to_version, DictShadow())
        assert [c.transcript_detail_id for c in later.changes] == [2]


class TestReadSnapshot:
    """read_snapshot: every row of the terms and the version, from one snapshot."""

    async def test_rows_of_the_terms_only(
        self, sandbox: PowerCampusSandbox, source: SandboxChangeSource
    ) -> None:
        """Rows of other terms stay out; the term matches case-insensitively."""
        sandbox.execute(
            f"{ins(1, 'P000000001', section('BSC5102'), 'D')};"
            f"{ins(2, 'P000000001', section('BSC5102', term=SPRING))}"
        )
        snapshot = await source.read_snapshot(
            [TermKey(academic_year="2021", academic_term="WINTER ")]
        )
        assert snapshot.version == 1
        assert [(r.transcript_detail_id, r.add_drop_wait) for r in snapshot.rows] == [
            (1, "D")
        ]

    async def test_consistent_with_its_version(
        self,
        sandbox: PowerCampusSandbox,
        source: SandboxChangeSource,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """A commit between reading the version and the rows is not in the snapshot."""
        sandbox.execute(ins(1, "P000000001", section("BSC5102")))
        original = changetracking.current_version
        wrote: list[int | None] = []

        def version_then_write(conn: sqlite3.Connection) -> int:
            version = original(conn)
            if not wrote:
                wrote.append(None)
                wrote[0] = sandbox.execute(ins(2, "P000000002", section("BSC5102")))
            return version

        monkeypatch.setattr(changetracking, "current_version", version_then_write)
        snapshot = await source.read_snapshot([WINTER])
        assert wrote == [2]
        assert (snapshot.version, [r.transcript_detail_id for r in snapshot.rows]) == (
            1,
            [1],
        )


CALENDAR = (
    "INSERT INTO ACADEMICCALENDAR (ACADEMIC_YEAR, ACADEMIC_TERM, ACADEMIC_SESSION, "
    "SessionPeriodId, START_DATE, END_DATE, FINAL_END_DATE) VALUES "
    "('2021', 'Winter', '01', 1, '2021-01-04 00:00:00', '2021-04-23 00:00:00', "
    "'2021-04-30 00:00:00'),"
    "('2021', 'Winter', '02', 2, '2021-02-01', '2021-03-01', NULL),"
    "('2021', 'Spring  ', '01', 3, '2021-04-26', '2021-06-18', NULL),"
    "('2021', 'Fall', '01', 4, NULL, '2021-12-18', NULL)"
)


class TestLiveTerms:
    """live_terms: terms with a session whose calendar dates include today."""

    @pytest.mark.parametrize(
        ("today", "expected"),
        [
            (date(2021, 1, 3), []),
            (date(2021, 1, 4), [WINTER]),
            (date(2021, 2, 15), [WINTER]),
            (date(2021, 4, 26), [WINTER, SPRING]),
            (date(2021, 4, 30), [WINTER, SPRING]),
            (date(2021, 5, 1), [SPRING]),
            (date(2021, 6, 19), []),
            (date(2021, 11, 1), []),
        ],
    )
    async def test_from_the_calendar(
        self,
        sandbox: PowerCampusSandbox,
        source: SandboxChangeSource,
        today: date,
        expected: list[TermKey],
    ) -> None:
        """START_DATE <= today <= END_DATE or FINAL_END_DATE; one entry per term."""
        sandbox.execute(CALENDAR)
        assert await source.live_terms(today) == expected


class TestErrors:
    """sqlite errors become the capture side's typed errors."""

    async def test_locked_database_is_unavailable(
        self, sandbox: PowerCampusSandbox, source: SandboxChangeSource
    ) -> None:
        """A file another process holds exclusively raises the retriable SourceUnavailable."""
        sandbox.close()  # exclusive locking in WAL mode needs the only connection
        holder = sqlite3.connect(sandbox.path, isolation_level=None)
        holder.execute("PRAGMA locking_mode = EXCLUSIVE")
        holder.execute("BEGIN EXCLUSIVE")
        try:
            with pytest.raises(SourceUnavailable) as caught:
                await source.fetch_since(0, DictShadow())
            assert caught.value.retriable
        finally:
            holder.execute("ROLLBACK")
            holder.close()

    @pytest.mark.parametrize(
        ("make_file", "error"),
        [(False, SourceUnavailable), (True, SourceMisconfigured)],
        ids=["missing file", "not initialised"],
    )
    async def test_no_sandbox(
        self, tmp_path: Path, make_file: bool, error: type[SourceError]
    ) -> None:
        """A missing file may appear later (retriable); an empty one needs a person."""
        path = tmp_path / "absent.sqlite"
        if make_file:
            sqlite3.connect(path).close()
        async with SandboxChangeSource(path) as source:
            with pytest.raises(error):
                await source.live_terms(date(2021, 1, 4))

    @pytest.mark.parametrize(
        ("code", "error"),
        [
            (sqlite3.SQLITE_BUSY, SourceUnavailable),
            (sqlite3.SQLITE_LOCKED, SourceUnavailable),
            (sqlite3.SQLITE_IOERR_READ, SourceUnavailable),
            (sqlite3.SQLITE_CANTOPEN, SourceUnavailable),
            (sqlite3.SQLITE_FULL, SourceUnavailable),
            (sqlite3.SQLITE_ERROR, SourceMisconfigured),
            (sqlite3.SQLITE_CORRUPT, SourceMisconfigured),
            (sqlite3.SQLITE_NOTADB, SourceMisconfigured),
            (None, SourceMisconfigured),
        ],
    )
    def test_error_codes(self, code: int | None, error: type[SourceError]) -> None:
        """The primary result code decides whether a retry can help."""
        exc = sqlite3.OperationalError("boom")
        exc.sqlite_errorcode = code  # type: ignore[assignment]
        assert type(translate_sqlite_error(exc)) is error

    @pytest.mark.parametrize(
        "kind",
        [
            sqlite3.Error, sqlite3.DatabaseError, sqlite3.OperationalError,
            sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.InterfaceError,
            sqlite3.DataError, sqlite3.InternalError, sqlite3.NotSupportedError,
        ],
    )  # fmt: skip
    def test_map_is_total(self, kind: type[sqlite3.Error]) -> None:
        """Every sqlite3 error class maps to a SourceError."""
        assert isinstance(translate_sqlite_error(kind("x")), SourceError)

    async def test_close_then_reuse(
        self, sandbox: PowerCampusSandbox, source: SandboxChangeSource
    ) -> None:
        """After close, the next call opens a new connection."""
        await source.close()
        assert (await source.read_snapshot([WINTER])).version == 0


TEACHES = (
    "INSERT INTO SECTIONPER (ACADEMIC_YEAR, ACADEMIC_TERM, ACADEMIC_SESSION, EVENT_ID, "
    "EVENT_SUB_TYPE, SECTION, PERSON_CODE_ID, PERCENTAGE) VALUES "
    "('2021', 'Winter', '01', 'BSC5102', 'LEC', '01', '{person}', {share})"
)
STANDING = (
    "INSERT INTO ACADEMIC (PEOPLE_CODE_ID, ACADEMIC_YEAR, ACADEMIC_TERM, "
    "ACADEMIC_SESSION, TRANSCRIPT_SEQ, ENROLL_SEPARATION) VALUES "
    "('{person}', '2021', 'Winter', '01', '001', '{code}')"
)
PERSON = (
    "INSERT INTO PEOPLE (PEOPLE_CODE_ID, PEOPLE_ID, PersonId, FIRST_NAME, LAST_NAME) "
    "VALUES ('{person}', '{person_id}', {n}, 'Ada', 'Lovelace');"
    "INSERT INTO EmailAddress (EmailAddressId, PeopleOrgCodeId, Email, IsActive) "
    "VALUES ({n}, '{person}', 'ada{n}@example.edu', 1);"
    "UPDATE PEOPLE SET PrimaryEmailId = {n} WHERE PEOPLE_CODE_ID = '{person}';"
    "INSERT INTO PersonUser (PersonUserId, PersonId, UserName) VALUES ({n}, {n}, 'ada{n}')"
)


def person_sql(person: str, n: int) -> str:
    """PEOPLE, a primary e-mail and a login name for ``person``."""
    return PERSON.format(person=person, person_id=person[1:], n=n)


class TestOtherTables:
    """SECTIONPER, ACADEMIC and the person tables, read in the same consistent poll."""

    async def test_instructor_change_carries_every_table(
        self, sandbox: PowerCampusSandbox, source: SandboxChangeSource
    ) -> None:
        """A SECTIONPER insert names its person-term; the batch holds all its state."""
        ada = "P000000007"
        sandbox.execute(person_sql(ada, 7))
        start = sandbox.current_version()
        sandbox.execute(
            f"{TEACHES.format(person=ada, share=0)};"
            f"{ins(1, ada, section('PSY2010'))};"
            f"{STANDING.format(person=ada, code='ENRL')}"
        )
        batch = await source.fetch_since(start, DictShadow())
        tables = sorted(c.table for c in batch.key_changes)
        assert tables == ["ACADEMIC", "SECTIONPER"]
        teaching = next(c for c in batch.key_changes if c.table == "SECTIONPER")
        assert (teaching.people_code_id, teaching.section) == (ada, section("BSC5102"))
        winter = PersonTerm(ada, WINTER)
        assert batch.teaching is not None
        assert [t.percentage for t in batch.teaching[winter]] == [0.0]
        assert batch.standing is not None
        assert [s.enroll_separation for s in batch.standing[winter]] == ["ENRL"]
        assert batch.people is not None
        assert batch.people[ada].email == "ada7@example.edu"
        assert batch.people[ada].username == "ada7"

    async def test_instructor_delete_names_them(
        self, sandbox: PowerCampusSandbox, source: SandboxChangeSource
    ) -> None:
        """SECTIONPER's key is its natural key: a delete still says who and where."""
        ada = "P000000007"
        sandbox.execute(TEACHES.format(person=ada, share=100))
        start = sandbox.current_version()
        sandbox.execute("DELETE FROM SECTIONPER")
        batch = await source.fetch_since(start, DictShadow())
        (change,) = batch.key_changes
        assert (change.operation, change.people_code_id, change.term) == (
            "D",
            ada,
            WINTER,
        )
        assert batch.teaching == {PersonTerm(ada, WINTER): ()}

    async def test_person_change_touches_their_live_terms(
        self, sandbox: PowerCampusSandbox, source: SandboxChangeSource
    ) -> None:
        """A name change touches the terms the person has rows in, live ones only."""
        ada = "P000000007"
        sandbox.execute(
            f"{person_sql(ada, 7)};{ins(1, ada, section('BSC5102'))};"
            f"{ins(2, ada, section('BSC5102', term=SPRING))}"
        )
        start = sandbox.current_version()
        sandbox.execute(
            f"UPDATE PEOPLE SET LAST_NAME = 'King' WHERE PEOPLE_CODE_ID = '{ada}'"
        )
        every = await source.fetch_since(start, DictShadow())
        assert set(every.person_terms[ada]) == {WINTER, SPRING}
        live = await source.fetch_since(start, DictShadow(), live_terms=[WINTER])
        assert live.person_terms[ada] == [WINTER]
        assert live.people is not None
        assert live.people[ada].last_name == "King"

    async def test_key_only_delete_resolved_through_row_owners(
        self, sandbox: PowerCampusSandbox, source: SandboxChangeSource
    ) -> None:
        """An EmailAddress delete names a row only: the shadow map's owner resolves it."""
        ada = "P000000007"
        sandbox.execute(person_sql(ada, 7))
        start = sandbox.current_version()
        sandbox.execute("DELETE FROM EmailAddress WHERE EmailAddressId = 7")
        unknown = await source.fetch_since(start, DictShadow())
        assert [c.people_code_id for c in unknown.key_changes] == [None]
        shadow = DictShadow()
        shadow.owned[("EmailAddress", "7")] = ada
        known = await source.fetch_since(start, shadow)
        assert [(c.operation, c.people_code_id) for c in known.key_changes] == [
            ("D", ada)
        ]

    async def test_snapshot_reads_every_table(
        self, sandbox: PowerCampusSandbox, source: SandboxChangeSource
    ) -> None:
        """A snapshot holds the terms' SECTIONPER and ACADEMIC rows and the details."""
        ada = "P000000007"
        sandbox.execute(
            f"{person_sql(ada, 7)};{TEACHES.format(person=ada, share=100)};"
            f"{STANDING.format(person='P000000001', code='WITH')}"
        )
        snapshot = await source.read_snapshot([WINTER])
        assert [t.people_code_id for t in snapshot.teaching or ()] == [ada]
        assert [s.separation for s in snapshot.standing or ()] == [
            None
        ]  # no code table
        assert snapshot.people is not None
        assert snapshot.people[ada].first_name == "Ada"
        assert {(o.table, o.key) for o in snapshot.owners} == {
            ("EmailAddress", "7"),
            ("PersonUser", "7"),
        }

    async def test_untracked_table_is_refused(self, tmp_path: Path) -> None:
        """Asked to track a table whose change tracking is off: say which and what to do."""
        with PowerCampusSandbox(tmp_path / "one.sqlite") as sandbox:
            sandbox.create(("TRANSCRIPTDETAIL",))
        async with SandboxChangeSource(tmp_path / "one.sqlite") as source:
            with pytest.raises(SourceMisconfigured, match="not enabled on SECTIONPER"):
                await source.fetch_since(0, DictShadow())
        async with SandboxChangeSource(
            tmp_path / "one.sqlite", tables=("TRANSCRIPTDETAIL",)
        ) as source:
            batch = await source.fetch_since(0, DictShadow())
            assert (batch.teaching, batch.people) == (None, None)
