"""Every setting of enrolstream, read once per process and passed down as plain values.

Sources, highest priority first:
1. environment variables ``ENROLSTREAM_<SECTION>__<FIELD>`` (for example
   ``ENROLSTREAM_MOODLE__TOKEN``), plus the conventional ``KAFKA_BOOTSTRAP_SERVERS``;
2. a TOML file named by ``--config`` or ``ENROLSTREAM_CONFIG`` (``enrolstream.toml``
   in the working directory when present), with one table per section;
3. the defaults below, which run the demo on the embedded stack.

Nothing else in the code base reads ``os.environ`` for settings.
Secrets are ``SecretStr``: ``repr`` and ``enrolstream config show`` mask them, and
every model hides input values in its validation errors, so a misspelt ``tokn``
is reported by name, never by value. ``load_settings`` raises ``SettingsError``
(one line per problem: the file or variable, the key, the problem) instead of
pydantic's or the TOML parser's exceptions.

Relative paths (``--config``, ``ENROLSTREAM_CONFIG``, path-valued settings) are
relative to the working directory of the process; ``./run`` keeps the directory
it was called from, so they mean what the person typing them meant.
"""

from __future__ import annotations

import os
import tomllib
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)
from pydantic_settings import SettingsError as SourceParseError

from cdc.ports import TRACKED_TABLES, TrackedTable
from connectors.kafka.config import (
    SASL_PROTOCOLS,
    TLS_PROTOCOLS,
    KafkaSettings,
    security_problems,
)
from connectors.sqlserver.config import SqlServerSettings
from enrolstream.settings_conduit import ConduitSettings
from enrolstream.settings_courses import CoursesSettings, check_group_name
from enrolstream.settings_errors import (
    CONFIG_VARIABLE,
    SettingsError,
    SettingsProblem,
    UnknownVariable,
    source_problem,
    unknown_variables,
    validation_problems,
)
from enrolstream.settings_lmb import LmbSettings
from enrolstream.settings_operations import (
    WEEKDAYS,
    AlarmSettings,
    EmailSettings,
    OperationsSettings,
)

DEFAULT_CONFIG_FILE = Path("enrolstream.toml")


class _Section(BaseModel):
    # hide_input_in_errors: a validation error names the key, never the value
    # (a misspelt or mistyped secret would otherwise be printed).
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)


class SandboxSettings(_Section):
    """The PowerCampus sandbox (SQLite with change tracking reproduced)."""

    path: Path = Path("var/powercampus.sqlite")
    retention_versions: int | None = Field(
        default=None,
        description="keep this many versions of history at cleanup; None: keep all",
    )


class SourceSettings(_Section):
    """Where changes are captured from."""

    kind: Literal["sandbox", "sqlserver"] = "sandbox"
    name: str = Field(default="powercampus", description="names the source in events")
    tables: tuple[TrackedTable, ...] = Field(
        default=TRACKED_TABLES,
        description="the tables to track (change tracking must be on for each): "
        "TRANSCRIPTDETAIL (always), SECTIONPER (instructors), ACADEMIC (term "
        "withdrawals), PEOPLE, EmailAddress, PersonUser (accounts)",
    )
    sandbox: SandboxSettings = SandboxSettings()
    sqlserver: SqlServerSettings = SqlServerSettings()


class PollerSettings(_Section):
    """The change-tracking poller."""

    poll_interval_s: float = Field(default=1.0, gt=0)
    max_backoff_s: float = Field(default=30.0, gt=0)
    state_path: Path = Field(
        default=Path("var/poller-state.sqlite"),
        description="local copy of the poller's state (the state topic is the truth)",
    )
    lease_group: str | None = Field(
        default=None,
        description="consumer group of the pollers: the member holding the lease "
        "topic's partition polls, the others stand by; unset: "
        "enrolstream-poller.<kafka.events_topic>",
    )
    lease_timeout_s: float = Field(
        default=10.0,
        ge=1.0,
        description="how long a silent active poller keeps the lease (the group's "
        "session timeout): a standby takes over after it; clusters may enforce >= 6 s",
    )
    live_terms: tuple[str, ...] = Field(
        default=(),
        description="terms as YEAR/TERM (e.g. 2021/Winter); empty: derived from "
        "ACADEMICCALENDAR dates",
    )


