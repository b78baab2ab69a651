"""The reconcile's report: ``actions.csv``, ``summary.json`` and ``report.html``.

``actions.csv`` is campus-enrollment-sync's add/drop log grown up: one row per
planned change with ``action, course_shortname, user_idnumber, role, reason,
outcome`` (then ``userid, people_code_id, about, term_withdrawal``), where
outcome is ``planned``, ``applied``, ``rejected: <Moodle's error>``, ``skipped:
guard`` or ``error: …``; ``about`` names the sources whose role the change
concerns (``student``, ``instructor``) and ``term_withdrawal`` says ``yes`` for a
student dropped because they left the term (ACADEMIC), whatever TRANSCRIPTDETAIL
says. ``summary.json`` counts both (``instructor_changes``, ``term_withdrawals``).
``summary.json`` holds the counts per course, the guard's trips, the unowned
differences, the unresolved persons and the errors; ``report.html`` shows the
same as one self-contained page (no scripts, no external resources; every
value escaped).

Pure: ``render_report`` returns the three files' texts; the caller writes them
(``enrolstream.wiring.reconcile.write_report``, files only the service may read), which
hold student data: mode 0600, in a directory created 0700.
"""

from __future__ import annotations

import csv
import html
import io
import json
from collections import Counter
from typing import Any

from consumers.reconcile.driver import ReconcileResult

__all__ = ["CSV_COLUMNS", "render_report", "summarise"]

CSV_COLUMNS = (
    "action",
    "course_shortname",
    "user_idnumber",
    "role",
    "reason",
    "outcome",
    "userid",
    "people_code_id",
    "about",
    "term_withdrawal",
)


def _outcome_class(outcome: str) -> str:
    return outcome.split(":", 1)[0]


def summarise(result: ReconcileResult) -> dict[str, Any]:
    """The report's content as plain JSON-ready data."""
    plan = result.plan
    outcomes_by_course: dict[int, Counter[str]] = {}
    for change, outcome in zip(plan.changes, result.outcomes, strict=True):
        outcomes_by_course.setdefault(change.course.id, Counter())[
            _outcome_class(outcome)
        ] += 1
    courses = {
        counts.course.shortname: {
            "courseid": counts.course.id,
            "owned_active": counts.owned_active,
            "planned": dict(sorted(counts.planned.items())),
            "outcomes": dict(sorted(outcomes_by_course.get(courseid, {}).items())),
            "in_step": counts.in_step,
            "unowned_differences": counts.unowned,
            "stale": counts.stale,
        }
        for courseid, counts in plan.counts.items()
    }
    return {
        "snapshot_id": plan.snapshot_id,
        "state_version": plan.state_version,
        "mode": "apply" if result.applied or result.blocked else "dry-run",
        "forced": result.forced,
        "totals": {
            "changes": len(plan.changes),
            "by_action": dict(sorted(Counter(c.kind for c in plan.changes).items())),
            "by_outcome": dict(
                sorted(Counter(_outcome_class(o) for o in result.outcomes).items())
            ),
            "instructor_changes": sum("instructor" in c.about for c in plan.changes),
            "term_withdrawals": sum(c.term_withdrawal for c in plan.changes),
            "unowned_differences": len(plan.unowned),
            "unresolved_persons": len(plan.unresolved),
            "courses": len(plan.counts),
        },
        "guard": {
            "tripped": plan.guard.tripped,
            "blocked": result.blocked,
            "drops": plan.guard.drops,
            "owned_active": plan.guard.owned_active,
            "trips": [
                {
                    "scope": t.scope,
                    "name": t.name,
                    "drops": t.drops,
                    "owned_active": t.owned_active,
                    "share": round(t.share, 4),
                    "limit": t.limit,
                    "overridable": t.overridable,
                    "description": t.describe(),
                }
                for t in plan.guard.trips
            ],
        },
        "courses": courses,
        "unowned_differences": [
            {
                "course_shortname": d.course.shortname,
                "userid": d.userid,
                "user_idnumber": d.user_idnumber,
                "people_code_id": d.people_code_id,
                "moodle": d.moodle,
                "powercampus": d.powercampus,
            }
            for d in plan.unowned
        ],
        "unresolved_persons": [
            {
                "people_code_id": u.people_code_id,
                "reason": u.reason,
                "courses": u.courses,
            }
            for u in plan.unresolved
        ],
        "missing_rosters": [c.shortname for c in plan.missing_rosters],
        "errors": list(result.errors),
    }


