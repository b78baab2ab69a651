"""The ``[lmb]`` section: the endpoint Banner's LMB POSTs to, and the LMB source's topics.

Part of ``enrolstream.settings`` (kept apart for size); read and validated with it.
Whether the endpoint may start (credentials, TLS or loopback) is checked by
``enrolstream lmb serve`` only, so other commands run with the section blank.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr

__all__ = ["LmbSettings"]


class LmbSettings(BaseModel):
    """Banner's Luminis Message Broker as a source (``enrolstream lmb serve``)."""

    # hide_input_in_errors: a validation error names the key, never the value.
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    host: str = Field(
        default="127.0.0.1",
        description="address the endpoint binds; off loopback it needs TLS "
        "(tls_certfile, tls_keyfile)",
    )
    port: int = Field(default=8470, ge=0, le=65535)
    path: str = Field(default="/lmb", description="the URL path LMB POSTs to")
    username: str = Field(default="", description="HTTP Basic user name LMB sends")
    password: SecretStr = Field(
        default=SecretStr(""), description="HTTP Basic password LMB sends"
    )
    tls_certfile: Path | None = Field(
        default=None, description="PEM certificate (chain) the endpoint serves"
    )
    tls_keyfile: Path | None = Field(default=None, description="its PEM private key")
    max_body_bytes: int = Field(
        default=2 << 20,
        ge=1024,
        description="a larger message is refused (413) unread; LMB retries it",
    )
    message_log_dir: Path = Field(
        default=Path("var/lmb-messages"),
        description="the dated message log (every message and its answer; 0600)",
    )
    source_name: str = Field(
        default="banner", description="names the source in the events"
    )
    state_topic: str = Field(
        default="enrolstream.lmb-state",
        description="compacted: each person's memberships and each group",
    )
    dead_letter_topic: str = "enrolstream.lmb-dead-letters"
