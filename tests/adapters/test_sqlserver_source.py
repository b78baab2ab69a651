"""SqlServerChangeSource driven through a fake pyodbc connection answering as SQL Server."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any

import pyodbc
import pytest
from pydantic import SecretStr
from structlog.testing import capture_logs

from cdc.errors import (
    ChangeTrackingVersionTooOld,
    SourceMisconfigured,
    SourceUnavailable,
)
from cdc.ports import PersonTerm, ShadowEntry, TrackedTable
from cdc.rows import SECTIONPER_KEY
from connectors.sqlserver import sql
from connectors.sqlserver.source import SqlServerChangeSource
from enrolstream.settings import SqlServerSettings
from schemas.events import SectionKey, TermKey

WINTER = TermKey(academic_year="2021", academic_term="Winter")


def td(
    tid: int,
    person: str,
    event: str = "BSC5102 ",
    adw: str = "A",
    term: str = "Winter    ",
) -> tuple[Any, ...]:
    """A TRANSCRIPTDETAIL row as the server returns it (nvarchar padding kept)."""
    return (
        tid,
        person,
        "2021",
        term,
        "01",
        event,
        "LEC ",
        "01  ",
        adw,
        None,
        None,
        "CR",
        "001",
    )


def section(event: str = "BSC5102") -> SectionKey:
    return SectionKey(
        academic_year="2021",
        academic_term="Winter",
        academic_session="01",
        event_id=event,
        event_sub_type="LEC",
        section="01",
    )


class FakeServer:
    """The database side: catalog state, CT versions, changes and table rows."""

    def __init__(self) -> None:
        self.min_valid: int | None = 5
        self.current = 20
        self.changes: list[tuple[Any, ...]] = []
        self.table: list[tuple[Any, ...]] = []
        self.sent: list[tuple[str, tuple[Any, ...]]] = []
        self.fail_on: dict[str, Exception] = {}
        self.connections = 0
        #: sys.dm_tran_commit_table: (commit_ts, local commit_time, UTC offset minutes)
        self.commits: list[tuple[Any, ...]] = []
        #: SECTIONPER: its CHANGETABLE rows and its table rows
        self.teaching_changes: list[tuple[Any, ...]] = []
        self.teaching: list[tuple[Any, ...]] = []

    def answer(self, statement: str, params: tuple[Any, ...]) -> list[Sequence[Any]]:
        self.sent.append((statement, params))
        if statement in self.fail_on:
            raise self.fail_on.pop(statement)
        fixed: dict[str, Sequence[Sequence[Any]]] = {
            sql.DATABASE_STATE: [("Campus6", 1, "ON", self.current)],
            sql.TABLE_STATE: [(1, 1, self.min_valid)],
            sql.PRIMARY_KEY_COLUMNS: [("TranscriptDetailId",)],
            sql.MIN_VALID_VERSION: [(self.min_valid,)],
            sql.CURRENT_VERSION: [(self.current,)],
            sql.versions_query(["TRANSCRIPTDETAIL"]): [(self.current, self.min_valid)],
            sql.versions_query(["TRANSCRIPTDETAIL", "SECTIONPER"]): [
                (self.current, self.min_valid, self.min_valid)
            ],
            sql.CHANGES: self.changes,
            sql.COMMIT_TIMES: self.commits,
            sql.LIVE_TERMS: [
                ("2021", "Winter "),
                ("2021", "WINTER"),
                ("2021", "Spring"),
            ],
        }
        fixed |= {  # SECTIONPER, when the source tracks it
            sql.min_valid_version("SECTIONPER"): [(self.min_valid,)],
            sql.table_state("dbo.SECTIONPER"): [(2, 1, self.min_valid)],
            sql.primary_key_columns("dbo.SECTIONPER"): [(c,) for c in SECTIONPER_KEY],
            sql.key_changes_query("SECTIONPER"): self.teaching_changes,
        }
        if statement in fixed:
            return list(fixed[statement])
        if statement.startswith("SELECT sp."):
            return list(self.teaching)
        if "INNER JOIN (VALUES" in statement:
            return self._keyed(statement, params)
        return []

    def _keyed(self, statement: str, params: tuple[Any, ...]) -> list[Sequence[Any]]:
        width = 3 if "PEOPLE_CODE_ID, ACADEMIC_YEAR, ACADEMIC_TERM)" in statement else 2
        keys = {
            tuple(str(p).casefold() for p in params[i : i + width])
            for i in range(0, len(params), width)
        }

        def key(row: tuple[Any, ...]) -> tuple[str, ...]:
            parts = (row[1], row[2], row[3]) if width == 3 else (row[2], row[3])
            return tuple(str(part).rstrip().casefold() for part in parts)

        return [row for row in self.table if key(row) in keys]

    def statements(self) -> list[str]:
        return [statement for statement, _ in self.sent]

    def connect(self) -> FakeConnection:
        self.connections += 1
        return FakeConnection(self)


class FakeCursor:
    def __init__(self, server: FakeServer) -> None:
        self.server = server
        self.rows: list[Sequence[Any]] = []

    def execute(self, statement: str, *params: Any) -> FakeCursor:
        self.rows = self.server.answer(statement, params)
        return self

    def fetchone(self) -> Sequence[Any] | None:
        return self.rows[0] if self.rows else None

    def fetchall(self) -> list[Sequence[Any]]:
        return self.rows

    def close(self) -> None:
        pass


class FakeConnection:
    def __init__(self, server: FakeServer) -> None:
        self.server = server
        self.closed = False

    def cursor(self) -> FakeCursor:
        return FakeCursor(self.server)

    def execute(self, statement: str) -> FakeCursor:
        return self.cursor().execute(statement)

    def close(self) -> None:
        self.closed = True


class DictShadow:
    def __init__(self, entries: Sequence[ShadowEntry] = ()) -> None:
        self.entries = {entry.transcript_detail_id: entry for entry in entries}
        self.asked: list[int] = []

    def lookup(self, ids: Sequence[int]) -> Mapping[int, ShadowEntry]:
        self.asked += ids
        return {i: self.entries[i] for i in ids if i in self.entries}

    def owners(self, table: TrackedTable, keys: Sequence[str]) -> Mapping[str, str]:
        return {}


SETTINGS = SqlServerSettings(user="enrolstream", password=SecretStr("hunter22"))
CHECKS = [
    sql.DATABASE_STATE,
    sql.TABLE_STATE,
    sql.PRIMARY_KEY_COLUMNS,
    *sql.READ_PROBES,
]


def make_source(server: FakeServer, **overrides: Any) -> SqlServerChangeSource:
    settings = SETTINGS.model_copy(update=overrides)
    return SqlServerChangeSource(
        settings, name="pc", connect_with=server.connect, tables=("TRANSCRIPTDETAIL",)
    )


def known_statement(statement: str) -> bool:
    """Whether the statement is one the parse test covers (constant or builder output)."""
    built = {sql.term_state_query(n) for n in (1, 2, 3, sql.KEYS_PER_CHUNK, 100)}
    built |= {sql.snapshot_query(n) for n in (1, 2, 3)}
    return statement in set(sql.all_statements().values()) | built


class TestFetchSince:
    """One poll is one snapshot transaction with the documented steps, then COMMIT."""

    async def test_steps_in_one_snapshot_transaction(self) -> None:
        """SET SNAPSHOT, BEGIN, versions, changes, term state, COMMIT — in that order."""
        server = FakeServer()
        server.changes = [(18, 18, "I", 1, *td(1, "P000000001"))]
        server.table = [td(1, "P000000001"), td(2, "P000000001", "COUN6552  ")]
        batch = await make_source(server).fetch_since(10, DictShadow())
        sent = server.statements()[len(CHECKS) :]
        assert sent == [
            sql.SET_SNAPSHOT,
            sql.BEGIN_TRANSACTION,
            sql.versions_query(["TRANSCRIPTDETAIL"]),
            sql.CHANGES,
            sql.COMMIT_TIMES,
            sql.term_state_query(1),
            sql.COMMIT_TRANSACTION,
        ]
        assert server.sent[len(CHECKS) + 3][1] == (10,)
        assert server.sent[len(CHECKS) + 4][1] == (10, 20)
        assert (batch.from_version, batch.to_version) == (10, 20)
        assert [(c.transcript_detail_id, c.operation) for c in batch.changes] == [
            (1, "I")
        ]
        state = batch.term_state[PersonTerm("P000000001", WINTER)]
        assert [r.section.event_id for r in state] == ["BSC5102", "COUN6552"]
        assert all(known_statement(s) for s in server.statements())

    async def test_commit_times_converted_to_utc(self) -> None:
        """The server's local commit times come back in UTC, keyed by version."""
        server = FakeServer()
        server.changes = [(18, 18, "I", 1, *td(1, "P000000001"))]
        server.table = [td(1, "P000000001")]
        # pyodbc returns DATETIME as a naive datetime: the server's local time
        local = datetime(2021, 1, 11, 9, 30, 0, 123000)  # noqa: DTZ001
        server.commits = [(18, local, 60)]
        batch = await make_source(server).fetch_since(10, DictShadow())
        assert batch.commit_times == {
            18: datetime(2021, 1, 11, 8, 30, 0, 123000, tzinfo=UTC)
        }

    async def test_commit_times_refused_warns_once_and_carries_on(self) -> None:
        """Without VIEW SERVER STATE the batch has no commit times, warned about once."""
        server = FakeServer()
        server.changes = [(18, 18, "I", 1, *td(1, "P000000001"))]
        server.table = [td(1, "P000000001")]
        denied = pyodbc.ProgrammingError(
            "42000", "[42000] VIEW SERVER STATE permission was denied (300)"
        )
        server.fail_on[sql.COMMIT_TIMES] = denied
        source = make_source(server)
        with capture_logs() as logs:
            first = await source.fetch_since(10, DictShadow())
            second = await source.fetch_since(10, DictShadow())
        assert first.commit_times == second.commit_times == {}
        assert [e["event"] for e in logs].count("commit_times_unreadable") == 1
        assert server.statements().count(sql.COMMIT_TIMES) == 1

    async def test_delete_resolved_from_shadow(self) -> None:
        """A delete's person comes from the shadow map; no rows left reads as ()."""
        server = FakeServer()
        server.changes = [(19, None, "D", 7, *([None] * 12))]
        entry = ShadowEntry(7, "P000000002", section())
        batch = await make_source(server).fetch_since(10, DictShadow([entry]))
        (change,) = batch.changes
        assert (change.operation, change.current, change.shadow) == ("D", None, entry)
        assert batch.term_state == {PersonTerm("P000000002", WINTER): ()}

    async def test_values_normalised(self) -> None:
        """Trailing spaces are removed, case is kept."""
        server = FakeServer()
        server.changes = [(18, 18, "U", 1, *td(1, "P000000001 ", "bsc5102 "))]
        batch = await make_source(server).fetch_since(10, DictShadow())
        row = batch.changes[0].current
        assert row is not None
        assert (
            row.people_code_id,
            row.section.event_id,
            row.section.section,
            row.term.academic_term,
        ) == ("P000000001", "bsc5102", "01", "Winter")

    @pytest.mark.parametrize(
        ("persons", "queries"), [(1, 1), (600, 1), (601, 2), (1300, 3)]
    )
    async def test_term_state_in_chunks(self, persons: int, queries: int) -> None:
        """Term state is read in batches under the 2,100-parameter limit, not per person."""
        server = FakeServer()
        server.changes = [(18, 18, "I", i, *td(i, f"P{i:09d}")) for i in range(persons)]
        batch = await make_source(server).fetch_since(10, DictShadow())
        keyed = [p for s, p in server.sent if "INNER JOIN (VALUES" in s]
        assert len(keyed) == queries
        assert all(len(p) <= sql.MAX_PARAMETERS for p in keyed)
        assert len(batch.term_state) == persons

    async def test_version_too_old_rolls_back(self) -> None:
        """A saved version below the min valid version raises and ends the transaction."""
        server = FakeServer()
        with pytest.raises(ChangeTrackingVersionTooOld) as caught:
            await make_source(server).fetch_since(4, DictShadow())
        assert (caught.value.last_version, caught.value.min_valid_version) == (4, 5)
        assert server.statements()[-1] == sql.ROLLBACK_IF_OPEN
        assert sql.CHANGES not in server.statements()

    async def test_null_min_valid_version_is_misconfiguration(self) -> None:
        """NULL from CHANGE_TRACKING_MIN_VALID_VERSION names VIEW CHANGE TRACKING."""
        server = FakeServer()
        source = make_source(server)
        await source.open()
        server.min_valid = None
        with pytest.raises(SourceMisconfigured, match="VIEW CHANGE TRACKING"):
            await source.fetch_since(10, DictShadow())

    async def test_lost_connection_is_retriable_and_reconnects(self) -> None:
        """A communication failure is SourceUnavailable; the next poll reconnects."""
        server = FakeServer()
        source = make_source(server)
        await source.open()
        server.fail_on[sql.CHANGES] = pyodbc.OperationalError(
            "08S01",
            "[08S01] [Microsoft][ODBC Driver 18 for SQL Server]Communication "
            "link failure (0) (SQLExecDirectW)",
        )
        with pytest.raises(SourceUnavailable):
            await source.fetch_since(10, DictShadow())
        batch = await source.fetch_since(10, DictShadow())
        assert server.connections == 2
        assert batch.to_version == 20

    async def test_fallback_reads_current_version_first(self) -> None:
        """Without snapshot isolation: READ COMMITTED, no transaction, min re-checked."""
        server = FakeServer()
        with capture_logs() as logs:
            source = make_source(server, snapshot_isolation=False)
            await source.fetch_since(10, DictShadow())
        sent = server.statements()[len(CHECKS) :]
        assert sent[:4] == [
            sql.SET_READ_COMMITTED,
            sql.versions_query(["TRANSCRIPTDETAIL"]),
            sql.CHANGES,
            sql.MIN_VALID_VERSION,
        ]
        assert sql.BEGIN_TRANSACTION not in sent
        assert any(log["event"] == "snapshot_isolation_off" for log in logs)


