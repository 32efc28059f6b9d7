"""Source ops: where a filesystem comes from — ``docker-image://`` and ``local://`` here;
``git://`` (:mod:`.git`), ``http(s)://`` (:mod:`.http`) and ``oci-layout://`` (:mod:`.oci`)
build on :class:`SourceOp` too.

A source op is an identifier plus string attrs.  The caps each attr needs follow
Go's ``addCap`` calls in client/llb ``source.go`` so the daemon can refuse early
if it lacks a feature.  Every source takes per-op ``constraints=`` (an
:class:`~llblib_async.llb.Constraints`) plus the ``name``/``description``/``ignore_cache``
shorthands.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeAlias

from .._fsutil.walk import FilterOptions, walk
from .._wire.protobuf import str_field, str_map
from ._encode import OP_SOURCE, encode_op, encode_platform
from .image_config import BaseImage, ImageConfig, go_json
from .platform import Platform
from .reference import InvalidReferenceError, normalize_image_ref
from .state import State
from .vertex import Constraints, MarshalContext, OpMetadata, Output, Vertex, op_constraints

__all__ = [
    "RecordType",
    "ResolveMode",
    "SourceOp",
    "blob_identifier",
    "check_digest",
    "check_positive",
    "file_attrs",
    "image",
    "image_blob",
    "local",
    "local_content_digest",
    "source_state",
]

ResolveMode: TypeAlias = Literal["default", "pull", "local"]
"""``default``: use the daemon's cache, pull when missing; ``pull``: always check the
registry; ``local``: prefer an image the daemon already has."""

RecordType: TypeAlias = Literal["regular", "internal", "frontend"]
"""How the daemon accounts the pulled image in disk usage (``buildctl du``)."""

_DIGEST_RE = re.compile(r"(?:sha256:[a-f0-9]{64}|sha384:[a-f0-9]{96}|sha512:[a-f0-9]{128})", re.ASCII)

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
            platform_bytes = encode_platform(
                os=p.os,
                architecture=p.architecture,
                variant=p.variant,
                os_version=p.os_version,
                os_features=p.os_features,
            )
        payload = str_field(1, self.identifier) + str_map(2, dict(self.attrs))
        data = encode_op(
            inputs=(),
            platform=platform_bytes,
            worker_filters=self.constraints.require,
            op_field=OP_SOURCE,
            op_payload=payload,
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


def check_digest(value: str, what: str) -> str:
    """``value`` if it is a valid content digest (``sha256:`` + 64 lowercase hex, or sha384/sha512).

    Go passes digests through and the daemon rejects bad ones when the build
    runs; checking them here reports the mistake where it was made.
    """
    if not isinstance(value, str) or not _DIGEST_RE.fullmatch(value):
        raise ValueError(f"{what} must be a digest like 'sha256:<64 hex digits>', not {value!r}")
    return value


def source_state(vertex: SourceOp, platform: Platform | None = None) -> State:
    """The State of a new source: its output, and (normalized, as Go's ``NewState``) its platform."""
    return State(output=Output(vertex, 0), platform=None if platform is None else platform.normalize())


def image(
    ref: str,
    *,
    platform: Platform | str | None = None,
    resolve_mode: ResolveMode | None = None,
    digest: str | None = None,
    checksum: str | None = None,
    layer_limit: int | None = None,
    record_type: RecordType | None = None,
    inherit_config: bool = True,
    name: str | None = None,
    description: Mapping[str, str] | None = None,
    ignore_cache: bool = False,
    constraints: Constraints | None = None,
) -> State:
    """A container image from a registry (Go's ``llb.Image``).

    ``ref`` is normalized like Docker does (``alpine`` →
    ``docker.io/library/alpine:latest``); an invalid ref raises
    :class:`~llblib_async.llb.InvalidReferenceError`.  ``platform`` (a
    :class:`Platform` or ``"linux/arm64"``) picks the image variant and becomes
    the State's platform; by default the marshal's default platform is used.

    * ``resolve_mode``: ``"pull"`` always contacts the registry, ``"local"``
      prefers the daemon's cached image (Go's ``ResolveMode…``).
    * ``digest``: pin the ref to a manifest digest — ``image("busybox:1.36",
      digest="sha256:…")`` is ``docker-image://docker.io/library/busybox:1.36@sha256:…``,
      exactly what Go's ``llb.Image(ref, WithMetaResolver(r), ResolveDigest(true))``
      produces after resolving; the tag is kept for display, the digest decides
      what is pulled.  A ref that already has a digest must agree with it.
      (Resolving a tag to its digest needs the registry: do it with a resolver
      and pass the result, or inside an ``llb.lazy`` State.)
    * ``checksum``: the daemon fails the build unless the resolved manifest has
      this digest (Go's ``WithImageChecksum``).
    * ``layer_limit``: use only the first N layers of the image (``WithLayerLimit``).
    * ``record_type``: ``"internal"``/``"frontend"`` mark the pulled image as
      build machinery in disk-usage records (``MarkImageInternal``).

    **The image's config.** Building the State contacts no registry, so the State
    does not know the image's config yet; it records the image as the config's
    pending base (:class:`~llblib_async.llb.BaseImage` on ``image_config.base``).
    When a request exports the State (or a State built on it) as an image, the
    request pipeline resolves the base's config through the session's
    ``image_resolver`` (once per session) and merges the State's config on top of
    it as a Dockerfile ``FROM`` does (:func:`~llblib_async.llb.merge_base_config`): the
    pushed image keeps the base's env (``PATH``…), user, working dir, entrypoint,
    cmd, labels and history. Only the *exported config* inherits: ``run`` steps on
    this State do **not** see the base's env, working dir or user at build time.
    For ``FROM`` semantics in the build too, use ``await session.image(ref)``
    (config resolved now and applied to the State, digest pinned).

    ``inherit_config=False`` opts out: the exported image then has only what the
    config helpers set (e.g. only ``Cmd``), which was the only behaviour before.

    Deviation from Go llblib: Go's ``Image()`` resolves the config when the State
    is marshaled (with a client-side registry resolver) and applies env and dir to
    the State, and ``ResolvedImage()`` also pins the digest; here ``llb.image`` stays
    a pure value (op bytes, digests and ``to_yaml`` are those of BuildKit's plain
    ``llb.Image``), the config is merged at export time, and ``session.image`` is
    ``ResolvedImage``.
    """
    normalized = normalize_image_ref(ref)
    if digest is not None:
        check_digest(digest, "image digest")
        if "@" in normalized:
            if normalized.rpartition("@")[2] != digest:
                raise InvalidReferenceError(ref, f"its digest differs from digest={digest!r}")
        else:
            normalized = normalize_image_ref(normalized + "@" + digest)
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
    if record_type is not None:
        if record_type not in ("regular", "internal", "frontend"):
            raise ValueError(f"record_type must be 'regular', 'internal' or 'frontend', not {record_type!r}")
        attrs["image.recordtype"] = record_type
    if layer_limit is not None:
        attrs["image.layerlimit"] = str(check_positive(layer_limit, "layer_limit"))
        caps.add("source.image.layerlimit")
    if checksum is not None:
        attrs["image.checksum"] = check_digest(checksum, "image checksum")
        caps.add("source.image.checksum")
    vertex = SourceOp(
        identifier="docker-image://" + normalized,
        attrs=tuple(sorted(attrs.items())),
        caps=frozenset(caps),
        constraints=op_constraints(
            constraints, name=name, description=description, ignore_cache=ignore_cache
        ),
        platform=plat,
    )
    state = source_state(vertex, plat)
    if not inherit_config:
        return state
    return state.with_image_config(ImageConfig(base=BaseImage(normalized, state.platform)))


def blob_identifier(scheme: str, ref: str) -> str:
    """``<scheme>://<normalized name>@<digest>`` for a blob ref (Go's ``ImageBlob``/``OCILayoutBlob``).

    The ref must carry a digest and no tag.
    """
    normalized = normalize_image_ref(ref)
    name, at, dgst = normalized.partition("@")
    if not at:
        raise InvalidReferenceError(ref, "a blob reference needs a digest (name@sha256:…)")
    if ":" in name.rpartition("/")[2]:
        raise InvalidReferenceError(ref, "a blob reference must not have a tag")
    return f"{scheme}://{name}@{dgst}"


def file_attrs(filename: str | None, chmod: int | None, uid: int | None, gid: int | None) -> dict[str, str]:
    """The single-file attrs shared by http and blob sources (Go's ``fileInfo``): name, mode, owner.

    ``chmod`` keeps the permission bits only and 0 means "default"; a 0 uid or
    gid is not sent (both as in Go).
    """
    attrs: dict[str, str] = {}
    if filename:
        attrs["http.filename"] = filename
    if chmod is not None and chmod & 0o777:
        attrs["http.perm"] = "0" + format(chmod & 0o777, "o")  # Go: "0" + strconv.FormatInt(perm, 8)
    if uid:
        attrs["http.uid"] = str(uid)
    if gid:
        attrs["http.gid"] = str(gid)
    return attrs


def image_blob(
    ref: str,
    *,
    filename: str | None = None,
    chmod: int | None = None,
    uid: int | None = None,
    gid: int | None = None,
    name: str | None = None,
    description: Mapping[str, str] | None = None,
    ignore_cache: bool = False,
    constraints: Constraints | None = None,
) -> State:
    """One blob of a registry repository as a one-file filesystem (Go's ``llb.ImageBlob``).

    ``ref`` is ``<repository>@<digest>`` (no tag), e.g. a layer or config blob;
    the daemon fetches it by digest and verifies it.  ``filename`` (default: the
    digest's hex), ``chmod``, ``uid``/``gid`` shape the file like :func:`~llblib_async.llb.http`.
    """
    vertex = SourceOp(
        identifier=blob_identifier("docker-image+blob", ref),
        attrs=tuple(sorted(file_attrs(filename, chmod, uid, gid).items())),
        caps=frozenset({"source.imageblob"}),
        constraints=op_constraints(
            constraints, name=name, description=description, ignore_cache=ignore_cache
        ),
    )
    return source_state(vertex)


def check_positive(value: int, what: str) -> int:
    """``value`` if it is an int > 0 (the daemon rejects layer limits <= 0: "invalid layer limit")."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{what} must be a positive int, not {value!r}")
    return value


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


#: Prefix of the no-op exclude pattern that carries a content digest (see :func:`local`).
CONTENT_TOKEN_PREFIX = "!.llblib-content-"


def local_content_digest(
    path: str | os.PathLike[str],
    *,
    include: Iterable[str] = (),
    exclude: Iterable[str] = (),
    follow_paths: Iterable[str] = (),
) -> str:
    """A digest of what a transfer of ``path`` with these filters would send.

    Hashes the absolute path and, for every entry the sender would list (the same
    walker, patterns and symlink rules), its path, mode, size, mtime and link
    target -- the metadata fsutil compares to decide what to resend. File contents
    are not read, so this costs one ``lstat`` per entry. Raises ``OSError`` if the
    directory can't be walked.
    """
    root = os.path.abspath(os.fspath(path))
    opts = FilterOptions(
        include_patterns=list(include) or None,
        exclude_patterns=list(exclude) or None,
        follow_paths=list(follow_paths) or None,
    )
    h = hashlib.sha256(os.fsencode(root) + b"\0")
    for st in walk(root, opts):
        h.update(f"{st.path}\0{st.mode:o}\0{st.size}\0{st.mod_time}\0{st.linkname}\n".encode())
    return "sha256:" + h.hexdigest()


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
    track_content: bool = False,
    differ: Literal["none", "metadata"] | None = None,
    differ_required: bool = False,
    custom_name: str | None = None,
    description: Mapping[str, str] | None = None,
    ignore_cache: bool = False,
    constraints: Constraints | None = None,
) -> State:
    """A directory on the client host, sent to BuildKit by the solver (Go's ``llb.Local``).

    The State remembers the absolute host ``path``; ``marshal()`` lists it in
    ``Definition.locals`` under ``name`` (default: :func:`default_local_name`).
    ``include``/``exclude``/``follow_paths`` filter what is sent;
    ``shared_key_hint`` lets BuildKit reuse an earlier transfer of the same
    directory.  ``session_id`` pins the source to one session; without it the
    op gets ``local.unique`` = ``unique_id`` (default:
    :func:`default_local_unique_id`), as Go adds one.  ``custom_name`` is the
    progress name (``name`` is already the source name here); ``constraints``
    adds any other per-op :class:`~llblib_async.llb.Constraints`.

    ``track_content`` defaults to false here and to true in
    :meth:`Solver.local <llblib_async.Solver.local>`, on purpose: ``llb.local`` makes
    the op bytes of Go's ``llb.Local`` (checked against the Go oracle) and does no I/O
    while a graph is built, while ``Solver.local`` is Go llblib's ``Solver.Local``,
    which derives its id from the content. Pass it explicitly to choose.
    ``track_content=True`` derives the source from the directory's current content
    (:func:`local_content_digest`, computed now, one ``lstat`` per entry): BuildKit
    keys a local source only by session, name and filter patterns, so within one
    long-lived session a second build of an unchanged ``local()`` is not sent again
    -- but neither is a *changed* one (the first transfer is reused). With
    ``track_content`` the digest becomes ``local.unique`` and a no-op exclude pattern
    ``!.llblib-content-<digest>`` (a negation of a path that is never excluded), which
    is part of the daemon's cache key: an unchanged directory is still sent once per
    session, a changed one is sent again, and because the name stays the same the
    daemon's copy from an earlier session is reused so only changed files travel.
    """
    host_dir = Path(os.path.abspath(os.fspath(path)))
    if track_content:
        if any(isinstance(v, str) for v in (include, exclude, follow_paths)):
            raise TypeError("include, exclude and follow_paths must be iterables of strings, not a str")
        include, exclude, follow_paths = tuple(include), tuple(exclude), tuple(follow_paths)
        content = local_content_digest(host_dir, include=include, exclude=exclude, follow_paths=follow_paths)
        exclude = (*exclude, CONTENT_TOKEN_PREFIX + content.removeprefix("sha256:"))
        unique_id = unique_id or content
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
            attrs[attr] = go_json(list(items))  # json.Marshal([]string), byte for byte
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
        constraints=op_constraints(
            constraints, name=custom_name, description=description, ignore_cache=ignore_cache
        ),
        local_dir=host_dir,
    )
    return State(output=Output(vertex, 0))
