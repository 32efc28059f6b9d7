"""Where a build's result goes: exporters as immutable values.

Each exporter names a BuildKit exporter (``type``, ``attrs``) and, for those that send
their output back to the client, the local destination (``session_target()``, a
:data:`~llblib_async.attachables.filesend.Target` the session's FileSend service
writes to):

* filesystems: :class:`LocalExport` (directory), :class:`TarExport` (tar file);
* images: :class:`ImageExport` (daemon store / registry push; credentials from
  :class:`~llblib_async.DockerAuthProvider`), :class:`DockerExport` and
  :class:`OCIExport` (tarballs to a file or a stream), :class:`OCILayoutExport` (an OCI
  layout directory, through the session content store), :class:`MobyExport` (the
  Docker daemon's image store). They carry the image config as the exporter attr
  ``containerimage.config``; a request takes it from the State when unset.

Cache backends are values too, in :mod:`llblib_async.cache`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import ClassVar, Literal

from .attachables.filesend import DirectoryTarget, FileTarget, StreamTarget, Target
from .llb.image_config import EXPORTER_IMAGE_CONFIG_KEY, ImageConfig

__all__ = [
    "COMPRESSIONS",
    "MOBY_GRAPHDRIVER_EXPORTERS",
    "Compression",
    "DockerExport",
    "Export",
    "ImageExport",
    "LocalExport",
    "MobyExport",
    "OCIExport",
    "OCILayoutExport",
    "TarExport",
]


@dataclass(frozen=True, slots=True)
class _ClientExport:
    """An exporter whose output is sent back through the session to ``dest``."""

    dest: Path
    attrs: Mapping[str, str] = field(default_factory=dict)

    type: ClassVar[str]

    def __post_init__(self) -> None:
        object.__setattr__(self, "dest", Path(self.dest))
        object.__setattr__(self, "attrs", MappingProxyType(dict(self.attrs)))

    def session_target(self) -> Target | None:
        """How the session's FileSend receiver stores this exporter's output (None: not sent back)."""
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class LocalExport(_ClientExport):
    """Write the result's filesystem into the directory ``dest`` (created if missing)."""

    type: ClassVar[str] = "local"

    def session_target(self) -> Target:
        return DirectoryTarget(self.dest)


@dataclass(frozen=True, slots=True)
class TarExport(_ClientExport):
    """Write the result's filesystem as a tar archive to the file ``dest``."""

    type: ClassVar[str] = "tar"

    def session_target(self) -> Target:
        return FileTarget(self.dest)


# --------------------------------------------------------------------------- image exporters

Compression = Literal["uncompressed", "gzip", "zstd", "estargz"]
COMPRESSIONS = ("uncompressed", "gzip", "zstd", "estargz")


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _names(name: str | Sequence[str] | None) -> tuple[str, ...]:
    if name is None:
        return ()
    names = (name,) if isinstance(name, str) else tuple(name)
    for n in names:
        if not n or "," in n:
            raise ValueError(f"invalid image name {n!r}")
    return names


