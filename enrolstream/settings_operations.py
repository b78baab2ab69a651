"""The operations sections of the settings: the listener, the textfiles, the alarm.

Part of ``enrolstream.settings`` (kept apart for size); read and validated with it.
"""

from __future__ import annotations

import re
from datetime import time
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

__all__ = ["WEEKDAYS", "AlarmSettings", "EmailSettings", "OperationsSettings"]


class _Section(BaseModel):
    # hide_input_in_errors: a validation error names the key, never the value.
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)


Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HOURS = re.compile(r"(?P<start>\d{1,2}:\d{2})\s*-\s*(?P<end>\d{1,2}:\d{2})")


class OperationsSettings(_Section):
    """The operations listener of ``poll`` and ``consume``, and the batch textfiles.

    ``/metrics``, ``/livez`` and ``/readyz`` need no credentials; the status page
    (served by ``consume`` and the demo) needs ``token`` or ``username`` and
    ``password`` unless ``host`` is a loopback address.
    """

    host: str = Field(
        default="127.0.0.1",
        description="address the listener binds (0.0.0.0 in a container; the status "
        "page then needs credentials)",
    )
    poll_port: int | None = Field(
        default=9464, ge=0, le=65535, description="poll's listener; None: none"
    )
    consume_port: int | None = Field(
        default=9465, ge=0, le=65535, description="consume's listener; None: none"
    )
    token: SecretStr = Field(
        default=SecretStr(""),
        description="status page: a bearer token (also taken as a basic-auth password)",
    )
    username: str = Field(default="", description="status page: basic-auth user name")
    password: SecretStr = Field(
        default=SecretStr(""), description="status page: basic-auth password"
    )
    reprocess_per_minute: int = Field(default=6, ge=1)
    probe_timeout_s: float = Field(default=3.0, gt=0)
    loop_stale_after_s: float = Field(
        default=600.0,
        gt=0,
        description="/livez fails once the loop has not gone round for this long",
    )
    textfile_dir: Path | None = Field(
        default=None,
        description="node-exporter textfile directory: snapshot, reconcile and "
        "replay write enrolstream_<command>.prom there; None: not written",
    )


class EmailSettings(_Section):
    """Where alarm e-mails go; no ``host``: none are sent."""

    host: str | None = None
    port: int = Field(default=587, ge=1, le=65535)
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str = ""
    password: SecretStr = SecretStr("")
    sender: str = "enrolstream@localhost"
    recipients: tuple[str, ...] = ()


class AlarmSettings(_Section):
    """The staleness alarm, raised by ``consume``: quiet source, lag, dead letters."""

    enabled: bool = True
    label: str = Field(default="enrolstream", description="names the feed in notices")
    quiet_minutes_in_hours: float = Field(default=30.0, gt=0)
    quiet_minutes_out_of_hours: float = Field(default=240.0, gt=0)
    business_days: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri")
    business_hours: str = Field(default="08:00-18:00", description="HH:MM-HH:MM, local")
    timezone: str = Field(default="UTC", description="IANA zone, e.g. America/Toronto")
    lag_minutes: float = Field(default=10.0, gt=0)
    dead_letters: bool = Field(
        default=True, description="raise while dead letters wait to be redriven"
    )
    repeat_minutes: float = Field(default=60.0, gt=0)
    check_interval_s: float = Field(default=30.0, gt=0)
    email: EmailSettings = EmailSettings()
    webhook_url: SecretStr = Field(
        default=SecretStr(""),
        description="Slack or Teams incoming-webhook URL (a secret); empty: none",
    )

    @field_validator("business_hours")
    @classmethod
    def _hours(cls, value: str) -> str:
        match = _HOURS.fullmatch(value.strip())
        if match is None:
            raise ValueError("must be HH:MM-HH:MM, e.g. 08:00-18:00")
        start, end = (time.fromisoformat(match[k].zfill(5)) for k in ("start", "end"))
        if start >= end:
            raise ValueError("the start must come before the end")
        return value.strip()

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError("not a known IANA time zone") from exc
        return value

    def hours(self) -> tuple[time, time]:
        """The business hours' start and end."""
        match = _HOURS.fullmatch(self.business_hours)
        assert match is not None  # noqa: S101 - validated above
        return (
            time.fromisoformat(match["start"].zfill(5)),
            time.fromisoformat(match["end"].zfill(5)),
        )
