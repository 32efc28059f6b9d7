"""Dockerfile builds as States: :func:`dockerfile` (llblib's ``Dockerfile``).

Every Dockerfile goes through a BuildKit Dockerfile frontend (the built-in
``dockerfile.v0``, or an image given by ``frontend=`` / the Dockerfile's ``# syntax=``
line): there is no Dockerfile-to-LLB converter on the client, so the result is exactly
what ``docker build``/``buildctl`` produce on the same daemon.

Contexts:

* the main ``context`` is a State (sent as the frontend input ``context``, used as is) or
  a host directory (``str``/``os.PathLike``): the frontend then reads it through the
  session itself and honours its ``.dockerignore`` (and ``<Dockerfile>.dockerignore``)
  as BuildKit does; ``None`` is an empty context;
* ``named_contexts`` (``COPY --from=NAME``, ``FROM NAME``) map a name to a State (with an
  image config, ``FROM NAME`` takes over its env...), a host directory
  (``pathlib.Path``), or a string with a scheme: ``docker-image://ref``,
  ``git://``/``https://…git`` (git), ``https://…`` (a file or tarball),
  ``oci-layout://``. (``target:<stage>`` is a ``docker buildx bake`` feature, not
  BuildKit's: the frontend refuses it.)

Differences from llblib: no in-process conversion (llblib converts Dockerfiles without
named contexts or options in the client; the op digests therefore differ, the image is
the same); options are keyword arguments; a Dockerfile path reads the file and its
directory's ignore file through the session.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath
from types import MappingProxyType

from .._fsutil.patterns import clean
from ..errors import DockerfileError, LocalDirError
from .frontend import DOCKERFILE_FRONTEND, FrontendSpec, frontend_state
from .platform import Platform
from .source import local
from .state import State, scratch

__all__ = ["CONTEXT_SCHEMES", "DockerfileError", "dockerfile", "dockerfile_spec", "read_dockerignore"]

CONTEXT_SCHEMES = ("docker-image://", "git://", "git@", "https://", "http://", "oci-layout://")
"""The prefixes a named context given as a string may have."""

DEFAULT_FILENAME = "Dockerfile"


def _local_name(kind: str, path: Path) -> str:
    """A ``local://`` name for ``path`` that does not clash with other directories."""
    return f"{kind}-{hashlib.sha256(str(path).encode()).hexdigest()[:16]}"


def read_dockerignore(data: bytes) -> list[str]:
    """The exclude patterns of a ``.dockerignore`` file (moby's ``ignorefile.ReadAll``).

    A UTF-8 BOM is dropped, ``#`` lines are comments, patterns are trimmed and cleaned
    (``path.Clean``), a leading ``/`` is dropped; ``!`` negates.
    """
    patterns: list[str] = []
    for number, raw in enumerate(data.splitlines()):
        if number == 0:
            raw = raw.removeprefix(b"\xef\xbb\xbf")
        line = raw.decode(errors="surrogateescape")
        if line.startswith("#"):
            continue
        pattern = line.strip()
        if not pattern:
            continue
        invert = pattern.startswith("!")
        if invert:
            pattern = pattern[1:].strip()
        if pattern:
            pattern = clean(pattern)
            if len(pattern) > 1 and pattern.startswith("/"):
                pattern = pattern[1:]
        patterns.append("!" + pattern if invert else pattern)
    return patterns


def _dir(what: str, path: str | os.PathLike[str]) -> Path:
    absolute = Path(path).absolute()
    if not absolute.is_dir():
        reason = "does not exist" if not absolute.exists() else "is not a directory"
        raise LocalDirError(what, str(absolute), reason)
    return absolute


