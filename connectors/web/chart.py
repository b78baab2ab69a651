"""The last hour's commit → Moodle latency as an inline SVG (no script, no library).

One column per minute of the hour ending now: a bar up to the minute's median,
a tick at its 95th percentile, a dot at its maximum. The scale is logarithmic
from 0.1 s to the largest value (at least 10 s), so a 300 ms median and a
20-minute outage fit one picture.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from datetime import datetime, timedelta

from operations.latency import MinuteLatency

__all__ = ["latency_svg"]

WIDTH, HEIGHT = 720, 220
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 12, 28
FLOOR_S = 0.1


def _y(seconds: float, top_s: float) -> float:
    span = math.log10(top_s) - math.log10(FLOOR_S)
    share = (math.log10(max(seconds, FLOOR_S)) - math.log10(FLOOR_S)) / span
    return TOP + (HEIGHT - TOP - BOTTOM) * (1 - min(1.0, share))


def _label(seconds: float) -> str:
    if seconds >= 60:  # noqa: PLR2004 - a minute
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


def latency_svg(minutes: Sequence[MinuteLatency], now: datetime) -> str:
    """The chart for the hour ending at ``now``, as SVG markup."""
    top_s = max([10.0, *(m.max_s for m in minutes)])
    start = now.replace(second=0, microsecond=0) - timedelta(minutes=59)
    column = (WIDTH - LEFT - RIGHT) / 60
    base = HEIGHT - BOTTOM
    parts = [
        (
            f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
            f'width="{WIDTH}" height="{HEIGHT}" role="img" '
            'aria-label="commit to Moodle latency, last hour, per minute">'
        ),
        (
            f'<rect x="{LEFT}" y="{TOP}" width="{WIDTH - LEFT - RIGHT}" '
            f'height="{base - TOP}" fill="#fafafa" stroke="#ccc"/>'
        ),
    ]
    for seconds in (0.1, 1.0, 10.0, 60.0, 600.0, 3600.0):
        if seconds > top_s:
            break
        y = _y(seconds, top_s)
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
            'stroke="#e3e3e3"/>'
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" '
            f'font-size="11" fill="#555">{_label(seconds)}</text>'
        )
    for offset in (0, 15, 30, 45, 59):
        x = LEFT + column * (offset + 0.5)
        moment = start + timedelta(minutes=offset)
        parts.append(
            f'<text x="{x:.1f}" y="{HEIGHT - 8}" text-anchor="middle" font-size="11" '
            f'fill="#555">{moment:%H:%M}</text>'
        )
    for minute in minutes:
        index = int((minute.minute - start).total_seconds() // 60)
        if not 0 <= index < 60:  # noqa: PLR2004 - the hour's minutes
            continue
        x = LEFT + column * index
        median_y, p95_y, max_y = (
            _y(minute.median_s, top_s),
            _y(minute.p95_s, top_s),
            _y(minute.max_s, top_s),
        )
        title = html.escape(
            f"{minute.minute:%H:%M}: {minute.count} changes, median "
            f"{minute.median_s:.2f} s, p95 {minute.p95_s:.2f} s, max {minute.max_s:.2f} s"
        )
        parts.append(
            f"<g><title>{title}</title>"
            f'<rect x="{x + 1:.1f}" y="{median_y:.1f}" width="{column - 2:.1f}" '
            f'height="{base - median_y:.1f}" fill="#4a7fb5"/>'
            f'<line x1="{x + 1:.1f}" x2="{x + column - 1:.1f}" y1="{p95_y:.1f}" '
            f'y2="{p95_y:.1f}" stroke="#d98a1f" stroke-width="2"/>'
            f'<circle cx="{x + column / 2:.1f}" cy="{max_y:.1f}" r="2" fill="#b03030"/>'
            "</g>"
        )
    parts.append("</svg>")
    return "".join(parts)
