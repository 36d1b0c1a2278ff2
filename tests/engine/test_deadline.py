"""A deadline that keeps cancellations: what lets a coordinator close its links after a run (CI hang, 2026-11-30)."""

from __future__ import annotations

import asyncio
import sys

import pytest

from engine.deadline import within


async def _cancel_as_the_answer_arrives(wait) -> str:
    answer = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(wait(answer, 10.0))
    await asyncio.sleep(0)  # the task now waits for the answer
    answer.set_result("answer")
    task.cancel()  # same loop turn: a closing channel cancels its reader just as a frame comes in
    try:
        return await task
    except asyncio.CancelledError:
        return "cancelled"


@pytest.mark.skipif(sys.version_info < (3, 11), reason="Python 3.10 has no asyncio.timeout; within() is wait_for there")
async def test_a_cancellation_that_meets_the_answer_is_kept():
    assert await _cancel_as_the_answer_arrives(within) == "cancelled"


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="wait_for keeps the cancellation since Python 3.12")
async def test_wait_for_loses_it_which_is_why_within_exists():
    assert await _cancel_as_the_answer_arrives(asyncio.wait_for) == "answer"


async def test_the_deadline_still_expires():
    started = asyncio.get_running_loop().time()
    with pytest.raises(asyncio.TimeoutError):
        await within(asyncio.sleep(10), 0.05)
    assert asyncio.get_running_loop().time() - started < 5
    assert await within(asyncio.sleep(0, "done"), None) == "done"
