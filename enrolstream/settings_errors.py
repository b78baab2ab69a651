"""Settings problems as one line each: where the value came from, which key, what is wrong.

pydantic's own report is a multi-line block that echoes the input value: a
misspelt ``tokn = "…"`` printed the token. A ``SettingsProblem`` is built from an
error's location and message only, never from its input, and names the source
that supplied the value: the environment variable (which wins over the file) or
the TOML file.

Environment variables under the ``ENROLSTREAM_`` prefix that name no setting are
ignored by pydantic-settings (an unknown section, a typo such as
``ENROLSTREAM_MOODEL__URL``), while the same typo in TOML is an error;
``unknown_variables`` finds them so that start-up can warn, with the closest
valid name.

Everything here is pure: the model class, the variable names and the file are
arguments.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ValidationError

ENV_PREFIX = "ENROLSTREAM_"
NESTED_DELIMITER = "__"
#: Read by ``load_settings`` itself (the file to read), not a setting.
CONFIG_VARIABLE = "ENROLSTREAM_CONFIG"
#: Kubernetes injects ``<SERVICE>_PORT…`` and ``<SERVICE>_SERVICE_…`` for every
#: Service in the namespace (``enableServiceLinks``): a Service named enrolstream
#: makes these appear without anyone misspelling anything.
_SERVICE_LINK = re.compile(
    r"^ENROLSTREAM_(PORT(_\d+_(TCP|UDP|SCTP)(_\w+)?)?|SERVICE_\w+)$"
)
_FIELD_IN_SOURCE_ERROR = re.compile(r'field "(?P<field>[^"]+)"')


@dataclass(frozen=True, slots=True)
class SettingsProblem:
    """One thing wrong with the settings: where, which key, what (and what to do)."""

    where: str
    key: str
    problem: str

    def __str__(self) -> str:
        """``where: key: problem`` (the key left out when the whole source is wrong)."""
        if self.key:
            return f"{self.where}: {self.key}: {self.problem}"
        return f"{self.where}: {self.problem}"


class SettingsError(Exception):
    """The settings cannot be used; each problem names its source, key and cause.

    Raised by ``load_settings`` instead of pydantic's ``ValidationError`` (which
    would print input values, secrets included) or a TOML parser error (which
    does not name the file).
    """

    def __init__(self, problems: Sequence[SettingsProblem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(problem) for problem in self.problems))


@dataclass(frozen=True, slots=True)
class UnknownVariable:
    """An ``ENROLSTREAM_*`` environment variable that names no setting."""

    name: str
    did_you_mean: str | None


def variable_name(path: Sequence[str]) -> str:
    """A setting's variable: ``("moodle", "url")`` → ``ENROLSTREAM_MOODLE__URL``."""
    return ENV_PREFIX + NESTED_DELIMITER.join(part.upper() for part in path)


