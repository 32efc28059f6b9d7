"""Lazy States, resolved by a coroutine at marshal time: ``llb.lazy`` (Go's ``State.Async``).

Some graphs cannot be built before talking to something: pinning an image tag
to the digest the registry serves now, a frontend's result, anything read
through a session.  ``llb.lazy(fn)`` returns a State at once; ``fn`` runs when
the graph is marshaled with :func:`marshal_async` and returns the State the lazy
one stands for.  Ops built on the lazy State refer to the op of that result
directly, so the Definition is the one Go would produce.

::

    async def pinned(ctx: llb.LazyContext) -> llb.State:
        digest = await registry.resolve("alpine:3.20", platform=ctx.platform)
        return llb.image("alpine:3.20", digest=digest)

    st = llb.lazy(pinned).mkdir("/work")      # builds immediately
    definition = await llb.marshal_async(st)  # runs pinned() once, then marshals

Rules (Go's, except where noted):

* marshaling stays sync and sans-IO: :func:`~llblib_async.llb.marshal` raises
  :class:`UnresolvedLazyStateError` while a lazy State in the graph is not
  resolved for its platform; :func:`marshal_async` first resolves every lazy
  State in the graph — concurrently, including lazy States inside results —
  then marshals;
* each lazy State runs ``fn`` at most once per marshal platform -- and per session
  when a session's request pipeline marshals it (:func:`~.marshal.marshal_scope`;
  frontend results name the session's directories) -- (Go: once per State, whatever
  the platform), single-flight across concurrent marshals; the
  result is memoised, and so is a failure (Go's ``CacheError``), except
  cancellation: a cancelled run is retried by the next marshal;
* only the result's *graph* is used by ops built on the lazy State.  Settings
  such as the working dir or platform of the lazy State are its own (Python
  States apply settings when an op is built, Go's when it is marshaled); to
  work with the result's settings, ``await llb.resolve_lazy(state)`` and build
  on what it returns.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, TypeAlias

from ..errors import BuildKitError
from .marshal import Definition, _context, marshal
from .platform import Platform
from .state import State
from .vertex import MarshalContext, OpMetadata, Output, Vertex

__all__ = [
    "LazyContext",
    "LazyFn",
    "LazyVertex",
    "UnresolvedLazyStateError",
    "lazy",
    "marshal_async",
    "resolve_lazy",
]


class UnresolvedLazyStateError(BuildKitError, RuntimeError):
    """A lazy State was marshaled before it was resolved (use ``await llb.marshal_async(...)``),
    or its coroutine failed."""


@dataclass(frozen=True, slots=True)
class LazyContext:
    """What a lazy State's coroutine is told about the marshal it runs for.

    ``platform`` is the marshal's default platform (Go passes the marshal
    constraints, whose platform image resolution uses when none was given).
    """

    platform: Platform


LazyFn: TypeAlias = Callable[[LazyContext], Awaitable[State]]
"""The coroutine function behind a lazy State."""


class _Flight:
    """One running resolution and the number of callers awaiting it."""

    __slots__ = ("task", "waiters")

    def __init__(self, task: asyncio.Task[State]) -> None:
        self.task = task
        self.waiters = 0


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class LazyVertex(Vertex):
    """The graph node of a lazy State: stands for the output of the State ``fn`` returns.

    Results (or failures) are memoised per marshal-context key; the mutable
    dicts are caches of what ``fn`` returned, the vertex itself is immutable.
    """

    _indirect: ClassVar[bool] = True
    # Go memoises failures (CacheError); frontend States retry instead.
    _memoise_failures: ClassVar[bool] = True

    fn: LazyFn
    label: str
    _results: dict[str, State | Exception] = field(default_factory=dict, init=False, repr=False)
    _flights: dict[str, _Flight] = field(default_factory=dict, init=False, repr=False)

    def _inputs(self) -> tuple[Output, ...]:
        raise TypeError(f"{self!r} is lazy: follow it with vertex.follow() instead of reading its inputs")

    def _encode(self, ctx: MarshalContext) -> tuple[bytes, OpMetadata]:
        raise TypeError(f"{self!r} is lazy and has no op of its own")

    def _follow(self, output: Output, ctx: MarshalContext) -> Output | None:
        result = self._results.get(ctx.key)
        if result is None:
            raise UnresolvedLazyStateError(
                f"{self!r} is not resolved for platform {ctx.platform}: "
                "marshal with `await llb.marshal_async(state)` (or solve it with a client)"
            )
        if isinstance(result, Exception):
            raise UnresolvedLazyStateError(f"{self!r} failed to resolve: {result}") from result
        return result.output

    def result(self, ctx: MarshalContext) -> State | Exception | None:
        """The memoised result for ``ctx`` (``None``: not resolved yet)."""
        return self._results.get(ctx.key)

    async def resolve(self, ctx: MarshalContext) -> State:
        """Run ``fn`` for ``ctx`` once (single-flight), memoise and return its State; re-raise a failure."""
        key = ctx.key
        done = self._results.get(key)
        if done is not None:
            if isinstance(done, Exception):
                raise done
            return done
        loop = asyncio.get_running_loop()
        flight = self._flights.get(key)
        if flight is None or flight.task.get_loop() is not loop or flight.task.cancelling():
            flight = _Flight(loop.create_task(self._run(ctx), name=f"llb.lazy {self.label}"))
            self._flights[key] = flight
        flight.waiters += 1
        try:
            # shield: one caller being cancelled must not cancel the run the others wait for.
            return await asyncio.shield(flight.task)
        finally:
            flight.waiters -= 1
            if flight.waiters == 0 and not flight.task.done():
                # Nobody waits any more (every caller was cancelled): stop the work, like Go's
                # flightcontrol cancels a call whose callers all went away.
                flight.task.cancel()
            if self._flights.get(key) is flight and (flight.task.done() or flight.waiters == 0):
                del self._flights[key]

    async def _run(self, ctx: MarshalContext) -> State:
        try:
            state = await self._produce(ctx)
            if not isinstance(state, State):
                raise TypeError(f"{self!r}: the coroutine returned {type(state).__name__}, not an llb.State")
            if state.output is not None and state.output.vertex is self:
                raise ValueError(f"{self!r}: the coroutine returned the lazy State itself")
        except Exception as exc:
            # Failures are memoised like Go's async states (CacheError); cancellation is not an Exception.
            if self._memoise_failures:
                self._results[ctx.key] = exc
            raise
        self._results[ctx.key] = state
        return state

    async def _produce(self, ctx: MarshalContext) -> State:
        """The State this vertex stands for in ``ctx`` (subclasses compute it otherwise)."""
        return await self.fn(LazyContext(platform=ctx.platform))

    def __repr__(self) -> str:
        return f"<LazyVertex {self.label}>"


def lazy(fn: LazyFn, *, label: str | None = None) -> State:
    """A State produced by ``await fn(ctx)`` when the graph is marshaled (Go's ``State.Async``).

    ``fn`` takes a :class:`LazyContext` and returns a :class:`State`.  The lazy
    State can be used like any other — ops built on it, copied from, marshaled
    with :func:`marshal_async` — and has default settings (working dir ``/``, no
    platform).  ``label`` names it in errors (default: ``fn``'s qualified name).
    """
    if not callable(fn):
        raise TypeError("lazy() needs a coroutine function taking an llb.LazyContext")
    name = label or getattr(fn, "__qualname__", None) or repr(fn)
    return State(output=Output(LazyVertex(fn=fn, label=name), 0))


def _pending(roots: Sequence[Output], ctx: MarshalContext) -> list[LazyVertex]:
    """The lazy vertices reachable from ``roots`` that have no result for ``ctx`` yet."""
    key = ctx.key
    seen: set[Vertex] = set()
    pending: list[LazyVertex] = []
    stack = [o.vertex for o in roots]
    while stack:
        vertex = stack.pop()
        if vertex in seen:
            continue
        seen.add(vertex)
        if key in vertex._memo:
            continue  # marshaled in this context already, so everything below it is resolved
        if isinstance(vertex, LazyVertex):
            result = vertex.result(ctx)
            if result is None or isinstance(result, Exception):
                pending.append(vertex)  # resolve() re-raises a memoised failure
            elif result.output is not None:
                stack.append(result.output.vertex)
            continue
        stack.extend(o.vertex for o in vertex._inputs())
    return pending


async def _resolve_deep(vertex: LazyVertex, ctx: MarshalContext) -> None:
    state = await vertex.resolve(ctx)
    if state.output is not None:
        await _resolve_graph([state.output], ctx)


async def _resolve_graph(roots: Sequence[Output], ctx: MarshalContext) -> None:
    """Resolve every lazy vertex reachable from ``roots`` (and inside their results), concurrently.

    The first failure is raised as it is (not wrapped in an exception group) and
    the other resolutions still running for this call are cancelled.
    """
    pending = _pending(roots, ctx)
    if not pending:
        return
    if len(pending) == 1:
        await _resolve_deep(pending[0], ctx)
        return
    tasks = [asyncio.ensure_future(_resolve_deep(v, ctx)) for v in pending]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                await task  # re-raises the first failure with its traceback
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def marshal_async(state: State, *, platform: Platform | str | None = None) -> Definition:
    """Resolve the lazy States in ``state``'s graph, then :func:`~llblib_async.llb.marshal` it.

    Lazy States run concurrently, each at most once per platform (results are
    memoised on the lazy State).  A failing coroutine's exception propagates
    unchanged.  Without lazy States this is just ``marshal``.
    """
    ctx = _context(platform)
    if state.output is not None:
        await _resolve_graph([state.output], ctx)
    return marshal(state, platform=ctx.platform)


async def resolve_lazy(state: State, *, platform: Platform | str | None = None) -> State:
    """The State a lazy ``state`` stands for (``state`` itself if it is not lazy).

    Follows lazy results that are lazy again.  Use it to read the resolved
    State's settings (working dir, platform…) or to build on them; the graph
    below the result may still contain lazy States, which
    :func:`marshal_async` resolves.
    """
    ctx = _context(platform)
    seen: set[Vertex] = set()
    while state.output is not None and isinstance(state.output.vertex, LazyVertex):
        vertex = state.output.vertex
        if vertex in seen:
            raise ValueError(f"{vertex!r}: lazy States that resolve to each other in a cycle")
        seen.add(vertex)
        state = await vertex.resolve(ctx)
    return state