def dockerfile_spec(
    dockerfile: str | bytes | os.PathLike[str],
    *,
    context: State | str | os.PathLike[str] | None = None,
    build_args: Mapping[str, str] | None = None,
    target: str | None = None,
    platforms: Iterable[Platform | str] = (),
    named_contexts: Mapping[str, State | str | os.PathLike[str]] | None = None,
    filename: str | None = None,
    labels: Mapping[str, str] | None = None,
    no_cache: bool | Iterable[str] = False,
    frontend: str | None = None,
    opts: Mapping[str, str] | None = None,
) -> FrontendSpec:
    """The :class:`~llblib_async.llb.FrontendSpec` :func:`dockerfile` runs (same arguments)."""
    attrs: dict[str, str] = {}
    inputs: dict[str, State] = {}
    locals_: dict[str, Path] = {}

    # The Dockerfile: text (an input) or a file (its directory, read through the session).
    if isinstance(dockerfile, os.PathLike):
        path = Path(dockerfile).absolute()
        if not path.is_file():
            raise LocalDirError("dockerfile", str(path), "is not a file")
        name = _local_name("dockerfile", path.parent)
        locals_[name] = path.parent
        attrs["dockerfilekey"] = name
        attrs["filename"] = filename or path.name
    elif isinstance(dockerfile, str | bytes):
        text = dockerfile.encode() if isinstance(dockerfile, str) else bytes(dockerfile)
        if isinstance(dockerfile, str) and "\n" not in dockerfile and Path(dockerfile).is_file():
            raise DockerfileError(
                f"dockerfile {dockerfile!r} is a file name, but a str is Dockerfile text: "
                f"pass Path({dockerfile!r})"
            )
        fname = filename or DEFAULT_FILENAME
        if PurePosixPath(fname).is_absolute() or ".." in PurePosixPath(fname).parts:
            raise DockerfileError(f"filename {fname!r} must be a relative path inside the context")
        base = scratch()
        if "/" in fname:
            base = base.mkdir(str(PurePosixPath(fname).parent), parents=True)
        inputs["dockerfile"] = base.mkfile(fname, text, name=f"load build definition from {fname}")
        if fname != DEFAULT_FILENAME:
            attrs["filename"] = fname
    else:
        raise DockerfileError(
            f"dockerfile must be text (str/bytes) or a path, not {type(dockerfile).__name__}"
        )

    # The main context.
    if context is None:
        inputs["context"] = scratch().mkdir("/.llblib-empty-context")
    elif isinstance(context, State):
        inputs["context"] = context
    elif isinstance(context, str | os.PathLike):
        # BuildKit's frontend always syncs its main context as ``local://context``, which
        # would clash between Dockerfiles of one session: send the directory as an input
        # instead, filtered by its ignore file exactly as the frontend would filter it.
        directory = _dir("context", context)
        ignore_file = directory / ".dockerignore"
        if isinstance(dockerfile, os.PathLike):
            specific = Path(f"{Path(dockerfile).absolute()}.dockerignore")
            if specific.is_file():
                ignore_file = specific
        excludes = read_dockerignore(ignore_file.read_bytes()) if ignore_file.is_file() else []
        inputs["context"] = local(
            directory,
            exclude=excludes,
            shared_key_hint="context",
            custom_name="[internal] load build context",
        )
    else:
        raise DockerfileError(f"context must be a State or a directory, not {type(context).__name__}")

    for key, value in (build_args or {}).items():
        if not isinstance(key, str) or not key or not isinstance(value, str):
            raise DockerfileError(f"build arg {key!r}={value!r}: names and values must be strings")
        attrs[f"build-arg:{key}"] = value
    for key, value in (labels or {}).items():
        if not isinstance(key, str) or not key or not isinstance(value, str):
            raise DockerfileError(f"label {key!r}={value!r}: keys and values must be strings")
        attrs[f"label:{key}"] = value
    if target is not None:
        if not isinstance(target, str) or not target:
            raise DockerfileError(f"target must be a stage name, not {target!r}")
        attrs["target"] = target
    plats = [str((Platform.parse(p) if isinstance(p, str) else p).normalize()) for p in platforms]
    if plats:
        attrs["platform"] = ",".join(plats)
    if no_cache is True:
        attrs["no-cache"] = ""
    elif no_cache is not False:
        stages = [no_cache] if isinstance(no_cache, str) else list(no_cache)
        if stages:
            attrs["no-cache"] = ",".join(stages)

    for cname, ctx in (named_contexts or {}).items():
        if not isinstance(cname, str) or not cname or cname in ("context", "dockerfile"):
            raise DockerfileError(f"named context name {cname!r} is not usable")
        if isinstance(ctx, State):
            input_name = f"named-{cname}"
            inputs[input_name] = ctx
            attrs[f"context:{cname}"] = f"input:{input_name}"
        elif isinstance(ctx, os.PathLike):
            directory = _dir(f"context {cname}", ctx)
            name = _local_name("named", directory)
            locals_[name] = directory
            attrs[f"context:{cname}"] = f"local:{name}"
        elif isinstance(ctx, str):
            if not ctx.startswith(CONTEXT_SCHEMES):
                raise DockerfileError(
                    f"named context {cname!r}={ctx!r}: a string needs one of the schemes "
                    f"{', '.join(CONTEXT_SCHEMES)} (pass a pathlib.Path for a local directory)"
                )
            attrs[f"context:{cname}"] = ctx
        else:
            raise DockerfileError(f"named context {cname!r} must be a State, a Path or a URL, not {ctx!r}")

    for key, value in (opts or {}).items():
        attrs[key] = value
    return FrontendSpec(
        source=frontend or DOCKERFILE_FRONTEND,
        inputs=MappingProxyType(inputs),
        opts=MappingProxyType(attrs),
        locals=MappingProxyType(locals_),
    )


