"""Who owns the local terminal: interactive containers claim it, progress displays step aside.

An interactive container (a debug shell, ``tty=True``) needs the terminal to itself: raw
mode, every key to the process, nothing else drawing.  Progress displays that draw on the
terminal (the tty display, a plain printer on a terminal) register a *suspender*: an async
context manager factory that stops drawing on enter and resumes on exit.  A container
that takes the terminal does so with ``async with claim_terminal():``, which

* waits for any other claim to end first (two interactive containers never share the
  terminal; Go llblib's ``WithTTYLock`` / buildx's single debug shell), and
* enters every registered suspender, and leaves them (in reverse order) on every exit path.

The lock is per event loop, so independent loops (tests) never block each other.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager

__all__ = ["SuspenderFactory", "add_terminal_suspender", "claim_terminal", "terminal_claimed"]

SuspenderFactory = Callable[[], AbstractAsyncContextManager[object]]

_suspenders: list[SuspenderFactory] = []
_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = weakref.WeakKeyDictionary()


def add_terminal_suspender(factory: SuspenderFactory) -> Callable[[], None]:
    """Register a display's suspender; returns the function that unregisters it."""
    _suspenders.append(factory)

    def remove() -> None:
        if factory in _suspenders:
            _suspenders.remove(factory)

    return remove


def _lock() -> asyncio.Lock:
    loop = asyncio.get_running_loop()
    lock = _locks.get(loop)
    if lock is None:
        lock = _locks[loop] = asyncio.Lock()
    return lock


def terminal_claimed() -> bool:
    """Whether something on this event loop owns the terminal now."""
    return _lock().locked()


@asynccontextmanager
async def claim_terminal() -> AsyncIterator[None]:
    """Own the terminal for the body: one claim at a time, displays suspended meanwhile."""
    async with _lock(), AsyncExitStack() as stack:
        for factory in list(_suspenders):
            await stack.enter_async_context(factory())
        yield
