"""The PowerCampus sandbox reproduces SQL Server change tracking (docs/sqlserver-*.md)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cdc.errors import ChangeTrackingVersionTooOld
from cdc.ports import ShadowEntry, TrackedTable
from enrolstream.cli.root import app
from sandbox.powercampus.changetracking import ChangeTableRow, ChangeTrackingNotEnabled
from sandbox.powercampus.database import (
    PowerCampusSandbox,
    SandboxError,
    StatementFailed,
)
from sandbox.powercampus.source import SandboxChangeSource
from schemas.events import TermKey

COLUMNS = (
    "TranscriptDetailId, PEOPLE_ID, PEOPLE_CODE_ID, ACADEMIC_YEAR, ACADEMIC_TERM, "
    "ACADEMIC_SESSION, EVENT_ID, EVENT_SUB_TYPE, SECTION, ADD_DROP_WAIT"
)


def ins(
    pk: int,
    *,
    event_id: str = "BSC5102",
    section: str = "01",
    adw: str = "A",
    person: str = "P000000001",
) -> str:
    """An INSERT of one registration with an explicit TranscriptDetailId."""
    return (
        f"INSERT INTO TRANSCRIPTDETAIL ({COLUMNS}) VALUES ({pk}, '{person[1:]}', "
        f"'{person}', '2021', 'Winter', '01', '{event_id}', 'LEC', '{section}', '{adw}')"
    )


def upd(pk: int, adw: str) -> str:
    """An UPDATE of ADD_DROP_WAIT."""
    return f"UPDATE TRANSCRIPTDETAIL SET ADD_DROP_WAIT = '{adw}' WHERE TranscriptDetailId = {pk}"


def dele(pk: int) -> str:
    """A DELETE of one row."""
    return f"DELETE FROM TRANSCRIPTDETAIL WHERE TranscriptDetailId = {pk}"


def row(pk: int, op: str, version: int, creation: int | None) -> ChangeTableRow:
    """An expected CHANGETABLE row of TRANSCRIPTDETAIL."""
    return ChangeTableRow(version, creation, op, (pk,))  # type: ignore[arg-type]


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = datetime(2021, 1, 10, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(name="clock")
def clock_fixture() -> FakeClock:
    """A hand-moved clock for commit times."""
    return FakeClock()


@pytest.fixture(name="sandbox")
def sandbox_fixture(tmp_path: Path, clock: FakeClock) -> Iterator[PowerCampusSandbox]:
    """A fresh sandbox with TRANSCRIPTDETAIL tracked."""
    sandbox = PowerCampusSandbox(tmp_path / "pc.sqlite", clock=clock)
    sandbox.create(("TRANSCRIPTDETAIL",))  # CT mechanics, one tracked table
    yield sandbox
    sandbox.close()


CROSS_LIST_SWAP = f"{upd(1, 'D')}; {ins(2, event_id='COUN8552', section='02')}"

NET_CHANGE_CASES = [
    ("enrol", [ins(1)], 0, [row(1, "I", 1, 1)]),
    ("drop by update A->D", [ins(1), upd(1, "D")], 1, [row(1, "U", 2, 1)]),
    ("wait-listed", [ins(1, adw="W")], 0, [row(1, "I", 1, 1)]),
    ("wait list to added", [ins(1, adw="W"), upd(1, "A")], 1, [row(1, "U", 2, 1)]),
    ("delete row", [ins(1), dele(1)], 1, [row(1, "D", 2, 1)]),
    ("A->D->A in one window", [ins(1), upd(1, "D"), upd(1, "A")], 1, [row(1, "U", 3, 1)]),
    ("A->D->A in one transaction", [ins(1), f"{upd(1, 'D')}; {upd(1, 'A')}"], 1,
     [row(1, "U", 2, 1)]),
    ("insert then delete in window", [ins(1), dele(1)], 0, [row(1, "D", 2, 1)]),
    ("insert then update in window", [ins(1), upd(1, "D")], 0, [row(1, "I", 2, 1)]),
    ("insert and update in one transaction", [f"{ins(1)}; {upd(1, 'D')}"], 0,
     [row(1, "I", 1, 1)]),
    ("delete then re-insert same PK", [ins(1), dele(1), ins(1)], 1, [row(1, "U", 3, 3)]),
    ("no-op end state is still an update", [ins(1), upd(1, "A")], 1, [row(1, "U", 2, 1)]),
    ("PK change is delete + insert",
     [ins(1), "UPDATE TRANSCRIPTDETAIL SET TranscriptDetailId = 7"], 1,
     [row(1, "D", 2, 1), row(7, "I", 2, 2)]),
    ("cross-list swap: one version, two rows",
     [ins(1, event_id="COUN6552", section="02"), CROSS_LIST_SWAP], 1,
     [row(1, "U", 2, 1), row(2, "I", 2, 2)]),
    ("baseline at current: nothing", [ins(1), upd(1, "D")], 2, []),
    ("NULL baseline: every kept change", [ins(1), upd(1, "D"), ins(2, section="02")], None,
     [row(1, "I", 2, 1), row(2, "I", 3, 3)]),
]  # fmt: skip


class TestNetChanges:
    """CHANGETABLE(CHANGES TRANSCRIPTDETAIL, @last) nets changes as SQL Server does (§4)."""

    @pytest.mark.parametrize(
        ("steps", "last", "expected"),
        [case[1:] for case in NET_CHANGE_CASES],
        ids=[case[0] for case in NET_CHANGE_CASES],
    )
    def test_net_change(
        self,
        sandbox: PowerCampusSandbox,
        steps: list[str],
        last: int | None,
        expected: list[ChangeTableRow],
    ) -> None:
        """Each transaction consumes one version; the net change is relative to the baseline."""
        versions = [sandbox.execute(step) for step in steps]
        assert versions == list(range(1, len(steps) + 1))
        assert sandbox.changes_since(last) == expected

    @pytest.mark.parametrize(
        ("last", "expected"),
        [
            (0, [row(1, "I", 3, 1), row(2, "D", 4, 2), row(3, "I", 5, 5)]),
            (1, [row(1, "U", 3, 1), row(2, "D", 4, 2), row(3, "I", 5, 5)]),
            (2, [row(1, "U", 3, 1), row(2, "D", 4, 2), row(3, "I", 5, 5)]),
            (3, [row(2, "D", 4, 2), row(3, "I", 5, 5)]),
            (4, [row(3, "I", 5, 5)]),
            (5, []),
        ],
    )
    def test_baselines_before_and_after_each_version(
        self, sandbox: PowerCampusSandbox, last: int, expected: list[ChangeTableRow]
    ) -> None:
        """Every baseline between versions sees exactly the changes after it."""
        for step in (
            ins(1),
            ins(2, section="02"),
            upd(1, "D"),
            dele(2),
            ins(3, section="03"),
        ):
            sandbox.execute(step)
        assert sandbox.changes_since(last) == expected

    def test_deletes_carry_only_the_key(self, sandbox: PowerCampusSandbox) -> None:
        """A delete reports the primary key; joining back finds no row."""
        sandbox.execute(ins(1))
        sandbox.execute(dele(1))
        (change,) = sandbox.changes_since(1)
        assert change.primary_key == (1,)
        assert sandbox.query("SELECT * FROM TRANSCRIPTDETAIL") == []

    def test_composite_primary_key_tables_can_be_tracked(
        self, sandbox: PowerCampusSandbox
    ) -> None:
        """SECTIONS (six-column key) is tracked once enabled, from the enabling version."""
        sandbox.execute(ins(1))
        assert sandbox.min_valid_version("SECTIONS") is None
        assert sandbox.enable_change_tracking("SECTIONS") is True
        assert sandbox.min_valid_version("SECTIONS") == sandbox.current_version() == 2
        version = sandbox.execute(
            "INSERT INTO SECTIONS (ACADEMIC_YEAR, ACADEMIC_TERM, ACADEMIC_SESSION, "
            "EVENT_ID, EVENT_SUB_TYPE, SECTION, SectionId) "
            "VALUES ('2021', 'Winter', '01', 'BSC5102', 'LEC', '01', 10)"
        )
        assert sandbox.changes_since(2, "SECTIONS") == [
            ChangeTableRow(3, 3, "I", ("2021", "Winter", "01", "BSC5102", "LEC", "01"))
        ]
        assert version == 3
        assert sandbox.changes_since(1) == []
        sandbox.disable_change_tracking("SECTIONS")
        with pytest.raises(ChangeTrackingNotEnabled):
            sandbox.changes_since(0, "SECTIONS")


class TestVersions:
    """One version per committed transaction that changed a tracked row, in commit order."""

    @pytest.mark.parametrize(
        "script",
        [
            "UPDATE TRANSCRIPTDETAIL SET ADD_DROP_WAIT = 'D' WHERE 0",
            dele(99),
            "SELECT * FROM TRANSCRIPTDETAIL",
            (
                "INSERT INTO PEOPLE (PEOPLE_CODE_ID, PEOPLE_ID, PersonId) "
                "VALUES ('P000000009', '000000009', 9)"
            ),
        ],
        ids=["update of no row", "delete of no row", "select", "untracked table"],
    )
    def test_no_op_transactions_consume_no_version(
        self, sandbox: PowerCampusSandbox, script: str
    ) -> None:
        """A transaction that changes no tracked row leaves the version where it was."""
        sandbox.execute(ins(1))
        assert sandbox.execute(script) is None
        assert sandbox.current_version() == 1
        assert sandbox.execute(upd(1, "D")) == 2

    def test_failed_transaction_rolls_back_everything(
        self, sandbox: PowerCampusSandbox
    ) -> None:
        """A failing statement undoes the earlier ones and consumes no version."""
        with pytest.raises(StatementFailed) as caught:
            sandbox.execute(f"{ins(1)}; INSERT INTO NO_SUCH_TABLE VALUES (1)")
        assert caught.value.index == 2
        assert "rolled back" in str(caught.value)
        assert sandbox.current_version() == 0
        assert sandbox.changes_since(None) == []
        assert sandbox.execute(ins(1)) == 1

    @pytest.mark.parametrize(
        "variant",
        [
            ins(2, event_id="bsc5102"),
            ins(2, event_id="BSC5102   "),
            ins(2, person="p000000001"),
        ],
        ids=["case", "trailing spaces", "person case"],
    )
    def test_person_section_index_compares_like_powercampus(
        self, sandbox: PowerCampusSandbox, variant: str
    ) -> None:
        """ixTranscriptDetail_UQ_PersonSection ignores case and trailing spaces."""
        sandbox.execute(ins(1))
        with pytest.raises(
            StatementFailed, match="ixTranscriptDetail_UQ_PersonSection"
        ):
            sandbox.execute(variant)

    def test_python_transaction_and_identity(self, sandbox: PowerCampusSandbox) -> None:
        """transaction() commits one version; identities are never reused after a delete."""
        with sandbox.transaction() as tx:
            tx.execute(ins(1).replace("(1, ", "(NULL, "))
            tx.execute(upd(1, "W"))
        assert tx.committed_version == 1
        sandbox.execute(dele(1))
        sandbox.execute(ins(1).replace("(1, ", "(NULL, "))
        assert sandbox.query("SELECT TranscriptDetailId FROM TRANSCRIPTDETAIL") == [
            (2,)
        ]

    def test_writes_outside_the_sandbox_are_refused(
        self, sandbox: PowerCampusSandbox
    ) -> None:
        """A bare connection cannot change a tracked table without a version."""
        conn = sqlite3.connect(sandbox.path, isolation_level=None)
        with pytest.raises(
            sqlite3.IntegrityError, match="write through PowerCampusSandbox"
        ):
            conn.execute(ins(1))
        conn.close()

    @pytest.mark.parametrize(
        "script",
        ["BEGIN; SELECT 1", "COMMIT", f"TRUNCATE TABLE TRANSCRIPTDETAIL; {ins(1)}"],
    )
    def test_transaction_control_is_refused(
        self, sandbox: PowerCampusSandbox, script: str
    ) -> None:
        """Scripts cannot escape the one tracked transaction."""
        with pytest.raises(SandboxError):
            sandbox.execute(script)


class TestCleanup:
    """Retention removes history and raises the min valid version."""

    def test_by_number_of_versions(self, sandbox: PowerCampusSandbox) -> None:
        """Keeping 2 versions of 5 makes 3 the min valid version; creation versions go NULL."""
        for step in (
            ins(1),
            ins(2, section="02"),
            upd(2, "D"),
            upd(1, "W"),
            upd(1, "A"),
        ):
            sandbox.execute(step)
        result = sandbox.cleanup(retain_versions=2)
        assert (result.cleanup_version, result.deleted_commits) == (3, 3)
        assert result.min_valid_versions == {"TRANSCRIPTDETAIL": 3}
        assert sandbox.min_valid_version() == 3
        assert sandbox.changes_since(3) == [row(1, "U", 5, None)]
        assert sandbox.current_version() == 5

    def test_min_valid_version_never_moves_back(
        self, sandbox: PowerCampusSandbox
    ) -> None:
        """A later, more generous cleanup keeps the higher min valid version."""
        for step in (ins(1), upd(1, "D"), upd(1, "A")):
            sandbox.execute(step)
        sandbox.cleanup(retain_versions=1)
        assert sandbox.cleanup(retain_versions=10).min_valid_versions == {
            "TRANSCRIPTDETAIL": 2
        }

    @pytest.mark.parametrize(
        ("older_than_min", "retain", "expected_min_valid"),
        [(15, None, 2), (5, None, 3), (60, None, 0), (5, 2, 1), (None, 0, 3)],
    )
    def test_by_age_of_commit(
        self,
        sandbox: PowerCampusSandbox,
        clock: FakeClock,
        older_than_min: int | None,
        retain: int | None,
        expected_min_valid: int,
    ) -> None:
        """Commits older than the retention go (given both rules, what either keeps stays)."""
        for step in (ins(1), upd(1, "D"), upd(1, "A")):
            sandbox.execute(step)
            clock.now += timedelta(minutes=10)
        # commits at 09:00, 09:10, 09:20; now 09:30
        older_than = (
            None if older_than_min is None else timedelta(minutes=older_than_min)
        )
        sandbox.cleanup(retain_versions=retain, older_than=older_than)
        assert sandbox.min_valid_version() == expected_min_valid

    def test_needs_a_rule(self, sandbox: PowerCampusSandbox) -> None:
        """Cleanup without a retention rule is an error, not a purge."""
        with pytest.raises(SandboxError):
            sandbox.cleanup()


class TestTruncate:
    """TRUNCATE is not tracked and resets the table's change-tracking info."""

    @pytest.mark.parametrize("via_sql", [False, True])
    def test_truncate_resets(self, sandbox: PowerCampusSandbox, via_sql: bool) -> None:
        """Min valid jumps to the current version; no row changes; identity restarts."""
        for step in (ins(5), upd(5, "D")):
            sandbox.execute(step)
        version = (
            sandbox.execute("TRUNCATE TABLE TRANSCRIPTDETAIL")
            if via_sql
            else sandbox.truncate("TRANSCRIPTDETAIL")
        )
        assert version == sandbox.current_version() == sandbox.min_valid_version() == 3
        assert sandbox.changes_since(0) == []
        assert sandbox.query("SELECT COUNT(*) FROM TRANSCRIPTDETAIL") == [(0,)]
        assert sandbox.execute(ins(1).replace("(1, ", "(NULL, ")) == 4
        assert sandbox.changes_since(3) == [row(1, "I", 4, 4)]