def dockerfile(
    dockerfile: str | bytes | os.PathLike[str],
    *,
    context: State | str | os.PathLike[str] | None = None,
    build_args: Mapping[str, str] | None = None,
    target: str | None = None,
    platforms: Iterable[Platform | str] = (),
    named_contexts: Mapping[str, State | str | os.PathLike[str]] | None = None,
    filename: str | None = None,
    labels: Mapping[str, str] | None = None,
    no_cache: bool | Iterable[str] = False,
    frontend: str | None = None,
    opts: Mapping[str, str] | None = None,
) -> State:
    """A State holding the image a Dockerfile builds, with its image config (llblib's ``Dockerfile``).

    ``dockerfile`` is the Dockerfile's text (``str``/``bytes``) or its path
    (``pathlib.Path``: the file and a ``<name>.dockerignore`` next to it are read
    through the session). ``context`` is the build context (State, directory or
    ``None``, see the module doc); ``build_args`` are ``ARG`` values; ``target`` the
    stage to build; ``platforms`` the target platforms (several give a multi-platform
    result when the State is exported as it is); ``named_contexts`` extra contexts;
    ``filename`` the Dockerfile's name in error messages (default ``Dockerfile``);
    ``labels`` image labels; ``no_cache`` ``True`` for all stages or stage names;
    ``frontend`` a Dockerfile frontend image run by ``gateway.v0`` instead of the
    built-in one; ``opts`` any other frontend option (``add-hosts``, ``shm-size``…).

    Secrets and SSH agents the Dockerfile mounts come from the session's attachables.
    Raises :class:`DockerfileError` (a ``ValueError``) for unusable arguments and
    :class:`~llblib_async.errors.LocalDirError` for a missing directory.
    """
    spec = dockerfile_spec(
        dockerfile,
        context=context,
        build_args=build_args,
        target=target,
        platforms=platforms,
        named_contexts=named_contexts,
        filename=filename,
        labels=labels,
        no_cache=no_cache,
        frontend=frontend,
        opts=opts,
    )
    return frontend_state(spec, label="dockerfile" + (f" (target {target})" if target else ""))
