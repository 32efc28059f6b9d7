"""Sans-IO builder for BuildKit LLB graphs, producing the same op bytes and digests as Go's client/llb.

Build immutable :class:`State` values and marshal them::

    from llblib_async import llb

    ctx = llb.local("./app", exclude=["*.pyc"])
    st = (
        llb.image("python:3.12-slim")
        .with_dir("/app")
        .file(llb.mkdir("src", parents=True).copy(ctx, "/", "src/", contents_only=True))
    )
    definition = llb.marshal(st)          # -> llb.Definition (ops, metadata, locals)
    request_def = definition.to_pb()      # -> llblib_async._pb.pb.Definition

Nothing here does I/O or needs a daemon; a solver sends the Definition and
serves ``Definition.locals``.
"""

from .fileop import FileAction, Owner, copy, mkdir, mkfile, rm, symlink
from .marshal import Definition, digest, marshal
from .platform import Platform, default_platform
from .reference import InvalidReferenceError, normalize_image_ref
from .source import default_local_name, default_local_unique_id, image, local
from .state import State, scratch
from .vertex import OpMetadata

__all__ = [
    "Definition",
    "FileAction",
    "InvalidReferenceError",
    "OpMetadata",
    "Owner",
    "Platform",
    "State",
    "copy",
    "default_local_name",
    "default_local_unique_id",
    "default_platform",
    "digest",
    "image",
    "local",
    "marshal",
    "mkdir",
    "mkfile",
    "normalize_image_ref",
    "rm",
    "scratch",
    "symlink",
]
