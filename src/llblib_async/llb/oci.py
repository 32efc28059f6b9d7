"""An image from an OCI layout served by the client: ``llb.oci_layout`` (Go's ``llb.OCILayout``).

The daemon reads the image's blobs through the session's content-store
attachable (store ``oci:<store_id>``), so solving one needs a session that
serves that store.  The identifier is ``oci-layout://<ref>`` with the ref used
verbatim, and like images the op carries a platform.
"""

from __future__ import annotations

from collections.abc import Mapping

from .platform import Platform
from .source import SourceOp, blob_identifier, check_digest, check_positive, file_attrs, source_state
from .state import State
from .vertex import Constraints, op_constraints

__all__ = ["oci_layout", "oci_layout_blob"]


def oci_layout(
    ref: str,
    *,
    store_id: str,
    session_id: str | None = None,
    layer_limit: int | None = None,
    platform: Platform | str | None = None,
    name: str | None = None,
    description: Mapping[str, str] | None = None,
    ignore_cache: bool = False,
    constraints: Constraints | None = None,
) -> State:
    """The image ``ref`` (``<name>@sha256:…``) of the client-side OCI layout store ``store_id``.

    The digest is mandatory (the daemon cannot resolve tags in a client store);
    the name part is only a label but must look like ``host/path`` (the daemon
    parses it as a containerd reference).  ``session_id`` pins the store to one
    session (default: the session solving the build); ``layer_limit`` uses only
    the first N layers; ``platform`` picks the manifest of a multi-platform
    index and becomes the State's platform (Go's ``OCIStore``,
    ``OCILayerLimit``, ``llb.Platform``).
    """
    repo, at, dgst = ref.rpartition("@")
    if not at or not repo:
        raise ValueError(f"oci_layout ref must be '<name>@<digest>', not {ref!r}")
    check_digest(dgst, "oci_layout digest")
    if "/" not in repo or "://" in repo:
        # containerd's reference.Parse (what the daemon applies) needs a host/path locator.
        raise ValueError(f"oci_layout ref name must look like 'host/path', not {repo!r}")
    if not store_id:
        raise ValueError("oci_layout needs a store_id (the content store the session serves)")
    plat = Platform.parse(platform) if isinstance(platform, str) else platform
    attrs: dict[str, str] = {}
    if session_id:
        attrs["oci.session"] = session_id
    attrs["oci.store"] = store_id
    if layer_limit is not None:
        # Go adds no cap for the OCI layer limit (only source.ocilayout).
        attrs["oci.layerlimit"] = str(check_positive(layer_limit, "layer_limit"))
    vertex = SourceOp(
        identifier="oci-layout://" + ref,
        attrs=tuple(sorted(attrs.items())),
        caps=frozenset({"source.ocilayout"}),
        constraints=op_constraints(
            constraints, name=name, description=description, ignore_cache=ignore_cache
        ),
        platform=plat,
    )
    return source_state(vertex, plat)


def oci_layout_blob(
    ref: str,
    *,
    store_id: str,
    session_id: str | None = None,
    filename: str | None = None,
    chmod: int | None = None,
    uid: int | None = None,
    gid: int | None = None,
    name: str | None = None,
    description: Mapping[str, str] | None = None,
    ignore_cache: bool = False,
    constraints: Constraints | None = None,
) -> State:
    """One blob of a client-side OCI layout store as a one-file filesystem (Go's ``llb.OCILayoutBlob``).

    ``ref`` is ``<name>@<digest>`` (no tag; the name is normalized like an image
    name); ``store_id`` names the store (the daemon requires one).  ``filename``
    (default: the digest's hex), ``chmod``, ``uid``/``gid`` shape the file.
    """
    if not store_id:
        raise ValueError("oci_layout_blob needs a store_id (the content store the session serves)")
    attrs = file_attrs(filename, chmod, uid, gid)
    if session_id:
        attrs["oci.session"] = session_id
    if store_id:
        attrs["oci.store"] = store_id
    vertex = SourceOp(
        identifier=blob_identifier("oci-layout+blob", ref),
        attrs=tuple(sorted(attrs.items())),
        caps=frozenset({"source.imageblob"}),
        constraints=op_constraints(
            constraints, name=name, description=description, ignore_cache=ignore_cache
        ),
    )
    return source_state(vertex)