class TestNothingCommittedSince:
    """A poll that finds the current version at the saved one reads nothing else."""

    async def test_an_idle_poll_is_the_versions_and_nothing_else(self) -> None:
        """SET, BEGIN, the versions (one row), COMMIT: no CHANGETABLE, no state."""
        server = FakeServer()
        server.current = 10
        batch = await make_source(server).fetch_since(10, DictShadow())
        assert server.statements()[len(CHECKS) :] == [
            sql.SET_SNAPSHOT,
            sql.BEGIN_TRANSACTION,
            sql.versions_query(["TRANSCRIPTDETAIL"]),
            sql.COMMIT_TRANSACTION,
        ]
        assert (batch.from_version, batch.to_version) == (10, 10)
        assert (batch.changes, batch.key_changes, batch.term_state) == ((), (), {})

    async def test_history_cleaned_up_is_still_seen(self) -> None:
        """The min valid versions come in the same statement: cleanup is never missed."""
        server = FakeServer()
        server.current, server.min_valid = 10, 11
        with pytest.raises(ChangeTrackingVersionTooOld):
            await make_source(server).fetch_since(10, DictShadow())

    async def test_a_database_gone_back_in_time_reports_its_version(self) -> None:
        """Below the saved version (a restored backup) the poller is told, to re-initialise."""
        server = FakeServer()
        server.current = 8
        batch = await make_source(server).fetch_since(10, DictShadow())
        assert batch.to_version == 8
        assert sql.CHANGES not in server.statements()

    async def test_fallback_idle_poll(self) -> None:
        """Without snapshot isolation too: the versions, then nothing."""
        server = FakeServer()
        server.current = 10
        await make_source(server, snapshot_isolation=False).fetch_since(
            10, DictShadow()
        )
        assert server.statements()[len(CHECKS) :] == [
            sql.SET_READ_COMMITTED,
            sql.versions_query(["TRANSCRIPTDETAIL"]),
        ]