class TestReEnable:
    """(Re-)enabling CT resets the table's CT info: min valid moves above every saved version."""

    def test_fresh_database_starts_at_version_zero(
        self, sandbox: PowerCampusSandbox
    ) -> None:
        """create() enables before any version exists: 0 is current and min valid."""
        assert sandbox.current_version() == sandbox.min_valid_version() == 0
        assert sandbox.enable_change_tracking("TRANSCRIPTDETAIL") is False
        assert sandbox.current_version() == 0

    def test_re_enable_consumes_a_version(self, sandbox: PowerCampusSandbox) -> None:
        """The enabling version becomes current and min valid; later writes follow it."""
        sandbox.execute(ins(1))
        sandbox.disable_change_tracking("TRANSCRIPTDETAIL")
        assert sandbox.execute(dele(1)) is None  # untracked: no version
        assert sandbox.enable_change_tracking("TRANSCRIPTDETAIL") is True
        assert sandbox.current_version() == sandbox.min_valid_version() == 2
        assert sandbox.changes_since(None) == []
        assert sandbox.execute(ins(1)) == 3
        assert sandbox.changes_since(2) == [row(1, "I", 3, 3)]

    def test_cleanup_keeps_the_enabling_version_valid(
        self, sandbox: PowerCampusSandbox, clock: FakeClock
    ) -> None:
        """The enabling version has no commit to purge; age cleanup never lowers min valid."""
        sandbox.execute(ins(1))
        sandbox.disable_change_tracking("TRANSCRIPTDETAIL")
        sandbox.enable_change_tracking("TRANSCRIPTDETAIL")
        clock.now += timedelta(days=3)
        sandbox.execute(upd(1, "D"))
        assert sandbox.cleanup(older_than=timedelta(days=1)).cleanup_version == 1
        assert sandbox.min_valid_version() == 2
        assert sandbox.changes_since(2) == [row(1, "U", 3, None)]

    @pytest.mark.parametrize("write_while_off", [True, False])
    async def test_caught_up_poller_must_reinitialise(
        self, sandbox: PowerCampusSandbox, write_while_off: bool
    ) -> None:
        """disable → delete → enable: a poller saved at current gets VersionTooOld.

        Without a version for the enable the saved version would still be valid
        and the delete, made while nothing tracked it, would be lost. Even with no
        write while off the poller re-initialises: it cannot know that.
        """
        sandbox.execute(ins(1))
        sandbox.execute(ins(2, section="02"))
        source = SandboxChangeSource(sandbox.path, tables=("TRANSCRIPTDETAIL",))
        try:
            saved = (await source.fetch_since(0, _NoShadow())).to_version
            assert saved == sandbox.current_version() == 2
            sandbox.disable_change_tracking("TRANSCRIPTDETAIL")
            if write_while_off:
                sandbox.execute(dele(1))
            sandbox.enable_change_tracking("TRANSCRIPTDETAIL")
            with pytest.raises(ChangeTrackingVersionTooOld) as caught:
                await source.fetch_since(saved, _NoShadow())
            assert (caught.value.last_version, caught.value.min_valid_version) == (2, 3)
            snapshot = await source.read_snapshot(
                [TermKey(academic_year="2021", academic_term="Winter")]
            )
            assert snapshot.version == 3
            expected = [2] if write_while_off else [1, 2]
            assert [r.transcript_detail_id for r in snapshot.rows] == expected
            batch = await source.fetch_since(snapshot.version, _NoShadow())
            assert batch.changes == ()
        finally:
            await source.close()


