"""Moodle's external API descriptions and the three things done with them.

A function's parameters and return value are described by trees of
``Value`` / ``Single`` / ``Multiple`` (PHP ``external_value``,
``external_single_structure``, ``external_multiple_structure``). The
simulator uses them exactly as ``core_external\\external_api`` does:

* ``validate_parameters`` — strict: unknown keys, missing required keys and
  values that do not survive PHP's ``clean_param`` unchanged are
  ``invalidparameter``, with the nested ``key => …`` debuginfo Moodle builds;
* ``clean_returnvalue`` — rebuilds the result in description order and drops
  optional keys that are absent (this is why JSON answers omit empty fields);
* ``xmlize`` — the REST server's XML: walks the *description*, so absent keys
  appear as ``<VALUE null="null"/>`` or an empty ``<MULTIPLE>``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from sandbox.moodle_sim.errors import (
    INVALID_PARAMETER_MESSAGE,
    MoodleError,
    invalid_parameter,
)

Required = Literal["required", "optional", "default"]


@dataclass(frozen=True)
class Value:
    """A scalar of one PHP ``PARAM_*`` type (named as PHP names it: ``int``, ``raw``…)."""

    type: str
    required: Required = "required"
    default: Any = None


@dataclass(frozen=True)
class Single:
    """A structure with named keys, kept in declaration order."""

    keys: dict[str, Description]
    required: Required = "required"
    default: Any = None


@dataclass(frozen=True)
class Multiple:
    """A list of one content description."""

    content: Description
    required: Required = "required"
    default: Any = field(default=None)


Description = Value | Single | Multiple

_CLEANERS: dict[str, re.Pattern[str]] = {
    "alpha": re.compile(r"[^a-zA-Z]"),
    "alphanumext": re.compile(r"[^a-zA-Z0-9_-]"),
    "plugin": re.compile(r"[^a-z0-9_]"),
    "sequence": re.compile(r"[^0-9,]"),
    "safedir": re.compile(r"[^a-zA-Z0-9_-]"),
    "username": re.compile(r"[^-.@_a-z0-9]"),
}
_TAG = re.compile(r"<[^>]*>")
# PHP's (string)(int)$param === (string)$param: "8.0", "05", "abc" fail.
_PHP_INT = re.compile(r"-?(0|[1-9][0-9]*)")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def clean_param(value: str, param_type: str) -> str:
    """PHP ``clean_param`` for the string types the simulated functions use."""
    if param_type == "username":
        value = value.strip().lower()
    elif param_type in {"text", "notags"}:
        return _TAG.sub("", value)
    elif param_type == "email":
        return value if _EMAIL.match(value) else ""
    elif param_type == "raw_trimmed":
        return value.strip()
    cleaner = _CLEANERS.get(param_type)
    return cleaner.sub("", value) if cleaner else value


def _validate_value(desc: Value, raw: Any) -> Any:
    if isinstance(raw, dict):
        raise invalid_parameter("Scalar type expected, array or object received.")
    text = str(int(raw)) if isinstance(raw, bool) else str(raw)
    param_type = desc.type
    if param_type == "int" and _PHP_INT.fullmatch(text):
        return int(text)
    if param_type == "bool" and text in {"0", "1"}:
        return text == "1"
    if param_type not in {"int", "bool"} and clean_param(text, param_type) == text:
        return text
    raise invalid_parameter(
        f'Invalid external api parameter: the value is "{text}", '
        f'the server was expecting "{param_type}" type'
    )


def _nested(key: str, err_debuginfo: str | None) -> MoodleError:
    return invalid_parameter(f"{key} => {INVALID_PARAMETER_MESSAGE}: {err_debuginfo}")


def validate_parameters(desc: Description, params: Any) -> Any:
    """Validate decoded request params against ``desc``; raise ``invalidparameter``."""
    if isinstance(desc, Value):
        return _validate_value(desc, params)
    if not isinstance(params, dict):
        raise invalid_parameter(f"Only arrays accepted. The bad value is: '{params}'")
    if isinstance(desc, Multiple):
        return [validate_parameters(desc.content, item) for item in params.values()]
    remaining = dict(params)
    result: dict[str, Any] = {}
    for key, sub in desc.keys.items():
        if key not in remaining:
            if sub.required == "required":
                raise invalid_parameter(
                    f"Missing required key in single structure: {key}"
                )
            if sub.required == "default":
                result[key] = sub.default
            continue
        try:
            result[key] = validate_parameters(sub, remaining.pop(key))
        except MoodleError as exc:
            raise _nested(key, exc.debuginfo) from exc
    if remaining:
        raise invalid_parameter(
            f"Unexpected keys ({', '.join(remaining)}) detected in parameter array."
        )
    return result


_CASTS: dict[str, type] = {"bool": bool, "int": int, "float": float}


def _clean_value(param_type: str, value: Any) -> Any:
    if value is None:
        return None
    cast = _CASTS.get(param_type)
    if cast is not None:
        return cast(value)
    # PARAM_RAW passes the PHP value through (an int stays an int).
    return value if param_type == "raw" else str(value)


def clean_returnvalue(desc: Description | None, value: Any) -> Any:
    """The result as Moodle encodes it to JSON: description order, absent keys dropped."""
    if desc is None:
        return None
    if isinstance(desc, Value):
        return _clean_value(desc.type, value)
    if isinstance(desc, Multiple):
        return [clean_returnvalue(desc.content, item) for item in value or []]
    result: dict[str, Any] = {}
    for key, sub in desc.keys.items():
        if key in value:
            result[key] = clean_returnvalue(sub, value[key])
        elif sub.required == "default":
            result[key] = sub.default
    return result


def _escape(text: str) -> str:
    # htmlspecialchars(ENT_COMPAT): single quotes stay as they are.
    return (
        text.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
    )


def xmlize(desc: Description | None, value: Any) -> str:
    """``webservice_rest_server::xmlize_result``: the XML body inside ``<RESPONSE>``."""
    if desc is None:
        return ""
    if isinstance(desc, Value):
        if value is None:
            return '<VALUE null="null"/>\n'
        text = str(int(value)) if isinstance(value, bool) else str(value)
        return f"<VALUE>{_escape(text)}</VALUE>\n"
    if isinstance(desc, Multiple):
        items = "".join(xmlize(desc.content, item) for item in value or [])
        return f"<MULTIPLE>\n{items}</MULTIPLE>\n"
    present = value or {}
    keys = "".join(
        f'<KEY name="{key}">{xmlize(sub, present.get(key))}</KEY>\n'
        for key, sub in desc.keys.items()
    )
    return f"<SINGLE>\n{keys}</SINGLE>\n"
