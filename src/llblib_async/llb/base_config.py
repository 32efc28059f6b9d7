"""Layering a State's image config on its base image's config, as a Dockerfile ``FROM`` does.

``llb.image(ref)`` leaves the base's config unresolved (:class:`~.image_config.BaseImage`
on :attr:`ImageConfig.base <.image_config.ImageConfig.base>`); when a request exports
such a State as an image, the request pipeline calls :func:`resolve_base_config`, which
fetches the base's config with the session's resolver and returns
:func:`merge_base_config` of the two. Sans-IO apart from the resolver call.

The merge is Docker's: the image built ``FROM base`` starts with the base's config and
each instruction changes one field, so a field the State's config set wins and every
other field is the base's:

* ``Env``: the base's entries, those whose name the State's config sets replaced in
  place, then the State's other entries in its order;
* ``Labels``, ``ExposedPorts``, ``Volumes``: united (the State's label value wins);
* ``User``, ``WorkingDir``, ``StopSignal``, ``Shell``, ``Healthcheck``: the State's when
  set, else the base's;
* ``Entrypoint``/``Cmd``: the State's ``Cmd`` when set; a State that sets ``Entrypoint``
  but no ``Cmd`` drops the base's ``Cmd`` (Docker resets it); otherwise the base's;
* ``OnBuild``: only the State's (Docker runs the base's triggers and clears them);
* history: the base's records, then the State's;
* platform (os, architecture, variant…): the State's when it names an OS, else the base's;
  ``created`` and ``author``: the State's when set, else the base's; ``rootfs``: the
  base's (the exporter writes the real layer list anyway).

Note one difference with the config helpers applied to a State from
``session.image``: there ``config_ops.entrypoint`` keeps an inherited ``Cmd`` (as
llblib does), here the State's config is a set of changes and a new ``Entrypoint``
without ``Cmd`` resets it, as Docker does.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import replace

from ..errors import BaseImageError, BuildKitError
from .image_config import ContainerConfig, ImageConfig, RunConfig
from .image_resolver import ImageConfigResolver, resolve_image_config
from .platform import Platform, default_platform

__all__ = ["current_base_resolver", "merge_base_config", "resolve_base_config", "using_base_resolver"]


def _merge_env(base: tuple[str, ...], own: tuple[str, ...]) -> tuple[str, ...]:
    own_values: dict[str, str] = {}
    for entry in own:
        own_values.setdefault(entry.partition("=")[0], entry)
    out: list[str] = []
    seen: set[str] = set()
    for entry in base:
        key = entry.partition("=")[0]
        if key in own_values:
            if key not in seen:
                out.append(own_values[key])
                seen.add(key)
            continue
        out.append(entry)
    out.extend(entry for key, entry in own_values.items() if key not in seen)
    return tuple(out)


def _merge_run_config(base: RunConfig, own: RunConfig) -> RunConfig:
    if own.cmd:
        entrypoint, cmd = own.entrypoint or base.entrypoint, own.cmd
    elif own.entrypoint:
        entrypoint, cmd = own.entrypoint, ()
    else:
        entrypoint, cmd = base.entrypoint, base.cmd
    own_command = bool(own.cmd or own.entrypoint)
    return RunConfig(
        user=own.user or base.user,
        exposed_ports=(*base.exposed_ports, *own.exposed_ports),
        env=_merge_env(base.env, own.env),
        entrypoint=entrypoint,
        cmd=cmd,
        volumes=(*base.volumes, *own.volumes),
        working_dir=own.working_dir or base.working_dir,
        labels=tuple({**dict(base.labels), **dict(own.labels)}.items()),
        stop_signal=own.stop_signal or base.stop_signal,
        args_escaped=own.args_escaped if own_command else base.args_escaped,
        healthcheck=own.healthcheck if own.healthcheck is not None else base.healthcheck,
        on_build=own.on_build,
        shell=own.shell or base.shell,
    )


def _merge_container_config(base: ImageConfig, own: ImageConfig, cmd: tuple[str, ...]) -> ContainerConfig:
    bc, oc = base.container_config, own.container_config
    if oc.cmd is not None:
        legacy_cmd: tuple[str, ...] | None = oc.cmd
    elif own.config.cmd or own.config.entrypoint:
        legacy_cmd = cmd or None
    else:
        legacy_cmd = bc.cmd
    labels = None
    if bc.labels is not None or oc.labels is not None:
        labels = tuple({**dict(bc.labels or ()), **dict(oc.labels or ())}.items())
    return ContainerConfig(cmd=legacy_cmd, labels=labels)


def merge_base_config(base: ImageConfig, config: ImageConfig) -> ImageConfig:
    """``config`` layered on ``base`` as a Dockerfile ``FROM base`` would (rules: module docs).

    ``base`` is the base image's config (as resolved, :meth:`ImageConfig.adopted`),
    ``config`` the State's; the result has no pending :attr:`~ImageConfig.base`. A
    bare ``llb.image`` config (:attr:`ImageConfig.is_bare_base`) gives ``base`` itself.
    """
    if config.is_bare_base:
        return replace(base, base=None)
    run_config = _merge_run_config(base.config, config.config)
    return ImageConfig(
        platform=config.platform if config.platform.os else base.platform,
        config=run_config,
        container_config=_merge_container_config(base, config, run_config.cmd),
        history=(*base.history, *config.history),
        rootfs=base.rootfs,
        created=config.created if config.created is not None else base.created,
        author=config.author or base.author,
        base=None,
    )


async def resolve_base_config(
    config: ImageConfig, resolver: ImageConfigResolver, *, platform: Platform | None = None
) -> ImageConfig:
    """``config`` merged onto its pending base's config, fetched with ``resolver``.

    The base is resolved for its own platform, else ``platform``, else the host's (the
    platform ``llb.marshal`` builds the image source for). A ``config`` without a
    pending base is returned as it is. Raises
    :class:`~llblib_async.errors.BaseImageError` naming the base's reference when the
    resolver fails (the resolver's error is its ``__cause__``) or the base's config
    is not a valid image config.
    """
    base = config.base
    if base is None:
        return config
    target = base.platform or platform or default_platform()
    try:
        resolved = await resolve_image_config(base.ref, resolver, platform=target)
    except BuildKitError as err:
        raise BaseImageError(base.ref, str(err)) from err
    return merge_base_config(resolved.config, config)


_RESOLVER: ContextVar[ImageConfigResolver | None] = ContextVar("llblib_async.llb.base_resolver", default=None)


def current_base_resolver() -> ImageConfigResolver | None:
    """The resolver :func:`using_base_resolver` installed here (``None`` outside a build).

    Frontend inputs built on ``llb.image`` use it to hand the frontend their config merged
    onto the base's (``input-metadata``), so a Dockerfile ``FROM <named context>`` gets
    the base's env as it would for ``docker-image://``.
    """
    return _RESOLVER.get()


@contextmanager
def using_base_resolver(resolver: ImageConfigResolver) -> Iterator[None]:
    """Pending base configs met in this block (and tasks started in it) resolve with ``resolver``."""
    token = _RESOLVER.set(resolver)
    try:
        yield
    finally:
        _RESOLVER.reset(token)