class TestSectionPer:
    """SECTIONPER read in the same snapshot transaction as TRANSCRIPTDETAIL."""

    async def test_instructor_change_in_the_same_transaction(self) -> None:
        """Both tables' min valid versions, their changes and state, then one COMMIT."""
        server = FakeServer()
        key = ("2021", "Winter", "01", "BSC5102 ", "LEC", "01", "P000000009")
        server.teaching_changes = [(18, 18, "I", None, *key)]
        server.teaching = [(*key, 0)]
        source = SqlServerChangeSource(
            SETTINGS,
            name="pc",
            connect_with=server.connect,
            tables=("TRANSCRIPTDETAIL", "SECTIONPER"),
        )
        batch = await source.fetch_since(10, DictShadow())
        checks = len(CHECKS) + 3  # the table's state, key and probe
        assert server.statements()[checks:] == [
            sql.SET_SNAPSHOT,
            sql.BEGIN_TRANSACTION,
            sql.versions_query(["TRANSCRIPTDETAIL", "SECTIONPER"]),
            sql.CHANGES,
            sql.key_changes_query("SECTIONPER"),
            sql.COMMIT_TIMES,
            sql.term_state_query(1),
            sql.teaching_query(1),
            sql.COMMIT_TRANSACTION,
        ]
        (change,) = batch.key_changes
        assert (change.table, change.operation, change.people_code_id) == (
            "SECTIONPER",
            "I",
            "P000000009",
        )
        assert change.section is not None
        assert change.section.event_id == "BSC5102"
        assert batch.teaching is not None
        (taught,) = batch.teaching[PersonTerm("P000000009", WINTER)]
        assert taught.percentage == 0.0


