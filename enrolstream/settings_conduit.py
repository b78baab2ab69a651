"""The ``[conduit]`` section: Open LMS Conduit's files and the SFTP folder they go to.

Used when ``consumer.sink = "conduit"`` (docs/conduit.md). The columns are
Conduit's own mappings (Settings > Mappings): our field → the heading mapped
there, in the order the columns are written: ``"shortname=course"`` puts our
shortname under Conduit's heading ``course``; a field alone keeps its name.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

__all__ = ["ENROLMENT_FIELDS", "USER_FIELDS", "ConduitSettings", "pairs"]


_FORBIDDEN_IN_NAMES = set(",\"'\r\n\t")
ENROLMENT_FIELDS = ("action", "shortname", "idnumber", "role")
USER_FIELDS = (
    "action",
    "username",
    "idnumber",
    "firstname",
    "lastname",
    "email",
    "auth",
)


def pairs(columns: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """``field`` or ``field=heading`` items as (field, heading) pairs."""
    return tuple(
        (field.strip(), (heading if sep else field).strip())
        for field, sep, heading in (item.partition("=") for item in columns)
    )


def _columns(
    columns: tuple[str, ...], known: tuple[str, ...], required: tuple[str, ...]
) -> tuple[str, ...]:
    parsed = pairs(columns)
    fields = [field for field, _ in parsed]
    unknown = [field for field in fields if field not in known]
    if unknown:
        raise ValueError(
            f"unknown field {unknown[0]!r}; the fields are {', '.join(known)}"
        )
    missing = [field for field in required if field not in fields]
    if missing:
        raise ValueError(f"every field needs a column; missing: {', '.join(missing)}")
    if len(set(fields)) != len(fields):
        raise ValueError("a field is listed twice")
    headings = [heading for _, heading in parsed]
    for heading in headings:
        if not heading or set(heading) & _FORBIDDEN_IN_NAMES:
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
    enrolment_columns: tuple[str, ...] = Field(
        default=ENROLMENT_FIELDS,
        description="the enrolment file's columns in order: a field (action, "
        "shortname, idnumber, role) or field=heading where Conduit's mapping names "
        "it otherwise",
    )
    user_columns: tuple[str, ...] = Field(
        default=USER_FIELDS,
        description="the user file's columns in order: a field (action, username, "
        "idnumber, firstname, lastname, email, auth) or field=heading",
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
    def _enrolment_headings(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _columns(value, ENROLMENT_FIELDS, ENROLMENT_FIELDS)

    @field_validator("user_columns")
    @classmethod
    def _user_headings(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _columns(value, USER_FIELDS, ("action", "username", "idnumber"))

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
