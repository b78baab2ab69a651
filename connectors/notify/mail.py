"""Alarm notices by e-mail: one message per notice, sent with smtplib in a thread.

``security``: ``starttls`` (port 587, the default), ``tls`` (implicit TLS, port
465) or ``none`` (a relay on the local network or loopback). Login only when a
user name is configured. Certificates are checked with the system's CAs.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from collections.abc import Sequence
from email.message import EmailMessage
from typing import Literal

from pydantic import SecretStr

from operations.alarm import Notice
from operations.watch import NotificationFailed

__all__ = ["EmailNotifier", "notice_message"]

Security = Literal["starttls", "tls", "none"]


def notice_message(
    notice: Notice, *, label: str, sender: str, recipients: Sequence[str]
) -> EmailMessage:
    """The e-mail for one notice (plain text)."""
    message = EmailMessage()
    message["Subject"] = notice.subject(label)
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    lines = [
        notice.message,
        "",
        f"alarm: {notice.alarm}",
        f"state: {notice.kind}",
        f"raised at: {notice.raised_at:%Y-%m-%d %H:%M:%S %Z}",
        f"this notice: {notice.at:%Y-%m-%d %H:%M:%S %Z}",
        "",
        "The status page and `enrolstream status` show the pipeline at a glance.",
    ]
    message.set_content("\n".join(lines) + "\n")
    return message


class EmailNotifier:
    """``Notifier`` over SMTP."""

    channel = "email"

    def __init__(
        self,
        *,
        host: str,
        port: int,
        sender: str,
        recipients: Sequence[str],
        security: Security = "starttls",
        username: str | None = None,
        password: SecretStr | None = None,
        timeout_s: float = 15.0,
    ) -> None:
        self.host, self.port = host, port
        self.sender = sender
        self.recipients = list(recipients)
        self.security = security
        self.username = username
        self._password = password
        self.timeout_s = timeout_s

    def __repr__(self) -> str:
        """Names the server, never the password."""
        return f"EmailNotifier(host={self.host!r}, port={self.port}, to={self.recipients!r})"

    async def send(self, notice: Notice, *, label: str) -> None:
        """Send one message; ``NotificationFailed`` when the server cannot take it."""
        message = notice_message(
            notice, label=label, sender=self.sender, recipients=self.recipients
        )
        try:
            await asyncio.to_thread(self._deliver, message)
        except (smtplib.SMTPException, OSError) as exc:
            raise NotificationFailed(
                f"SMTP server {self.host}:{self.port}: {type(exc).__name__}"
            ) from exc

    def _deliver(self, message: EmailMessage) -> None:
        context = ssl.create_default_context()
        smtp: smtplib.SMTP
        if self.security == "tls":
            smtp = smtplib.SMTP_SSL(
                self.host, self.port, timeout=self.timeout_s, context=context
            )
        else:
            smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout_s)
        with smtp:
            if self.security == "starttls":
                smtp.starttls(context=context)
            if self.username and self._password is not None:
                smtp.login(self.username, self._password.get_secret_value())
            smtp.send_message(message)
