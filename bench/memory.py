"""Memory benchmark: the consumer's resident size with a large ledger and many parked persons.

A consumer holds the whole ownership ledger and the parked table in memory
(``consumers/ledger.py``, ``consumers/parked.py``) and reads both again at every
assignment. This loads 200,000 ledger entries (realistic ones: active, with a
person, a state version, an event id) and 10,000 parked persons (each an event
with four registrations) through the same ``load()`` the consumer calls, from an
in-memory table holding the JSON the Kafka topics hold, and prints the process's
resident size (``VmRSS``) before, after each, and after loading both again (a
rebalance: the size must not grow with each reload).

Run: ``.venv/bin/python -m bench.memory [--ledger 200000] [--parked 10000]``
"""

from __future__ import annotations

import argparse
import asyncio
import gc
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from consumers.ledger import Ledger, ledger_key
from consumers.parked import ParkedEvent, parked_key
from schemas.actions import LedgerEntry
from schemas.events import EnrolmentEvent, Registration, SectionKey, TermKey

TERM = TermKey(academic_year="2026", academic_term="Fall")
STUDENT = 5


class Table:
    """The rows a compacted topic holds, served as ``KafkaTable.load`` serves them."""

    def __init__(self, rows: dict[bytes, bytes]) -> None:
        self.rows = rows

    async def load(self) -> dict[bytes, bytes]:
        """A fresh dict, as a read of the topic builds."""
        return dict(self.rows)

    async def put(self, rows: Sequence[tuple[bytes, bytes | None]]) -> None:
        """Not used here."""
        del rows


def resident_mb() -> float:
    """This process's resident set size, MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def ledger_rows(count: int) -> dict[bytes, bytes]:
    """``count`` entries: 25 students a course, people numbered like PowerCampus's."""
    rows = {}
    for n in range(count):
        courseid, userid = 1000 + n // 25, 100_000 + n
        entry = LedgerEntry(
            courseid=courseid,
            userid=userid,
            roleid=STUDENT,
            status="active",
            event_id=f"pc:{n:012d}:0",
            state_version=1_000_000 + n,
            people_code_id=f"P{n:09d}",
        )
        rows[ledger_key(courseid, userid)] = entry.model_dump_json().encode()
    return rows


def parked_rows(count: int) -> dict[bytes, bytes]:
    """``count`` parked person-terms, each with four registrations."""
    now = datetime.now(UTC)
    rows = {}
    for n in range(count):
        registrations = tuple(
            Registration(
                transcript_detail_id=n * 4 + k,
                section=SectionKey(
                    academic_year="2026",
                    academic_term="Fall",
                    academic_session="01",
                    event_id=f"C{(n + k) % 2000:04d}",
                    event_sub_type="LEC",
                    section="01",
                ),
                add_drop_wait="A",
            )
            for k in range(4)
        )
        event = EnrolmentEvent(
            event_id=f"pc:{n:012d}:1",
            kind="change",
            source="bench",
            people_code_id=f"P{900_000_000 + n:09d}",
            term=TERM,
            state_version=2_000_000 + n,
            registrations=registrations,
            captured_at=now,
        )
        parked = ParkedEvent(
            event=event, reason="no Moodle user", reason_code="no_user", parked_at=now
        )
        rows[parked_key(event)] = parked.model_dump_json().encode()
    return rows


async def main(ledger_count: int, parked_count: int) -> None:
    """Build the tables, load them as the consumer does, print the sizes."""
    from consumers.parked import ParkedEvents  # noqa: PLC0415 - after the baseline

    gc.collect()
    baseline = resident_mb()
    ledger_table = Table(ledger_rows(ledger_count))
    parked_table = Table(parked_rows(parked_count))
    gc.collect()
    with_topics = resident_mb()
    ledger, parked = Ledger(ledger_table), ParkedEvents(parked_table)
    await ledger.load()
    gc.collect()
    with_ledger = resident_mb()
    await parked.load()
    gc.collect()
    with_both = resident_mb()
    for _ in range(3):  # three rebalances: every assignment reads both again
        await ledger.load()
        await parked.load()
    gc.collect()
    after_reloads = resident_mb()
    print(f"process at start (interpreter, pydantic, schemas): {baseline:7.1f} MB")
    print(
        f"the topics' bytes as read from Kafka (not kept by a consumer): "
        f"{with_topics - baseline:7.1f} MB"
    )
    print(
        f"ledger, {len(ledger):,} entries in memory: "
        f"{with_ledger - with_topics:7.1f} MB "
        f"({(with_ledger - with_topics) * 1024 * 1024 / max(1, len(ledger)):.0f} B each)"
    )
    print(
        f"parked, {len(parked):,} persons in memory: "
        f"{with_both - with_ledger:7.1f} MB "
        f"({(with_both - with_ledger) * 1024 * 1024 / max(1, len(parked)):.0f} B each)"
    )
    print(
        f"resident size with both: {with_both:7.1f} MB; after three reloads "
        f"(rebalances): {after_reloads:7.1f} MB "
        f"(growth {after_reloads - with_both:+.1f} MB)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ledger", type=int, default=200_000)
    parser.add_argument("--parked", type=int, default=10_000)
    args = parser.parse_args()
    asyncio.run(main(args.ledger, args.parked))
