"""Concurrency helpers of the apply side (no I/O of their own)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
from typing import TypeVar

__all__ = ["run_all"]

_T = TypeVar("_T")


async def run_all(coroutines: Iterable[Awaitable[_T]]) -> list[_T]:
    """Await all concurrently; on the first failure cancel the rest and raise it.

    Unlike ``asyncio.TaskGroup`` the caller sees the first error itself, not an
    ``ExceptionGroup``. Results come back in input order.
    """
    pending = list(coroutines)
    if len(pending) == 1:
        return [await pending[0]]
    tasks: list[asyncio.Task[_T]] = []
    try:
        async with asyncio.TaskGroup() as group:
            tasks.extend(group.create_task(_as_coroutine(aw)) for aw in pending)
    except BaseExceptionGroup as failures:
        raise _first_leaf(failures) from None
    return [task.result() for task in tasks]


async def _as_coroutine(awaitable: Awaitable[_T]) -> _T:
    return await awaitable


def _first_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    first = group.exceptions[0]
    return _first_leaf(first) if isinstance(first, BaseExceptionGroup) else first
