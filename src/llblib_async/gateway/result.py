"""What a request's gateway solve gives its result handlers: :class:`Result`."""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol

from .._pb.moby.buildkit.v1 import frontend as gw
from .container import Container
from .filestat import FileStat
from .options import ContainerOptions

__all__ = ["RefReader", "Result"]


class RefReader(Protocol):
    """Reads files of a build's result refs (:class:`~.bridge.Bridge` does, over ``LLBBridge``)."""

    async def read_file(
        self, ref: str, path: str, *, offset: int = 0, length: int | None = None
    ) -> bytes: ...

    async def read_dir(self, ref: str, path: str, *, include_pattern: str = "") -> list[FileStat]: ...

    async def stat_file(self, ref: str, path: str) -> FileStat: ...

    def open_container(
        self, options: ContainerOptions, *, root_ref: str | None = None
    ) -> AbstractAsyncContextManager[Container]: ...


@dataclass(frozen=True, slots=True)
class Result:
    """The result of a request's gateway solve, handed to result handlers before export.

    ``ref`` is the result's reference id (``None`` for an empty result, e.g. a solve
    of scratch); ``refs`` holds per-platform refs of multi-platform results;
    ``metadata`` the result metadata. ``read_file``/``read_dir``/``stat`` read from
    ``ref`` (or ``refs[platform]``); reading forces the (lazy) solve, so a failing
    build raises :class:`~llblib_async.errors.SolveError` here. :meth:`container`
    opens a container on the result.
    """

    ref: str | None
    refs: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    metadata: Mapping[str, bytes] = field(default_factory=lambda: MappingProxyType({}))
    _reader: RefReader | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_pb(cls, result: gw.Result, reader: RefReader) -> Result:
        """The result of a running build, reading its files through ``reader``."""
        refs = {k: v.id for k, v in result.refs.refs.items()} if result.refs is not None else {}
        return cls(
            ref=result.ref.id if result.ref is not None and result.ref.id else None,
            refs=MappingProxyType(refs),
            metadata=MappingProxyType(dict(result.metadata)),
            _reader=reader,
        )

    def _target(self, platform: str | None) -> tuple[RefReader, str]:
        if self._reader is None:
            raise RuntimeError("this Result is not bound to a running build")
        if platform is not None:
            try:
                return self._reader, self.refs[platform]
            except KeyError:
                raise LookupError(f"no result for platform {platform!r} (have {sorted(self.refs)})") from None
        if self.ref is None:
            raise LookupError("the result has no single ref (empty or multi-platform: pass platform=)")
        return self._reader, self.ref

    async def read_file(
        self, path: str, *, offset: int = 0, length: int | None = None, platform: str | None = None
    ) -> bytes:
        reader, ref = self._target(platform)
        return await reader.read_file(ref, path, offset=offset, length=length)

    async def read_dir(
        self, path: str, *, include_pattern: str = "", platform: str | None = None
    ) -> list[FileStat]:
        reader, ref = self._target(platform)
        return await reader.read_dir(ref, path, include_pattern=include_pattern)

    async def stat(self, path: str, *, platform: str | None = None) -> FileStat:
        reader, ref = self._target(platform)
        return await reader.stat_file(ref, path)

    def container(
        self,
        options: ContainerOptions | None = None,
        *,
        platform: str | None = None,
        **container_options: Any,
    ) -> AbstractAsyncContextManager[Container]:
        """A container whose root filesystem is this result: ``async with result.container() as ctr``.

        The keywords are :class:`~llblib_async.ContainerOptions` (``mounts`` of other
        States, ``env``, ``cwd``, ``network``...; or pass ``options``); run processes
        with ``await ctr.run(args, ...)`` / ``ctr.start(...)``; leaving the block
        releases the container.
        """
        if options is None:
            options = ContainerOptions(**container_options)
        elif container_options:
            raise TypeError("pass either options or container keywords, not both")
        reader, ref = self._target(platform)
        return reader.open_container(options, root_ref=ref)
