"""The status page as HTML, pure: a ``PageView`` in, one self-contained page out.

No script and nothing fetched: the CSS is inline, the chart an inline SVG, and
the page refreshes itself every 30 seconds with a ``<meta>`` tag. Every value is
escaped. Actions are forms that POST back with the page's anti-forgery token.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from connectors.web.chart import latency_svg
from operations.latency import MinuteLatency
from operations.status import LetterRow, ParkedRow, PipelineStatus

__all__ = ["PageView", "render_page"]

_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#1d1d1d;
background:#f4f5f7}
header{background:#23395d;color:#fff;padding:.8em 1.5em}
header h1{margin:0;font-size:1.3em}header p{margin:.2em 0 0;opacity:.8;font-size:.9em}
main{padding:1em 1.5em;display:grid;gap:1em;grid-template-columns:repeat(auto-fit,
minmax(420px,1fr))}
section{background:#fff;border:1px solid #dde1e6;border-radius:6px;padding:.8em 1em}
section.wide{grid-column:1/-1}
h2{font-size:1.05em;margin:.1em 0 .6em}
table{border-collapse:collapse;width:100%;font-size:.88em}
td,th{border-bottom:1px solid #eceef1;padding:.3em .4em;text-align:left;vertical-align:top}
th{color:#555;font-weight:600}
.glance th{width:11em}
.alarm{color:#a40000;font-weight:700}.ok{color:#19692c;font-weight:600}
.flash{margin:1em 1.5em 0;padding:.6em 1em;border-radius:6px;background:#e7f3e9;
border:1px solid #9cc7a4}
.flash.error{background:#fbeaea;border-color:#e0a3a3}
.muted{color:#666;font-size:.85em}
form.inline{display:inline}
button{font:inherit;font-size:.85em;padding:.2em .7em;border:1px solid #23395d;
background:#fff;color:#23395d;border-radius:4px;cursor:pointer}
button.primary{background:#23395d;color:#fff}
input[type=text]{font:inherit;padding:.2em .4em;width:14em}
.legend span{display:inline-block;margin-right:1em}
.swatch{display:inline-block;width:.8em;height:.8em;margin-right:.3em;vertical-align:middle}
"""


@dataclass(frozen=True, slots=True)
class PageView:
    """Everything the page shows."""

    status: PipelineStatus
    latency: Sequence[MinuteLatency] = ()
    parked: Sequence[ParkedRow] = ()
    dead_letters: Sequence[LetterRow] = ()
    report_available: bool = False
    reprocess_per_minute: int = 6
    notes: Sequence[str] = field(default_factory=tuple)


def _e(value: object) -> str:
    return html.escape(str(value))


def _when(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M:%S %Z}".strip()


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], empty: str) -> str:
    if not rows:
        return f'<p class="muted">{_e(empty)}</p>'
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _glance(status: PipelineStatus) -> str:
    rows = []
    for label, value in status.rows():
        css = ""
        if label == "alarms":
            css = ' class="alarm"' if status.alarms else ' class="ok"'
        rows.append(f"<tr><th>{_e(label)}</th><td{css}>{_e(value)}</td></tr>")
    return (
        '<section id="glance"><h2>Pipeline at a glance</h2><table class="glance">'
        + "".join(rows)
        + "</table></section>"
    )


def _latency(view: PageView) -> str:
    minutes = view.latency
    count = sum(m.count for m in minutes)
    worst = max((m.max_s for m in minutes), default=0.0)
    caption = (
        f"{count} changes applied in the last hour; slowest {worst:.2f} s"
        if count
        else "No change applied in the last hour."
    )
    legend = (
        '<p class="legend muted"><span><i class="swatch" style="background:#4a7fb5">'
        '</i>median</span><span><i class="swatch" style="background:#d98a1f"></i>'
        '95th percentile</span><span><i class="swatch" style="background:#b03030"></i>'
        "slowest</span></p>"
    )
    return (
        '<section id="latency" class="wide"><h2>Commit in PowerCampus → applied in Moodle, last '
        f"hour</h2>{latency_svg(minutes, view.status.generated_at)}{legend}"
        f'<p class="muted">{_e(caption)}</p></section>'
    )


def _parked(rows: Sequence[ParkedRow]) -> str:
    table = _table(
        ("person", "term", "why they wait", "since", "tries"),
        [
            [
                _e(r.people_code_id),
                _e(r.term),
                _e(r.reason),
                _e(_when(r.since)),
                _e(r.attempts),
            ]
            for r in rows
        ],
        "Nobody is parked.",
    )
    return (
        f'<section id="parked"><h2>Parked persons ({len(rows)})</h2>'
        '<p class="muted">Registered in PowerCampus but without exactly one Moodle '
        "account; retried on a schedule, never guessed.</p>"
        f"{table}</section>"
    )


