"""The reconcile's report, for a registrar: ``actions.csv``, ``summary.json``, ``report.html``.

Written for the people who act on it, not for us: students and courses by name
(Moodle's full name beside the idnumber, the course's PowerCampus codes beside its
shortname), roles by name ("Student", not "role 5"), outcomes in words, each
column explained in one line, and what **needs a person's attention** (the guard
tripped, Moodle refused a change, a person has no single Moodle account, Moodle
holds someone PowerCampus enrols in a way we may not change) kept apart from what
is merely **noted** (enrolments made by hand that PowerCampus does not list,
teachers and other roles, which are not PowerCampus's to decide).

``actions.csv`` has one row per planned change (its header is written whatever the
count, so an empty plan is still a readable file): ``action, course_shortname,
student_name, user_idnumber, people_code_id, role, reason, outcome,
moodle_userid, about, term_withdrawal``; outcome is ``planned``, ``applied``,
``rejected: <Moodle's error>``, ``skipped: guard`` or ``error: …``; ``about``
names the sources whose role the change concerns (``student``, ``instructor``)
and ``term_withdrawal`` says ``yes`` for a student dropped because they left the
term (ACADEMIC), whatever TRANSCRIPTDETAIL says. ``summary.json`` holds the same
counts (``instructor_changes``, ``term_withdrawals`` among them) plus the
attention and noted lists.

Pure: ``render_report`` returns the three files' texts; the caller writes them
(``enrolstream.wiring.reconcile.write_report``) with mode 0600: they hold student
data.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from typing import Any

from consumers.reconcile.driver import ReconcileResult
from consumers.reconcile.report_html import ACTION_WORDS, render_html
from consumers.roles import role_name

__all__ = ["CSV_COLUMNS", "render_report", "summarise"]

CSV_COLUMNS = (
    "action",
    "course_shortname",
    "student_name",
    "user_idnumber",
    "people_code_id",
    "role",
    "reason",
    "outcome",
    "moodle_userid",
    "about",
    "term_withdrawal",
)


def _outcome_class(outcome: str) -> str:
    return outcome.split(":", 1)[0]


def _attention(result: ReconcileResult) -> list[dict[str, str]]:
    """What a person must look at, each with what to do."""
    plan, names = result.plan, result.names
    items = [
        {
            "what": "mass-drop guard",
            "detail": trip.describe(),
            "to_do": "check PowerCampus lost nothing; `reconcile --apply --force` once sure"
            if trip.overridable
            else "PowerCampus returned nothing for the term: fix the source",
        }
        for trip in plan.guard.trips
    ]
    items += [
        {"what": "error", "detail": e, "to_do": "run again once fixed"}
        for e in result.errors
    ]
    for change, outcome in zip(plan.changes, result.outcomes, strict=True):
        if _outcome_class(outcome) == "rejected":
            who = names.get(change.userid) or change.user_idnumber
            items.append(
                {
                    "what": "Moodle refused a change",
                    "detail": f"{ACTION_WORDS[change.kind]} {who} in "
                    f"{change.course.shortname}: {outcome.split(':', 1)[1].strip()}",
                    "to_do": "fix it in Moodle; the next run tries again",
                }
            )
    items += [
        {
            "what": "no single Moodle account",
            "detail": f"{u.people_code_id}: {u.reason} (courses {', '.join(u.courses)})",
            "to_do": "create or merge the account; enrolstream then enrols them",
        }
        for u in plan.unresolved
    ]
    items += [
        {
            "what": "Moodle differs, not ours to change",
            "detail": f"{names.get(d.userid) or d.user_idnumber} in {d.course.shortname}: "
            f"Moodle holds {d.moodle}; PowerCampus: {d.powercampus}",
            "to_do": "decide by hand, or `ledger adopt` to let enrolstream manage it",
        }
        for d in plan.unowned
        if not d.powercampus.startswith("no registration")
        and "not enrolled" not in d.powercampus
    ]
    return items


def _noted(result: ReconcileResult) -> list[dict[str, str]]:
    """Differences left alone on purpose: enrolments made by hand."""
    names = result.names
    return [
        {
            "course": d.course.shortname,
            "student": names.get(d.userid) or d.user_idnumber,
            "moodle": d.moodle,
            "powercampus": d.powercampus,
        }
        for d in result.plan.unowned
        if d.powercampus.startswith("no registration")
        or "not enrolled" in d.powercampus
    ]


def summarise(result: ReconcileResult) -> dict[str, Any]:
    """The report's content as plain JSON-ready data."""
    plan = result.plan
    by_course: dict[int, Counter[str]] = {}
    for change, outcome in zip(plan.changes, result.outcomes, strict=True):
        by_course.setdefault(change.course.id, Counter())[_outcome_class(outcome)] += 1
    courses = {
        counts.course.shortname: {
            "courseid": counts.course.id,
            "owned_active": counts.owned_active,
            "planned": dict(sorted(counts.planned.items())),
            "outcomes": dict(sorted(by_course.get(courseid, {}).items())),
            "in_step": counts.in_step,
            "unowned_differences": counts.unowned,
            "stale": counts.stale,
            "other_roles": counts.other_roles,
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
        "needs_attention": _attention(result),
        "noted": _noted(result),
        "courses": courses,
        "unowned_differences": [
            {
                "course_shortname": d.course.shortname,
                "userid": d.userid,
                "student_name": result.names.get(d.userid, ""),
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
            result.names.get(change.userid, ""),
            change.user_idnumber,
            change.people_code_id or "",
            role_name(change.roleid) if change.roleid else "",
            change.reason,
            outcome,
            str(change.userid),
            ", ".join(change.about),
            "yes" if change.term_withdrawal else "",
        ]
        for change, outcome in zip(result.plan.changes, result.outcomes, strict=True)
    ]


def render_report(result: ReconcileResult) -> dict[str, str]:
    """The three report files by name: ``actions.csv``, ``summary.json``, ``report.html``."""
    summary = summarise(result)
    actions = io.StringIO(newline="")
    writer = csv.writer(actions)
    writer.writerow(CSV_COLUMNS)
    writer.writerows(_csv_rows(result))
    return {
        "actions.csv": actions.getvalue(),
        "summary.json": json.dumps(summary, indent=2) + "\n",
        "report.html": render_html(summary, _html_rows(result)),
    }


def _html_rows(result: ReconcileResult) -> list[list[str]]:
    """The changes as the page shows them: words, names, role names."""
    rows = []
    for change, outcome in zip(result.plan.changes, result.outcomes, strict=True):
        name = result.names.get(change.userid, "")
        who = f"{name} ({change.user_idnumber})" if name else change.user_idnumber
        rows.append(
            [
                ACTION_WORDS.get(change.kind, change.kind),
                change.course.shortname,
                who,
                role_name(change.roleid) if change.roleid else "",
                change.reason,
                outcome,
            ]
        )
    return rows