class _NoShadow:
    """A shadow map that knows no row."""

    def lookup(self, ids: Sequence[int]) -> Mapping[int, ShadowEntry]:
        return {}

    def owners(self, table: TrackedTable, keys: Sequence[str]) -> Mapping[str, str]:
        return {}


class TestCli:
    """``enrolstream sandbox …`` drives the sandbox at the configured path."""

    @pytest.fixture(name="cli")
    def cli_fixture(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
        """A runner whose settings point the sandbox at a fresh, not yet existing path."""
        monkeypatch.chdir(tmp_path)
        monkeypatch.delenv("ENROLSTREAM_CONFIG", raising=False)
        monkeypatch.setenv(
            "ENROLSTREAM_SOURCE__SANDBOX__PATH", str(tmp_path / "var/pc.sqlite")
        )
        return CliRunner()

    def invoke(self, cli: CliRunner, *args: str) -> str:
        """Run ``enrolstream sandbox <args>``, expect success, return stdout."""
        result = cli.invoke(app, ["sandbox", *args])
        assert result.exit_code == 0, result.output
        return result.stdout

    def test_lifecycle(self, cli: CliRunner, tmp_path: Path) -> None:
        """init, seed, sql, cleanup and status work end to end on one file."""
        assert "current version 0" in self.invoke(cli, "init")
        assert (tmp_path / "var/pc.sqlite").is_file()
        seeded = self.invoke(cli, "seed", "--people", "20", "--courses", "6")
        assert "seeded 2021/Winter at version 1" in seeded
        assert (
            "COUN6552 + COUN8552 section 02 -> COUN6552COUN855202Winter2021" in seeded
        )
        assert "committed version 2" in self.invoke(cli, "sql", upd(1, "D"))
        selected = self.invoke(
            cli,
            "sql",
            "SELECT ADD_DROP_WAIT FROM TRANSCRIPTDETAIL WHERE TranscriptDetailId = 1",
        )
        assert selected.splitlines() == [
            "ADD_DROP_WAIT",
            "D",
            "no tracked change: no version consumed",
        ]
        cleaned = self.invoke(cli, "cleanup", "--retain-versions", "1")
        assert "min valid version TRANSCRIPTDETAIL: 1" in cleaned
        status = self.invoke(cli, "status")
        assert "current version: 2" in status
        assert "rows TRANSCRIPTDETAIL: 80" in status

    def test_errors_exit_non_zero(self, cli: CliRunner) -> None:
        """A failing statement or a missing database exits 1 with the reason on stderr."""
        missing = cli.invoke(app, ["sandbox", "status"])
        assert missing.exit_code == 1
        assert "sandbox init" in missing.stderr
        self.invoke(cli, "init")
        failed = cli.invoke(app, ["sandbox", "sql", "INSERT INTO NOPE VALUES (1)"])
        assert failed.exit_code == 1
        assert "no such table: NOPE" in failed.stderr
        assert cli.invoke(app, ["sandbox", "cleanup"]).exit_code == 2
