"""Where a replay starts, pure: parse the operator's choice, compute and check offsets.

No I/O, no clock: the adapter (``connectors/kafka/groups.py``) reads the
partitions' beginning and end offsets and ``offsets_for_times``; these functions
turn them into the offsets to commit, or a ``ReplayError`` saying what is wrong.

Errors (subclasses of ``ConsumerError``; none is retriable)::

    ReplayError
    ├── ReplayRefused           the consumer group has live members
    └── InvalidReplayOffsets    unknown partition, offset outside the log, bad file
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from consumers.errors import ConsumerError

_RELATIVE = re.compile(r"(?P<amount>\d+(?:\.\d+)?)\s*(?P<unit>[smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


class ReplayError(ConsumerError):
    """A replay cannot be done as asked; the message says why and what to do."""


class ReplayRefused(ReplayError):
    """The consumer group has live members: moving its offsets now would be lost."""

    def __init__(self, group: str, state: str, members: Sequence[str]) -> None:
        self.group = group
        self.state = state
        self.members = tuple(members)
        super().__init__(
            f"consumer group {group!r} is {state} with live members "
            f"{', '.join(members) or '(none listed)'}: stop `enrolstream consume` "
            "first (every instance), then replay"
        )


class InvalidReplayOffsets(ReplayError):
    """The offsets asked for do not exist on the topic (or the file is unreadable)."""


@dataclass(frozen=True, slots=True)
class Since:
    """Replay every event written at or after ``at`` (a timezone-aware time)."""

    at: datetime

    @property
    def timestamp_ms(self) -> int:
        """``at`` as Kafka record timestamps count: milliseconds since the epoch."""
        return int(self.at.timestamp() * 1000)


@dataclass(frozen=True, slots=True)
class FromBeginning:
    """Replay everything the topic still holds."""


@dataclass(frozen=True, slots=True)
class ToOffsets:
    """Move the listed partitions to the given offsets; others keep theirs."""

    offsets: Mapping[int, int]


ReplayStart = Since | FromBeginning | ToOffsets


@dataclass(frozen=True, slots=True)
class PartitionMove:
    """One partition of the event topic: committed offset now, target, end."""

    partition: int
    committed: int | None
    target: int
    end: int

    @property
    def events(self) -> int:
        """Records between the target and the end (what the consumer will read)."""
        return max(0, self.end - self.target)


def parse_since(text: str, *, now: datetime) -> datetime:
    """``--since``: ISO 8601 (no offset: local time) or a duration ago (``90m``, ``2h``)."""
    relative = _RELATIVE.fullmatch(text.strip())
    if relative is not None:
        unit = _UNITS[relative["unit"]]
        return now - timedelta(**{unit: float(relative["amount"])})
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidReplayOffsets(
            f"--since {text!r} is neither an ISO 8601 time "
            "(2024-05-01T08:00:00+00:00) nor a duration ago (30m, 2h, 1d)"
        ) from None
    return parsed if parsed.tzinfo is not None else parsed.astimezone()


def parse_offsets_file(path: Path) -> dict[int, int]:
    """``--to-offsets FILE``: a JSON object ``{"<partition>": offset, ...}``."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InvalidReplayOffsets(f"cannot read {path}: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise InvalidReplayOffsets(
            f"{path}: not JSON (line {exc.lineno}, column {exc.colno}): {exc.msg}"
        ) from exc
    if not isinstance(data, dict) or not data:
        raise InvalidReplayOffsets(
            f'{path}: expected a non-empty object {{"<partition>": offset, ...}}'
        )
    offsets: dict[int, int] = {}
    for key, value in data.items():
        if not key.strip().isdigit():
            raise InvalidReplayOffsets(f"{path}: {key!r} is not a partition number")
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InvalidReplayOffsets(
                f"{path}: partition {key}: offset {value!r} is not a whole number >= 0"
            )
        offsets[int(key)] = value
    return offsets


def time_targets(
    found: Mapping[int, tuple[int, int] | None], end: Mapping[int, int]
) -> dict[int, int]:
    """Offsets for ``--since`` from ``offsets_for_times`` answers per partition.

    ``found`` holds (offset, timestamp) or None. None (Apache Kafka: no record at
    or after the time) and a negative timestamp (the embedded broker's answer
    for the same) both mean: start at the end, nothing to replay there.
    """
    targets: dict[int, int] = {}
    for partition, last in end.items():
        answer = found.get(partition)
        if answer is None or answer[1] < 0:
            targets[partition] = last
        else:
            targets[partition] = min(answer[0], last)
    return targets


def check_offsets(
    wanted: Mapping[int, int],
    beginning: Mapping[int, int],
    end: Mapping[int, int],
    *,
    topic: str,
) -> dict[int, int]:
    """``wanted`` if every partition exists and every offset is in [beginning, end]."""
    problems: list[str] = []
    for partition, offset in sorted(wanted.items()):
        if partition not in end:
            problems.append(
                f"partition {partition} does not exist (the topic has "
                f"{', '.join(str(p) for p in sorted(end))})"
            )
        elif offset > end[partition]:
            problems.append(
                f"partition {partition}: offset {offset} is beyond the end "
                f"({end[partition]})"
            )
        elif offset < beginning[partition]:
            problems.append(
                f"partition {partition}: offset {offset} is before the first "
                f"record still held ({beginning[partition]})"
            )
    if problems:
        raise InvalidReplayOffsets(f"cannot replay {topic}: " + "; ".join(problems))
    return dict(wanted)


def plan_moves(
    targets: Mapping[int, int],
    committed: Mapping[int, int | None],
    end: Mapping[int, int],
) -> list[PartitionMove]:
    """The moves to report and commit, by partition."""
    return [
        PartitionMove(
            partition=partition,
            committed=committed.get(partition),
            target=target,
            end=end[partition],
        )
        for partition, target in sorted(targets.items())
    ]
