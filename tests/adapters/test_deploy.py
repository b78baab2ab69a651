"""The container image and the Kubernetes base: valid, and saying what the code does.

The manifests are validated against the Kubernetes schemas that the pinned
``kubernetes-validate`` bundles (strict: an unknown field is an error), then
checked against the code: the commands exist, the probes hit the listener's
ports and paths, every ``ENROLSTREAM_*`` variable names a setting, the TOML
loads. Docker cannot run here: the Dockerfile is checked by copying what its
COPY lines copy and importing every module of the package from that copy.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from typer.testing import CliRunner

from consumers.mapping import load_mappings
from enrolstream.cli.root import app
from enrolstream.settings import Settings, load_settings
from enrolstream.settings_errors import unknown_variables

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "deploy" / "kubernetes" / "base"
DOCKERFILE = ROOT / "docker" / "app" / "Dockerfile"
KUBERNETES_VERSION = "1.30.0"
WORKLOAD_KINDS = {"Deployment", "CronJob"}


def manifests() -> list[tuple[str, dict[str, Any]]]:
    """Every object the kustomization's resources hold, with its file name."""
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    return [
        (name, document)
        for name in kustomization["resources"]
        for document in yaml.safe_load_all((BASE / name).read_text())
        if document
    ]


def named(kind: str, name: str) -> dict[str, Any]:
    """The object of that kind and name."""
    return next(
        doc
        for _, doc in manifests()
        if doc["kind"] == kind and doc["metadata"]["name"] == name
    )


def pod_spec(document: dict[str, Any]) -> dict[str, Any]:
    """A workload's pod template spec."""
    if document["kind"] == "CronJob":
        return dict(document["spec"]["jobTemplate"]["spec"]["template"]["spec"])
    return dict(document["spec"]["template"]["spec"])


def containers() -> Iterator[tuple[str, dict[str, Any]]]:
    """Every container and init container of every workload, with the workload's name."""
    for _, document in manifests():
        if document["kind"] in WORKLOAD_KINDS:
            spec = pod_spec(document)
            for container in [*spec.get("initContainers", []), *spec["containers"]]:
                yield document["metadata"]["name"], container


def config_toml() -> str:
    """The settings file the ConfigMap mounts."""
    return str(named("ConfigMap", "enrolstream-config")["data"]["enrolstream.toml"])


class TestManifests:
    """The kustomize base is valid Kubernetes."""

    def test_the_kustomization_lists_every_manifest(self) -> None:
        """No file is forgotten by kustomize, none listed is missing."""
        listed = set(
            yaml.safe_load((BASE / "kustomization.yaml").read_text())["resources"]
        )
        on_disk = {p.name for p in BASE.glob("*.yaml")} - {"kustomization.yaml"}
        assert listed == on_disk

    @pytest.mark.parametrize(
        ("name", "document"),
        manifests(),
        ids=[f"{n}:{d['kind']}/{d['metadata']['name']}" for n, d in manifests()],
    )
    def test_every_object_is_valid(self, name: str, document: dict[str, Any]) -> None:
        """Each object validates, strictly, against the bundled Kubernetes schemas."""
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)

    def test_selectors_match_their_pods(self) -> None:
        """Deployments, Services and the disruption budget select the pods they mean."""
        pods = {
            doc["metadata"]["name"]: doc["spec"]["template"]["metadata"]["labels"]
            for _, doc in manifests()
            if doc["kind"] == "Deployment"
        }
        for _, doc in manifests():
            if doc["kind"] not in {"Deployment", "Service", "PodDisruptionBudget"}:
                continue
            selector: dict[str, Any] = doc["spec"]["selector"]
            if doc["kind"] != "Service":
                selector = selector["matchLabels"]
            chosen = [
                n for n, labels in pods.items() if selector.items() <= labels.items()
            ]
            assert len(chosen) == 1, (doc["kind"], doc["metadata"]["name"], chosen)

    def test_no_secret_is_in_the_manifests(self) -> None:
        """Secrets come from a Secret created outside git, never from the base."""
        assert all(doc["kind"] != "Secret" for _, doc in manifests())
        settings = tomllib.loads(config_toml())
        assert "password" not in settings["source"]["sqlserver"]
        assert "token" not in settings["moodle"]


