"""The alarm's loop: observe, decide (``operations.alarm``), then log, count and notify.

Each check: ``observe()`` gives an ``Observation``; the pure rules say which
conditions hold; the ``AlarmBook`` says which notices are due. Every notice is
an error log line (``alarm_raised`` / ``alarm_repeated``) or an info line
(``alarm_recovered``), sets the ``alarm_active`` gauge, and goes to every
``Notifier``. A notifier that fails (``NotificationFailed``) is logged and
counted; the others still get the notice, and the alarm is not forgotten: its
next repeat goes out as scheduled.

Notices never carry a secret: they are built from the observation only.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

import structlog

from operations.alarm import (
    ALARMS,
    AlarmBook,
    AlarmPolicy,
    Notice,
    Observation,
    conditions,
)
from operations.metrics import NO_METRICS, Metrics

__all__ = ["AlarmWatch", "NotificationFailed", "Notifier"]

log = structlog.get_logger()


class NotificationFailed(Exception):
    """A notice could not be delivered; the message says why (never a secret)."""


class Notifier(Protocol):
    """Somewhere notices go: e-mail, a webhook (``connectors.notify``)."""

    channel: str

    async def send(self, notice: Notice, *, label: str) -> None:
        """Deliver one notice; raise ``NotificationFailed`` when it cannot."""
        ...


class AlarmWatch:
    """Checks the alarm's conditions every ``interval_s`` and tells people."""

    def __init__(
        self,
        policy: AlarmPolicy,
        observe: Callable[[], Awaitable[Observation]],
        notifiers: Sequence[Notifier] = (),
        *,
        label: str = "enrolstream",
        metrics: Metrics = NO_METRICS,
    ) -> None:
        self.policy = policy
        self.observe = observe
        self.notifiers = list(notifiers)
        self.label = label
        self.metrics = metrics
        self.book = AlarmBook(policy.repeat)

    def active(self) -> list[str]:
        """The alarms raised now."""
        return list(self.book.active())

    async def check_once(self) -> list[Notice]:
        """One check; returns the notices it sent (or tried to)."""
        observation = await self.observe()
        notices = self.book.step(observation.now, conditions(observation, self.policy))
        for name in ALARMS:
            self.metrics.alarm_active(name, name in self.book.raised)
        for notice in notices:
            await self._tell(notice)
        return notices

    async def _tell(self, notice: Notice) -> None:
        if notice.kind == "recovered":
            log.info("alarm_recovered", alarm=notice.alarm, message=notice.message)
        else:
            event = "alarm_raised" if notice.kind == "raised" else "alarm_repeated"
            log.error(event, alarm=notice.alarm, message=notice.message)
        for notifier in self.notifiers:
            try:
                await notifier.send(notice, label=self.label)
            except NotificationFailed as exc:
                self.metrics.notification(notifier.channel, "failed")
                log.warning(
                    "alarm_notification_failed",
                    channel=notifier.channel,
                    alarm=notice.alarm,
                    error=str(exc),
                )
            else:
                self.metrics.notification(notifier.channel, "sent")

    async def run(self, stop: asyncio.Event, *, interval_s: float) -> None:
        """Check every ``interval_s`` until ``stop`` is set."""
        while not stop.is_set():
            await self.check_once()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval_s)
