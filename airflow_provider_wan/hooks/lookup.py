"""
One connection lookup per event loop and connection id at a time, for a short while; and modules imported off the
event loop's thread.

A triggerer that starts a thousand :class:`~airflow_provider_wan.triggers.wan.WanTaskTrigger` at once (a restart,
a failover, a big batch deferring together) would otherwise run a thousand lookups (secrets backend or database, each
through a thread, then key masking and parsing) in one loop iteration: 0.45 s of stalled loop measured by
benchmarks/triggerer_density.py, during which no other trigger of the process runs. The first caller looks the
connection up; the others await its result (single flight); the result is kept :data:`TTL_SECONDS`, so a changed
key or region is seen by triggers starting after that. A failed lookup is shared with the callers already waiting
but not kept: the next caller tries again (the connection may have been created meanwhile).

The first read of a triggerer process also needs ``aiohttp``: importing it (and building its default SSL contexts)
takes a few hundred ms, and on the loop's thread that was the longest stall of a thousand triggers starting
together (benchmarks/loop_stall.py). :func:`import_off_loop` imports it in a worker thread instead, once.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import importlib
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Generic, TypeVar

T = TypeVar("T")

#: seconds a looked-up value is reused
TTL_SECONDS = 30.0


class LoopCache(Generic[T]):
    """
    Values by key, each computed once by a coroutine while it is fresh, per event loop.

    Callers that arrive while the value is being computed wait in line and are released :data:`RELEASE_BATCH` per
    loop iteration: a thousand triggers waking up in the same iteration would stall the loop as long as the
    thousand lookups did.

    :param ttl: seconds a value is reused (default :data:`TTL_SECONDS`)
    :param clock: monotonic seconds (default :func:`time.monotonic`)
    """

    def __init__(self, *, ttl: float = TTL_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.clock = clock
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, _Entry[T]]]
        self._by_loop = weakref.WeakKeyDictionary()

    async def get(self, key: str, compute: Callable[[], Awaitable[T]]) -> T:
        """The fresh value for ``key``, computing it with ``compute()`` unless another caller already is."""
        loop = asyncio.get_running_loop()
        entries = self._by_loop.setdefault(loop, {})
        now = self.clock()
        entry = entries.get(key)
        if entry is None or (now >= entry.expires and entry.task.done()):
            # a task of its own: the caller that started the lookup may be cancelled, the others still need it
            entry = _Entry(now + self.ttl, loop.create_task(_run(compute)), collections.deque())
            entries[key] = entry
            entry.task.add_done_callback(functools.partial(_finished, loop, entries, key, entry))
        if entry.task.done():
            return entry.task.result()
        waiter: asyncio.Future[T] = loop.create_future()
        entry.waiters.append(waiter)
        return await waiter

    def forget(self, key: str, stale: T) -> None:
        """
        Drop ``key``'s value if it is still ``stale`` (found out of date by a caller), so that the next :meth:`get`
        computes it again; a newer value, or a computation under way, stays (many callers finding the same value
        stale at once still cause one computation).
        """
        entries = self._by_loop.get(asyncio.get_running_loop(), {})
        entry = entries.get(key)
        if entry is None or not entry.task.done() or entry.task.cancelled() or entry.task.exception() is not None:
            return
        if entry.task.result() == stale:
            del entries[key]

    def clear(self) -> None:
        self._by_loop.clear()


#: waiters released per loop iteration once a lookup is done
RELEASE_BATCH = 50


@dataclass
class _Entry(Generic[T]):
    expires: float
    task: asyncio.Task[T]
    waiters: collections.deque[asyncio.Future[T]]


def _finished(
    loop: asyncio.AbstractEventLoop, entries: dict[str, _Entry[T]], key: str, entry: _Entry[T], task: asyncio.Task[T]
) -> None:
    failed = task.cancelled() or task.exception() is not None
    if failed and entries.get(key) is entry:
        del entries[key]  # a failure is shared with those waiting, not kept: the next caller tries again
    if entry.waiters:
        loop.create_task(_release(entry))


async def _release(entry: _Entry[T]) -> None:
    task = entry.task
    while entry.waiters:
        for _ in range(min(RELEASE_BATCH, len(entry.waiters))):
            waiter = entry.waiters.popleft()
            if waiter.done():  # its trigger was cancelled while waiting
                continue
            if task.cancelled():
                waiter.cancel()
            elif task.exception() is not None:
                waiter.set_exception(task.exception())  # type: ignore[arg-type]
            else:
                waiter.set_result(task.result())
        await asyncio.sleep(0)


async def _run(compute: Callable[[], Awaitable[T]]) -> T:
    return await compute()


#: modules :func:`import_off_loop` has finished importing (``sys.modules`` holds a module from the moment its import
#: starts, so it cannot tell a half-executed module from a ready one)
_imported: dict[str, ModuleType] = {}
_importing: LoopCache[ModuleType] = LoopCache(ttl=float("inf"))


async def import_off_loop(name: str) -> ModuleType:
    """
    Module ``name``, imported in a worker thread the first time, so the loop keeps running meanwhile.

    The module's code still needs the GIL, but the interpreter hands it back to the loop's thread every few
    milliseconds (``sys.getswitchinterval()``) instead of after the whole import. Callers that arrive while it is
    being imported wait for that one import; a failed import is raised to them and tried again by the next caller.
    """
    module = _imported.get(name)
    if module is None:
        module = await _importing.get(name, functools.partial(asyncio.to_thread, importlib.import_module, name))
        _imported[name] = module
    return module
