"""Resolving an image's config: the :class:`ImageConfigResolver` protocol and helpers on top.

Anything that can fetch an image's config blob (the client-side registry reader
:class:`~llblib_async.registry.RegistryResolver`, a BuildKit gateway...) is an
:class:`ImageConfigResolver`; :func:`resolve_image_config` turns its answer into a
:class:`ResolvedImageConfig` (the decoded :class:`~.image_config.ImageConfig`, the raw
bytes, the pinning digest) and :class:`CachingResolver` asks each reference only once.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from .image_config import ImageConfig
from .platform import Platform
from .reference import normalize_image_ref

__all__ = ["CachingResolver", "ImageConfigResolver", "ResolvedImageConfig", "resolve_image_config"]


@runtime_checkable
class ImageConfigResolver(Protocol):
    """Anything that can fetch an image's config blob: a registry client, a BuildKit gateway…

    ``resolve`` gets the normalised reference (``docker.io/library/alpine:3.20``)
    and the wanted platform (``None``: the resolver's default, usually the
    host's) and returns ``(digest, config_json_bytes)``.  ``digest`` is that of
    what the reference names — the index of a multi-platform image, as BuildKit's
    resolvers report it — so ``name@digest`` pins the image for every platform.
    """

    async def resolve(self, ref: str, platform: Platform | None) -> tuple[str, bytes]:
        """Fetch the config of ``ref`` for ``platform``."""
        ...


@dataclass(frozen=True, slots=True)
class ResolvedImageConfig:
    """What :func:`resolve_image_config` returns.

    ``ref`` is the normalised reference that was asked for, ``digest`` the
    digest the resolver found for it, ``raw`` the config blob exactly as
    stored, ``config`` its :meth:`adopted <ImageConfig.adopted>` decoding.
    """

    ref: str
    digest: str
    raw: bytes
    config: ImageConfig

    @property
    def pinned_ref(self) -> str:
        """``ref`` pinned to :attr:`digest` (``name:tag@sha256:…``; unchanged if already digested)."""
        if "@" in self.ref or not self.digest:
            return self.ref
        return f"{self.ref}@{self.digest}"


async def resolve_image_config(
    ref: str,
    resolver: ImageConfigResolver,
    *,
    platform: Platform | str | None = None,
) -> ResolvedImageConfig:
    """Fetch and decode the config of image ``ref`` (normalised like ``llb.image`` does).

    Raises :class:`~llblib_async.llb.InvalidReferenceError` for a bad ref,
    :class:`ImageConfigError` if the blob is not a valid config, and whatever
    the resolver raises when it cannot fetch it.
    """
    normalized = normalize_image_ref(ref)
    plat = Platform.parse(platform) if isinstance(platform, str) else platform
    digest, raw = await resolver.resolve(normalized, plat)
    return ResolvedImageConfig(
        ref=normalized, digest=digest, raw=raw, config=ImageConfig.from_json(raw).adopted()
    )


class CachingResolver:
    """Wraps an :class:`ImageConfigResolver`; each (ref, platform) is fetched once, concurrently shared.

    Concurrent callers for the same key wait for one fetch instead of starting
    their own and share its outcome.  Only successes are kept (llblib caches
    failures forever, including the cancellation of the first caller): a later
    call after a failure fetches again, and if the caller doing the fetch is
    cancelled, a waiting caller takes over instead of inheriting the
    cancellation.
    """

    def __init__(self, inner: ImageConfigResolver) -> None:
        self._inner = inner
        self._done: dict[tuple[str, Platform | None], tuple[str, bytes]] = {}
        self._running: dict[tuple[str, Platform | None], asyncio.Future[tuple[str, bytes]]] = {}

    async def resolve(self, ref: str, platform: Platform | None) -> tuple[str, bytes]:
        """The inner resolver's answer for (``ref``, ``platform``), fetched at most once on success."""
        key = (ref, platform)
        while True:
            done = self._done.get(key)
            if done is not None:
                return done
            running = self._running.get(key)
            if running is None:
                break
            try:
                # shield: a waiter being cancelled must not cancel the fetcher's future.
                return await asyncio.shield(running)
            except asyncio.CancelledError:
                if not running.cancelled():
                    raise  # this waiter itself was cancelled
                # The fetching caller was cancelled: its outcome says nothing about the image,
                # so fetch again (the loop makes one waiter the new fetcher, the others wait).
        future: asyncio.Future[tuple[str, bytes]] = asyncio.get_running_loop().create_future()
        self._running[key] = future
        try:
            result = await self._inner.resolve(ref, platform)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as err:
            future.set_exception(err)
            # Waiters see the error; retrieving it here keeps asyncio from warning when there are none.
            future.exception()
            raise
        else:
            self._done[key] = result
            future.set_result(result)
            return result
        finally:
            if self._running.get(key) is future:
                del self._running[key]

    def forget(self, ref: str | None = None) -> None:
        """Drop cached answers (all, or those for ``ref``), e.g. after pushing a new image to a tag."""
        if ref is None:
            self._done.clear()
        else:
            for key in [k for k in self._done if k[0] == ref]:
                del self._done[key]
