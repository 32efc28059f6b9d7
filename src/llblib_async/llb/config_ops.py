"""Operations that change the image config a State carries, recording Dockerfile-style history.

Each helper mirrors a Dockerfile instruction (llblib's Go helpers of the same
purpose, see the table in ``docs/image-config.md``).  Most return a *state
option* — a function ``State -> State`` — to combine with :meth:`State.apply`::

    st = (await config_ops.resolve_image("alpine:3.20", resolver)).apply(
        config_ops.add_default_env("APP_HOME", "/app"),
        config_ops.default_dir("/app"),
        config_ops.apply_run("apk add --no-cache curl"),
        config_ops.cmd("/app/run"),
    )
    result = config_ops.marshal_with_image_config(st)
    result.definition          # solve this
    result.exporter_attrs()    # {"containerimage.config": "<json>"} for the image exporter

Changes are applied immediately (States are plain values here, not lazily
evaluated as in Go).  A helper applied to a State without a config starts from
an empty one for the State's platform (or the host's, the platform
``llb.marshal`` defaults to).

History follows llblib: records get ``created`` = the zero time (see
:meth:`ImageConfig.with_epoch` and ``epoch=`` for SOURCE_DATE_EPOCH), comment
``llblib.v0``, ``empty_layer`` for metadata-only instructions; consecutive
ENV (or LABEL) helpers extend one record (``ENV A=one B=two``); words are
quoted like Go's ``go-shellquote``; CMD/ENTRYPOINT/SHELL/HEALTHCHECK embed
Go-style JSON.  RUN/COPY/MERGE/DIFF records name ops by their digest, computed
for ``marshal_platform`` (default: the host platform, like ``llb.marshal``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any, Final, TypeAlias

from .._pb import pb
from .diff import diff as _llb_diff
from .image_config import (
    EXPORTER_IMAGE_CONFIG_KEY,
    HISTORY_COMMENT,
    IMAGE_CONFIG_DESCRIPTION_KEY,
    ZERO_TIME,
    ContainerConfig,
    HealthCheck,
    History,
    ImageConfig,
    ImageConfigError,
    RootFS,
    RunConfig,
    go_json,
    shell_join,
)
from .image_resolver import ImageConfigResolver, resolve_image_config
from .marshal import Definition, digest, marshal
from .merge import merge as _llb_merge
from .platform import Platform, default_platform
from .source import image
from .state import ExecState, State

__all__ = [
    "SCRATCH_DIGEST_HEX",
    "ImageDefinition",
    "StateOption",
    "add_default_env",
    "add_default_envs",
    "add_envs",
    "add_exposed_port",
    "add_label",
    "add_labels",
    "add_onbuild",
    "add_volume",
    "apply_run",
    "cmd",
    "copy",
    "default_dir",
    "default_user",
    "diff",
    "entrypoint",
    "healthcheck",
    "image_config_from_definition",
    "image_defaults",
    "marshal_with_image_config",
    "merge",
    "platform",
    "resolve_image",
    "run",
    "run_shell",
    "stop_signal",
]

StateOption: TypeAlias = Callable[[State], State]
"""A function deriving a State from a State (Go's ``llb.StateOption``); see :meth:`State.apply`."""

SCRATCH_DIGEST_HEX: Final = "0" * 64
"""How COPY/DIFF history names ``scratch()``, which has no op (llblib crashes there instead)."""


# --- the config record ------------------------------------------------------------------------------


def _config_of(state: State) -> ImageConfig:
    """The State's config, or the empty one llblib starts from (platform: the State's or the host's).

    The bare config of ``llb.image`` (only a pending base) starts from the same empty
    one, keeping the base: the JSON is what llblib writes, the base is merged under it
    when the State is exported.
    """
    config = state.image_config
    if config is not None and not config.is_bare_base:
        return config
    platform = state.platform if state.platform is not None else default_platform()
    return ImageConfig(platform=platform, base=None if config is None else config.base)


def _edit(state: State, change: Callable[[ImageConfig], ImageConfig]) -> State:
    return state.with_image_config(change(_config_of(state)))


def _commit(
    config: ImageConfig, created_by: str, *, empty_layer: bool, merge_key: str | None = None
) -> ImageConfig:
    record = History(
        created=ZERO_TIME,
        created_by=created_by,
        comment=HISTORY_COMMENT,
        empty_layer=empty_layer,
        merge_key=merge_key,
    )
    # The zero time keeps rebuilt images byte-identical; with_epoch() swaps in a real one.
    return replace(config, history=(*config.history, record), created=ZERO_TIME)


def _commit_kv(config: ImageConfig, instruction: str, key: str, value: str, *, merge: bool) -> ImageConfig:
    text = f"{shell_join(key)}={shell_join(value)}"
    last = config.history[-1] if config.history else None
    if merge and last is not None and last.merge_key == instruction:
        # One Dockerfile ENV/LABEL line may set several keys: consecutive helpers extend one record.
        extended = replace(last, created_by=f"{last.created_by} {text}")
        return replace(config, history=(*config.history[:-1], extended), created=ZERO_TIME)
    return _commit(
        config, f"{instruction} {text}", empty_layer=True, merge_key=instruction if merge else None
    )


def _with_run_config(config: ImageConfig, **changes: Any) -> ImageConfig:
    return replace(config, config=replace(config.config, **changes))


def _json_list(values: Sequence[str]) -> str:
    # Go's json.Marshal of a nil []string (no arguments) is "null".
    return go_json(list(values)) if values else "null"


def _check_str(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, got {type(value).__name__}")
    return value


def _check_words(values: Sequence[str], what: str) -> tuple[str, ...]:
    return tuple(_check_str(v, what) for v in values)


def _hex(state: State, marshal_platform: Platform | str | None) -> str:
    if state.output is None:
        return SCRATCH_DIGEST_HEX
    return digest(state, platform=marshal_platform).removeprefix("sha256:")


# --- attaching configs from images ------------------------------------------------------------------


def image_defaults(config: ImageConfig) -> StateOption:
    """Attach ``config`` and take over the image's defaults: env, working dir, user and platform.

    What ``FROM image`` means for the instructions after it.  Env entries are
    split at the first ``=`` (entries without a name are skipped); an empty
    working dir keeps the State's; the platform is taken when the config names
    an OS and architecture.  Unlike llblib's ``Image``, the image's ``USER`` is
    applied too, as Docker does (llblib only does so for frontend results).
    """

    def option(state: State) -> State:
        run_config = config.config
        for entry in run_config.env:
            key, _, value = entry.partition("=")
            if key:
                state = state.with_env(key, value)
        if run_config.working_dir:
            state = state.with_dir(run_config.working_dir)
        if run_config.user:
            state = state.with_user(run_config.user)
        if config.platform.os and config.platform.architecture:
            state = state.with_platform(config.platform)
        return state.with_image_config(config)

    return option


async def resolve_image(
    ref: str,
    resolver: ImageConfigResolver,
    *,
    platform: Platform | str | None = None,
    pin_digest: bool = False,
    **image_options: Any,
) -> State:
    """``llb.image(ref)`` with the image's config fetched and applied (llblib's ``Image``/``ResolvedImage``).

    The config is fetched with ``resolver`` for ``platform`` and applied with
    :func:`image_defaults`.  With ``pin_digest`` the source is pinned to the
    manifest digest the resolver found (``name:tag@sha256:…``), so the build
    uses exactly the image whose config was read.  ``image_options`` go to
    :func:`llblib_async.llb.image` (``resolve_mode``, ``name``…).
    """
    resolved = await resolve_image_config(ref, resolver, platform=platform)
    digest_pin = resolved.digest if pin_digest and "@" not in resolved.ref else None
    state = image(resolved.ref, platform=platform, digest=digest_pin, **image_options)
    return image_defaults(resolved.config)(state)


# --- metadata-only instructions ---------------------------------------------------------------------


def default_dir(path: str) -> StateOption:
    """``WORKDIR path``: later ops and the image run in ``path`` (relative: against the current dir).

    llblib stores ``path`` unresolved in the config, which is meaningless for a
    relative path; the resolved directory is stored here (the history keeps
    the text as written, like Docker's).
    """
    _check_str(path, "default_dir path")

    def option(state: State) -> State:
        state = state.with_dir(path)
        resolved = state.working_dir
        return _edit(
            state,
            lambda c: _commit(
                _with_run_config(c, working_dir=resolved), shell_join("WORKDIR", path), empty_layer=True
            ),
        )

    return option


def default_user(user: str) -> StateOption:
    """``USER user``: later runs and the image's containers run as ``user``."""
    _check_str(user, "default_user user")

    def option(state: State) -> State:
        return _edit(
            state.with_user(user),
            lambda c: _commit(_with_run_config(c, user=user), shell_join("USER", user), empty_layer=True),
        )

    return option


def _replace_env(env: tuple[str, ...], key: str, value: str) -> tuple[str, ...]:
    prefix = key + "="
    out: list[str] = []
    replaced = False
    for e in env:
        if e.startswith(prefix):
            if not replaced:
                out.append(prefix + value)
                replaced = True
            continue  # later duplicates (from an image built by llblib) collapse into one
        out.append(e)
    if not replaced:
        out.append(prefix + value)
    return tuple(out)


def add_default_env(key: str, value: str, *, merge_history: bool = True) -> StateOption:
    """``ENV key=value``: set for later runs (no ``$VAR`` expansion) and in the image config.

    An existing ``key`` is replaced in place (llblib appends a duplicate
    entry).  Consecutive ENV helpers share one history record
    (``ENV A=one B=two``) unless ``merge_history=False``.
    """
    _check_str(key, "env name")
    _check_str(value, f"value of {key}")
    if not key or "=" in key:
        raise ValueError(f"bad environment variable name {key!r}: must be non-empty and contain no '='")

    def option(state: State) -> State:
        return _edit(
            state.with_env(key, value),
            lambda c: _commit_kv(
                _with_run_config(c, env=_replace_env(c.config.env, key, value)),
                "ENV",
                key,
                value,
                merge=merge_history,
            ),
        )

    return option


def add_default_envs(env: Mapping[str, str]) -> StateOption:
    """:func:`add_default_env` for each entry, in sorted key order (one ``ENV`` record)."""
    options = [add_default_env(k, env[k]) for k in sorted(env)]

    def option(state: State) -> State:
        for opt in options:
            state = opt(state)
        return state

    return option


def add_envs(env: Mapping[str, str]) -> StateOption:
    """Set env vars for later runs only, in sorted key order (Go's ``AddEnvs``; config untouched).

    The sorted order keeps the exec op — and so its cache key — the same
    whatever order the mapping was built in.
    """
    items = [(k, env[k]) for k in sorted(env)]

    def option(state: State) -> State:
        for k, v in items:
            state = state.with_env(k, v)
        return state

    return option


def add_label(key: str, value: str, *, merge_history: bool = True) -> StateOption:
    """``LABEL key=value`` in ``config.Labels`` and the legacy ``container_config.Labels``.

    Consecutive LABEL helpers share one history record unless ``merge_history=False``.
    """
    _check_str(key, "label name")
    _check_str(value, f"value of label {key}")

    def change(c: ImageConfig) -> ImageConfig:
        labels = dict(c.config.labels)
        labels[key] = value
        legacy = dict(c.container_config.labels or ())
        legacy[key] = value
        c = replace(
            c,
            config=replace(c.config, labels=tuple(labels.items())),
            container_config=replace(c.container_config, labels=tuple(legacy.items())),
        )
        return _commit_kv(c, "LABEL", key, value, merge=merge_history)

    return lambda state: _edit(state, change)


def add_labels(labels: Mapping[str, str]) -> StateOption:
    """:func:`add_label` for each entry, in sorted key order (one ``LABEL`` record)."""
    options = [add_label(k, labels[k]) for k in sorted(labels)]

    def option(state: State) -> State:
        for opt in options:
            state = opt(state)
        return state

    return option


def add_exposed_port(port: str) -> StateOption:
    """``EXPOSE port`` (``"80/tcp"``, ``"53/udp"``, ``"8080"``); no record if already exposed."""
    _check_str(port, "port")

    def change(c: ImageConfig) -> ImageConfig:
        if port in c.config.exposed_ports:
            return c
        c = _with_run_config(c, exposed_ports=(*c.config.exposed_ports, port))
        return _commit(c, f"EXPOSE {port}", empty_layer=True)

    return lambda state: _edit(state, change)


def add_volume(path: str) -> StateOption:
    """``VOLUME path``; no record if already a volume."""
    _check_str(path, "volume path")

    def change(c: ImageConfig) -> ImageConfig:
        if path in c.config.volumes:
            return c
        c = _with_run_config(c, volumes=(*c.config.volumes, path))
        return _commit(c, f"VOLUME {path}", empty_layer=True)

    return lambda state: _edit(state, change)


def stop_signal(signal: str) -> StateOption:
    """``STOPSIGNAL signal`` (``"SIGTERM"``, ``"9"``…)."""
    _check_str(signal, "signal")
    return lambda state: _edit(
        state,
        lambda c: _commit(_with_run_config(c, stop_signal=signal), f"STOPSIGNAL {signal}", empty_layer=True),
    )


def healthcheck(check: HealthCheck) -> StateOption:
    """``HEALTHCHECK``: see :class:`~llblib_async.llb.image_config.HealthCheck` (``HealthCheck.of(...)``)."""
    if not isinstance(check, HealthCheck):
        raise TypeError(f"healthcheck() takes a HealthCheck, got {type(check).__name__}")
    text = "HEALTHCHECK " + go_json(check.to_dict())
    return lambda state: _edit(
        state, lambda c: _commit(_with_run_config(c, healthcheck=check), text, empty_layer=True)
    )


def add_onbuild(instruction: str) -> StateOption:
    """``ONBUILD instruction``: a Dockerfile instruction for images built FROM this one."""
    _check_str(instruction, "onbuild instruction")
    return lambda state: _edit(
        state,
        lambda c: _commit(
            _with_run_config(c, on_build=(*c.config.on_build, instruction)),
            f"ONBUILD {instruction}",
            empty_layer=True,
        ),
    )


def run_shell(*shell: str) -> StateOption:
    """``SHELL [...]``: the shell Dockerfiles built FROM this image use for shell-form commands."""
    words = _check_words(shell, "shell words")
    text = "SHELL " + _json_list(words)
    return lambda state: _edit(
        state, lambda c: _commit(_with_run_config(c, shell=words), text, empty_layer=True)
    )


def cmd(*args: str) -> StateOption:
    """``CMD [...]``: the default command (also the legacy ``container_config.Cmd``)."""
    words = _check_words(args, "cmd arguments")
    text = "CMD " + _json_list(words)

    def change(c: ImageConfig) -> ImageConfig:
        c = replace(
            c,
            config=replace(c.config, cmd=words),
            # no arguments: llblib stores a nil list, i.e. JSON null
            container_config=replace(c.container_config, cmd=words or None),
        )
        return _commit(c, text, empty_layer=True)

    return lambda state: _edit(state, change)


def entrypoint(*args: str) -> StateOption:
    """``ENTRYPOINT [...]``.  An inherited ``Cmd`` is kept (as llblib does; Docker would reset it).

    On a State whose base config is still pending (``llb.image``) the base's ``Cmd``
    is only known at export, and there it is reset as Docker does
    (:func:`~llblib_async.llb.merge_base_config`).
    """
    words = _check_words(args, "entrypoint arguments")
    text = "ENTRYPOINT " + _json_list(words)
    return lambda state: _edit(
        state, lambda c: _commit(_with_run_config(c, entrypoint=words), text, empty_layer=True)
    )


def platform(target: Platform | str) -> StateOption:
    """Target ``target`` for later ops and in the config (no history record, as llblib)."""
    plat = Platform.parse(target) if isinstance(target, str) else target
    if not isinstance(plat, Platform):
        raise TypeError(f"platform() takes a Platform or a str, got {type(target).__name__}")
    return lambda state: _edit(
        state.with_platform(plat), lambda c: replace(c, platform=plat, created=ZERO_TIME)
    )


# --- filesystem changes that record history ---------------------------------------------------------


def run(state: State, args: str | Sequence[str] | None = None, **run_options: Any) -> ExecState:
    """``RUN``: ``state.run(args, **run_options)`` plus a ``RUN <argv>`` history record on its root.

    The record quotes the exec's final argv (after ``shell=True``, or the
    State's ``with_args`` default) like a shell.  As in llblib, only the root
    carries the config: ``get_mount()`` States have none.
    """
    exec_state = state.run(args, **run_options)
    op = exec_state.exec_op
    if op is None:  # pragma: no cover - State.run always builds an op
        raise ValueError("run() produced no exec op")
    text = "RUN " + shell_join(*op.meta.args)
    config = _commit(_config_of(state), text, empty_layer=False)
    return dataclasses.replace(exec_state, image_config=config)


def apply_run(args: str | Sequence[str] | None = None, **run_options: Any) -> StateOption:
    """:func:`run` as a state option returning the root (llblib's ``ApplyRun``)::

    st.apply(apply_run("touch /a"), apply_run(["touch", "/b"]))
    """
    return lambda state: run(state, args, **run_options).root


def copy(
    src: State,
    src_path: str,
    dest_path: str,
    *,
    marshal_platform: Platform | str | None = None,
    **copy_options: Any,
) -> StateOption:
    """``COPY``: ``dest.copy(src, src_path, dest_path, **copy_options)`` plus a history record.

    The record is ``COPY <src-op-digest>:<src_path> <dest_path>`` (shell-quoted
    words; the digest is ``src``'s op marshaled for ``marshal_platform``; a
    scratch ``src`` is named by the zero digest).
    """
    _check_str(src_path, "src_path")
    _check_str(dest_path, "dest_path")

    def option(dest: State) -> State:
        copied = dest.copy(src, src_path, dest_path, **copy_options)
        text = shell_join("COPY", f"{_hex(src, marshal_platform)}:{src_path}", dest_path)
        return _edit(copied, lambda c: _commit(c, text, empty_layer=False))

    return option


def merge(
    states: Iterable[State],
    *,
    marshal_platform: Platform | str | None = None,
    **merge_options: Any,
) -> State:
    """``llb.merge(states)`` plus a ``MERGE <digest>:/ …`` record (llblib's ``Merge``).

    The config is that of the first input that has one (a bare ``llb.image``
    config counts only when no input has more: its base is then kept).  Scratch inputs are
    left out of the record, as the merge op leaves them out (llblib crashes on
    them); when at most one non-scratch input remains there is no merge, and
    that input (or scratch) is returned unchanged.
    """
    if isinstance(states, State):
        raise TypeError("merge() takes an iterable of States, e.g. merge([a, b])")
    inputs = list(states)
    merged = _llb_merge(inputs, **merge_options)
    layered = [st for st in inputs if st.output is not None]
    if len(layered) < 2:
        return merged
    configs = [st.image_config for st in inputs if st.image_config is not None]
    base = next((c for c in configs if not c.is_bare_base), None)
    text = "MERGE " + " ".join(f"{_hex(st, marshal_platform)}:/" for st in layered)
    # No input with a config of its own: start empty, on the first input's pending base.
    config = base or _config_of(merged.with_image_config(configs[0] if configs else None))
    return merged.with_image_config(_commit(config, text, empty_layer=False))


def diff(
    lower: State,
    upper: State,
    *,
    marshal_platform: Platform | str | None = None,
    **diff_options: Any,
) -> State:
    """``llb.diff(lower, upper)`` plus a ``DIFF <lower>:/ <upper>:/`` record (llblib's ``Diff``).

    The result has ``lower``'s config reduced to what a diff layer can claim:
    author, rootfs and run settings are cleared except the labels, the legacy
    ``Cmd`` is nulled; the base history is kept (as llblib does), but a pending
    base (:attr:`ImageConfig.base`, from ``llb.image``) is dropped: a diff does
    not contain the base image, so its config is not inherited.  A scratch
    ``lower`` gives ``upper`` unchanged (or scratch); a scratch ``upper`` is
    named by the zero digest (llblib crashes there).
    """
    result = _llb_diff(lower, upper, **diff_options)
    if lower.output is None:
        return result
    text = f"DIFF {_hex(lower, marshal_platform)}:/ {_hex(upper, marshal_platform)}:/"

    def change(c: ImageConfig) -> ImageConfig:
        c = replace(
            c,
            author="",
            rootfs=RootFS(),
            config=RunConfig(labels=c.config.labels),
            container_config=ContainerConfig(cmd=None, labels=c.container_config.labels),
            base=None,
        )
        return _commit(c, text, empty_layer=False)

    return _edit(result, change)


# --- marshaling -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ImageDefinition:
    """A marshaled State plus its image config, ready for an image exporter.

    ``definition`` is exactly what ``llb.marshal`` gives (unless ``embed=True``
    added the config to the op metadata); ``image_config`` is ``None`` when the
    State carries none (or only the pending base of a bare ``llb.image``). A
    config with a pending :attr:`~ImageConfig.base` is returned unmerged: merge it
    with :func:`~llblib_async.llb.resolve_base_config` (a request does that itself).
    """

    definition: Definition
    image_config: ImageConfig | None

    @property
    def config_json(self) -> bytes | None:
        """The config as Go-identical JSON bytes, or ``None``."""
        return None if self.image_config is None else self.image_config.to_json()

    def exporter_attrs(self) -> Mapping[str, str]:
        """``{"containerimage.config": <json>}`` for BuildKit's ``image``/``docker``/``oci`` exporters.

        Those exporters take any attribute they do not know as result metadata,
        and read the image config from this key (empty when there is no config).
        """
        data = self.config_json
        return MappingProxyType({} if data is None else {EXPORTER_IMAGE_CONFIG_KEY: data.decode()})


def marshal_with_image_config(
    state: State,
    *,
    platform: Platform | str | None = None,
    epoch: int | None = None,
    embed: bool = False,
) -> ImageDefinition:
    """Marshal ``state`` (like ``llb.marshal``) and return it with its image config.

    ``epoch`` (Unix seconds, e.g. :func:`~llblib_async.llb.image_config.source_date_epoch`)
    gives the config reproducible timestamps (:meth:`ImageConfig.with_epoch`).
    With ``embed``, the config JSON is also put into every op's metadata under
    ``llblib.imageconfig`` (as llblib's ``MarshalWithImageConfig`` does), so
    :func:`image_config_from_definition` recovers it even from serialized
    bytes; op bytes and digests do not change.
    """
    definition = marshal(state, platform=platform)
    config = state.image_config
    if config is not None and config.is_bare_base:
        config = None  # nothing of its own: the base's config is merged in only by a request
    if config is not None and epoch is not None:
        config = config.with_epoch(epoch)
    if embed and definition.ops:
        text = "null" if config is None else config.to_json().decode()
        metadata = dict(definition.metadata)
        terminal = definition.digests[-1]
        for dgst, meta in metadata.items():
            if dgst == terminal:
                # the terminal pseudo-op advertises the caps the ops use
                metadata[dgst] = replace(meta, caps=meta.caps | {"meta.description"})
            else:
                description = dict(meta.description)
                description[IMAGE_CONFIG_DESCRIPTION_KEY] = text
                metadata[dgst] = replace(meta, description=tuple(sorted(description.items())))
        definition = replace(definition, metadata=MappingProxyType(metadata))
    return ImageDefinition(definition=definition, image_config=config)


def image_config_from_definition(definition: Definition | pb.Definition | bytes) -> ImageConfig | None:
    """The config ``marshal_with_image_config(..., embed=True)`` stored in ``definition``, or ``None``.

    Reads the ``llblib.imageconfig`` description of the definition's head op,
    so it works on serialized definitions too (llblib only recovers it from
    the in-memory Go object).  Raises :class:`ImageConfigError` if the stored
    JSON is invalid.
    """
    if isinstance(definition, Definition):
        head = definition.head_digest
        if head is None:
            return None
        description = dict(definition.metadata[head].description)
    else:
        message = pb.Definition.parse(definition) if isinstance(definition, bytes) else definition
        if not message.def_:
            return None
        terminal = pb.Op.parse(message.def_[-1])
        if not terminal.inputs:
            raise ImageConfigError("definition has no terminal op")
        meta = message.metadata.get(terminal.inputs[0].digest)
        description = dict(meta.description) if meta is not None else {}
    text = description.get(IMAGE_CONFIG_DESCRIPTION_KEY)
    if text is None or text == "null":
        return None
    return ImageConfig.from_json(text)
