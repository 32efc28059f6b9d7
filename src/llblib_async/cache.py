"""Where a build's cache comes from and goes to: :class:`CacheExport`, :class:`CacheImport`.

Immutable values naming a BuildKit cache backend (``type``) and its ``attrs``; they go
into ``SolveRequest.cache`` (``cache_exports=``/``cache_imports=`` of ``client.solve``
and ``Solver.build``). ``registry`` and ``inline`` caches are the daemon's business;
``local`` caches live in an OCI layout directory on the client, which the session's
content store serves while the request runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Literal

from ._pb.moby.buildkit import v1 as control
from .exporters import COMPRESSIONS, Compression

__all__ = ["CacheExport", "CacheImport"]


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _cache_attrs(
    *,
    mode: Literal["min", "max"] | None = None,
    image_manifest: bool | None = None,
    oci_mediatypes: bool | None = None,
    compression: Compression | None = None,
    ignore_error: bool = False,
    insecure: bool = False,
) -> dict[str, str]:
    attrs: dict[str, str] = {}
    if mode is not None:
        if mode not in ("min", "max"):
            raise ValueError(f"cache mode must be 'min' or 'max', not {mode!r}")
        attrs["mode"] = mode
    if image_manifest is not None:
        attrs["image-manifest"] = _bool(image_manifest)
    if oci_mediatypes is not None:
        attrs["oci-mediatypes"] = _bool(oci_mediatypes)
    if compression is not None:
        if compression not in COMPRESSIONS:
            raise ValueError(f"compression must be one of {COMPRESSIONS}, not {compression!r}")
        attrs["compression"] = compression
    if ignore_error:
        attrs["ignore-error"] = "true"
    if insecure:
        attrs["registry.insecure"] = "true"
    return attrs


@dataclass(frozen=True, slots=True)
class CacheExport:
    """Where a build exports its cache (``SolveRequest.cache.exports``).

    Build with :meth:`registry`, :meth:`local` or :meth:`inline` (or any
    ``type``/``attrs`` the daemon knows: ``gha``, ``s3``...).
    """

    type: str
    attrs: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "attrs", MappingProxyType(dict(self.attrs)))

    @classmethod
    def registry(
        cls,
        ref: str,
        *,
        mode: Literal["min", "max"] = "min",
        image_manifest: bool | None = None,
        oci_mediatypes: bool | None = None,
        compression: Compression | None = None,
        ignore_error: bool = False,
        insecure: bool = False,
    ) -> CacheExport:
        """Push the cache as a separate image ``ref``; ``mode="max"`` also exports
        intermediate steps' layers.  Push credentials come from the session's Auth."""
        attrs = {"ref": ref}
        attrs.update(
            _cache_attrs(
                mode=mode,
                image_manifest=image_manifest,
                oci_mediatypes=oci_mediatypes,
                compression=compression,
                ignore_error=ignore_error,
                insecure=insecure,
            )
        )
        return cls("registry", attrs)

    @classmethod
    def local(
        cls,
        dest: Path | str,
        *,
        mode: Literal["min", "max"] = "min",
        tag: str = "latest",
        oci_mediatypes: bool | None = None,
        compression: Compression | None = None,
        ignore_error: bool = False,
    ) -> CacheExport:
        """Write the cache into the OCI layout directory ``dest`` on the client (through
        the session content store); ``index.json`` names it ``tag``."""
        attrs = {"dest": str(Path(dest).absolute())}
        if tag != "latest":
            attrs["tag"] = tag
        attrs.update(
            _cache_attrs(
                mode=mode, oci_mediatypes=oci_mediatypes, compression=compression, ignore_error=ignore_error
            )
        )
        return cls("local", attrs)

    @classmethod
    def inline(cls) -> CacheExport:
        """Embed cache metadata in the exported image's config (import it with
        :meth:`CacheImport.registry` on the image's reference)."""
        return cls("inline")

    def to_pb(self) -> control.CacheOptionsEntry:
        """The ``CacheOptionsEntry`` of ``SolveRequest.cache``."""
        return control.CacheOptionsEntry(type=self.type, attrs=dict(self.attrs))


@dataclass(frozen=True, slots=True)
class CacheImport:
    """A cache source for a build (``SolveRequest.cache.imports``): :meth:`registry`, :meth:`local`."""

    type: str
    attrs: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "attrs", MappingProxyType(dict(self.attrs)))

    @classmethod
    def registry(cls, ref: str, *, insecure: bool = False) -> CacheImport:
        """Import cache from the cache image (or inline-cache image) ``ref``."""
        attrs = {"ref": ref}
        if insecure:
            attrs["registry.insecure"] = "true"
        return cls("registry", attrs)

    @classmethod
    def local(cls, src: Path | str, *, tag: str = "latest", digest: str | None = None) -> CacheImport:
        """Import cache from the OCI layout directory ``src`` written by
        :meth:`CacheExport.local` (the manifest named ``tag`` in its ``index.json``,
        unless ``digest`` is given)."""
        attrs = {"src": str(Path(src).absolute())}
        if tag != "latest":
            attrs["tag"] = tag
        if digest is not None:
            attrs["digest"] = digest
        return cls("local", attrs)

    def to_pb(self) -> control.CacheOptionsEntry:
        """The ``CacheOptionsEntry`` of ``SolveRequest.cache``."""
        return control.CacheOptionsEntry(type=self.type, attrs=dict(self.attrs))
