"""Single-flight connection lookups per event loop (hooks/lookup.py)."""

from __future__ import annotations

import asyncio
import sys
import threading
import types

import pytest

from airflow_provider_wan.hooks.lookup import LoopCache, import_off_loop


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_a_thousand_callers_share_one_lookup():
    calls = 0
    cache: LoopCache[str] = LoopCache(ttl=30)

    async def look_up() -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        return "credentials"

    values = await asyncio.gather(*(cache.get("wan_default", look_up) for _ in range(1000)))
    assert values == ["credentials"] * 1000
    assert calls == 1


async def test_value_expires_after_the_ttl_and_keys_are_separate():
    clock = FakeClock()
    cache: LoopCache[int] = LoopCache(ttl=30, clock=clock)
    calls: list[str] = []

    def counting(key: str):
        async def look_up() -> int:
            calls.append(key)
            return len(calls)

        return look_up

    assert await cache.get("a", counting("a")) == 1
    assert await cache.get("a", counting("a")) == 1
    assert await cache.get("b", counting("b")) == 2
    clock.now = 31
    assert await cache.get("a", counting("a")) == 3


async def test_a_value_found_stale_is_looked_up_again_once():
    # a thousand triggers refused with the key rotated away: one new lookup, and a newer value is never dropped
    calls = 0
    cache: LoopCache[int] = LoopCache(ttl=30)

    async def look_up() -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        return calls

    assert await cache.get("wan_default", look_up) == 1
    cache.forget("wan_default", 1)
    cache.forget("wan_default", 1)

    async def refused_then_renewed() -> int:
        cache.forget("wan_default", 1)
        return await cache.get("wan_default", look_up)

    assert await asyncio.gather(*(refused_then_renewed() for _ in range(1000))) == [2] * 1000
    cache.forget("wan_default", 1)  # found stale late: the value is already newer
    assert await cache.get("wan_default", look_up) == 2
    assert calls == 2


async def test_a_failure_reaches_every_waiter_and_is_not_kept():
    cache: LoopCache[str] = LoopCache(ttl=30)
    attempts = 0

    async def missing() -> str:
        nonlocal attempts
        attempts += 1
        await asyncio.sleep(0.01)
        raise LookupError("no such connection")

    results = await asyncio.gather(*(cache.get("c", missing) for _ in range(3)), return_exceptions=True)
    assert all(isinstance(r, LookupError) for r in results)
    assert attempts == 1

    async def found() -> str:
        return "created meanwhile"

    assert await cache.get("c", found) == "created meanwhile"


async def test_the_first_caller_cancelled_does_not_cancel_the_others():
    cache: LoopCache[str] = LoopCache(ttl=30)
    release = asyncio.Event()

    async def slow() -> str:
        await release.wait()
        return "ok"

    first = asyncio.ensure_future(cache.get("k", slow))
    second = asyncio.ensure_future(cache.get("k", slow))
    await asyncio.sleep(0)
    first.cancel()
    release.set()
    assert await second == "ok"
    with pytest.raises(asyncio.CancelledError):
        await first


def test_each_event_loop_looks_up_for_itself():
    cache: LoopCache[int] = LoopCache(ttl=30)
    loops: list[int] = []

    async def look_up() -> int:
        loops.append(id(asyncio.get_running_loop()))
        return len(loops)

    assert asyncio.run(cache.get("k", look_up)) == 1
    assert asyncio.run(cache.get("k", look_up)) == 2


async def test_waiters_are_released_a_batch_per_loop_iteration():
    """A thousand callers must not all resume in the one loop iteration in which the lookup completes."""
    from airflow_provider_wan.hooks.lookup import RELEASE_BATCH

    cache: LoopCache[str] = LoopCache(ttl=30)
    release = asyncio.Event()
    resumed_at: list[int] = []
    iteration = 0

    async def look_up() -> str:
        await release.wait()
        return "credentials"

    async def caller() -> None:
        await cache.get("k", look_up)
        resumed_at.append(iteration)

    async def count_iterations() -> None:
        nonlocal iteration
        while len(resumed_at) < 1000:
            iteration += 1
            await asyncio.sleep(0)

    callers = [asyncio.ensure_future(caller()) for _ in range(1000)]
    await asyncio.sleep(0)
    release.set()
    await asyncio.gather(count_iterations(), *callers)
    per_iteration = max(resumed_at.count(i) for i in set(resumed_at))
    assert per_iteration <= RELEASE_BATCH
    # once the value is there, a caller gets it without waiting in line
    assert await cache.get("k", look_up) == "credentials"


@pytest.fixture
def probe_module(tmp_path, monkeypatch):
    """A module whose import waits for the event loop to run a callback: only an import off the loop sees that."""
    from airflow_provider_wan.hooks import lookup

    name = "_wan_import_probe"
    channel = types.SimpleNamespace(loop_ran=threading.Event(), fail=False, imports=[])
    monkeypatch.setitem(sys.modules, "_wan_import_probe_channel", channel)
    (tmp_path / f"{name}.py").write_text(
        "import threading\n"
        "import _wan_import_probe_channel as channel\n"
        "channel.imports.append((threading.get_ident(), channel.loop_ran.wait(10)))\n"
        "if channel.fail:\n"
        "    raise LookupError('probe failed to import')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name, channel
    sys.modules.pop(name, None)
    lookup._imported.pop(name, None)


async def test_a_module_is_imported_in_a_worker_thread_while_the_loop_runs(probe_module):
    name, channel = probe_module
    asyncio.get_running_loop().call_later(0.01, channel.loop_ran.set)  # runs only if the loop is not held
    modules = await asyncio.gather(*(import_off_loop(name) for _ in range(100)))
    assert all(module is sys.modules[name] for module in modules)
    [(thread, saw_the_loop_run)] = channel.imports  # one import for the hundred callers
    assert thread != threading.get_ident()
    assert saw_the_loop_run
    assert await import_off_loop(name) is sys.modules[name]


async def test_a_failed_import_reaches_every_waiter_and_is_tried_again(probe_module):
    name, channel = probe_module
    channel.loop_ran.set()
    channel.fail = True
    results = await asyncio.gather(*(import_off_loop(name) for _ in range(3)), return_exceptions=True)
    assert [type(r) for r in results] == [LookupError] * 3
    channel.fail = False
    assert await import_off_loop(name) is sys.modules[name]
    assert len(channel.imports) == 2
