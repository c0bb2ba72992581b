"""
One connection lookup per event loop and connection id at a time, for a short while.

A triggerer that starts a thousand :class:`~airflow_provider_wan.triggers.wan.WanTaskTrigger` at once (a restart,
a failover, a big batch deferring together) would otherwise run a thousand lookups (secrets backend or database, each
through a thread, then key masking and parsing) in one loop iteration: 0.45 s of stalled loop measured by
benchmarks/triggerer_density.py, during which no other trigger of the process runs. The first caller looks the
connection up; the others await its result (single flight); the result is kept :data:`TTL_SECONDS`, so a changed
key or region is seen by triggers starting after that. A failed lookup is shared with the callers already waiting
but not kept: the next caller tries again (the connection may have been created meanwhile).
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")

#: seconds a looked-up value is reused
TTL_SECONDS = 30.0


class LoopCache(Generic[T]):
    """
    Values by key, each computed once by a coroutine while it is fresh, per event loop.

    :param ttl: seconds a value is reused (default :data:`TTL_SECONDS`)
    :param clock: monotonic seconds (default :func:`time.monotonic`)
    """

    def __init__(self, *, ttl: float = TTL_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.clock = clock
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, tuple[float, asyncio.Task[T]]]]
        self._by_loop = weakref.WeakKeyDictionary()

    async def get(self, key: str, compute: Callable[[], Awaitable[T]]) -> T:
        """The fresh value for ``key``, computing it with ``compute()`` unless another caller already is."""
        loop = asyncio.get_running_loop()
        entries = self._by_loop.setdefault(loop, {})
        now = self.clock()
        entry = entries.get(key)
        if entry is None or (now >= entry[0] and entry[1].done()):
            # a task of its own: the caller that started the lookup may be cancelled, the others still need it
            task = loop.create_task(_run(compute))
            entry = (now + self.ttl, task)
            entries[key] = entry

            def forget_failure(done: asyncio.Task[T]) -> None:
                if (done.cancelled() or done.exception() is not None) and entries.get(key) is entry:
                    del entries[key]

            task.add_done_callback(forget_failure)
        # shield: one waiter being cancelled (its trigger was) must not cancel the lookup the others await
        return await asyncio.shield(entry[1])

    def clear(self) -> None:
        self._by_loop.clear()


async def _run(compute: Callable[[], Awaitable[T]]) -> T:
    return await compute()
