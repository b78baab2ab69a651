"""The staleness alarm end to end: a controlled clock, a real SMTP server, a real webhook."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from email import message_from_bytes
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from pydantic import SecretStr
from structlog.testing import capture_logs

from connectors.notify import EmailNotifier, WebhookNotifier
from connectors.prometheus import PrometheusMetrics
from operations.alarm import AlarmPolicy, BusinessHours, Observation
from operations.watch import AlarmWatch

SMTP_PASSWORD = "smtp-s3cret-pw"  # noqa: S105 - a test credential, checked to stay hidden
HOOK_SECRET = "T0000-B0000-hook-s3cret"  # noqa: S105 - the webhook URL's key, kept hidden
#: Monday 11 January 2021, 10:00 in Toronto.
MONDAY_10 = datetime(2021, 1, 11, 15, 0, tzinfo=UTC)
#: Saturday 16 January 2021, 10:00 in Toronto.
SATURDAY_10 = datetime(2021, 1, 16, 15, 0, tzinfo=UTC)
POLICY = AlarmPolicy(
    hours=BusinessHours(
        days=frozenset(range(5)),
        start=time(8),
        end=time(18),
        zone=ZoneInfo("America/Toronto"),
    ),
    quiet_in_hours=timedelta(minutes=30),
    quiet_out_of_hours=timedelta(hours=4),
    lag=timedelta(minutes=10),
    repeat=timedelta(hours=1),
)


class Mailbox:
    """aiosmtpd's handler: keeps every message's bytes and who logged in."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []
        self.logins: list[tuple[bytes, bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's hook
        """Keep the message."""
        self.messages.append(envelope.original_content or envelope.content)
        return "250 OK"

    def authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        """Accept the test's credentials only."""
        assert isinstance(data, LoginPassword)
        self.logins.append((data.login, data.password))
        return AuthResult(success=data.password == SMTP_PASSWORD.encode())

    def subjects(self) -> list[str]:
        """Every message's subject, in arrival order."""
        return [str(message_from_bytes(raw)["Subject"]) for raw in self.messages]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(name="mailbox")
def _mailbox() -> Iterator[tuple[Mailbox, int]]:
    """A real SMTP server on loopback (aiosmtpd), with login over plain SMTP."""
    box = Mailbox()
    port = _free_port()
    controller = Controller(
        box,
        hostname="127.0.0.1",
        port=port,
        authenticator=box.authenticate,
        auth_require_tls=False,
    )
    controller.start()
    try:
        yield box, port
    finally:
        controller.stop()


@dataclass
class Hook:
    """A webhook receiver: every JSON body it was sent, and the paths."""

    bodies: list[dict[str, Any]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    url: str = ""


@pytest.fixture(name="hook")
async def _hook() -> AsyncIterator[Hook]:
    """A real HTTP server on loopback standing for Slack's or Teams' webhook."""
    hook = Hook()

    async def receive(request: web.Request) -> web.Response:
        hook.paths.append(request.path)
        hook.bodies.append(await request.json())
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/services/{secret}", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    port = _free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    hook.url = f"http://127.0.0.1:{port}/services/{HOOK_SECRET}"
    yield hook
    await runner.cleanup()


@dataclass
class World:
    """The controlled clock and what the observer reports."""

    now: datetime
    newest_change_at: datetime | None = None
    lag_age: timedelta = timedelta(0)
    dead_letters: int = 0

    async def observe(self) -> Observation:
        """What the watch sees now."""
        return Observation(
            now=self.now,
            since=self.now - timedelta(days=1),
            newest_change_at=self.newest_change_at,
            lag_age=self.lag_age,
            dead_letters_waiting=self.dead_letters,
        )


def make_watch(
    world: World, port: int, hook: Hook, metrics: PrometheusMetrics | None = None
) -> AlarmWatch:
    """An alarm watch e-mailing (with a login) and posting to the test's servers."""
    email = EmailNotifier(
        host="127.0.0.1",
        port=port,
        sender="enrolstream@example.edu",
        recipients=["integration@example.edu"],
        security="none",
        username="enrolstream",
        password=SecretStr(SMTP_PASSWORD),
    )
    webhook = WebhookNotifier(SecretStr(hook.url))
    return AlarmWatch(
        POLICY,
        world.observe,
        [email, webhook],
        label="registrar feed",
        metrics=metrics or PrometheusMetrics(),
    )


class TestStalenessAlarm:
    """Raised, repeated once per interval, recovered: by e-mail and webhook."""

    async def test_quiet_source_in_business_hours(
        self, mailbox: tuple[Mailbox, int], hook: Hook
    ) -> None:
        """Quiet past 30 min on a Monday raises; it repeats hourly and clears once."""
        box, port = mailbox
        world = World(now=MONDAY_10, newest_change_at=MONDAY_10 - timedelta(minutes=31))
        metrics = PrometheusMetrics()
        watch = make_watch(world, port, hook, metrics)
        with capture_logs() as logs:
            for minutes in (0, 20, 40, 59):
                world.now = MONDAY_10 + timedelta(minutes=minutes)
                await watch.check_once()
            assert box.subjects() == ["[ALARM] registrar feed: source_quiet"]
            world.now = MONDAY_10 + timedelta(minutes=60)
            await watch.check_once()
            world.now = MONDAY_10 + timedelta(minutes=61)
            world.newest_change_at = world.now
            await watch.check_once()
            await watch.check_once()
        assert box.subjects() == [
            "[ALARM] registrar feed: source_quiet",
            "[STILL] registrar feed: source_quiet",
            "[RECOVERED] registrar feed: source_quiet",
        ]
        assert [b["enrolstream"]["state"] for b in hook.bodies] == [
            "raised",
            "repeated",
            "recovered",
        ]
        assert hook.bodies[0]["text"].startswith("[ALARM] registrar feed: source_quiet")
        assert (
            "no change from PowerCampus for longer than 30 min"
            in hook.bodies[0]["text"]
        )
        errors = [e for e in logs if e["log_level"] == "error"]
        assert [e["event"] for e in errors] == ["alarm_raised", "alarm_repeated"]
        assert [e["event"] for e in logs if e["event"] == "alarm_recovered"] == [
            "alarm_recovered"
        ]
        body, _ = metrics.exposition()
        assert b'enrolstream_alarm_active{alarm="source_quiet"} 0.0' in body
        assert (
            b'enrolstream_alarm_notifications_total{channel="email",outcome="sent"} 3.0'
            in body
        )
        # secrets stay secret: not in the mails, the webhook bodies or the logs
        assert set(box.logins) == {(b"enrolstream", SMTP_PASSWORD.encode())}
        everything = b"".join(box.messages).decode() + repr(hook.bodies) + repr(logs)
        assert SMTP_PASSWORD not in everything
        assert HOOK_SECRET not in everything

    async def test_outside_business_hours_waits_longer(
        self, mailbox: tuple[Mailbox, int], hook: Hook
    ) -> None:
        """On a Saturday 31 quiet minutes raise nothing; four hours do."""
        box, port = mailbox
        world = World(
            now=SATURDAY_10, newest_change_at=SATURDAY_10 - timedelta(minutes=31)
        )
        watch = make_watch(world, port, hook)
        assert await watch.check_once() == []
        world.now = SATURDAY_10 + timedelta(hours=3, minutes=30)
        notices = await watch.check_once()
        assert [(n.alarm, n.kind) for n in notices] == [("source_quiet", "raised")]
        assert "(outside business hours)" in notices[0].message
        assert box.subjects() == ["[ALARM] registrar feed: source_quiet"]
        assert len(hook.bodies) == 1

    async def test_lag_and_dead_letters_raise_their_own_alarms(
        self, mailbox: tuple[Mailbox, int], hook: Hook
    ) -> None:
        """A lagging consumer and waiting dead letters are two alarms, cleared apart."""
        box, port = mailbox
        world = World(now=MONDAY_10, newest_change_at=MONDAY_10)
        watch = make_watch(world, port, hook)
        world.lag_age, world.dead_letters = timedelta(minutes=12), 2
        await watch.check_once()
        assert watch.active() == ["consumer_lag", "dead_letters"]
        world.now += timedelta(minutes=5)
        world.newest_change_at = world.now
        world.lag_age = timedelta(0)
        await watch.check_once()
        assert watch.active() == ["dead_letters"]
        assert box.subjects() == [
            "[ALARM] registrar feed: consumer_lag",
            "[ALARM] registrar feed: dead_letters",
            "[RECOVERED] registrar feed: consumer_lag",
        ]
        assert len(hook.bodies) == 3

    async def test_a_failing_channel_does_not_stop_the_other(self, hook: Hook) -> None:
        """With the SMTP server down the webhook still gets the notice; the failure is counted."""
        world = World(now=MONDAY_10, newest_change_at=MONDAY_10 - timedelta(hours=2))
        metrics = PrometheusMetrics()
        watch = make_watch(world, _free_port(), hook, metrics)
        with capture_logs() as logs:
            await watch.check_once()
        assert len(hook.bodies) == 1
        failed = [e for e in logs if e["event"] == "alarm_notification_failed"]
        assert [e["channel"] for e in failed] == ["email"]
        assert SMTP_PASSWORD not in repr(failed)
        body, _ = metrics.exposition()
        assert (
            b'enrolstream_alarm_notifications_total{channel="email",outcome="failed"} 1.0'
            in body
        )