def _form(
    action: str, csrf: str, fields: dict[str, str], label: str, *, primary: bool = False
) -> str:
    hidden = "".join(
        f'<input type="hidden" name="{_e(k)}" value="{_e(v)}">'
        for k, v in fields.items()
    )
    css = ' class="primary"' if primary else ""
    return (
        f'<form class="inline" method="post" action="{_e(action)}">'
        f'<input type="hidden" name="csrf" value="{_e(csrf)}">{hidden}'
        f'<button{css} type="submit">{_e(label)}</button></form>'
    )


def _letters(rows: Sequence[LetterRow], csrf: str) -> str:
    table = _table(
        ("when", "person", "Moodle's error", "what happened", ""),
        [
            [
                _e(_when(r.dead_lettered_at)),
                _e(r.person or "—"),
                _e(r.errorcode or r.error_type),
                _e(r.reason),
                _form("/actions/redrive", csrf, {"position": r.position}, "Redrive")
                if r.redrivable
                else '<span class="muted">cannot be redriven</span>',
            ]
            for r in rows
        ],
        "No dead letter waits.",
    )
    redrive_all = (
        _form(
            "/actions/redrive", csrf, {"position": "all"}, "Redrive all", primary=True
        )
        if any(r.redrivable for r in rows)
        else ""
    )
    return (
        f'<section id="dead-letters" class="wide"><h2>Dead letters ({len(rows)})</h2>'
        '<p class="muted">What Moodle refused. Fix the cause in Moodle or PowerCampus, '
        "then redrive: the person's newest state is decided again.</p>"
        f"{table}<p>{redrive_all}</p></section>"
    )


def _reconcile(view: PageView) -> str:
    glance = view.status.last_reconcile
    if glance is None:
        body = '<p class="muted">No reconcile report found.</p>'
    else:
        outcomes = ", ".join(f"{k} {v}" for k, v in sorted(glance.by_outcome.items()))
        guard = (
            '<p class="alarm">The mass-drop guard tripped.</p>'
            if glance.guard_tripped
            else ""
        )
        link = (
            '<p><a href="/reports/latest">Open the full report</a></p>'
            if view.report_available
            else ""
        )
        body = (
            f"<p>{_e(_when(glance.finished_at))}, {_e(glance.mode)}: "
            f"{glance.changes} changes ({_e(outcomes or 'none')}); "
            f"{glance.needs_attention} findings need a person's attention.</p>"
            f"{guard}{link}"
        )
    return f'<section id="reconcile"><h2>Last nightly reconcile</h2>{body}</section>'


def _reprocess(view: PageView, csrf: str) -> str:
    def one(name: str, label: str, placeholder: str) -> str:
        return (
            '<form method="post" action="/actions/reprocess">'
            f'<input type="hidden" name="csrf" value="{_e(csrf)}">'
            f'<label>{_e(label)} <input type="text" name="{name}" '
            f'placeholder="{_e(placeholder)}" required></label> '
            '<button type="submit">Reprocess</button></form>'
        )

    return (
        '<section id="reprocess"><h2>Reprocess</h2>'
        '<p class="muted">Decide a person or a course again from what PowerCampus '
        f"holds now. At most {view.reprocess_per_minute} requests a minute.</p>"
        + one("person", "Person", "P000012345")
        + "<p></p>"
        + one("course", "Moodle course", "shortname")
        + "</section>"
    )


def render_page(
    view: PageView, *, csrf: str, message: str | None = None, error: bool = False
) -> str:
    """The whole page; ``message`` is the outcome of the last action, if any."""
    status = view.status
    flash = (
        f'<div class="flash{" error" if error else ""}" role="status">{_e(message)}</div>'
        if message
        else ""
    )
    notes = "".join(f'<p class="muted">{_e(n)}</p>' for n in view.notes)
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta http-equiv="refresh" content="30">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>enrolstream status</title><style>{_STYLE}</style></head><body>"
        "<header><h1>enrolstream: PowerCampus → Moodle</h1>"
        f"<p>As of {_e(_when(status.generated_at))}</p></header>"
        f"{flash}<main>"
        + _glance(status)
        + _reconcile(view)
        + _latency(view)
        + _parked(view.parked)
        + _reprocess(view, csrf)
        + _letters(view.dead_letters, csrf)
        + (f'<section class="wide">{notes}</section>' if notes else "")
        + "</main></body></html>\n"
    )