@dataclass(frozen=True, slots=True, kw_only=True)
class _ImageOptions:
    """Options shared by the ``image``, ``docker`` and ``oci`` exporters.

    ``annotations``: keys without an ``annotation`` prefix become ``annotation.<key>``
    (manifest annotations); keys such as ``annotation-index.<k>`` or
    ``annotation-manifest[linux/amd64].<k>`` are passed as they are.
    ``image_config``: the OCI image config (exporter attr ``containerimage.config``);
    when ``None``, a request sends the solved State's config.
    ``extra_attrs``: further exporter attributes, passed verbatim (they win).
    """

    compression: Compression | None = None
    compression_level: int | None = None
    force_compression: bool = False
    oci_mediatypes: bool | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)
    image_config: ImageConfig | bytes | None = None
    source_date_epoch: int | None = None
    extra_attrs: Mapping[str, str] = field(default_factory=dict)

    #: the exporter reads ``containerimage.config`` (a request fills it from the State if unset)
    accepts_image_config: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if self.compression is not None and self.compression not in COMPRESSIONS:
            raise ValueError(f"compression must be one of {COMPRESSIONS}, not {self.compression!r}")
        if self.compression_level is not None and self.compression is None:
            raise ValueError("compression_level needs compression")
        object.__setattr__(self, "annotations", MappingProxyType(dict(self.annotations)))
        object.__setattr__(self, "extra_attrs", MappingProxyType(dict(self.extra_attrs)))

    def _image_attrs(self) -> dict[str, str]:
        attrs: dict[str, str] = {}
        if self.compression is not None:
            attrs["compression"] = self.compression
        if self.compression_level is not None:
            attrs["compression-level"] = str(self.compression_level)
        if self.force_compression:
            attrs["force-compression"] = "true"
        if self.oci_mediatypes is not None:
            attrs["oci-mediatypes"] = _bool(self.oci_mediatypes)
        if self.source_date_epoch is not None:
            attrs["source-date-epoch"] = str(self.source_date_epoch)
        for key, value in self.annotations.items():
            attrs[key if key.startswith("annotation") else f"annotation.{key}"] = value
        if self.image_config is not None:
            config = self.image_config
            attrs[EXPORTER_IMAGE_CONFIG_KEY] = (
                config.to_json() if isinstance(config, ImageConfig) else config
            ).decode()
        return attrs


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageExport(_ImageOptions):
    """BuildKit's ``image`` exporter: store the image in the daemon, optionally push it.

    ``name``: one or more references (``registry/repo:tag``); :attr:`names` is the
    tuple.  ``push`` pushes them (credentials from a
    :class:`~llblib_async.auth.DockerAuthProvider` attachable); ``insecure`` allows
    plain-HTTP / self-signed registries; ``push_by_digest`` pushes without a tag.
    Nothing comes back to the client; the response has ``containerimage.digest``,
    ``containerimage.config.digest``, ``image.name``.
    """

    name: str | Sequence[str] = field(kw_only=False)
    push: bool = False
    push_by_digest: bool = False
    insecure: bool = False
    unpack: bool = False
    store: bool | None = None

    type: ClassVar[str] = "image"

    def __post_init__(self) -> None:
        _ImageOptions.__post_init__(self)
        names = _names(self.name)
        if not names:
            raise ValueError("ImageExport needs at least one image name")
        object.__setattr__(self, "name", names)

    @property
    def names(self) -> tuple[str, ...]:
        return _names(self.name)

    @property
    def attrs(self) -> Mapping[str, str]:
        attrs = {"name": ",".join(self.names)}
        if self.push:
            attrs["push"] = "true"
        if self.push_by_digest:
            attrs["push-by-digest"] = "true"
        if self.insecure:
            attrs["registry.insecure"] = "true"
        if self.unpack:
            attrs["unpack"] = "true"
        if self.store is not None:
            attrs["store"] = _bool(self.store)
        attrs.update(self._image_attrs())
        attrs.update(self.extra_attrs)
        return MappingProxyType(attrs)

    def session_target(self) -> None:
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class _TarballExport(_ImageOptions):
    """An image tarball streamed back to ``dest``: a file path or a :class:`StreamTarget`."""

    dest: Path | str | StreamTarget = field(kw_only=False)
    name: str | Sequence[str] | None = None

    type: ClassVar[str]

    def __post_init__(self) -> None:
        _ImageOptions.__post_init__(self)
        names = _names(self.name)
        object.__setattr__(self, "name", names or None)
        if not isinstance(self.dest, StreamTarget):
            object.__setattr__(self, "dest", Path(self.dest))

    @property
    def names(self) -> tuple[str, ...]:
        return _names(self.name)

    @property
    def attrs(self) -> Mapping[str, str]:
        attrs: dict[str, str] = {}
        if self.names:
            attrs["name"] = ",".join(self.names)
        attrs.update(self._image_attrs())
        attrs.update(self.extra_attrs)
        return MappingProxyType(attrs)

    def session_target(self) -> Target:
        if isinstance(self.dest, StreamTarget):
            return self.dest
        return FileTarget(Path(self.dest))