def _csv_rows(result: ReconcileResult) -> list[list[str]]:
    return [
        [
            change.kind,
            change.course.shortname,
            change.user_idnumber,
            str(change.roleid),
            change.reason,
            outcome,
            str(change.userid),
            change.people_code_id or "",
            ", ".join(change.about),
            "yes" if change.term_withdrawal else "",
        ]
        for change, outcome in zip(result.plan.changes, result.outcomes, strict=True)
    ]


def render_report(result: ReconcileResult) -> dict[str, str]:
    """The three report files by name: ``actions.csv``, ``summary.json``, ``report.html``."""
    summary = summarise(result)
    rows = _csv_rows(result)
    actions = io.StringIO(newline="")
    writer = csv.writer(actions)
    writer.writerow(CSV_COLUMNS)
    writer.writerows(rows)
    return {
        "actions.csv": actions.getvalue(),
        "summary.json": json.dumps(summary, indent=2) + "\n",
        "report.html": render_html(summary, rows),
    }


def _table(headers: tuple[str, ...], rows: list[list[str]]) -> str:
    if not rows:
        return "<p>None.</p>"
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2em;color:#222}"
    "table{border-collapse:collapse;margin:1em 0;font-size:.9em}"
    "td,th{border:1px solid #ccc;padding:.25em .5em;text-align:left}"
    "th{background:#eee}.trip{color:#a00;font-weight:bold}"
)


def render_html(summary: dict[str, Any], actions: list[list[str]]) -> str:
    """One self-contained page of the summary and the actions (values escaped)."""
    esc = html.escape
    guard = summary["guard"]
    trips = "".join(
        f'<li class="trip">{esc(trip["description"])}</li>' for trip in guard["trips"]
    )
    totals = summary["totals"]
    course_rows = [
        [
            name,
            str(c["owned_active"]),
            ", ".join(f"{k} {v}" for k, v in c["planned"].items()),
            ", ".join(f"{k} {v}" for k, v in c["outcomes"].items()),
            str(c["in_step"]),
            str(c["unowned_differences"]),
            str(c["stale"]),
        ]
        for name, c in summary["courses"].items()
    ]
    unowned = [
        [d["course_shortname"], d["user_idnumber"], d["moodle"], d["powercampus"]]
        for d in summary["unowned_differences"]
    ]
    unresolved = [
        [u["people_code_id"], u["reason"], ", ".join(u["courses"])]
        for u in summary["unresolved_persons"]
    ]
    errors = "".join(f"<li>{esc(e)}</li>" for e in summary["errors"])
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>enrolstream reconcile {esc(summary['snapshot_id'])}</title>"
        f"<style>{_STYLE}</style></head><body>"
        f"<h1>Reconcile ({esc(summary['mode'])})</h1>"
        f"<p>Snapshot {esc(summary['snapshot_id'])} at change-tracking version "
        f"{esc(str(summary['state_version']))}; {totals['changes']} changes over "
        f"{totals['courses']} courses; by outcome: "
        f"{esc(json.dumps(totals['by_outcome']))}.</p>"
        "<h2>Mass-drop guard</h2>"
        f"<p>{guard['drops']} drops of {guard['owned_active']} owned active "
        f"enrolments; {'TRIPPED' if guard['tripped'] else 'not tripped'}"
        f"{' (nothing applied)' if guard['blocked'] else ''}.</p>"
        f"<ul>{trips}</ul>"
        f"<h2>Errors</h2>{f'<ul>{errors}</ul>' if errors else '<p>None.</p>'}"
        "<h2>Courses</h2>"
        + _table(
            (
                "course",
                "owned active",
                "planned",
                "outcomes",
                "in step",
                "unowned",
                "stale",
            ),
            course_rows,
        )
        + "<h2>Actions</h2>"
        + _table(CSV_COLUMNS, actions)
        + "<h2>Unowned differences (left alone)</h2>"
        + _table(("course", "user idnumber", "Moodle", "PowerCampus"), unowned)
        + "<h2>Unresolved persons (not acted on)</h2>"
        + _table(("PEOPLE_CODE_ID", "reason", "courses"), unresolved)
        + "</body></html>\n"
    )