class MoodleSettings(_Section):
    """The Moodle site and its web-service token."""

    url: str = "http://127.0.0.1:8081"
    token: SecretStr = SecretStr("")
    max_input_vars: int = Field(default=1000, ge=10, description="PHP max_input_vars")
    concurrency: int = Field(default=4, ge=1)
    request_timeout_s: float = Field(default=30.0, gt=0)
    max_backoff_s: float = Field(default=30.0, gt=0)
    late_write_window_s: float = Field(
        default=600.0,
        gt=0,
        description="how long after a call whose answer was lost Moodle may still "
        "apply it (PHP's max_execution_time and the web server's timeouts): its "
        "enrolment is read again then, and put back if the late write changed it",
    )
    user_field: Literal["idnumber", "username", "email"] = "idnumber"
    user_transform: Literal["strip_p", "none", "lower"] = Field(
        default="strip_p",
        description="how PEOPLE_CODE_ID becomes the user field: strip_p drops the "
        "leading P (campus-enrollment-sync's convention)",
    )


class ConsumerSettings(_Section):
    """The apply side: mapping, decisions and delivery."""

    group_id: str = "enrolstream-apply"
    session_timeout_s: float = Field(
        default=10.0,
        ge=1.0,
        description="consumer-group session timeout; a join waits about half of it on "
        "some brokers, so short values restart faster (clusters may enforce >= 6 s)",
    )
    mappings: dict[str, Path] = Field(
        default_factory=lambda: {"2021/Winter": Path("data/mapping.example.json")},
        description="term (YEAR/TERM) -> mapping file in campus-enrollment-sync's "
        "format; one entry per live term",
    )
    drop_action: Literal["remove_role", "suspend", "unenrol"] = Field(
        default="remove_role",
        description="what a drop does in Moodle: remove_role (the enrolment stays, "
        "our role is taken away and given back on re-add; no welcome message), "
        "unenrol (removes the enrolment; grades may go), suspend (needs the "
        "companion Moodle plugin: suspending through enrol_manual_enrol_users "
        "sends the course welcome message)",
    )
    student_role_id: int = 5
    audit_role_id: int = 5
    audit_grade: str | None = "AU"
    withdrawn_grades: tuple[str, ...] = ("W", "WA")
    instructor_role_id: int = Field(
        default=3, description="role of an instructor (SECTIONPER): editingteacher"
    )
    secondary_instructor_role_id: int = Field(
        default=4, description="role of a secondary instructor: teacher"
    )
    secondary_percentage_at_most: float | None = Field(
        default=0.0,
        description="an instructor whose SECTIONPER.PERCENTAGE is set and at most "
        "this is secondary; unset: every instructor is primary",
    )
    separation_codes: tuple[str, ...] = Field(
        default=("WITH", "LOA", "AWIT"),
        description="ACADEMIC.ENROLL_SEPARATION codes that drop a student from "
        "every course of the term (with separations_from = codes)",
    )
    separations_from: Literal["codes", "code_enrollment"] = Field(
        default="codes",
        description="codes: separation_codes; code_enrollment: the codes "
        "PowerCampus's CODE_ENROLLMENT marks with REQUIRE_SEPDATE = 'Y'",
    )
    parked_retry_s: float = Field(default=30.0, gt=0)
    allow_empty_mapping: bool = Field(
        default=False,
        description="start even when no Moodle course is mapped (refused otherwise: "
        "such a consumer applies nothing while looking healthy)",
    )
    batch_max_rows: int = Field(
        default=2000,
        ge=1,
        description="events read into one batch at most (one ledger write, one "
        "round of Moodle calls per batch)",
    )
    fetch_max_wait_ms: int = Field(
        default=100,
        ge=0,
        le=500,
        description="how long the broker may hold a fetch while nothing new is there; "
        "Apache Kafka answers as soon as an event arrives, some brokers only at the "
        "end of the wait, so it bounds the delay before an event is read",
    )
    sink: Literal["web_services", "conduit"] = Field(
        default="web_services",
        description="where decisions go: Moodle's web services, or Open LMS "
        "Conduit's files over SFTP ([conduit], docs/conduit.md)",
    )
    section_groups: bool = Field(
        default=False,
        description="a group per section in every Moodle course fed by several "
        'sections (a mapping entry\'s "groups": false turns it off there); '
        "membership follows registrations; needs the core_group_* functions",
    )
    group_name: str = Field(
        default="{event_id} {sub_type} {section}",
        description="a section group's name: {event_id} {sub_type} {section} "
        "{session} {term} {year}",
    )
    enrolment_dates: Literal["none", "mapping"] = Field(
        default="none",
        description="mapping: new enrolments start and end on the mapping entry's "
        "starts/ends (mapping generate writes them with courses.dates_from)",
    )
    mapping_refresh_s: float = Field(
        default=2.0,
        gt=0,
        description="how often a running consumer looks for a newly published "
        "mapping (enrolstream mapping publish)",
    )

    @field_validator("group_name")
    @classmethod
    def _group_name(cls, value: str) -> str:
        return check_group_name(value)


