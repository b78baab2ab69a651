"""Who may see the status page and use its actions, and how often.

* Authentication: ``Authorization: Bearer <token>`` with the configured token, or
  HTTP basic auth with the configured user name and password (a browser asks for
  them). Compared in constant time. With no credentials configured only a
  loopback listener serves the page (``OpsServer`` refuses to start otherwise).
* Cross-site requests: every action is a POST that must carry the page's CSRF
  token (an HMAC of a per-process secret, so it cannot be guessed, and another
  site cannot read it from the page), and is refused when the browser says it
  comes from another site (``Sec-Fetch-Site: cross-site|same-site``) or names
  another ``Origin``. Basic-auth credentials are sent by the browser whatever page
  made the request, so this check is what keeps a visited page from redriving.
* Rate limit: at most ``per_minute`` reprocess requests in any minute.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from pydantic import SecretStr

__all__ = ["Credentials", "CsrfGuard", "RateLimit", "authorised"]


@dataclass(frozen=True, slots=True)
class Credentials:
    """What a request must present: the token, or the user name and password."""

    token: SecretStr | None = None
    username: str | None = None
    password: SecretStr | None = None

    @property
    def configured(self) -> bool:
        """Whether any credential is set."""
        return bool(
            (self.token and self.token.get_secret_value())
            or (self.username and self.password and self.password.get_secret_value())
        )


def _same(given: str, wanted: str) -> bool:
    return hmac.compare_digest(given.encode(), wanted.encode())


def authorised(credentials: Credentials, headers: Mapping[str, str]) -> bool:
    """Whether the request's ``Authorization`` header carries the credentials."""
    header = headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    token = credentials.token.get_secret_value() if credentials.token else ""
    if scheme.lower() == "bearer" and token:
        return _same(value.strip(), token)
    if scheme.lower() != "basic":
        return False
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return False
    username, _, password = decoded.partition(":")
    wanted = credentials.password.get_secret_value() if credentials.password else ""
    if credentials.username and wanted:
        return _same(username, credentials.username) & _same(password, wanted)
    # A token also works as a basic-auth password (any user name): browsers can
    # then log in with the token alone.
    return bool(token) and _same(password, token)


class CsrfGuard:
    """The page's anti-forgery token and the cross-site check of actions."""

    def __init__(self, secret: bytes | None = None) -> None:
        self._secret = secret or secrets.token_bytes(32)
        self.token = hmac.new(
            self._secret, b"enrolstream-actions", hashlib.sha256
        ).hexdigest()

    def refusal(
        self, headers: Mapping[str, str], form_token: str, own_origin: str
    ) -> str | None:
        """Why this POST is refused as cross-site, or None when it may proceed."""
        fetch_site = headers.get("Sec-Fetch-Site", "").lower()
        if fetch_site and fetch_site not in {"same-origin", "none"}:
            return f"cross-site request refused (Sec-Fetch-Site: {fetch_site})"
        origin = headers.get("Origin")
        if origin is not None and origin.rstrip("/") != own_origin:
            return "cross-site request refused (Origin is another site)"
        if not _same(form_token, self.token):
            return "the form's anti-forgery token is missing or wrong: reload the page"
        return None


class RateLimit:
    """At most ``per_minute`` events in any sliding minute (monotonic clock)."""

    def __init__(
        self, per_minute: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._times: deque[float] = deque()

    def allow(self) -> bool:
        """Take one slot if one is free."""
        now = self._clock()
        while self._times and now - self._times[0] >= 60:  # noqa: PLR2004 - a minute
            self._times.popleft()
        if len(self._times) >= self.per_minute:
            return False
        self._times.append(now)
        return True
