"""Moodle's REST form encoding (PHP bracket notation) and the max_input_vars budget.

Pure functions, no I/O. PHP parses ``enrolments[0][userid]=12`` into nested
arrays, and silently drops every form field past ``max_input_vars`` (default
1000): an oversized enrol batch is truncated without an error, or fails with
``invalidparameter`` when the cut falls inside a row, or loses the token when
it is sent last. Hence ``wstoken`` goes first and every request is sized so it
never carries more than ``max_input_vars`` fields.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeVar

__all__ = [
    "ROUTING_FIELDS",
    "chunk_by_fields",
    "count_fields",
    "encode_params",
    "encode_value",
]

_T = TypeVar("_T")

#: wstoken, wsfunction, moodlewsrestformat: sent with every request.
ROUTING_FIELDS = 3


def encode_value(value: object) -> str:
    """One scalar as Moodle reads it: booleans as ``1``/``0``, numbers in decimal.

    Raises ``TypeError`` for ``None`` (leave the key out instead) and for types
    without an obvious form encoding.
    """
    if isinstance(value, bool):  # before int: bool is an int subclass
        return "1" if value else "0"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    raise TypeError(f"no Moodle form encoding for {type(value).__name__}")


def _walk(prefix: str, value: object, out: list[tuple[str, str]]) -> None:
    if isinstance(value, Mapping):
        for key, item in value.items():
            _walk(f"{prefix}[{key}]", item, out)
    elif isinstance(value, Sequence) and not isinstance(value, str | bytes):
        for index, item in enumerate(value):
            _walk(f"{prefix}[{index}]", item, out)
    else:
        out.append((prefix, encode_value(value)))


def encode_params(params: Mapping[str, object]) -> list[tuple[str, str]]:
    """Flatten ``params`` into ordered form fields in PHP bracket notation.

    ``{"enrolments": [{"userid": 4, "suspend": True}]}`` becomes
    ``[("enrolments[0][userid]", "4"), ("enrolments[0][suspend]", "1")]``.
    Mappings nest as ``[key]``, lists and tuples as ``[index]``; order follows
    the input. An empty list or mapping yields no field at all (PHP cannot
    express it). The routing fields are not included.
    """
    out: list[tuple[str, str]] = []
    for key, value in params.items():
        _walk(key, value, out)
    return out


def count_fields(params: Mapping[str, object]) -> int:
    """Form fields of a request with ``params``, the routing fields included."""
    return ROUTING_FIELDS + len(encode_params(params))


def chunk_by_fields(
    items: Sequence[_T], sizes: Sequence[int], budget: int
) -> list[list[_T]]:
    """Split ``items`` (in order) into the fewest consecutive chunks within ``budget``.

    ``sizes[i]`` is the number of form fields item ``i`` adds; ``budget`` is what
    one request may add on top of its fixed fields. Raises ``ValueError`` when a
    single item does not fit, because no request could carry it intact.
    """
    if len(items) != len(sizes):
        raise ValueError("items and sizes differ in length")
    chunks: list[list[_T]] = []
    current: list[_T] = []
    used = 0
    for item, size in zip(items, sizes, strict=True):
        if size > budget:
            raise ValueError(
                f"one item needs {size} form fields; the budget is {budget}"
            )
        if current and used + size > budget:
            chunks.append(current)
            current, used = [], 0
        current.append(item)
        used += size
    if current:
        chunks.append(current)
    return chunks
