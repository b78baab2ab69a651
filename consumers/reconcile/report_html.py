"""The reconcile report's page: one self-contained HTML file a registrar can read. Pure.

No script, nothing fetched, every value escaped. It says in words what the run
did, lists first what needs a person's attention, explains every column of the
per-course table in one line, and keeps what is merely noted at the end.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

__all__ = ["ACTION_WORDS", "COURSE_COLUMNS", "render_html"]

#: A change's kind, in a registrar's words.
ACTION_WORDS = {
    "enrol": "enrol",
    "reactivate": "make active again",
    "change_role": "change role",
    "restore_role": "give the role back",
    "remove_role": "drop (role removed, enrolment kept)",
    "suspend": "drop (enrolment suspended)",
    "unenrol": "drop (unenrolled)",
}

#: The per-course table's columns and what each means.
COURSE_COLUMNS = (
    ("course", "the Moodle course (its shortname)"),
    ("ours, active", "enrolments enrolstream made that are active in Moodle now"),
    ("changes", "changes planned to make Moodle match PowerCampus, by kind"),
    ("outcomes", "what became of those changes (planned, on a dry run)"),
    ("in step", "students Moodle already holds exactly as PowerCampus says"),
    ("needs a look", "enrolments not made by enrolstream that differ from PowerCampus"),
    (
        "changed since",
        "left alone: enrolstream applied a newer change after the snapshot",
    ),
    (
        "teachers, others",
        "enrolments with roles PowerCampus does not decide (never touched)",
    ),
)

OUTCOME_WORDS = {
    "planned": "planned (dry run: nothing changed)",
    "applied": "applied",
    "rejected": "refused by Moodle",
    "skipped": "not applied (the guard stopped the run)",
    "error": "not applied (error)",
}

_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:70em}"
    "table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:.9em}"
    "td,th{border:1px solid #ccc;padding:.3em .5em;text-align:left;vertical-align:top}"
    "th{background:#eef0f3}.attention{border-left:4px solid #b03030;padding-left:1em}"
    ".ok{border-left:4px solid #2c7a3f;padding-left:1em}dt{font-weight:600}"
    "dd{margin:0 0 .3em 1em;color:#444}.muted{color:#666}"
)


def _e(value: object) -> str:
    return html.escape(str(value))


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]], empty: str) -> str:
    if not rows:
        return f'<p class="muted">{_e(empty)}</p>'
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{_e(v)}</td>" for v in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _counts(counts: dict[str, int], words: dict[str, str]) -> str:
    return ", ".join(f"{n} {words.get(k, k)}" for k, n in sorted(counts.items()))


def _headline(summary: dict[str, Any]) -> str:
    totals = summary["totals"]
    mode = (
        "applied to Moodle"
        if summary["mode"] == "apply"
        else "a dry run: nothing changed"
    )
    changes = _counts(totals["by_action"], ACTION_WORDS) or "no change needed"
    outcomes = _counts(totals["by_outcome"], OUTCOME_WORDS)
    return (
        f"<p>This run compared PowerCampus (snapshot {_e(summary['snapshot_id'])}, "
        f"change-tracking version {_e(summary['state_version'])}) with "
        f"{totals['courses']} Moodle courses; it was {mode}.</p>"
        f"<p><strong>{totals['changes']} changes:</strong> {_e(changes)}"
        + (f" — {_e(outcomes)}" if outcomes else "")
        + ".</p>"
    )


def _attention(items: list[dict[str, str]]) -> str:
    if not items:
        return (
            '<section class="ok"><h2>Needs a person\'s attention</h2>'
            "<p>Nothing: every difference was handled or is noted below.</p></section>"
        )
    return (
        f'<section class="attention"><h2>Needs a person\'s attention ({len(items)})</h2>'
        + _table(
            ("what", "details", "what to do"),
            [(i["what"], i["detail"], i["to_do"]) for i in items],
            "",
        )
        + "</section>"
    )


def _courses(summary: dict[str, Any]) -> str:
    rows = [
        (
            name,
            c["owned_active"],
            _counts(c["planned"], ACTION_WORDS) or "none",
            _counts(c["outcomes"], OUTCOME_WORDS) or "—",
            c["in_step"],
            c["unowned_differences"],
            c["stale"],
            c.get("other_roles", 0),
        )
        for name, c in summary["courses"].items()
    ]
    legend = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in COURSE_COLUMNS)
    return (
        "<h2>Courses</h2>"
        + _table([k for k, _ in COURSE_COLUMNS], rows, "No mapped course.")
        + f"<dl>{legend}</dl>"
    )


def render_html(summary: dict[str, Any], changes: Sequence[Sequence[str]]) -> str:
    """The page for ``summary`` and the changes (as the report's rows show them)."""
    noted = summary["noted"]
    guard = summary["guard"]
    guard_line = (
        f"<p>The mass-drop guard counted {guard['drops']} drops of "
        f"{guard['owned_active']} active enrolments enrolstream manages: "
        + ("<strong>tripped</strong>" if guard["tripped"] else "within its limits")
        + (" (nothing was applied)" if guard["blocked"] else "")
        + ".</p>"
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>Nightly reconcile {_e(summary['snapshot_id'])}</title>"
        f"<style>{_STYLE}</style></head><body>"
        "<h1>Nightly reconcile: PowerCampus → Moodle</h1>"
        + _headline(summary)
        + guard_line
        + _attention(summary["needs_attention"])
        + "<h2>Changes</h2>"
        + _table(
            ("what", "course", "student", "role", "why", "outcome"),
            changes,
            "No change was needed: Moodle already matches PowerCampus.",
        )
        + _courses(summary)
        + f"<h2>Noted, no action needed ({len(noted)})</h2>"
        + '<p class="muted">Active students Moodle holds that PowerCampus does not '
        "list, enrolled by hand (a teacher's guest, a late add): enrolstream never "
        "drops what it did not enrol.</p>"
        + _table(
            ("course", "student", "in Moodle", "PowerCampus"),
            [(n["course"], n["student"], n["moodle"], n["powercampus"]) for n in noted],
            "None.",
        )
        + "</body></html>\n"
    )
