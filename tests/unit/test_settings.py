"""Settings: environment and TOML sources, precedence, and secrets never shown."""

from __future__ import annotations

import json
import os
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel
from typer.testing import CliRunner

from enrolstream.cli import root as cli
from enrolstream.settings import (
    Settings,
    SettingsError,
    load_settings,
    masked,
    unknown_environment_variables,
)
from enrolstream.settings_errors import known_variables, unknown_variables

TOML = """
[kafka]
partitions = 8
[moodle]
url = "https://moodle.example.edu"
token = "0123456789abcdef0123456789abcdef"
[source.sqlserver]
password = "hunter2-long-enough"
[consumer]
drop_action = "unenrol"
"""


@pytest.fixture(name="clean_env", autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No settings leak in from the machine running the tests."""
    for name in [*os.environ]:
        if name.upper().startswith("ENROLSTREAM_") or name == "KAFKA_BOOTSTRAP_SERVERS":
            monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


class TestSources:
    """Where each value comes from."""

    def test_defaults_run_the_embedded_stack(self) -> None:
        """With nothing configured, Kafka is embedded and the source is the sandbox."""
        settings = load_settings()
        assert settings.kafka.bootstrap_servers is None
        assert settings.source.kind == "sandbox"
        assert settings.consumer.drop_action == "remove_role"

    def test_toml_file(self, tmp_path: Path) -> None:
        """A TOML file named by --config sets nested sections."""
        path = tmp_path / "site.toml"
        path.write_text(TOML)
        settings = load_settings(path)
        assert settings.kafka.partitions == 8
        assert settings.moodle.url == "https://moodle.example.edu"
        assert settings.consumer.drop_action == "unenrol"

    def test_environment_beats_the_file(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """ENROLSTREAM_<SECTION>__<FIELD> overrides the file."""
        (tmp_path / "enrolstream.toml").write_text(TOML)
        monkeypatch.setenv("ENROLSTREAM_KAFKA__PARTITIONS", "12")
        assert load_settings().kafka.partitions == 12

    def test_a_campus_mapping_table_replaces_the_example(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The campus's [consumer.mappings] is the whole table, from the file or the
        environment: the example term's mapping does not stay in force beside it."""
        path = tmp_path / "site.toml"
        path.write_text('[consumer.mappings]\n"2015/10" = "banner.json"\n')
        assert load_settings(path).consumer.mappings == {"2015/10": Path("banner.json")}
        monkeypatch.setenv("ENROLSTREAM_CONSUMER__MAPPINGS", '{"2022/Fall": "f.json"}')
        assert load_settings().consumer.mappings == {"2022/Fall": Path("f.json")}

    def test_kafka_bootstrap_servers_is_honoured(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The variable every Kafka tool knows selects a real cluster."""
        monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka-1:9092,kafka-2:9092")
        assert load_settings().kafka.bootstrap_servers == "kafka-1:9092,kafka-2:9092"

    def test_the_shipped_example_loads(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """enrolstream.example.toml stays valid, with the password it leaves to the env."""
        example = Path(__file__).resolve().parents[2] / "enrolstream.example.toml"
        monkeypatch.setenv("ENROLSTREAM_KAFKA__SASL_PASSWORD", "from-the-environment")
        settings = load_settings(example)
        assert settings.kafka.security_protocol == "SASL_SSL"
        assert settings.source.kind == "sqlserver"
        assert settings.moodle.token.get_secret_value() == ""

    def test_missing_config_file_is_named(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """ENROLSTREAM_CONFIG naming no file stops with that name."""
        monkeypatch.setenv("ENROLSTREAM_CONFIG", "/nowhere/enrolstream.toml")
        with pytest.raises(SettingsError, match=r"/nowhere/enrolstream\.toml"):
            load_settings()

    def test_unknown_keys_are_refused(self, tmp_path: Path) -> None:
        """A misspelt setting is an error, not silently ignored."""
        path = tmp_path / "bad.toml"
        path.write_text("[moodle]\ntokn = 'x'\n")
        with pytest.raises(SettingsError, match="tokn"):
            load_settings(path)

    def test_relative_config_is_relative_to_the_working_directory(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A relative ENROLSTREAM_CONFIG is found from the directory the command runs in."""
        (tmp_path / "site").mkdir()
        (tmp_path / "site" / "enrolstream.toml").write_text(TOML)
        monkeypatch.setenv("ENROLSTREAM_CONFIG", "site/enrolstream.toml")
        assert load_settings().kafka.partitions == 8


class TestNoLeaks:
    """Reading settings changes nothing for the next reader."""

    def test_config_file_does_not_stick(self, tmp_path: Path) -> None:
        """A file given to one call is not used by the next one."""
        path = tmp_path / "site.toml"
        path.write_text(TOML)
        assert load_settings(path).kafka.partitions == 8
        assert load_settings().kafka.partitions == 4


class TestSecrets:
    """Tokens and passwords are never shown."""

    def test_masked_and_repr(self, tmp_path: Path) -> None:
        """masked() and repr() show stars, never the values."""
        path = tmp_path / "site.toml"
        path.write_text(TOML)
        settings = load_settings(path)
        shown = str(masked(settings)) + repr(settings)
        assert "0123456789abcdef" not in shown
        assert "hunter2" not in shown
        assert masked(settings)["moodle"]["token"] == "*" * 10

    def test_config_show(self, tmp_path: Path) -> None:
        """`enrolstream config show` prints the effective settings with secrets masked."""
        path = tmp_path / "site.toml"
        path.write_text(TOML)
        result = CliRunner().invoke(cli.app, ["--config", str(path), "config", "show"])
        assert result.exit_code == 0, result.output
        assert '"partitions": 8' in result.output
        assert "0123456789abcdef" not in result.output
        assert "hunter2" not in result.output


def _models(model: type[BaseModel]) -> list[type[BaseModel]]:
    """``model`` and every model its fields hold, also inside ``X | None`` or lists."""
    found = [model]
    for field in model.model_fields.values():
        pending: list[object] = [field.annotation]
        while pending:
            annotation = pending.pop()
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                found += _models(annotation)
            else:
                pending += typing.get_args(annotation)
    return found


#: (what the user wrote, the secret that must not be shown, where, key)
SECRET_TYPOS = [
    ("toml", '[moodle]\ntokn = "s3cr3t-token-value"\n', "moodle.tokn", "token"),
    (
        "toml",
        '[source.sqlserver]\npasword = "s3cr3t-token-value"\n',
        "source.sqlserver.pasword",
        "password",
    ),
    ("toml", "[moodle]\ntoken = 8675309123\n", "moodle.token", "valid string"),
    ("env", "ENROLSTREAM_MOODLE__TOKN=s3cr3t-token-value", "moodle.tokn", "TOKEN"),
    (
        "env",
        'ENROLSTREAM_MOODLE={"tokn": "s3cr3t-token-value"}',
        "moodle.tokn",
        "token",
    ),
]


class TestSettingsErrors:
    """A wrong setting is one line naming its source and key; no value is ever shown."""

    def test_every_model_hides_input_in_errors(self) -> None:
        """No settings model echoes an input value in a validation error."""
        for model in _models(Settings):
            assert model.model_config.get("hide_input_in_errors"), model.__name__

    @pytest.mark.parametrize(("kind", "written", "key", "hint"), SECRET_TYPOS)
    def test_a_secret_typo_is_named_not_shown(
        self,
        kind: str,
        written: str,
        key: str,
        hint: str,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """A misspelt or mistyped secret stops start-up (exit 2) naming the key, not the value."""
        args = ["config", "show"]
        if kind == "toml":
            path = tmp_path / "site.toml"
            path.write_text(written)
            args = ["--config", str(path), *args]
            where = str(path)
        else:
            name, value = written.split("=", 1)
            monkeypatch.setenv(name, value)
            where = name
        result = CliRunner().invoke(cli.app, args)
        assert result.exit_code == 2
        assert "s3cr3t" not in result.output
        assert "8675309123" not in result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith(f"configuration error: {where}: {key}: ")
        assert hint in lines[0]
        assert "Traceback" not in result.output

    def test_toml_syntax_error_names_the_file(self, tmp_path: Path) -> None:
        """A TOML syntax error names the file and the line."""
        path = tmp_path / "site.toml"
        path.write_text('[moodle\ntoken = "x"\n')
        result = CliRunner().invoke(cli.app, ["--config", str(path), "config", "show"])
        assert result.exit_code == 2
        assert result.stderr.strip() == (
            f"configuration error: {path}: not valid TOML: Expected ']' at the end of "
            "a table declaration (at line 1, column 8)"
        )

    def test_wrong_type_in_the_environment_names_the_variable(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A value of the wrong type names the variable that set it, not the file."""
        (Path.cwd() / "enrolstream.toml").write_text(TOML)
        monkeypatch.setenv("ENROLSTREAM_KAFKA__PARTITIONS", "many")
        with pytest.raises(SettingsError) as caught:
            load_settings()
        (problem,) = caught.value.problems
        assert (problem.where, problem.key) == (
            "ENROLSTREAM_KAFKA__PARTITIONS",
            "kafka.partitions",
        )
        assert "valid integer" in problem.problem

    def test_wrong_type_in_the_file_names_the_file(self, tmp_path: Path) -> None:
        """A value of the wrong type from the file names the file and the key."""
        path = tmp_path / "site.toml"
        path.write_text('[kafka]\npartitions = "many"\n')
        with pytest.raises(SettingsError) as caught:
            load_settings(path)
        (problem,) = caught.value.problems
        assert (problem.where, problem.key) == (str(path), "kafka.partitions")

    def test_invalid_json_in_a_variable_names_it(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A list given as broken JSON names the variable and shows how to write it."""
        monkeypatch.setenv("ENROLSTREAM_POLLER__LIVE_TERMS", "[s3cr3t")
        with pytest.raises(SettingsError) as caught:
            load_settings()
        assert caught.value.problems[0].where == "ENROLSTREAM_POLLER__LIVE_TERMS"
        assert "s3cr3t" not in str(caught.value)
        assert "JSON" in str(caught.value)

    def test_missing_config_file_is_one_line(self, tmp_path: Path) -> None:
        """--config naming no file: one line with the path as resolved, exit 2."""
        result = CliRunner().invoke(
            cli.app, ["--config", "nope.toml", "config", "show"]
        )
        assert result.exit_code == 2
        assert result.stderr.strip() == (
            f"configuration error: --config: names nope.toml ({tmp_path}/nope.toml), "
            "which is not a file: correct the path (a relative one is relative to "
            "the directory you run from)"
        )


class TestUnknownVariables:
    """ENROLSTREAM_* variables that set nothing are found and warned about."""

    @pytest.mark.parametrize(
        ("name", "suggestion"),
        [
            ("ENROLSTREAM_MOODEL__URL", "ENROLSTREAM_MOODLE__URL"),
            ("ENROLSTREAM_LOGLEVEL", "ENROLSTREAM_LOG_LEVEL"),
            (
                "ENROLSTREAM_KAFAK__BOOTSTRAP_SERVERS",
                "ENROLSTREAM_KAFKA__BOOTSTRAP_SERVERS",
            ),
            ("enrolstream_moodel__url", "ENROLSTREAM_MOODLE__URL"),
            ("ENROLSTREAM_WHATEVER", None),
        ],
    )
    def test_typos_are_found_with_the_closest_name(
        self, name: str, suggestion: str | None
    ) -> None:
        """An unknown variable is reported with the closest valid name, if any is close."""
        (found,) = unknown_variables([name, "PATH", "HOME"], Settings)
        assert (found.name, found.did_you_mean) == (name, suggestion)

    @pytest.mark.parametrize(
        "name",
        [
            "ENROLSTREAM_MOODLE__URL",
            "enrolstream_moodle__url",
            "ENROLSTREAM_MOODLE",
            "ENROLSTREAM_SOURCE__SQLSERVER__PASSWORD",
            "ENROLSTREAM_CONSUMER__MAPPINGS__2021/Winter",
            "ENROLSTREAM_CONFIG",
            "ENROLSTREAM_LOG_FORMAT",
            "ENROLSTREAM_PORT",
            "ENROLSTREAM_PORT_8080_TCP_ADDR",
            "ENROLSTREAM_SERVICE_HOST",
            "KAFKA_BOOTSTRAP_SERVERS",
        ],
    )
    def test_known_names_are_not_reported(self, name: str) -> None:
        """Settings, sections, table keys, the config file and Kubernetes service links."""
        assert unknown_variables([name], Settings) == []

    def test_every_setting_has_a_variable(self) -> None:
        """The known names are derived from the model: nested settings included."""
        known = known_variables(Settings)
        assert known["ENROLSTREAM_SOURCE__SQLSERVER__TRUST_SERVER_CERTIFICATE"] is False
        assert known["ENROLSTREAM_SOURCE__SQLSERVER"] is True

    def test_start_up_warns_and_continues(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """An unknown variable is warned about by name and suggestion; the command runs."""
        monkeypatch.setenv("ENROLSTREAM_MOODEL__URL", "https://moodle.example.edu")
        assert [v.name for v in unknown_environment_variables()] == [
            "ENROLSTREAM_MOODEL__URL"
        ]
        result = CliRunner().invoke(cli.app, ["config", "show"])
        assert result.exit_code == 0
        warning = json.loads(result.stderr.strip().splitlines()[0])
        assert warning["event"] == "unknown_environment_variable"
        assert warning["variable"] == "ENROLSTREAM_MOODEL__URL"
        assert warning["did_you_mean"] == "ENROLSTREAM_MOODLE__URL"
