"""What the soak reads from outside the processes, and how it judges a series.

* per process: resident size (``VmRSS``), threads (``/proc/PID/status``) and
  open file descriptors (``/proc/PID/fd``);
* the Kafka topics: every topic's end offset (summed over partitions), and the
  live keys of the compacted ones the consumer holds in memory (ledger, parked,
  dead letters), followed incrementally by a reader of its own (no group);
* the poller's state cache (its SQLite file: bytes, rows per table);
* ``/metrics`` of ``poll`` and ``consume``: a few gauges, and how many series
  each exposes (a label that grows without bound shows here).

``slope_per_hour`` is the least-squares slope of a series; ``judge`` turns the
slope of the second half into "flat" or "GROWS".
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiokafka import AIOKafkaConsumer, TopicPartition

#: Fetches per sample at most (the topics keep growing while it reads).
MAX_FETCHES = 200
#: The consumer's gauges the soak records (summed over their labels).
GAUGES = (
    "enrolstream_parked_persons",
    "enrolstream_dead_letters_waiting",
    "enrolstream_consumer_lag_records",
)


def process_sample(pid: int | None) -> dict[str, float]:
    """RSS (MB), threads, open fds and CPU seconds of a live process; {} once gone."""
    if pid is None:
        return {}
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        status = Path(f"/proc/{pid}/status").read_text()
        fds = sum(1 for _ in Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return {}
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return {
        "rss_mb": int(fields["VmRSS"].split()[0]) / 1024,
        "threads": int(fields["Threads"].strip()),
        "fds": fds,
        # utime and stime, fields 14 and 15 of /proc/PID/stat (after the name)
        "cpu_s": (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK"),
    }


def state_file(path: Path) -> dict[str, int]:
    """The poller's SQLite cache: bytes on disk (with its WAL) and rows per table."""
    sizes: dict[str, int] = {}
    on_disk = [Path(f"{path}{suffix}") for suffix in ("", "-wal")]
    sizes["bytes"] = sum(p.stat().st_size for p in on_disk if p.exists())
    if not path.exists():
        return sizes
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            tables = [
                name
                for (name,) in db.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table'"
                )
            ]
            for table in tables:
                count = db.execute(f'SELECT count(*) FROM "{table}"').fetchone()
                sizes[f"rows_{table}"] = int(count[0])
        finally:
            db.close()
    except sqlite3.Error:
        pass  # busy or mid-checkpoint: the next sample reads it
    return sizes


async def scrape(session: aiohttp.ClientSession, port: int | None) -> dict[str, float]:
    """The gauges of ``GAUGES`` and the number of series on ``/metrics``; {} when down."""
    if port is None:
        return {}
    try:
        async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
            text = await response.text()
    except (aiohttp.ClientError, TimeoutError):
        return {}
    found: dict[str, float] = {"series": 0}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        found["series"] += 1
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in GAUGES:
            value = float(line.rsplit(" ", 1)[1])
            if value == value:  # not NaN  # noqa: PLR0124
                found[name] = found.get(name, 0.0) + value
    return found


class TopicWatch:
    """End offsets of every topic; live keys of the compacted ones, read as they grow.

    Subscribed without a group (every partition, nothing committed): only a
    subscription keeps the client's metadata for a topic. Only to topics that
    exist: asking for a topic's metadata creates it on the embedded broker, and
    the poller refuses a state topic someone else created.
    """

    def __init__(
        self, bootstrap: str, topics: Sequence[str], compacted: Sequence[str]
    ) -> None:
        self.topics = list(topics)
        self.live: dict[str, dict[bytes, bool]] = {t: {} for t in compacted}
        self._subscribed: set[str] = set()
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            metadata_max_age_ms=5_000,
            request_timeout_ms=10_000,
        )

    async def start(self) -> None:
        """Connect."""
        await self._consumer.start()

    async def stop(self) -> None:
        """Disconnect."""
        await self._consumer.stop()

    async def sample(self) -> dict[str, int]:
        """``end:<topic>`` per topic and ``live:<topic>`` per compacted topic."""
        existing = set(self.topics) & await self._consumer.topics()
        if existing != self._subscribed:
            self._consumer.subscribe(sorted(existing))  # positions restart: re-read
            self._subscribed = existing
        for _ in range(MAX_FETCHES if self._subscribed else 0):
            batches = await self._consumer.getmany(timeout_ms=200)
            if not batches:
                break
            for tp, messages in batches.items():
                live = self.live.get(tp.topic)
                if live is not None:
                    for message in messages:
                        live[message.key or b""] = message.value is not None
        found: dict[str, int] = {}
        for topic in self.topics:
            partitions = self._consumer.partitions_for_topic(topic) or set()
            tps = [TopicPartition(topic, p) for p in sorted(partitions)]
            ends = await self._consumer.end_offsets(tps) if tps else {}
            found[f"end:{topic}"] = sum(ends.values())
        for topic, live in self.live.items():
            found[f"live:{topic}"] = sum(live.values())
        return found


def slope_per_hour(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) points, per hour; 0 for < 2 points."""
    if len(points) < 2:  # noqa: PLR2004
        return 0.0
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    spread = sum((t - mean_t) ** 2 for t, _ in points)
    if not spread:
        return 0.0
    slope = sum((t - mean_t) * (v - mean_v) for t, v in points) / spread
    return slope * 3600


@dataclass(frozen=True, slots=True)
class Judgement:
    """A series over the run: first, last, max, slope of its second half, verdict."""

    first: float
    last: float
    most: float
    slope_per_hour: float
    per_day: float
    flat: bool

    def verdict(self, unit: str) -> str:
        """``flat`` or ``GROWS +N unit/24 h``."""
        if self.flat:
            return "flat"
        return f"GROWS {self.per_day:+.1f} {unit}/24 h"


def judge(points: Sequence[tuple[float, float]], bound_per_day: float) -> Judgement:
    """Flat when the second half's slope, over 24 h, stays under ``bound_per_day``."""
    values = [v for _, v in points] or [float("nan")]
    end = points[-1][0] if points else 0.0
    half = [(t, v) for t, v in points if t >= end / 2]
    slope = slope_per_hour(half)
    return Judgement(
        first=values[0],
        last=values[-1],
        most=max(values),
        slope_per_hour=slope,
        per_day=slope * 24,
        flat=slope * 24 < bound_per_day,
    )
