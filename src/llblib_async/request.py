"""A build request: what to build, where its result goes, what to do with it first."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from . import llb
from ._gateway import FileStat, Result
from .exporters import CacheExport, CacheImport, Export

__all__ = ["FileStat", "Request", "Result", "ResultHandler"]

#: ``async def handler(result: Result) -> None``: called after the gateway solve and
#: before the result is returned to the daemon (so before any export).
ResultHandler = Callable[[Result], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Request:
    """One build for :meth:`Session.do <llblib_async.Session.do>` (an immutable value).

    Exactly one of ``state`` and ``definition`` is given. ``label`` prefixes its
    progress (``StatusUpdate.request``); ``exports`` run after ``result_handlers``
    (called in order with the :class:`Result`; an exception aborts the request and is
    raised by ``do`` unchanged); ``entitlements`` (``network.host``,
    ``security.insecure``) must be allowed by the daemon; ``frontend_attrs`` are passed
    in the ``SolveRequest``; ``cache_exports``/``cache_imports`` export the build cache
    after the build and import cache for its solve (registry, local directory, inline).
    """

    state: llb.State | None = None
    definition: llb.Definition | None = None
    label: str = ""
    exports: tuple[Export, ...] = ()
    result_handlers: tuple[ResultHandler, ...] = ()
    entitlements: tuple[str, ...] = ()
    frontend_attrs: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    evaluate: bool = False
    cache_exports: tuple[CacheExport, ...] = ()
    cache_imports: tuple[CacheImport, ...] = ()

    def __post_init__(self) -> None:
        if (self.state is None) == (self.definition is None):
            raise TypeError("Request needs exactly one of state= and definition=")
        object.__setattr__(self, "exports", tuple(self.exports))
        object.__setattr__(self, "result_handlers", tuple(self.result_handlers))
        object.__setattr__(self, "entitlements", tuple(self.entitlements))
        object.__setattr__(self, "frontend_attrs", MappingProxyType(dict(self.frontend_attrs)))
        object.__setattr__(self, "cache_exports", tuple(self.cache_exports))
        object.__setattr__(self, "cache_imports", tuple(self.cache_imports))

    @classmethod
    def of(
        cls,
        target: llb.State | llb.Definition,
        *,
        label: str = "",
        exports: Iterable[Export] = (),
        on_result: ResultHandler | Iterable[ResultHandler] = (),
        entitlements: Iterable[str] = (),
        frontend_attrs: Mapping[str, str] | None = None,
        evaluate: bool = False,
        cache_exports: Iterable[CacheExport] = (),
        cache_imports: Iterable[CacheImport] = (),
    ) -> Request:
        """A request for a State or a Definition (``on_result``: one handler or several)."""
        handlers = (on_result,) if callable(on_result) else tuple(on_result)
        return cls(
            state=target if isinstance(target, llb.State) else None,
            definition=target if isinstance(target, llb.Definition) else None,
            label=label,
            exports=tuple(exports),
            result_handlers=handlers,
            entitlements=tuple(entitlements),
            frontend_attrs=MappingProxyType(dict(frontend_attrs or {})),
            evaluate=evaluate,
            cache_exports=tuple(cache_exports),
            cache_imports=tuple(cache_imports),
        )

    async def marshal(self) -> llb.Definition:
        """The request's Definition (marshalling the State, resolving lazy parts, now)."""
        if self.definition is not None:
            return self.definition
        assert self.state is not None
        return await llb.marshal_async(self.state)
