"""The staleness alarm's rules and its book, pure: no clock, no I/O, no logging.

Three conditions raise an alarm (each its own, by name):

* ``source_quiet``: no change from PowerCampus for longer than the quiet limit in
  force *now*: ``quiet_in_hours`` inside the configured business hours,
  ``quiet_out_of_hours`` outside them (registrars are quiet at night and at
  weekends; SHEBanG and enrol_lmb alarm the same way). Before any change was
  seen, quiet is measured from when watching began (``Observation.since``);
* ``consumer_lag``: the oldest event not yet applied has waited longer than
  ``lag``;
* ``dead_letters``: dead letters wait to be looked at (when ``dead_letters`` is on).

``AlarmBook.step`` turns the conditions of one check into notices: ``raised`` when
a condition first holds, ``repeated`` every ``repeat`` while it keeps holding, and
``recovered`` once it no longer does. The caller logs, counts and sends them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta, tzinfo
from typing import Literal

__all__ = [
    "ALARMS",
    "AlarmBook",
    "AlarmName",
    "AlarmPolicy",
    "BusinessHours",
    "Condition",
    "Notice",
    "Observation",
    "conditions",
    "describe_duration",
]

AlarmName = Literal["source_quiet", "consumer_lag", "dead_letters"]
ALARMS: tuple[AlarmName, ...] = ("source_quiet", "consumer_lag", "dead_letters")
NoticeKind = Literal["raised", "repeated", "recovered"]


@dataclass(frozen=True, slots=True)
class BusinessHours:
    """Weekdays (0 = Monday) and a local time range, in one time zone."""

    days: frozenset[int]
    start: time
    end: time
    zone: tzinfo

    def contains(self, moment: datetime) -> bool:
        """Whether ``moment`` (timezone-aware) falls inside the hours, locally."""
        local = moment.astimezone(self.zone)
        return local.weekday() in self.days and self.start <= local.time() < self.end


@dataclass(frozen=True, slots=True)
class AlarmPolicy:
    """The limits the conditions compare against, and how often to repeat."""

    hours: BusinessHours
    quiet_in_hours: timedelta
    quiet_out_of_hours: timedelta
    lag: timedelta
    repeat: timedelta
    dead_letters: bool = True

    def quiet_limit(self, now: datetime) -> tuple[timedelta, str]:
        """The quiet limit in force at ``now`` and how to name it."""
        if self.hours.contains(now):
            return self.quiet_in_hours, "inside business hours"
        return self.quiet_out_of_hours, "outside business hours"


@dataclass(frozen=True, slots=True)
class Observation:
    """What one check saw."""

    now: datetime
    since: datetime
    """When watching began: quiet is measured from here until a change is seen."""
    newest_change_at: datetime | None
    lag_age: timedelta
    dead_letters_waiting: int


@dataclass(frozen=True, slots=True)
class Condition:
    """One alarm's condition holding now, in words."""

    alarm: AlarmName
    message: str


@dataclass(frozen=True, slots=True)
class Notice:
    """What to tell people: an alarm raised, still raised, or recovered."""

    alarm: AlarmName
    kind: NoticeKind
    message: str
    at: datetime
    raised_at: datetime

    def subject(self, label: str) -> str:
        """A one-line subject: ``[ALARM] enrolstream: source_quiet``."""
        tag = {"raised": "ALARM", "repeated": "STILL", "recovered": "RECOVERED"}
        return f"[{tag[self.kind]}] {label}: {self.alarm}"


def describe_duration(span: timedelta) -> str:
    """``1 h 05 min``, ``42 min``, ``30 s``: how long, for people."""
    seconds = max(0, int(span.total_seconds()))
    if seconds < 60:  # noqa: PLR2004 - a minute
        return f"{seconds} s"
    hours, minutes = divmod(seconds // 60, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min"


def conditions(observation: Observation, policy: AlarmPolicy) -> list[Condition]:
    """The alarms whose condition holds in ``observation``, in ``ALARMS`` order."""
    found: list[Condition] = []
    now = observation.now
    last = observation.newest_change_at or observation.since
    quiet = now - last
    limit, named = policy.quiet_limit(now)
    if quiet > limit:
        seen = (
            f"the newest change was committed {describe_duration(quiet)} ago"
            if observation.newest_change_at is not None
            else f"none seen since watching began {describe_duration(quiet)} ago"
        )
        found.append(
            Condition(
                "source_quiet",
                f"no change from PowerCampus for longer than {describe_duration(limit)}"
                f" ({named}): {seen}",
            )
        )
    if observation.lag_age > policy.lag:
        found.append(
            Condition(
                "consumer_lag",
                f"the oldest event not yet applied to Moodle has waited "
                f"{describe_duration(observation.lag_age)} (limit "
                f"{describe_duration(policy.lag)})",
            )
        )
    if policy.dead_letters and observation.dead_letters_waiting > 0:
        found.append(
            Condition(
                "dead_letters",
                f"{observation.dead_letters_waiting} dead letters wait: see `enrolstream "
                "dlq list` or the status page, fix the cause, then redrive",
            )
        )
    return found


@dataclass(slots=True)
class _Raised:
    since: datetime
    notified_at: datetime
    message: str


@dataclass(slots=True)
class AlarmBook:
    """Which alarms are raised and when their last notice went out."""

    repeat: timedelta
    raised: dict[AlarmName, _Raised] = field(default_factory=dict)

    def active(self) -> list[AlarmName]:
        """The alarms raised now, in ``ALARMS`` order."""
        return [name for name in ALARMS if name in self.raised]

    def step(self, now: datetime, holding: Sequence[Condition]) -> list[Notice]:
        """The notices due at ``now`` given the conditions that hold.

        A new condition is ``raised`` at once; one still holding is ``repeated``
        once ``repeat`` has passed since its last notice; one no longer holding is
        ``recovered`` (once) and forgotten.
        """
        notices: list[Notice] = []
        current = {condition.alarm: condition for condition in holding}
        for name in ALARMS:
            condition, raised = current.get(name), self.raised.get(name)
            if condition is not None and raised is None:
                self.raised[name] = _Raised(now, now, condition.message)
                notices.append(Notice(name, "raised", condition.message, now, now))
            elif condition is not None and raised is not None:
                raised.message = condition.message
                if now - raised.notified_at >= self.repeat:
                    raised.notified_at = now
                    notices.append(
                        Notice(name, "repeated", condition.message, now, raised.since)
                    )
            elif raised is not None:
                del self.raised[name]
                lasted = describe_duration(now - raised.since)
                notices.append(
                    Notice(
                        name,
                        "recovered",
                        f"recovered after {lasted}; it was: {raised.message}",
                        now,
                        raised.since,
                    )
                )
        return notices
