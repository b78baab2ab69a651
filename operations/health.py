"""Liveness and readiness, as Kubernetes means them (``/livez``, ``/readyz``).

* Liveness: the process and its loop are alive. The loop calls ``Heartbeat.beat``
  once per iteration; it is dead only when it has started and then not beaten for
  ``stale_after_s`` (a loop that waits for Kafka or Moodle at start-up has not
  started yet, and is alive). No dependency is asked: a restart does not bring a
  broker back.
* Readiness: named probes (source reachable, broker reachable, Moodle token
  accepted, mapping loaded), each awaited with a time limit. A probe raises
  ``ProbeFailed`` with the reason, in words; a probe that does not answer in time
  fails with that said.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

__all__ = ["CheckResult", "Heartbeat", "Probe", "ProbeFailed", "run_probes"]

Probe = Callable[[], Awaitable[None]]


class ProbeFailed(Exception):
    """A readiness probe's dependency is not usable; the message says why."""


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One probe's verdict."""

    name: str
    ok: bool
    detail: str


async def _one(name: str, probe: Probe, timeout_s: float) -> CheckResult:
    try:
        async with asyncio.timeout(timeout_s):
            await probe()
    except ProbeFailed as exc:
        return CheckResult(name, ok=False, detail=str(exc))
    except TimeoutError:
        return CheckResult(name, ok=False, detail=f"no answer within {timeout_s:g} s")
    return CheckResult(name, ok=True, detail="ok")


async def run_probes(
    probes: Mapping[str, Probe], *, timeout_s: float
) -> list[CheckResult]:
    """Every probe's result, run concurrently, in the order given."""
    return list(
        await asyncio.gather(
            *(_one(name, probe, timeout_s) for name, probe in probes.items())
        )
    )


class Heartbeat:
    """The loop's sign of life, on a monotonic clock passed in by the caller."""

    def __init__(self, stale_after_s: float) -> None:
        self.stale_after_s = stale_after_s
        self.last: float | None = None

    def beat(self, now: float) -> None:
        """The loop went round once."""
        self.last = now

    def alive(self, now: float) -> bool:
        """Not started yet, or beaten within ``stale_after_s``."""
        return self.last is None or now - self.last <= self.stale_after_s