class AccountsSettings(_Section):
    """Moodle accounts for new students and instructors (off by default)."""

    enabled: bool = Field(
        default=False,
        description="create the Moodle account of a person who has none (from "
        "PEOPLE, the primary EmailAddress and PersonUser) and keep the names and "
        "e-mail of accounts enrolstream created up to date; needs "
        "moodle.user_field = idnumber and moodle/user:create, moodle/user:update",
    )
    auth: str = Field(
        default="manual",
        description="the Moodle authentication plugin of new accounts (manual, "
        "nologin, saml2, oidc, ldap, ...); it must be installed on the site",
    )
    use_nickname: bool = Field(
        default=False, description="first name from PEOPLE.Nickname when it is set"
    )
    username_sources: tuple[
        Literal["personuser", "email_local_part", "idnumber"], ...
    ] = Field(
        default=("personuser", "email_local_part", "idnumber"),
        description="where the username comes from, first that has a value: "
        "PersonUser.UserName, the primary e-mail's local part, the idnumber; a "
        "username taken in Moodle parks the person, it never falls back",
    )
    email_domains: tuple[str, ...] = Field(
        default=(),
        description="allowed domains of the primary e-mail (empty: any); a person "
        "whose address is elsewhere is parked",
    )
    create_password: bool | None = Field(
        default=None,
        description="send createpassword=1 (Moodle makes a password and mails it); "
        "unset: for the plugins Moodle requires it of (manual, nologin, email, "
        "none, lti), never for external ones (ldap, oauth2, saml2, oidc, ...)",
    )


class ReconcileSettings(_Section):
    """The nightly reconcile and its mass-drop guard."""

    max_drop_share_per_course: float = Field(default=0.3, ge=0, le=1)
    max_drop_share_overall: float = Field(default=0.05, ge=0, le=1)
    report_dir: Path = Path("var/reports")


class Settings(BaseSettings):
    """The effective settings of one process."""

    model_config = SettingsConfigDict(
        frozen=True,
        extra="forbid",
        env_prefix="ENROLSTREAM_",
        env_nested_delimiter="__",
        # No partial update of the nested defaults: with it, a table the user gives
        # (consumer.mappings) was merged into the default's, and the example term's
        # mapping stayed in force beside the campus's own.
        # A validation error must not echo the input: it holds the secrets.
        hide_input_in_errors=True,
    )

    log_format: Literal["console", "json"] = "console"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    kafka: KafkaSettings = KafkaSettings()
    source: SourceSettings = SourceSettings()
    poller: PollerSettings = PollerSettings()
    moodle: MoodleSettings = MoodleSettings()
    consumer: ConsumerSettings = ConsumerSettings()
    accounts: AccountsSettings = AccountsSettings()
    reconcile: ReconcileSettings = ReconcileSettings()
    courses: CoursesSettings = CoursesSettings()
    operations: OperationsSettings = OperationsSettings()
    alarm: AlarmSettings = AlarmSettings()
    conduit: ConduitSettings = ConduitSettings()
    lmb: LmbSettings = LmbSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        resolved = _RESOLVED_FILE.get()
        toml_file = resolved[0] if resolved is not None else _config_file(None)
        del dotenv_settings, file_secret_settings  # no .env files, no secrets dir
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_file))
        return tuple(sources)


