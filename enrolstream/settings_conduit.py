"""The ``[conduit]`` section: Open LMS Conduit's files and the SFTP folder they go to.

Used when ``consumer.sink = "conduit"`` (docs/conduit.md). The columns are
Conduit's own mappings (Settings > Mappings): our field → the heading mapped
there, in the order the columns are written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

__all__ = ["ConduitSettings"]

EnrolmentField = Literal["action", "shortname", "idnumber", "role"]
UserField = Literal[
    "action", "username", "idnumber", "firstname", "lastname", "email", "auth"
]

_FORBIDDEN_IN_NAMES = set(",\"'\r\n\t")
_ENROLMENT_DEFAULT: dict[EnrolmentField, str] = {
    "action": "action",
    "shortname": "shortname",
    "idnumber": "idnumber",
    "role": "role",
}
_USER_DEFAULT: dict[UserField, str] = {
    "action": "action",
    "username": "username",
    "idnumber": "idnumber",
    "firstname": "firstname",
    "lastname": "lastname",
    "email": "email",
    "auth": "auth",
}


def _headings(columns: dict[str, str], every: tuple[str, ...]) -> dict[str, str]:
    missing = [field for field in every if field not in columns]
    if missing:
        raise ValueError(f"every field needs a column; missing: {', '.join(missing)}")
    headings = list(columns.values())
    for heading in headings:
        if not heading.strip() or set(heading) & _FORBIDDEN_IN_NAMES:
            raise ValueError(
                f"heading {heading!r} must be non-empty, without commas, quotes "
                "or line breaks"
            )
    if len(set(headings)) != len(headings):
        raise ValueError("two fields share a heading")
    return columns


class ConduitSettings(BaseModel):
    """Open LMS Conduit over SFTP (``consumer.sink = "conduit"``)."""

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    host: str = Field(default="", description="the SFTP server the vendor gave")
    port: int = Field(default=22, ge=1, le=65535)
    username: str = ""
    private_key_path: Path | None = Field(
        default=None, description="the SSH private key (OpenSSH or PEM format)"
    )
    private_key_passphrase: SecretStr = Field(
        default=SecretStr(""),
        description="the key's passphrase: ENROLSTREAM_CONDUIT__PRIVATE_KEY_PASSPHRASE",
    )
    password: SecretStr = Field(
        default=SecretStr(""),
        description="a password, for a server without keys: ENROLSTREAM_CONDUIT__PASSWORD",
    )
    known_hosts_path: Path | None = Field(
        default=None,
        description="the server's host key (ssh-keyscan, checked with the vendor); "
        "unset: ~/.ssh/known_hosts. The check cannot be turned off",
    )
    connect_timeout_s: float = Field(default=30.0, gt=0)
    folder: str = Field(
        default="",
        description="the absolute folder Conduit reads (e.g. /clients/site/conduit)",
    )
    enrolments_file: str = "enrollments.csv"
    users_file: str = Field(
        default="auth.csv", description="the user file (Conduit's user mappings)"
    )
    enrolment_columns: dict[EnrolmentField, str] = Field(
        default_factory=lambda: dict(_ENROLMENT_DEFAULT),
        description="field → heading mapped in Conduit, in column order",
    )
    user_columns: dict[UserField, str] = Field(
        default_factory=lambda: dict(_USER_DEFAULT),
        description="field → heading mapped in Conduit, in column order",
    )
    add: str = "add"
    drop: str = "drop"
    create: str = "create"
    update: str = "update"
    roles: dict[int, str] = Field(
        default_factory=lambda: {5: "student", 3: "editingteacher", 4: "teacher"},
        description="Moodle role id (consumer.*_role_id) → the role's name in "
        "Conduit's file",
    )
    window_s: float = Field(
        default=300.0,
        gt=0,
        description="rows decided within this many seconds go out in one file "
        "(Conduit itself looks every 15 minutes)",
    )
    outbox_dir: Path = Field(
        default=Path("var/conduit"),
        description="the outbox and a dated copy of every file sent: state, keep "
        "it on a lasting disk",
    )
    web_services: bool = Field(
        default=False,
        description="the site also has Moodle web services (moodle.url, "
        "moodle.token) to read: reconcile reads rosters, accounts see who has none",
    )

    @field_validator("enrolment_columns")
    @classmethod
    def _enrolment_headings(cls, value: dict[str, str]) -> dict[str, str]:
        return _headings(value, ("action", "shortname", "idnumber", "role"))

    @field_validator("user_columns")
    @classmethod
    def _user_headings(cls, value: dict[str, str]) -> dict[str, str]:
        return _headings(value, ("action", "username", "idnumber"))

    @field_validator("folder")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if value and not value.startswith("/"):
            raise ValueError("must be an absolute path, as the vendor gives it")
        return value

    @field_validator("roles")
    @classmethod
    def _role_names(cls, value: dict[int, str]) -> dict[int, str]:
        for name in value.values():
            if not name.strip() or set(name) & _FORBIDDEN_IN_NAMES:
                raise ValueError(
                    f"role name {name!r} must be non-empty, without commas or quotes"
                )
        return value

    def problems(self, role_ids: set[int]) -> list[str]:
        """What stops this section from being used (empty: usable)."""
        found = [
            f"conduit.{key}: not set"
            for key in ("host", "username", "folder")
            if not getattr(self, key)
        ]
        if self.private_key_path is None and not self.password.get_secret_value():
            found.append("conduit.private_key_path: not set (nor conduit.password)")
        for key in ("private_key_path", "known_hosts_path"):
            path = getattr(self, key)
            if path is not None and not Path(path).is_file():
                found.append(f"conduit.{key}: {path} is not a file")
        missing = sorted(role_ids - set(self.roles))
        if missing:
            found.append(
                f"conduit.roles: no Conduit name for role id(s) "
                f"{', '.join(map(str, missing))} (consumer.*_role_id)"
            )
        return found
