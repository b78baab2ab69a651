"""The pure parts around the reconcile: snapshot picking, the report, adoption."""

from __future__ import annotations

import csv
import json
import stat
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from consumers.identity import Found
from consumers.ports import RawMessage
from consumers.reconcile.adopt import plan_adoption
from consumers.reconcile.driver import ReconcileInputs, ReconcileResult
from consumers.reconcile.plan import plan_reconcile
from consumers.reconcile.report import CSV_COLUMNS
from consumers.reconcile.snapshot_reader import (
    LoadedSnapshot,
    SnapshotUnavailable,
    pick_snapshot,
)
from enrolstream.wiring.reconcile import write_report
from schemas.actions import LedgerEntry
from schemas.events import Teaching
from schemas.snapshot import MARKER_KEY, SnapshotMarker
from tests.unit.test_reconcile_plan import (
    COURSE,
    MAPPING,
    OPEN,
    POLICY,
    STUDENT,
    TEACHER,
    VERSION,
    WINTER,
    _event,
    _roster,
)

T0 = datetime(2021, 2, 1, tzinfo=UTC)
EDITING = 3


def _marker(snapshot_id: str, kind: str, events: int | None, minute: int) -> RawMessage:
    marker = SnapshotMarker.model_validate(
        {
            "marker": kind,
            "snapshot_id": snapshot_id,
            "source": "pc",
            "state_version": VERSION,
            "terms": [WINTER.model_dump()],
            "events": events,
            "created_at": T0 + timedelta(minutes=minute),
        }
    )
    return RawMessage("t", 0, minute, MARKER_KEY, marker.model_dump_json().encode(), 0)


def _records(
    snapshot_id: str, persons: int, announced: int, minute: int
) -> list[RawMessage]:
    events = [
        _event(f"P{n:09d}", "enrolled").model_copy(
            update={"snapshot_id": snapshot_id, "event_id": f"{snapshot_id}-{n}"}
        )
        for n in range(persons)
    ]
    return [
        _marker(snapshot_id, "begin", None, minute),
        *(
            RawMessage("t", 1, n, e.kafka_key(), e.model_dump_json().encode(), 0)
            for n, e in enumerate(events)
        ),
        _marker(snapshot_id, "end", announced, minute + 1),
    ]


class TestPickSnapshot:
    """The latest complete snapshot is picked; incomplete ones are refused."""

    def test_latest_complete(self) -> None:
        """Of two complete snapshots the later is used, incomplete later ones skipped."""
        records = (
            _records("old", 2, 2, 0)
            + _records("new", 3, 3, 10)
            + _records("torn", 2, 5, 20)
        )
        loaded = pick_snapshot(records)
        assert (loaded.snapshot_id, len(loaded.events)) == ("new", 3)

    @pytest.mark.parametrize(
        ("records", "name", "message"),
        [
            ([], None, "no complete snapshot"),
            (_records("torn", 2, 5, 0), None, "announces 5 events, the topic holds 2"),
            (_records("torn", 2, 5, 0), "torn", "announces 5 events"),
            (_records("ok", 2, 2, 0)[:-1], "ok", "no end marker"),
            (_records("ok", 2, 2, 0), "other", "no snapshot other"),
        ],
    )
    def test_refused(
        self, records: list[RawMessage], name: str | None, message: str
    ) -> None:
        """Missing or incomplete snapshots raise SnapshotUnavailable with the reason."""
        with pytest.raises(SnapshotUnavailable, match=message):
            pick_snapshot(records, name)

    def test_named(self) -> None:
        """A named complete snapshot is used even when a newer one exists."""
        records = _records("old", 2, 2, 0) + _records("new", 3, 3, 10)
        assert pick_snapshot(records, "old").snapshot_id == "old"


def _loaded(events: int = 1) -> LoadedSnapshot:
    marker = SnapshotMarker.model_validate_json(
        _marker("snap", "end", events, 0).value or b""
    )
    return LoadedSnapshot(marker, (_event("P000000501", "enrolled"),))


def _one_change_result(reason: str = "enrol") -> ReconcileResult:
    loaded = _loaded()
    plan = plan_reconcile(
        snapshot_id="snap",
        state_version=VERSION,
        terms=[WINTER],
        events=loaded.events,
        mapping=MAPPING,
        policy=POLICY,
        identities={"P000000501": Found(501)},
        rosters={COURSE: {502: _roster("active", STUDENT)}},
        ledger=[],
        limits=OPEN,
    )
    change = plan.changes[0]
    plan.changes[0] = type(change)(
        **{**{f: getattr(change, f) for f in change.__slots__}, "reason": reason}
    )
    return ReconcileResult(
        plan=plan,
        outcomes=["rejected: wsnoinstance"],
        applied=True,
        forced=False,
        blocked=False,
    )


