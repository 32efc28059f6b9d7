"""Source ops: where a filesystem comes from (``docker-image://``, ``local://``; later git, http…).

A source op is an identifier plus string attrs.  The caps each attr needs follow
Go's ``addCap`` calls in client/llb ``source.go`` so the daemon can refuse early
if it lacks a feature.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from . import _wire
from .platform import Platform
from .reference import normalize_image_ref
from .state import State
from .vertex import Constraints, MarshalContext, OpMetadata, Output, Vertex

__all__ = ["SourceOp", "image", "local"]

ResolveMode = Literal["default", "pull", "local"]

_LOCAL_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+", re.ASCII)


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class SourceOp(Vertex):
    """A source vertex: ``identifier`` + ``attrs``, the caps they need and an optional platform.

    ``platform`` is only meaningful for platform-specific sources (images);
    ``None`` there means "the marshal default platform".  ``local_dir`` is the
    host directory behind a ``local://`` source, for the solver to serve.
    """

    identifier: str
    attrs: tuple[tuple[str, str], ...]
    caps: frozenset[str]
    constraints: Constraints
    platform: Platform | None = None
    local_dir: Path | None = None

    def _inputs(self) -> tuple[Output, ...]:
        return ()

    def _encode(self, ctx: MarshalContext) -> tuple[bytes, OpMetadata]:
        platform_bytes = None
        if _platform_specific(self.identifier):
            p = self.platform if self.platform is not None else ctx.platform
            platform_bytes = _wire.encode_platform(
                os=p.os,
                architecture=p.architecture,
                variant=p.variant,
                os_version=p.os_version,
                os_features=p.os_features,
            )
        payload = _wire.str_field(1, self.identifier) + _wire.str_map(2, dict(self.attrs))
        data = _wire.encode_op(
            inputs=(), platform=platform_bytes, op_field=_wire.OP_SOURCE, op_payload=payload
        )
        return data, self.constraints.metadata(self.caps)

    def _local_dirs(self) -> Iterable[tuple[str, Path]]:
        if self.local_dir is not None:
            yield self.identifier.removeprefix("local://"), self.local_dir

    def __repr__(self) -> str:
        return f"<SourceOp {self.identifier}>"


def _platform_specific(identifier: str) -> bool:
    # Go's platformSpecificSource: only these sources carry Op.platform.
    return identifier.startswith(("docker-image://", "oci-layout://"))


def image(
    ref: str,
    *,
    platform: Platform | str | None = None,
    resolve_mode: ResolveMode | None = None,
    name: str | None = None,
    description: Mapping[str, str] | None = None,
    ignore_cache: bool = False,
) -> State:
    """A container image from a registry (Go's ``llb.Image``).

    ``ref`` is normalized like Docker does (``alpine`` →
    ``docker.io/library/alpine:latest``); an invalid ref raises
    :class:`~llblib_async.llb.InvalidReferenceError`.  ``platform`` (a
    :class:`Platform` or ``"linux/arm64"``) picks the image variant and becomes
    the State's platform; by default the marshal's default platform is used.
    ``resolve_mode`` ``"pull"`` always contacts the registry, ``"local"`` prefers
    the daemon's cached image.
    """
    normalized = normalize_image_ref(ref)
    plat = Platform.parse(platform) if isinstance(platform, str) else platform
    attrs: dict[str, str] = {}
    caps = {"source.image"}
    if resolve_mode is not None and resolve_mode != "default":
        if resolve_mode not in ("pull", "local"):
            raise ValueError(f"resolve_mode must be 'default', 'pull' or 'local', not {resolve_mode!r}")
        attrs["image.resolvemode"] = resolve_mode
        if resolve_mode == "pull":
            # Go requires the cap only for the security-relevant forced pull.
            caps.add("source.image.resolvemode")
    vertex = SourceOp(
        identifier="docker-image://" + normalized,
        attrs=tuple(sorted(attrs.items())),
        caps=frozenset(caps),
        constraints=Constraints.of(name=name, description=description, ignore_cache=ignore_cache),
        platform=plat,
    )
    return State(output=Output(vertex, 0), platform=plat)


def _go_json_strings(values: tuple[str, ...]) -> str:
    """``json.Marshal([]string)`` byte-for-byte: compact, UTF-8, HTML-safe escapes like Go."""
    out = json.dumps(list(values), ensure_ascii=False, separators=(",", ":"))
    # Go escapes these even inside strings; they cannot occur outside strings in a string list.
    return (
        out.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def default_local_name(path: Path) -> str:
    """The default ``local://`` name of host directory ``path`` (absolute).

    ``<basename>-<first 12 hex of sha256(path)>``: stable for a directory across
    runs, distinct for different directories with the same basename, readable in
    progress output, and limited to ``[A-Za-z0-9._-]`` because BuildKit sends the
    name back in a gRPC header when it asks for the files.
    """
    base = _LOCAL_NAME_UNSAFE.sub("_", path.name) or "root"
    return f"{base}-{hashlib.sha256(os.fsencode(path)).hexdigest()[:12]}"


def default_local_unique_id(path: Path) -> str:
    """The default ``local.unique`` attr for ``path``: sha256 of ``<hostname>:<path>``.

    Go uses a random ID per marshal; that keeps two clients' identical
    ``local://ctx`` vertices apart in the daemon but makes digests change on every
    marshal.  Hashing host and path keeps them apart too while staying stable.
    """
    return hashlib.sha256(socket.gethostname().encode() + b":" + os.fsencode(path)).hexdigest()


def local(
    path: str | os.PathLike[str],
    *,
    name: str | None = None,
    include: Iterable[str] = (),
    exclude: Iterable[str] = (),
    follow_paths: Iterable[str] = (),
    shared_key_hint: str | None = None,
    session_id: str | None = None,
    unique_id: str | None = None,
    differ: Literal["none", "metadata"] | None = None,
    differ_required: bool = False,
    custom_name: str | None = None,
    description: Mapping[str, str] | None = None,
    ignore_cache: bool = False,
) -> State:
    """A directory on the client host, sent to BuildKit by the solver (Go's ``llb.Local``).

    The State remembers the absolute host ``path``; ``marshal()`` lists it in
    ``Definition.locals`` under ``name`` (default: :func:`default_local_name`).
    ``include``/``exclude``/``follow_paths`` filter what is sent;
    ``shared_key_hint`` lets BuildKit reuse an earlier transfer of the same
    directory.  ``session_id`` pins the source to one session; without it the
    op gets ``local.unique`` = ``unique_id`` (default:
    :func:`default_local_unique_id`), as Go adds one.  ``custom_name`` is the
    progress name (``name`` is already the source name here).
    """
    host_dir = Path(os.path.abspath(os.fspath(path)))
    if name is None:
        name = default_local_name(host_dir)
    elif not name:
        raise ValueError("local name must not be empty")
    attrs: dict[str, str] = {}
    caps = {"source.local"}
    if session_id:
        attrs["local.session"] = session_id
        caps.add("source.local.sessionid")
    patterns = (
        ("local.includepattern", "source.local.includepatterns", include, "include"),
        ("local.followpaths", "source.local.followpaths", follow_paths, "follow_paths"),
        ("local.excludepatterns", "source.local.excludepatterns", exclude, "exclude"),
    )
    for attr, cap, values, what in patterns:
        if isinstance(values, str):
            raise TypeError(f"{what} must be an iterable of strings, not a str")
        items = tuple(values)
        if items:
            attrs[attr] = _go_json_strings(items)
            caps.add(cap)
    if shared_key_hint:
        attrs["local.sharedkeyhint"] = shared_key_hint
        caps.add("source.local.sharedkeyhint")
    if differ is not None:
        if differ not in ("none", "metadata"):
            raise ValueError(f"differ must be 'none' or 'metadata', not {differ!r}")
        attrs["local.differ"] = differ
        if differ_required:
            caps.add("source.local.differ")
    if not session_id:
        # Go sets this at marshal time when there is no session attr (source.go Marshal).
        attrs["local.unique"] = unique_id or default_local_unique_id(host_dir)
        caps.add("source.local.unique")
    vertex = SourceOp(
        identifier="local://" + name,
        attrs=tuple(sorted(attrs.items())),
        caps=frozenset(caps),
        constraints=Constraints.of(name=custom_name, description=description, ignore_cache=ignore_cache),
        local_dir=host_dir,
    )
    return State(output=Output(vertex, 0))