def _section_model(annotation: object) -> type[BaseModel] | None:
    """The model class a field holds (also inside ``X | None``), else None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if isinstance(annotation, types.UnionType) or (
        typing.get_origin(annotation) is typing.Union
    ):
        for member in typing.get_args(annotation):
            found = _section_model(member)
            if found is not None:
                return found
    return None


def _walk(
    model: type[BaseModel], path: tuple[str, ...]
) -> Iterator[tuple[tuple[str, ...], bool]]:
    """Every (path, is_section) under ``model``, sections before their fields."""
    for name, field in model.model_fields.items():
        here = (*path, name)
        section = _section_model(field.annotation)
        yield here, section is not None
        if section is not None:
            yield from _walk(section, here)


def known_variables(model: type[BaseModel]) -> dict[str, bool]:
    """Every variable naming a section or setting of ``model`` → whether it is a section."""
    return {variable_name(path): section for path, section in _walk(model, ())}


def unknown_variables(
    names: Iterable[str], model: type[BaseModel]
) -> list[UnknownVariable]:
    """The ``ENROLSTREAM_*`` names among ``names`` that set nothing, with the closest valid one.

    Case does not matter (pydantic-settings matches case-insensitively). A name
    that continues a known setting (``ENROLSTREAM_CONSUMER__MAPPINGS__2021/Winter``
    sets one key of a table) is known.
    """
    known = known_variables(model)
    settings_only = [name for name, section in known.items() if not section]
    found: list[UnknownVariable] = []
    for name in sorted(names):
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or upper == CONFIG_VARIABLE:
            continue
        if upper in known or _SERVICE_LINK.match(upper):
            continue
        if any(
            upper.startswith(setting + NESTED_DELIMITER) for setting in settings_only
        ):
            continue
        close = difflib.get_close_matches(upper, settings_only, n=1, cutoff=0.75)
        found.append(UnknownVariable(name, close[0] if close else None))
    return found


def _model_at(model: type[BaseModel], path: Sequence[str]) -> type[BaseModel] | None:
    current: type[BaseModel] | None = model
    for part in path:
        if current is None or part not in current.model_fields:
            return None
        current = _section_model(current.model_fields[part].annotation)
    return current


def _source_of(
    path: Sequence[str], environ_names: Collection[str], toml_file: Path | None
) -> str:
    """Who supplied the value at ``path``: the most specific variable, else the file."""
    upper_names = {name.upper(): name for name in environ_names}
    for length in range(len(path), 0, -1):
        candidate = variable_name(path[:length])
        if candidate in upper_names:
            return upper_names[candidate]
        nested = sorted(
            name
            for upper, name in upper_names.items()
            if upper.startswith(candidate + NESTED_DELIMITER)
        )
        if nested and length == len(path):
            return nested[0]
    if toml_file is not None:
        return str(toml_file)
    return "the arguments"


def _unknown_key_problem(
    model: type[BaseModel], path: Sequence[str], where: str
) -> str:
    section = _model_at(model, path[:-1])
    candidates = list(section.model_fields) if section is not None else []
    close = difflib.get_close_matches(path[-1], candidates, n=1, cutoff=0.6)
    advice = "remove it or correct its name"
    if close:
        suggestion = ".".join([*path[:-1], close[0]])
        if where.upper() == variable_name(path):  # the variable itself is misspelt
            suggestion = variable_name([*path[:-1], close[0]])
        advice = f"did you mean {suggestion}?"
    return f"unknown setting ({advice})"


def validation_problems(
    error: ValidationError,
    model: type[BaseModel],
    *,
    environ_names: Collection[str],
    toml_file: Path | None,
) -> list[SettingsProblem]:
    """One problem per pydantic error, from its location and message (never its input)."""
    problems: list[SettingsProblem] = []
    for detail in error.errors(include_input=False, include_url=False):
        path = [str(part) for part in detail["loc"]]
        where = _source_of(path, environ_names, toml_file)
        if detail["type"] == "extra_forbidden":
            problem = _unknown_key_problem(model, path, where)
        else:
            # A validator's own message is the problem: drop pydantic's prefix.
            problem = str(detail["msg"]).removeprefix("Value error, ")
        problems.append(SettingsProblem(where, ".".join(path), problem))
    return problems


def source_problem(
    error: ValueError, environ_names: Collection[str]
) -> list[SettingsProblem]:
    """The problem behind pydantic-settings' own error: a variable that is not valid JSON.

    Lists, tuples and tables set through one variable are JSON; the error names
    only the section, so every variable under it is named.
    """
    match = _FIELD_IN_SOURCE_ERROR.search(str(error))
    field = match.group("field") if match else ""
    prefix = variable_name([field]) if field else ENV_PREFIX
    named = sorted(
        name
        for name in environ_names
        if name.upper() == prefix or name.upper().startswith(prefix + NESTED_DELIMITER)
    )
    where = ", ".join(named) or "the environment"
    return [
        SettingsProblem(
            where,
            field,
            "not valid JSON: lists and tables are written in JSON in an environment "
            'variable, e.g. ["2021/Winter"] or {"2021/Winter": "mapping.json"}',
        )
    ]


__all__ = [
    "CONFIG_VARIABLE",
    "ENV_PREFIX",
    "SettingsError",
    "SettingsProblem",
    "UnknownVariable",
    "known_variables",
    "source_problem",
    "unknown_variables",
    "validation_problems",
    "variable_name",
]
