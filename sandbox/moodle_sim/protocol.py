"""The REST wire format: PHP request-variable decoding and the JSON/XML answers.

PHP, not Moodle, turns ``enrolments[0][userid]=4`` into nested arrays, and PHP
enforces ``max_input_vars``: it keeps the first ``max_input_vars + 1`` variables
of each source (query string, form body) and silently drops the rest (recorded
with PHP 8.2: 5001 of 5100 kept with ``max_input_vars=5000``). Moodle then reads
``wstoken``/``wsfunction``/``moodlewsrestformat`` from what survived.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import unquote

from sandbox.moodle_sim.errors import MoodleError
from sandbox.moodle_sim.external import Description, clean_returnvalue, xmlize

JSON_CONTENT_TYPE = "application/json"
XML_CONTENT_TYPE = "application/xml; charset=utf-8"
_XML_HEAD = '<?xml version="1.0" encoding="UTF-8" ?>\n'


@dataclass(frozen=True)
class Rendered:
    """A response body and the Content-Type Moodle sends with it (always HTTP 200)."""

    body: str
    content_type: str


def truncate_input_vars(
    pairs: list[tuple[str, str]], max_input_vars: int
) -> list[tuple[str, str]]:
    """What PHP keeps of one variable source: the first ``max_input_vars + 1``."""
    return pairs[: max_input_vars + 1]


@lru_cache(maxsize=16384)
def _split_key(key: str) -> tuple[str, tuple[str, ...]]:
    """PHP's variable-name parsing: base name and bracket indices.

    Cached: a batch's names (``enrolments[0][userid]`` …) recur on every call.
    """
    key = key.lstrip(" ")
    bracket = key.find("[")
    if bracket < 0 or "]" not in key[bracket:]:
        return key.replace(" ", "_").replace(".", "_").replace("[", "_"), ()
    base = key[:bracket].replace(" ", "_").replace(".", "_")
    indices: list[str] = []
    rest = key[bracket:]
    while rest.startswith("["):
        close = rest.find("]")
        if close < 0:
            break
        indices.append(rest[1:close])
        rest = rest[close + 1 :]
    return base, tuple(indices)


def _next_index(container: dict[str, Any]) -> str:
    numeric = [int(k) for k in container if k.lstrip("-").isdigit()]
    return str(max(numeric) + 1 if numeric else 0)


def decode_php_vars(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Nest ``a[0][b]=v`` pairs as PHP does (later duplicates win, ``[]`` appends)."""
    decoded: dict[str, Any] = {}
    for raw_key, value in pairs:
        base, indices = _split_key(raw_key)
        if not base:
            continue
        container, index = decoded, base
        for part in indices:
            child = container.get(index)
            if not isinstance(child, dict):
                child = {}
                container[index] = child
            container = child
            index = part or _next_index(container)
        container[index] = value
    return decoded


@lru_cache(maxsize=16384)
def _unquote_name(raw: str) -> str:
    return unquote(raw.replace("+", " "))


def parse_form(text: str) -> list[tuple[str, str]]:
    """``parse_qsl(text, keep_blank_values=True)``: the form's fields, in order.

    Faster on web-service bodies, whose field names recur on every call and
    whose values rarely need decoding; results are identical.
    """
    pairs = []
    for field in text.split("&"):
        if not field:
            continue
        name, _, value = field.partition("=")
        if "+" in value:
            value = value.replace("+", " ")
        pairs.append((_unquote_name(name), unquote(value) if "%" in value else value))
    return pairs


def render_success(
    desc: Description | None, value: Any, *, json_format: bool
) -> Rendered:
    """A successful answer in the requested format."""
    cleaned = clean_returnvalue(desc, value)
    if json_format:
        return Rendered(json.dumps(cleaned, ensure_ascii=False), JSON_CONTENT_TYPE)
    body = f"{_XML_HEAD}<RESPONSE>\n{xmlize(desc, cleaned)}</RESPONSE>\n"
    return Rendered(body, XML_CONTENT_TYPE)


def _xml_escape(text: str) -> str:
    return (
        text.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
    )


def render_error(error: MoodleError, *, json_format: bool, debug: bool) -> Rendered:
    """An error object: JSON object or ``<EXCEPTION>`` element, HTTP 200 either way."""
    body = error.render(debug=debug)
    if json_format:
        return Rendered(json.dumps(body, ensure_ascii=False), JSON_CONTENT_TYPE)
    parts = [
        _XML_HEAD,
        f'<EXCEPTION class="{body["exception"]}">\n',
        f"<ERRORCODE>{_xml_escape(body['errorcode'])}</ERRORCODE>\n",
        f"<MESSAGE>{_xml_escape(body['message'])}</MESSAGE>\n",
    ]
    if "debuginfo" in body:
        parts.append(f"<DEBUGINFO>{_xml_escape(body['debuginfo'])}</DEBUGINFO>\n")
    parts.append("</EXCEPTION>\n")
    return Rendered("".join(parts), XML_CONTENT_TYPE)
