"""The terminal claim: one owner at a time, displays suspended and resumed around it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import pytest

from llblib_async.terminal import add_terminal_suspender, claim_terminal, terminal_claimed


def _display_recording(events: list[str]) -> Callable[[], AbstractAsyncContextManager[None]]:
    """A display's suspender that records when it is paused and resumed."""

    @asynccontextmanager
    async def display() -> AsyncIterator[None]:
        events.append("pause")
        try:
            yield
        finally:
            events.append("resume")

    return display


async def test_claims_are_exclusive_and_suspenders_wrap_each() -> None:
    events: list[str] = []
    remove = add_terminal_suspender(_display_recording(events))
    try:
        first_in = asyncio.Event()
        release = asyncio.Event()

        async def first() -> None:
            async with claim_terminal():
                events.append("first")
                first_in.set()
                await release.wait()

        async def second() -> None:
            await first_in.wait()
            async with claim_terminal():
                events.append("second")

        t1 = asyncio.create_task(first())
        t2 = asyncio.create_task(second())
        await first_in.wait()
        assert terminal_claimed()
        release.set()
        await asyncio.gather(t1, t2)
    finally:
        remove()
    assert events == ["pause", "first", "resume", "pause", "second", "resume"]
    assert not terminal_claimed()


async def test_suspenders_resume_when_the_body_raises() -> None:
    events: list[str] = []
    remove = add_terminal_suspender(_display_recording(events))
    try:
        with pytest.raises(RuntimeError, match="boom"):
            async with claim_terminal():
                raise RuntimeError("boom")
    finally:
        remove()
    assert events == ["pause", "resume"]
    remove()  # removing twice is harmless
