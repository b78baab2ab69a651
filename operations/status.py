"""The pipeline at a glance: what the status page's top block and ``enrolstream status`` say.

Plain data gathered by the wiring (``enrolstream.wiring.status``) from the source,
the poller's checkpoint, Kafka and the reconcile reports; rendered here as text
and JSON, and by ``connectors.web`` as HTML. A figure that could not be read is
``None`` with the reason in ``unknown`` (the source unreachable, the poller's
state on another host), never a guess.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from operations.alarm import describe_duration

__all__ = [
    "LetterRow",
    "ParkedRow",
    "PipelineStatus",
    "ReconcileGlance",
    "render_text",
]


@dataclass(frozen=True, slots=True)
class ParkedRow:
    """One parked person-term, as the page and ``enrolstream parked list`` show it."""

    people_code_id: str
    term: str
    reason: str
    reason_code: str
    since: datetime
    attempts: int


@dataclass(frozen=True, slots=True)
class LetterRow:
    """One dead letter waiting, as the page shows it (``position`` redrives it)."""

    position: str
    dead_lettered_at: datetime
    person: str | None
    error_type: str
    errorcode: str | None
    reason: str
    redrivable: bool


@dataclass(frozen=True, slots=True)
class ReconcileGlance:
    """The last reconcile's summary (its ``summary.json``) and where its report is."""

    directory: str
    finished_at: datetime
    mode: str
    changes: int
    by_outcome: Mapping[str, int]
    guard_tripped: bool
    needs_attention: int


@dataclass(frozen=True, slots=True)
class PipelineStatus:
    """Every figure of the at-a-glance block, as of ``generated_at``."""

    generated_at: datetime
    source_version: int | None = None
    saved_version: int | None = None
    poller_saved_at: datetime | None = None
    newest_change_at: datetime | None = None
    consumer_lag: Mapping[int, int] | None = None
    lag_age_s: float | None = None
    parked: int | None = None
    dead_letters: int | None = None
    alarms: tuple[str, ...] = ()
    last_reconcile: ReconcileGlance | None = None
    unknown: Mapping[str, str] = field(default_factory=dict)

    @property
    def versions_behind(self) -> int | None:
        """Change-tracking versions the poller has not saved yet (None if unknown)."""
        if self.source_version is None or self.saved_version is None:
            return None
        return max(0, self.source_version - self.saved_version)

    @property
    def last_change_age_s(self) -> float | None:
        """Seconds since the newest change seen was committed."""
        if self.newest_change_at is None:
            return None
        return max(0.0, (self.generated_at - self.newest_change_at).total_seconds())

    @property
    def total_lag(self) -> int | None:
        """Records not yet read over every partition."""
        return None if self.consumer_lag is None else sum(self.consumer_lag.values())

    def to_json(self) -> dict[str, Any]:
        """JSON-ready data (times in ISO 8601, derived figures included)."""
        data = asdict(self)
        for key, value in list(data.items()):
            if isinstance(value, datetime):
                data[key] = value.isoformat()
        if self.last_reconcile is not None:
            data["last_reconcile"]["finished_at"] = (
                self.last_reconcile.finished_at.isoformat()
            )
        data["consumer_lag"] = (
            None
            if self.consumer_lag is None
            else {str(p): n for p, n in sorted(self.consumer_lag.items())}
        )
        data["versions_behind"] = self.versions_behind
        data["last_change_age_s"] = self.last_change_age_s
        data["total_lag"] = self.total_lag
        data["alarms"] = list(self.alarms)
        data["unknown"] = dict(self.unknown)
        return data

    def rows(self) -> list[tuple[str, str]]:
        """(label, value) pairs in display order: the text and HTML renderings share them."""

        def known(name: str, value: object, shown: str) -> str:
            if value is None:
                return f"unknown ({self.unknown.get(name, 'not read')})"
            return shown

        behind = self.versions_behind
        age = self.last_change_age_s
        lag = self.consumer_lag or {}
        reconcile = self.last_reconcile
        return [
            (
                "source version",
                known("source_version", self.source_version, str(self.source_version)),
            ),
            (
                "saved version",
                known(
                    "saved_version",
                    self.saved_version,
                    f"{self.saved_version}"
                    + (f" ({behind} behind)" if behind is not None else ""),
                ),
            ),
            (
                "poller",
                known(
                    "saved_version",
                    self.poller_saved_at,
                    "saved its version "
                    + describe_duration_s(
                        (self.generated_at - self.poller_saved_at).total_seconds()
                    )
                    + " ago"
                    if self.poller_saved_at is not None
                    else "",
                ),
            ),
            (
                "last change",
                known(
                    "newest_change_at",
                    age,
                    f"{describe_duration_s(age)} ago" if age is not None else "",
                ),
            ),
            (
                "consumer lag",
                known(
                    "consumer_lag",
                    self.consumer_lag,
                    f"{self.total_lag} events"
                    + (
                        " ("
                        + ", ".join(f"p{p}: {n}" for p, n in sorted(lag.items()))
                        + ")"
                        if lag
                        else ""
                    )
                    + (
                        f", oldest waiting {describe_duration_s(self.lag_age_s)}"
                        if self.lag_age_s
                        else ""
                    ),
                ),
            ),
            ("parked persons", known("parked", self.parked, str(self.parked))),
            (
                "dead letters",
                known("dead_letters", self.dead_letters, str(self.dead_letters)),
            ),
            ("alarms", ", ".join(self.alarms) if self.alarms else "none"),
            (
                "last reconcile",
                "none found"
                if reconcile is None
                else f"{reconcile.finished_at:%Y-%m-%d %H:%M} ({reconcile.mode}): "
                f"{reconcile.changes} changes"
                + "".join(f", {k} {v}" for k, v in sorted(reconcile.by_outcome.items()))
                + (", GUARD TRIPPED" if reconcile.guard_tripped else "")
                + f"; {reconcile.needs_attention} need a person's attention",
            ),
        ]


def describe_duration_s(seconds: float | None) -> str:
    """``describe_duration`` for a number of seconds."""
    return describe_duration(timedelta(seconds=seconds or 0))


def render_text(status: PipelineStatus) -> str:
    """The block as aligned text lines (``enrolstream status``)."""
    rows = status.rows()
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"{label:<{width}}  {value}" for label, value in rows) + "\n"
