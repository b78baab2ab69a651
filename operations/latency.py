"""The last hour's commit → Moodle latencies, per minute, for the status page's chart.

Bounded memory: at most ``per_minute`` samples are kept per minute (the first
ones; the count and the maximum still see every sample), and minutes older than
the window are dropped as new ones arrive.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

__all__ = ["LatencyWindow", "MinuteLatency"]


@dataclass(frozen=True, slots=True)
class MinuteLatency:
    """One minute of the window: how many changes landed and how fast."""

    minute: datetime
    count: int
    median_s: float
    p95_s: float
    max_s: float


@dataclass(slots=True)
class _Bucket:
    count: int = 0
    max_s: float = 0.0
    samples: list[float] = field(default_factory=list)


def _minute(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def _rank(ordered: list[float], share: float) -> float:
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


class LatencyWindow:
    """Samples of the last ``window``, bucketed by minute."""

    def __init__(
        self, window: timedelta = timedelta(hours=1), per_minute: int = 600
    ) -> None:
        self.window = window
        self.per_minute = per_minute
        self._buckets: dict[datetime, _Bucket] = {}

    def add(self, at: datetime, seconds: float) -> None:
        """One change applied at ``at``, ``seconds`` after its commit."""
        bucket = self._buckets.setdefault(_minute(at), _Bucket())
        bucket.count += 1
        bucket.max_s = max(bucket.max_s, seconds)
        if len(bucket.samples) < self.per_minute:
            bucket.samples.append(seconds)
        self._forget(at)

    def _forget(self, now: datetime) -> None:
        oldest = _minute(now - self.window)
        for minute in [m for m in self._buckets if m < oldest]:
            del self._buckets[minute]

    def minutes(self, now: datetime) -> list[MinuteLatency]:
        """The minutes of the window ending at ``now`` that saw changes, oldest first."""
        self._forget(now)
        result = []
        for minute in sorted(self._buckets):
            bucket = self._buckets[minute]
            ordered = sorted(bucket.samples)
            result.append(
                MinuteLatency(
                    minute=minute,
                    count=bucket.count,
                    median_s=_rank(ordered, 0.5),
                    p95_s=_rank(ordered, 0.95),
                    max_s=bucket.max_s,
                )
            )
        return result
