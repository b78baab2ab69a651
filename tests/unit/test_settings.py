"""Settings: environment and TOML sources, precedence, and secrets never shown."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from enrolstream import cli
from enrolstream.settings import load_settings, masked

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
    for name in (
        "ENROLSTREAM_CONFIG",
        "KAFKA_BOOTSTRAP_SERVERS",
        "ENROLSTREAM_MOODLE__TOKEN",
        "ENROLSTREAM_KAFKA__PARTITIONS",
    ):
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
        with pytest.raises(FileNotFoundError, match=r"/nowhere/enrolstream\.toml"):
            load_settings()

    def test_unknown_keys_are_refused(self, tmp_path: Path) -> None:
        """A misspelt setting is an error, not silently ignored."""
        path = tmp_path / "bad.toml"
        path.write_text("[moodle]\ntokn = 'x'\n")
        with pytest.raises(ValidationError, match="tokn"):
            load_settings(path)


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
