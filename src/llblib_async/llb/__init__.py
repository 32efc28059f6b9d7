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

Sources: :func:`image`, :func:`local`, :func:`git`, :func:`http`,
:func:`oci_layout`, :func:`image_blob`, :func:`oci_layout_blob`, and
:func:`from_definition` (a State backed by an already-marshaled graph).  Every
op builder takes per-op :class:`Constraints` (``constraints=``, plus the
``name=``/``description=``/``ignore_cache=`` shorthands): progress name and
description, :class:`ProgressGroup`, worker filters, cache options.  A State
whose graph needs I/O to build is :func:`lazy`; :func:`marshal_async`
resolves such States, then marshals.
"""

from . import config_ops, graph_yaml
from .async_state import LazyContext, LazyFn, UnresolvedLazyStateError, lazy, marshal_async, resolve_lazy
from .base_config import merge_base_config, resolve_base_config
from .config_ops import (
    ImageDefinition,
    image_config_from_definition,
    image_defaults,
    marshal_with_image_config,
    resolve_image,
)
from .definition_import import InvalidDefinitionError, from_definition
from .diff import diff
from .dockerfile import dockerfile, dockerfile_spec
from .exec import (
    FRESH_RUN_ENV,
    CDIDevice,
    Mount,
    ProxyEnv,
    SecretMount,
    SSHMount,
    bind,
    cache_mount,
    secret_mount,
    ssh_mount,
    tmpfs,
)
from .fileop import FileAction, Owner, copy, mkdir, mkfile, rm, symlink
from .frontend import FrontendRequest, FrontendResult, FrontendRunner, FrontendSpec, frontend
from .git import GitURLError, git
from .graph_yaml import to_yaml, to_yaml_tree
from .http import http
from .image_config import (
    BaseImage,
    ContainerConfig,
    HealthCheck,
    History,
    ImageConfig,
    ImageConfigError,
    RootFS,
    RunConfig,
)
from .image_resolver import CachingResolver, ImageConfigResolver, ResolvedImageConfig, resolve_image_config
from .marshal import Definition, digest, marshal, marshal_scope
from .merge import merge
from .meta import Ulimit, shlex_split
from .oci import oci_layout, oci_layout_blob
from .persistent import MountPropagationError, Persistent, persistent
from .platform import Platform, default_platform
from .reference import InvalidReferenceError, normalize_image_ref
from .source import (
    default_local_name,
    default_local_unique_id,
    image,
    image_blob,
    local,
    local_content_digest,
)
from .state import ExecState, State, scratch
from .vertex import Constraints, OpMetadata, ProgressGroup

__all__ = [
    "FRESH_RUN_ENV",
    "BaseImage",
    "CDIDevice",
    "CachingResolver",
    "Constraints",
    "ContainerConfig",
    "Definition",
    "ExecState",
    "FileAction",
    "FrontendRequest",
    "FrontendResult",
    "FrontendRunner",
    "FrontendSpec",
    "GitURLError",
    "HealthCheck",
    "History",
    "ImageConfig",
    "ImageConfigError",
    "ImageConfigResolver",
    "ImageDefinition",
    "InvalidDefinitionError",
    "InvalidReferenceError",
    "LazyContext",
    "LazyFn",
    "Mount",
    "MountPropagationError",
    "OpMetadata",
    "Owner",
    "Persistent",
    "Platform",
    "ProgressGroup",
    "ProxyEnv",
    "ResolvedImageConfig",
    "RootFS",
    "RunConfig",
    "SSHMount",
    "SecretMount",
    "State",
    "Ulimit",
    "UnresolvedLazyStateError",
    "bind",
    "cache_mount",
    "config_ops",
    "copy",
    "default_local_name",
    "default_local_unique_id",
    "default_platform",
    "diff",
    "digest",
    "dockerfile",
    "dockerfile_spec",
    "from_definition",
    "frontend",
    "git",
    "graph_yaml",
    "http",
    "image",
    "image_blob",
    "image_config_from_definition",
    "image_defaults",
    "lazy",
    "local",
    "local_content_digest",
    "marshal",
    "marshal_async",
    "marshal_scope",
    "marshal_with_image_config",
    "merge",
    "merge_base_config",
    "mkdir",
    "mkfile",
    "normalize_image_ref",
    "oci_layout",
    "oci_layout_blob",
    "persistent",
    "resolve_base_config",
    "resolve_image",
    "resolve_image_config",
    "resolve_lazy",
    "rm",
    "scratch",
    "secret_mount",
    "shlex_split",
    "ssh_mount",
    "symlink",
    "tmpfs",
    "to_yaml",
    "to_yaml_tree",
]