@dataclass(frozen=True, slots=True, kw_only=True)
class DockerExport(_TarballExport):
    """BuildKit's ``docker`` exporter: a ``docker load``-able tarball (``manifest.json``,
    ``RepoTags`` from ``name``) written to the file ``dest`` or streamed to a
    :class:`~llblib_async.attachables.filesend.StreamTarget`."""

    type: ClassVar[str] = "docker"


@dataclass(frozen=True, slots=True, kw_only=True)
class OCIExport(_TarballExport):
    """BuildKit's ``oci`` exporter: an OCI image layout tarball (``oci-layout``,
    ``index.json``, ``blobs/``) written to ``dest`` (file or stream)."""

    type: ClassVar[str] = "oci"


@dataclass(frozen=True, slots=True)
class MobyExport:
    """The Docker daemon's ``moby`` exporter: load the result into Docker's image store.

    Only for ``docker://`` connections.  ``image_config`` as for :class:`ImageExport`
    (``None``: the solved State's config). Docker 20.10's exporter ignores the exporter
    attr and reads the config only from the build result's metadata, where every request
    (a gateway build) puts it too; newer engines wrap BuildKit's ``image`` exporter,
    which reads both.
    """

    name: str | Sequence[str]
    image_config: ImageConfig | bytes | None = None
    extra_attrs: Mapping[str, str] = field(default_factory=dict)

    type: ClassVar[str] = "moby"
    accepts_image_config: ClassVar[bool] = True

    def __post_init__(self) -> None:
        names = _names(self.name)
        if not names:
            raise ValueError("MobyExport needs at least one image name")
        object.__setattr__(self, "name", names)
        object.__setattr__(self, "extra_attrs", MappingProxyType(dict(self.extra_attrs)))

    @property
    def names(self) -> tuple[str, ...]:
        return _names(self.name)

    @property
    def attrs(self) -> Mapping[str, str]:
        attrs = {"name": ",".join(self.names)}
        if self.image_config is not None:
            config = self.image_config
            attrs[EXPORTER_IMAGE_CONFIG_KEY] = (
                config.to_json() if isinstance(config, ImageConfig) else config
            ).decode()
        attrs.update(self.extra_attrs)
        return MappingProxyType(attrs)

    def session_target(self) -> None:
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class OCILayoutExport(_ImageOptions):
    """BuildKit's ``oci`` exporter with ``tar=false``: the image is written into the OCI
    layout *directory* ``dest`` (blobs through the session content store ``export``)
    and ``index.json`` gets its manifest, named by ``name`` (default tag ``latest``).
    One per solve.
    """

    dest: Path | str = field(kw_only=False)
    name: str | Sequence[str] | None = None

    type: ClassVar[str] = "oci"

    def __post_init__(self) -> None:
        _ImageOptions.__post_init__(self)
        object.__setattr__(self, "name", _names(self.name) or None)
        object.__setattr__(self, "dest", Path(self.dest))

    @property
    def names(self) -> tuple[str, ...]:
        return _names(self.name)

    @property
    def attrs(self) -> Mapping[str, str]:
        attrs = {"tar": "false"}
        if self.names:
            attrs["name"] = ",".join(self.names)
        attrs.update(self._image_attrs())
        attrs.update(self.extra_attrs)
        return MappingProxyType(attrs)

    def session_target(self) -> None:
        return None


Export = LocalExport | TarExport | ImageExport | DockerExport | OCIExport | OCILayoutExport | MobyExport

#: Exporters a graphdriver-mode Docker daemon (the classic default) offers (spec §8.2).
MOBY_GRAPHDRIVER_EXPORTERS = frozenset({"moby", "local", "tar"})