class TestCertificateWarning:
    """Start-up says when SQL Server's certificate goes unchecked."""

    @pytest.mark.parametrize(
        ("overrides", "warned"),
        [
            ({"driver": "FreeTDS", "encrypt": "yes"}, True),
            ({"driver": "FreeTDS", "encrypt": "strict"}, True),
            ({"driver": "FreeTDS", "encrypt": "no"}, False),
            ({"driver": "FreeTDS", "freetds_servername": "campus6"}, False),
            ({"trust_server_certificate": True}, True),
            ({}, False),
        ],
    )
    async def test_warned_at_open(
        self, overrides: dict[str, Any], warned: bool
    ) -> None:
        """open() (source check, the poller's first read) warns with what to do."""
        with capture_logs() as logs:
            await make_source(FakeServer(), **overrides).open()
        warnings = [
            e for e in logs if e["event"] == "sqlserver_certificate_not_checked"
        ]
        assert bool(warnings) is warned
        if warned:
            assert warnings[0]["log_level"] == "warning"
            assert "docs/dba.md" in warnings[0]["what_to_do"]


class TestSnapshotAndTerms:
    """Snapshots are one transaction; live terms are deduplicated case-insensitively."""

    async def test_read_snapshot(self) -> None:
        """The rows of the terms and the current version, in one snapshot transaction."""
        server = FakeServer()
        server.table = [td(1, "P1"), td(2, "P2", term="Spring")]
        snapshot = await make_source(server).read_snapshot([WINTER])
        assert snapshot.version == 20
        assert [r.transcript_detail_id for r in snapshot.rows] == [1]
        sent = server.statements()[len(CHECKS) :]
        assert sent == [
            sql.SET_SNAPSHOT,
            sql.BEGIN_TRANSACTION,
            sql.CURRENT_VERSION,
            sql.snapshot_query(1),
            sql.COMMIT_TRANSACTION,
        ]

    async def test_live_terms(self) -> None:
        """ACADEMICCALENDAR terms for today, duplicates by case removed."""
        terms = await make_source(FakeServer()).live_terms(date(2021, 1, 15))
        assert [t.label() for t in terms] == ["2021/Winter", "2021/Spring"]

    def test_repr_hides_password(self) -> None:
        """The source's repr names the server, never the password."""
        assert "hunter22" not in repr(make_source(FakeServer()))