#: The file ``load_settings`` resolved, for the duration of that call only (a
#: one-tuple, so that "no file" and "not resolved yet" differ).
_RESOLVED_FILE: ContextVar[tuple[Path | None] | None] = ContextVar(
    "enrolstream_config", default=None
)


def _config_file(chosen: Path | None) -> Path | None:
    """The TOML file to read: ``--config``, else ENROLSTREAM_CONFIG, else the default."""
    if chosen is not None:
        return _existing(chosen, "--config")
    named = os.environ.get(CONFIG_VARIABLE)
    if named:
        return _existing(Path(named), CONFIG_VARIABLE)
    return DEFAULT_CONFIG_FILE if DEFAULT_CONFIG_FILE.is_file() else None


def _existing(path: Path, named_by: str) -> Path:
    if not path.is_file():
        shown = str(path) if path.is_absolute() else f"{path} ({path.resolve()})"
        raise SettingsError(
            [
                SettingsProblem(
                    named_by,
                    "",
                    f"names {shown}, which is not a file: correct the path (a "
                    "relative one is relative to the directory you run from)",
                )
            ]
        )
    return path


def _read(toml_file: Path | None, overrides: dict[str, Any]) -> Settings:
    """``Settings(**overrides)`` with every failure turned into a ``SettingsError``."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = validation_problems(
            exc, Settings, environ_names=list(os.environ), toml_file=toml_file
        )
    except SourceParseError as exc:
        problems = source_problem(exc, list(os.environ))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        problems = [SettingsProblem(str(toml_file), "", f"not valid TOML: {exc}")]
    except OSError as exc:
        problems = [SettingsProblem(str(toml_file), "", f"cannot read: {exc.strerror}")]
    raise SettingsError(problems)


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Read the settings once: environment, then ``config_file`` (or the default file).

    ``KAFKA_BOOTSTRAP_SERVERS``, the variable every Kafka tool knows, is honoured
    unless ``ENROLSTREAM_KAFKA__BOOTSTRAP_SERVERS`` is set too. Raises
    ``SettingsError`` (never pydantic's error, which would show input values).
    """
    toml_file = _config_file(config_file)
    resolved = _RESOLVED_FILE.set((toml_file,))
    try:
        settings = _read(toml_file, overrides)
    finally:
        _RESOLVED_FILE.reset(resolved)
    plain = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if plain and settings.kafka.bootstrap_servers is None:
        kafka = settings.kafka.model_copy(update={"bootstrap_servers": plain})
        settings = settings.model_copy(update={"kafka": kafka})
    return settings


def unknown_environment_variables() -> list[UnknownVariable]:
    """``ENROLSTREAM_*`` variables of this process that set nothing (typos), to warn about."""
    return unknown_variables(os.environ, Settings)


def masked(settings: Settings) -> dict[str, Any]:
    """The settings as plain data with every secret shown as ``**********`` (or unset)."""

    def walk(value: Any) -> Any:
        if isinstance(value, SecretStr):
            return "**********" if value.get_secret_value() else ""
        if isinstance(value, BaseModel):
            return {
                name: walk(getattr(value, name)) for name in type(value).model_fields
            }
        if isinstance(value, dict):
            return {str(key): walk(item) for key, item in value.items()}
        if isinstance(value, tuple | list):
            return [walk(item) for item in value]
        if isinstance(value, Path):
            return str(value)
        return value

    result = walk(settings)
    assert isinstance(result, dict)  # noqa: S101 - Settings is a model
    return result


__all__ = [
    "SASL_PROTOCOLS",
    "TLS_PROTOCOLS",
    "WEEKDAYS",
    "AccountsSettings",
    "AlarmSettings",
    "ConduitSettings",
    "ConsumerSettings",
    "CoursesSettings",
    "EmailSettings",
    "KafkaSettings",
    "LmbSettings",
    "MoodleSettings",
    "OperationsSettings",
    "PollerSettings",
    "ReconcileSettings",
    "SandboxSettings",
    "Settings",
    "SettingsError",
    "SourceSettings",
    "SqlServerSettings",
    "load_settings",
    "masked",
    "security_problems",
    "unknown_environment_variables",
]