class TestWorkloads:
    """What the manifests run is what the code offers."""

    def test_the_poller_runs_an_active_and_a_standby(self) -> None:
        """Two poller pods, preferably on two machines, its state file on a mounted volume."""
        poller = named("Deployment", "enrolstream-poller")
        assert poller["spec"]["replicas"] >= 2
        spec = pod_spec(poller)
        assert spec["affinity"]["podAntiAffinity"]
        state = str(load_settings_from(config_toml()).poller.state_path)
        mounts = [m["mountPath"] for m in spec["containers"][0]["volumeMounts"]]
        assert any(state.startswith(mount + "/") for mount in mounts)

    @pytest.mark.parametrize(("workload", "container"), list(containers()))
    def test_commands_exist(self, workload: str, container: dict[str, Any]) -> None:
        """Each container's arguments are an enrolstream command line that parses."""
        result = CliRunner().invoke(app, [*container["args"], "--help"])
        assert result.exit_code == 0, (workload, result.output)

    @pytest.mark.parametrize(
        ("deployment", "port_setting"),
        [("enrolstream-poller", "poll_port"), ("enrolstream-consumer", "consume_port")],
    )
    def test_probes_hit_the_listener(self, deployment: str, port_setting: str) -> None:
        """Liveness asks /livez and readiness /readyz, on the port the command listens on."""
        container = pod_spec(named("Deployment", deployment))["containers"][0]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        listening = getattr(load_settings_from(config_toml()).operations, port_setting)
        for probe, path in (("livenessProbe", "/livez"), ("readinessProbe", "/readyz")):
            assert container[probe]["httpGet"]["path"] == path
            assert ports[container[probe]["httpGet"]["port"]] == listening
        assert load_settings_from(config_toml()).operations.host == "0.0.0.0"  # noqa: S104

    def test_environment_variables_name_settings(self) -> None:
        """Every ENROLSTREAM_* variable set in a manifest is a setting (no typo)."""
        names = {
            env["name"]
            for _, container in containers()
            for env in container.get("env", [])
            if env["name"].startswith("ENROLSTREAM_")
            and env["name"] != "ENROLSTREAM_CONFIG"
        }
        assert names
        assert unknown_variables(dict.fromkeys(names, "x"), Settings) == []

    def test_the_configuration_and_the_mapping_load(self, tmp_path: Path) -> None:
        """The mounted TOML is valid settings, and the mapping file it names loads."""
        settings = load_settings_from(config_toml(), tmp_path)
        mapping = named("ConfigMap", "enrolstream-mapping")["data"]
        (tmp_path / "2021-winter.json").write_text(mapping["2021-winter.json"])
        assert [path.name for path in settings.consumer.mappings.values()] == [
            "2021-winter.json"
        ]
        loaded = load_mappings({"2021/Winter": tmp_path / "2021-winter.json"})
        assert loaded


def load_settings_from(text: str, directory: Path | None = None) -> Settings:
    """Settings from TOML text, as `--config FILE` reads them (no environment)."""
    folder = directory or Path(os.environ.get("TMPDIR", "/tmp"))  # noqa: S108
    path = folder / f"deploy-{os.getpid()}.toml"
    path.write_text(text)
    try:
        return load_settings(path)
    finally:
        path.unlink()


def copied_paths() -> list[str]:
    """The sources of the Dockerfile's COPY lines (``--from`` stages excepted)."""
    paths = []
    for line in DOCKERFILE.read_text().splitlines():
        if line.startswith("COPY ") and "--from" not in line:
            paths += line.split()[1:-1]
    return paths


class TestDockerfile:
    """The image holds what the package needs and runs the CLI."""

    def test_every_package_is_copied(self) -> None:
        """Each package pyproject installs is copied into the build context's /app."""
        project = tomllib.loads((ROOT / "pyproject.toml").read_text())
        include = project["tool"]["setuptools"]["packages"]["find"]["include"]
        packages = {pattern.rstrip("*") for pattern in include}
        assert packages <= set(copied_paths())
        assert {"pyproject.toml", "README.md"} <= set(copied_paths())

    def test_the_dockerignore_keeps_what_is_copied(self) -> None:
        """No COPY source is excluded from the build context (nor re-included wrongly)."""
        rules = [
            line
            for line in (ROOT / ".dockerignore").read_text().splitlines()
            if line and not line.startswith("#")
        ]
        for path in copied_paths():
            excluded = False
            for rule in rules:
                negated = rule.startswith("!")
                if fnmatch.fnmatch(path, rule.lstrip("!")):
                    excluded = not negated
            assert not excluded, path

    def test_the_entrypoint_is_the_cli(self) -> None:
        """The image runs `enrolstream`, the console script pyproject declares."""
        text = DOCKERFILE.read_text()
        assert re.search(r'^ENTRYPOINT \["enrolstream"\]$', text, re.MULTILINE)
        project = tomllib.loads((ROOT / "pyproject.toml").read_text())
        assert (
            project["project"]["scripts"]["enrolstream"] == "enrolstream.cli.root:main"
        )
        assert re.search(r"^USER \d+$", text, re.MULTILINE)  # runAsNonRoot can check it

    def test_the_copied_tree_imports_and_runs(self, tmp_path: Path) -> None:
        """Every module imports from the copied files alone, and `enrolstream --help` runs."""
        for path in copied_paths():
            source = ROOT / path
            if source.is_dir():
                shutil.copytree(
                    source,
                    tmp_path / path,
                    ignore=shutil.ignore_patterns("__pycache__"),
                )
            else:
                shutil.copy(source, tmp_path / path)
        # The project's editable install would find a package the copy lacks:
        # every module of ours must come from the copy.
        script = (
            "import importlib, pkgutil, sys\n"
            "here, packages = sys.path[0], sys.argv[1:]\n"
            "for name in packages:\n"
            "    package = importlib.import_module(name)\n"
            "    for module in pkgutil.walk_packages(package.__path__, name + '.'):\n"
            "        importlib.import_module(module.name)\n"
            "from enrolstream.cli.root import main\n"
            "ours = [m for n, m in sys.modules.items() if n.split('.')[0] in packages]\n"
            "stray = [m.__name__ for m in ours if not (m.__file__ or '').startswith(here)]\n"
            "assert not stray, f'not from the copied files: {stray[:5]}'\n"
            "sys.argv = ['enrolstream', '--help']\n"
            "main()\n"
        )
        project = tomllib.loads((ROOT / "pyproject.toml").read_text())
        include = project["tool"]["setuptools"]["packages"]["find"]["include"]
        packages = [pattern.rstrip("*") for pattern in include]
        (tmp_path / "check_image.py").write_text(script)
        done = subprocess.run(  # noqa: S603 - our interpreter, our script
            [sys.executable, "check_image.py", *packages],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={**os.environ, "PYTHONPATH": str(tmp_path)},
        )
        assert done.returncode == 0, done.stderr[-2000:]
        assert "poll" in done.stdout
