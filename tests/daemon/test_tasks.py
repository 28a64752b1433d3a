"""TaskSet: the background tasks of a daemon component (no processes, one event loop)."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from node.daemon.tasks import TaskSet


class _UserError(Exception):
    pass


def test_stop_cancels_main_loop_and_inflight_tasks() -> None:
    async def scenario() -> None:
        tasks = TaskSet("test")
        cancelled: list[str] = []

        async def forever(name: str) -> None:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                cancelled.append(name)
                raise

        main = tasks.start(forever("main"), "main")
        side = tasks.spawn(forever("side"))
        await asyncio.sleep(0)
        assert tasks.inflight == {side}
        await tasks.stop(timeout=1.0)
        assert main.cancelled() and side.cancelled()
        assert sorted(cancelled) == ["main", "side"]
        assert tasks.stopping and not tasks.inflight

    asyncio.run(scenario())


def test_finished_tasks_leave_the_inflight_set() -> None:
    async def scenario() -> None:
        tasks = TaskSet("test")
        done = tasks.spawn(asyncio.sleep(0))
        await done
        await asyncio.sleep(0)  # the done callback runs on the next loop iteration
        assert tasks.inflight == frozenset()

    asyncio.run(scenario())


def test_spawn_after_stop_starts_nothing() -> None:
    async def scenario() -> None:
        tasks = TaskSet("test")
        ran: list[int] = []

        async def work() -> None:
            ran.append(1)

        await tasks.stop()
        late = tasks.spawn(work())
        with pytest.raises(asyncio.CancelledError):
            await late
        assert ran == [] and not tasks.inflight
        with pytest.raises(RuntimeError, match="stopping"):
            tasks.start(work(), "main")

    asyncio.run(scenario())


def test_only_one_main_loop() -> None:
    async def scenario() -> None:
        tasks = TaskSet("test")
        tasks.start(asyncio.sleep(3600), "main")
        with pytest.raises(RuntimeError, match="already running"):
            tasks.start(asyncio.sleep(0), "second")
        await tasks.stop()

    asyncio.run(scenario())


def test_wake_cuts_a_nap_short_and_a_nap_times_out_without_one() -> None:
    async def scenario() -> None:
        tasks = TaskSet("test")
        t0 = time.monotonic()
        await tasks.nap(0.05)
        assert time.monotonic() - t0 >= 0.04  # nobody woke it: the whole timeout

        async def waker() -> None:
            await asyncio.sleep(0.01)
            tasks.wake()

        tasks.spawn(waker())
        t0 = time.monotonic()
        await tasks.nap(30.0)
        assert time.monotonic() - t0 < 10.0  # woken long before its timeout

    asyncio.run(scenario())


def test_a_wake_before_the_nap_is_forgotten() -> None:
    async def scenario() -> None:
        tasks = TaskSet("test")
        tasks.wake()
        t0 = time.monotonic()
        await tasks.nap(0.05)
        assert time.monotonic() - t0 >= 0.04

    asyncio.run(scenario())


def test_stop_wakes_a_napping_loop() -> None:
    async def scenario() -> None:
        tasks = TaskSet("test")
        rounds: list[int] = []

        async def loop() -> None:
            while not tasks.stopping:
                rounds.append(1)
                await tasks.nap(30.0)

        main = tasks.start(loop(), "main")
        await asyncio.sleep(0.01)
        await tasks.stop(timeout=5.0)
        assert main.done() and rounds

    asyncio.run(scenario())


def test_stop_does_not_wait_past_its_timeout() -> None:
    async def scenario() -> None:
        tasks = TaskSet("test")

        async def stubborn() -> None:
            # Ignores the first cancellation for a while (a slow cleanup).
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                await asyncio.sleep(0.5)
                raise

        task = tasks.spawn(stubborn())
        await asyncio.sleep(0)
        t0 = time.monotonic()
        await tasks.stop(timeout=0.05)
        assert time.monotonic() - t0 < 0.4
        assert not task.done()
        await asyncio.wait([task])  # let it end before the loop closes

    asyncio.run(scenario())


def test_crashes_are_logged_with_traceback_unless_brief(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        tasks = TaskSet("unit", brief=(_UserError,))

        async def boom(exc: Exception) -> None:
            raise exc

        for exc in (ValueError("bad value"), _UserError("user code raised")):
            task = tasks.spawn(boom(exc))
            await asyncio.wait([task])
            await asyncio.sleep(0)
        main = tasks.start(boom(KeyError("main broke")), "main")
        await asyncio.wait([main])
        await asyncio.sleep(0)
        await tasks.stop()

    caplog.set_level(logging.ERROR)
    asyncio.run(scenario())
    failed = [r for r in caplog.records if "unit task failed" in r.getMessage()]
    by_text = {r.getMessage(): r for r in failed}
    assert set(by_text) == {"unit task failed", "unit task failed: user code raised"}
    assert by_text["unit task failed: user code raised"].exc_info is None
    with_tb = [r for r in failed if r.exc_info is not None]
    assert sorted(str(r.exc_info[1]) for r in with_tb if r.exc_info) == [
        "'main broke'",
        "bad value",
    ]