class TestReport:
    """The report files hold every change, escaped, with the documented columns."""

    def test_files_are_private(self, tmp_path: Path) -> None:
        """The files (student data) are 0600, the directories created for them 0700."""
        directory = tmp_path / "reports" / "2025-01-01"
        directory.parent.mkdir(mode=0o755)
        (directory.parent / "2025-01-01").mkdir(mode=0o755)
        (directory / "actions.csv").write_text("older run\n")
        (directory / "actions.csv").chmod(0o644)
        nested = tmp_path / "new" / "report"
        for target in (directory, nested):
            written = write_report(target, _one_change_result())
            assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in written} == {
                "actions.csv": 0o600,
                "summary.json": 0o600,
                "report.html": 0o600,
            }
        assert stat.S_IMODE(nested.stat().st_mode) == 0o700
        assert stat.S_IMODE(nested.parent.stat().st_mode) == 0o700
        # a directory that existed is the operator's: its mode is left alone
        assert stat.S_IMODE(directory.stat().st_mode) == 0o755

    def test_files(self, tmp_path: Path) -> None:
        """actions.csv, summary.json and report.html agree and escape values."""
        evil = "<script>alert(1)</script>"
        result = _one_change_result(evil)
        write_report(tmp_path, result)
        with (tmp_path / "actions.csv").open(encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
        assert tuple(rows[0]) == CSV_COLUMNS
        assert dict(zip(CSV_COLUMNS, rows[1], strict=True)) == {
            "action": "enrol",
            "course_shortname": "BSC5102Winter2021",
            "student_name": "",
            "user_idnumber": "000000501",
            "people_code_id": rows[1][4],
            "role": "Student",
            "reason": evil,
            "outcome": "rejected: wsnoinstance",
            "moodle_userid": "501",
            "about": "student",
            "term_withdrawal": "",
        }
        summary = json.loads((tmp_path / "summary.json").read_text())
        assert summary["totals"]["by_outcome"] == {"rejected": 1}
        assert summary["courses"]["BSC5102Winter2021"]["planned"] == {"enrol": 1}
        assert [d["userid"] for d in summary["unowned_differences"]] == [502]
        page = (tmp_path / "report.html").read_text()
        assert evil not in page
        assert "&lt;script&gt;" in page
        # a registrar's page: attention first, names of roles, columns explained
        assert "Needs a person's attention (1)" in page
        assert "Moodle refused a change" in page
        assert "role 5" not in page
        assert "in step</dt><dd>students Moodle already holds" in page
        assert summary["needs_attention"][0]["what"] == "Moodle refused a change"
        assert result.exit_code == 1

    def test_empty_plan_keeps_a_readable_csv(self, tmp_path: Path) -> None:
        """With nothing planned the CSV still has its header and the page says so."""
        result = _one_change_result("x")
        result = replace(
            result, plan=replace(result.plan, changes=[], unowned=[]), outcomes=[]
        )
        write_report(tmp_path, result)
        with (tmp_path / "actions.csv").open(encoding="utf-8") as handle:
            assert list(csv.reader(handle)) == [list(CSV_COLUMNS)]
        page = (tmp_path / "report.html").read_text()
        assert "No change was needed: Moodle already matches PowerCampus." in page


class TestPlanAdoption:
    """Adoption owns the Moodle enrolments PowerCampus also wants, nothing else."""

    def test_adopts_matching_only(self) -> None:
        """Matching role → adopted with roster status; others reported by kind."""
        events = tuple(
            _event(p, "enrolled")
            for p in ("P000000501", "P000000502", "P000000503", "P000000504")
        )
        marker = _loaded().marker
        inputs = ReconcileInputs(
            snapshot=LoadedSnapshot(marker, events),
            identities={f"P000000{u}": Found(u) for u in (501, 502, 503, 504)},
            rosters={
                COURSE: {
                    501: _roster("active", STUDENT),
                    502: _roster("inactive", STUDENT),
                    503: _roster("active", TEACHER),
                    600: _roster("active", STUDENT),
                }
            },
        )
        owned = LedgerEntry(
            courseid=COURSE,
            userid=501,
            roleid=STUDENT,
            status="active",
            event_id="x",
            state_version=1,
        )
        plan = plan_adoption(inputs, MAPPING, POLICY, [])
        assert [(e.userid, e.status, e.roleid) for e in plan.entries] == [
            (501, "active", STUDENT),
            (502, "suspended", STUDENT),
        ]
        assert [n.userid for n in plan.role_differs] == [503]
        assert [n.userid for n in plan.moodle_only] == [600]
        assert [n.userid for n in plan.powercampus_only] == [504]
        again = plan_adoption(inputs, MAPPING, POLICY, [owned])
        assert again.already_owned == 1
        assert [e.userid for e in again.entries] == [502]

    def test_adopts_an_instructor_role(self) -> None:
        """Someone PowerCampus says teaches there, holding that role, is adopted as one."""
        teaches = _event("P000000505", "dropped").model_copy(
            update={
                "teaching": (
                    Teaching(
                        section=_event("P000000505", "enrolled")
                        .registrations[0]
                        .section,
                        percentage=100,
                    ),
                )
            }
        )
        inputs = ReconcileInputs(
            snapshot=LoadedSnapshot(_loaded().marker, (teaches,)),
            identities={"P000000505": Found(505)},
            rosters={COURSE: {505: _roster("active", EDITING)}},
        )
        (entry,) = plan_adoption(inputs, MAPPING, POLICY, []).entries
        assert (entry.userid, entry.our_roles()) == (505, {"instructor": EDITING})
