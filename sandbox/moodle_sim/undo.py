"""An undo log: how a failed web-service batch rolls back without copying the site.

Every write to the simulated tables goes through one of the primitives below
(``set_item``, ``pop_item``, ``set_attr``, ``add``, ``discard``, ``append``).
Inside ``transaction()`` each primitive first records its exact inverse; when
the block raises, the inverses run newest first, which puts every touched
container back as it was (absent keys absent again, replaced objects restored,
counters rewound). The cost of a transaction is proportional to what it
wrote, not to the size of the site.

Transactions nest like Moodle's delegated transactions: an inner failure
undoes only the inner writes and the exception carries on to the outer block,
which (unless it catches it) undoes the rest. The log is emptied when the
outermost transaction succeeds. Outside a transaction the primitives just
write.

Objects changed behind the primitives' back (``course.startdate = …`` on a
row fetched from the state) are not logged: only rows created in the same
transaction may be changed that way, since undoing their creation drops them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

_K = TypeVar("_K")
_V = TypeVar("_V")

Inverse = Callable[[], object]


class UndoLog:
    """Inverse operations of the writes made inside open transactions."""

    def __init__(self) -> None:
        self._inverses: list[Inverse] = []
        self._depth = 0

    @property
    def pending(self) -> int:
        """Inverses recorded by the open transactions (0 when none is open)."""
        return len(self._inverses)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Any exception in the block undoes the block's writes, then propagates."""
        mark = len(self._inverses)
        self._depth += 1
        try:
            yield
        except BaseException:
            inverses = self._inverses
            while len(inverses) > mark:
                inverses.pop()()
            raise
        finally:
            self._depth -= 1
            if self._depth == 0:
                self._inverses.clear()

    def set_item(self, table: dict[_K, _V], key: _K, value: _V) -> None:
        """``table[key] = value``; undone by restoring the old value or absence."""
        if self._depth:
            if key in table:
                old = table[key]
                self._inverses.append(lambda: table.__setitem__(key, old))
            else:
                self._inverses.append(lambda: table.pop(key, None))
        table[key] = value

    def pop_item(self, table: dict[_K, _V], key: _K) -> _V | None:
        """``table.pop(key, None)``; undone by putting the value back."""
        if key not in table:
            return None
        old = table.pop(key)
        if self._depth:
            self._inverses.append(lambda: table.__setitem__(key, old))
        return old

    def set_attr(self, obj: object, name: str, value: Any) -> None:
        """``setattr(obj, name, value)``; undone by restoring the old value."""
        if self._depth:
            old = getattr(obj, name)
            self._inverses.append(lambda: setattr(obj, name, old))
        setattr(obj, name, value)

    def add(self, members: set[_K], member: _K) -> None:
        """``members.add(member)``; undone by discarding it if it was new."""
        if member in members:
            return
        members.add(member)
        if self._depth:
            self._inverses.append(lambda: members.discard(member))

    def discard(self, members: set[_K], member: _K) -> None:
        """``members.discard(member)``; undone by adding it back if it was there."""
        if member not in members:
            return
        members.discard(member)
        if self._depth:
            self._inverses.append(lambda: members.add(member))

    def append(self, rows: list[_V], row: _V) -> None:
        """``rows.append(row)``; undone by removing the last row."""
        rows.append(row)
        if self._depth:
            self._inverses.append(rows.pop)
