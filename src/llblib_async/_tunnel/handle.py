"""A running session as its users see it: :class:`SessionHandle`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import anyio

from ..errors import ConnectionLostError
from .health import HealthService
from .outbound import OutboundBuffer

__all__ = ["SessionHandle"]

T = TypeVar("T")


class SessionHandle:
    """A running session.

    ``closed`` is set once the session is over -- because we closed it or because the
    daemon side went away; in the latter case ``exception`` says why
    (:class:`~llblib_async.errors.ConnectionLostError`), so callers can fail builds
    that need the session instead of waiting (see :meth:`guard`).
    """

    def __init__(
        self,
        session_id: str,
        methods: Sequence[str],
        label: str,
        health: HealthService,
        outbound: OutboundBuffer,
    ) -> None:
        self.id = session_id
        self.methods: tuple[str, ...] = tuple(methods)
        self.label = label
        self.closed = anyio.Event()
        self._exception: BaseException | None = None
        self._health = health
        self._outbound = outbound
        #: what carries the session, set by the opener: ``"docker-hijack"`` (Docker's
        #: ``/session``) or ``"control-session"`` (``Control.Session``); ``""`` if not recorded
        self.transport = ""

    @property
    def exception(self) -> BaseException | None:
        """Why the session ended early (``None`` while running or after a clean close)."""
        return self._exception

    @property
    def health_checks(self) -> int:
        """How many health checks the daemon made (it polls every 5 s)."""
        return self._health.checks

    @property
    def max_buffered(self) -> int:
        """Most bytes ever queued for sending (bounded by the high-water mark + one write)."""
        return self._outbound.max_buffered

    @property
    def pauses(self) -> int:
        """How often backpressure paused the HTTP/2 protocol."""
        return self._outbound.pauses

    async def wait_closed(self) -> None:
        await self.closed.wait()

    async def wait_health_check(self) -> None:
        """Wait until the daemon's next health check has been answered (diagnostics)."""
        await self._health.wait_check()

    def _lost(self) -> ConnectionLostError:
        """A fresh error for one caller (the same object raised twice grows its traceback)."""
        exc = self._exception
        if isinstance(exc, ConnectionLostError):
            err = ConnectionLostError(exc.address, exc.reason)
            err.__cause__ = exc.__cause__
            return err
        err = ConnectionLostError(self.label, str(exc) if exc is not None else "session closed")
        err.__cause__ = exc
        return err

    def raise_if_closed(self) -> None:
        """Raise :class:`~llblib_async.errors.ConnectionLostError` if the session is over."""
        if self._exception is not None or self.closed.is_set():
            raise self._lost()

    async def guard(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Run ``fn()``; if the session dies first, cancel it and raise ConnectionLostError.

        If ``fn`` fails while the session is dead (a Solve failing with "no active
        session", say), the session's error is raised with ``fn``'s as its cause.
        """
        self.raise_if_closed()
        outcome: list[T] = []
        failure: list[Exception] = []
        async with anyio.create_task_group() as tg:

            async def watch() -> None:
                await self.closed.wait()
                tg.cancel_scope.cancel()

            tg.start_soon(watch)
            # fn's own exception is kept outside the task group, which would wrap it
            # in an ExceptionGroup.
            try:
                outcome.append(await fn())
            except Exception as e:
                failure.append(e)
            tg.cancel_scope.cancel()
        if failure:
            if self._exception is not None:
                raise self._lost() from failure[0]
            raise failure[0]
        if outcome:
            return outcome[0]
        raise self._lost()

    def record_failure(self, exc: BaseException) -> None:
        """Why the session ended early (the server calls this when the daemon side goes away)."""
        if self._exception is None and not self.closed.is_set():
            self._exception = exc
