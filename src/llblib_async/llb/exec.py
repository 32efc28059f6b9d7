"""Exec ops: run a command in a container on a State, with mounts, and get their outputs as States.

``State.run(...)`` builds one :class:`ExecOp` with :func:`build_exec` and returns
an ``ExecState`` (defined in :mod:`.state`, next to ``State``): the root
filesystem after the command, plus ``ExecState.get_mount`` for the other
writable mounts.  Mounts are values made by :func:`bind`, :func:`cache_mount`,
:func:`tmpfs`, :func:`secret_mount` and :func:`ssh_mount`.  :mod:`.state` builds
on this module, so the States given here (mount sources, the exec's root) are
checked and read as :class:`~.vertex.BaseState`, which every State is.

The op bytes follow Go's client/llb ``exec.go`` exactly:

* bind/cache/tmpfs mounts (the root ``/`` included) are sorted by destination;
  secret mounts follow in the order given, then SSH sockets;
* ``op.inputs`` are the distinct mount sources in that order; a scratch
  source is input ``-1``;
* writable bind mounts are the op's outputs ``0, 1, …`` in sorted order;
  read-only, cache and tmpfs mounts (and ``no_output`` binds) have output ``-1``;
  secret and SSH mounts leave it unset (0), as Go does;
* ``Meta.removeMountStubsRecursive`` is always true; SSH sockets without a
  destination get ``/run/buildkit/ssh_agent.<n>`` and the first one is exported
  as ``SSH_AUTH_SOCK`` unless the env already has it;
* ``run(fresh=True)`` (llblib's ``IgnoreCache`` run option) adds
  :data:`FRESH_RUN_ENV` with a new random id to the env, as llblib does;
* ``PATH`` is **not** added: Go only adds it when marshaling with the daemon's
  caps (``llb.WithCaps``) and the daemon lacks ``exec.meta.setsdefaultpath``;
  every BuildKit this SDK supports sets the default ``PATH`` itself.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, TypeAlias, TypeVar

from .._identity import new_id
from .._wire.protobuf import bool_field, int_field, len_field, repeated_str, str_field, varint
from . import _paths
from ._encode import OP_EXEC, encode_input, encode_op, encode_platform
from .meta import (
    NETWORK_MODES,
    SECURITY_MODES,
    ExecMeta,
    NetworkMode,
    SecurityMode,
    Ulimit,
    check_exit_codes,
    check_network,
    check_security,
    check_ulimit,
    format_ip,
    to_args,
)
from .platform import Platform
from .vertex import (
    BaseState,
    Constraints,
    MarshalContext,
    OpMetadata,
    Output,
    Vertex,
    follow,
    op_constraints,
)

__all__ = [
    "FRESH_RUN_ENV",
    "CDIDevice",
    "CacheSharing",
    "ContentCache",
    "ExecOp",
    "Mount",
    "ProxyEnv",
    "SSHMount",
    "SecretMount",
    "bind",
    "cache_mount",
    "secret_mount",
    "ssh_mount",
    "tmpfs",
]

FRESH_RUN_ENV = "LLBLIB_IGNORE_CACHE"
"""The env var ``run(fresh=True)`` sets to a new random id (Go llblib's name, so scripts
that look for it work with both)."""

CacheSharing: TypeAlias = Literal["shared", "private", "locked"]
"""How concurrent builds share a cache mount: all at once, each its own copy, or one at a time."""

ContentCache: TypeAlias = Literal["default", "on", "off"]
"""Whether BuildKit may key a read-only bind mount's cache on its content (``exec.mount.cache.content``)."""

_SHARING = {"shared": 0, "private": 1, "locked": 2}
_CONTENT_CACHE = {"default": 0, "on": 1, "off": 2}
_MOUNT_SECRET = 1
_MOUNT_SSH = 2
_MOUNT_CACHE = 3
_MOUNT_TMPFS = 4
_UINT32_MAX = (1 << 32) - 1
_INT64_MAX = (1 << 63) - 1


def _check_dest(dest: str, *, what: str) -> str:
    if not isinstance(dest, str):
        raise TypeError(f"{what} must be a str, got {type(dest).__name__}")
    if not dest:
        raise ValueError(f"{what} must not be empty")
    return dest


def _check_uint32(value: int, *, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, got {value!r}")
    if not 0 <= value <= _UINT32_MAX:
        raise ValueError(f"{what} {value} is out of range (0..{_UINT32_MAX})")
    return value


# --- mounts ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Mount:
    """A bind, cache or tmpfs mount of an exec: made by :func:`bind`, :func:`cache_mount`, :func:`tmpfs`.

    ``source`` is the State mounted (``None`` or scratch: an empty directory);
    ``selector`` a sub-path of it.  Only writable bind mounts (not ``no_output``)
    produce an output State.
    """

    dest: str
    source: BaseState | None = None
    selector: str = ""
    readonly: bool = False
    no_output: bool = False
    cache_id: str = ""
    cache_sharing: CacheSharing = "shared"
    tmpfs: bool = False
    tmpfs_size: int = 0
    content_cache: ContentCache = "default"

    @property
    def has_output(self) -> bool:
        """True when the mount's final contents are an output of the exec (Go's output index rule)."""
        return not (self.no_output or self.readonly or self.tmpfs or self.cache_id)

    def _source_output(self) -> Output | None:
        return None if self.source is None else self.source.output


@dataclass(frozen=True, slots=True)
class SecretMount:
    """A secret from the client's session, as a file (``dest``) and/or an env var (``env``).

    Make one with :func:`secret_mount`.
    """

    id: str
    dest: str | None = None
    env: str | None = None
    uid: int = 0
    gid: int = 0
    mode: int = 0o400
    optional: bool = False


@dataclass(frozen=True, slots=True)
class SSHMount:
    """An SSH agent socket forwarded from the client's session; make one with :func:`ssh_mount`."""

    id: str = "default"
    dest: str | None = None
    uid: int = 0
    gid: int = 0
    mode: int = 0o600
    optional: bool = False


MountSpec: TypeAlias = "Mount | SecretMount | SSHMount"
"""Anything ``run(mounts=…)`` accepts."""


def bind(
    dest: str,
    source: BaseState,
    *,
    selector: str | None = None,
    readonly: bool = False,
    no_output: bool = False,
    content_cache: ContentCache = "default",
) -> Mount:
    """Mount ``source`` (or its sub-path ``selector``) at ``dest`` (Go's ``AddMount``).

    A writable mount's final contents become an output: ``exec.get_mount(dest)``.
    ``readonly`` makes it read-only (Go's ``Readonly``); ``no_output`` keeps it
    writable but drops the changes (Go's ``ForceNoOutput``); ``content_cache``
    overrides content-based caching of the mount (Go's ``ContentCache``).
    """
    if not isinstance(source, BaseState):
        raise TypeError(f"bind source must be a State, got {type(source).__name__}")
    if content_cache not in _CONTENT_CACHE:
        raise ValueError(f"content_cache must be 'default', 'on' or 'off', not {content_cache!r}")
    return Mount(
        dest=_check_dest(dest, what="mount destination"),
        source=source,
        selector=selector or "",
        readonly=readonly,
        no_output=no_output,
        content_cache=content_cache,
    )


def cache_mount(
    dest: str,
    *,
    id: str,
    sharing: CacheSharing = "shared",
    base: BaseState | None = None,
    selector: str | None = None,
) -> Mount:
    """A persistent cache directory ``id`` at ``dest`` (Go's ``AsPersistentCacheDir``).

    The directory survives across builds on the same daemon; ``sharing`` says
    what concurrent builds do: ``shared`` use it together, ``private`` each get
    their own, ``locked`` wait.  ``base`` (its sub-path ``selector``) seeds a
    new cache with a State's files.
    """
    if not isinstance(id, str) or not id:
        raise ValueError("cache mount id must be a non-empty string")
    if sharing not in _SHARING:
        raise ValueError(f"sharing must be 'shared', 'private' or 'locked', not {sharing!r}")
    if base is not None and not isinstance(base, BaseState):
        raise TypeError(f"cache mount base must be a State, got {type(base).__name__}")
    dest = _check_dest(dest, what="mount destination")
    return Mount(dest=dest, source=base, selector=selector or "", cache_id=id, cache_sharing=sharing)


def tmpfs(dest: str, *, size: int | None = None) -> Mount:
    """An in-memory filesystem at ``dest``, empty at start and dropped afterwards (Go's ``Tmpfs``).

    ``size`` limits it to that many bytes (default: the kernel's default).
    """
    if size is not None:
        if isinstance(size, bool) or not isinstance(size, int):
            raise TypeError(f"tmpfs size must be an int number of bytes, got {size!r}")
        if not 0 <= size <= _INT64_MAX:
            raise ValueError(f"tmpfs size {size} is out of range")
    return Mount(dest=_check_dest(dest, what="mount destination"), tmpfs=True, tmpfs_size=size or 0)


def secret_mount(
    dest: str | None = None,
    *,
    id: str | None = None,
    env: str | None = None,
    uid: int = 0,
    gid: int = 0,
    mode: int = 0o400,
    optional: bool = False,
) -> SecretMount:
    """Secret ``id`` as the file ``dest`` and/or the env var ``env`` (Go's ``AddSecret``).

    ``id`` defaults to ``dest`` (or ``env``), as Go's does.  The file belongs
    to ``uid:gid`` with ``mode``; ``optional`` lets the exec run when the
    client does not provide the secret.
    """
    if dest is None and env is None:
        raise ValueError("secret_mount needs a destination file, an env var name, or both")
    if dest is not None:
        _check_dest(dest, what="secret destination")
    if env is not None and (not isinstance(env, str) or not env or "=" in env):
        raise ValueError(f"bad secret env var name {env!r}")
    secret_id = id if id is not None else (dest if dest is not None else env)
    assert secret_id is not None
    if not isinstance(secret_id, str) or not secret_id:
        raise ValueError("secret id must be a non-empty string")
    return SecretMount(
        id=secret_id,
        dest=dest,
        env=env,
        uid=_check_uint32(uid, what="secret uid"),
        gid=_check_uint32(gid, what="secret gid"),
        mode=_check_uint32(mode, what="secret mode"),
        optional=optional,
    )


def ssh_mount(
    dest: str | None = None,
    *,
    id: str = "default",
    uid: int = 0,
    gid: int = 0,
    mode: int = 0o600,
    optional: bool = False,
) -> SSHMount:
    """Forward the client's SSH agent ``id`` as a socket at ``dest`` (Go's ``AddSSHSocket``).

    Without ``dest`` the socket is ``/run/buildkit/ssh_agent.<n>`` (``n`` = its
    position among the exec's SSH mounts), and the first socket is exported as
    ``SSH_AUTH_SOCK``.  Go's default id is ``""``, which BuildKit treats as
    ``"default"``; pass ``id=""`` for Go's exact bytes.
    """
    if dest is not None:
        _check_dest(dest, what="ssh socket destination")
    if not isinstance(id, str):
        raise TypeError(f"ssh id must be a str, got {type(id).__name__}")
    return SSHMount(
        id=id,
        dest=dest,
        uid=_check_uint32(uid, what="ssh uid"),
        gid=_check_uint32(gid, what="ssh gid"),
        mode=_check_uint32(mode, what="ssh mode"),
        optional=optional,
    )


@dataclass(frozen=True, slots=True)
class ProxyEnv:
    """Proxy settings for an exec (Go's ``WithProxy``); BuildKit keeps them out of the cache key."""

    http_proxy: str = ""
    https_proxy: str = ""
    ftp_proxy: str = ""
    no_proxy: str = ""
    all_proxy: str = ""

    def encode(self) -> bytes:
        """``pb.ProxyEnv``."""
        return (
            str_field(1, self.http_proxy)
            + str_field(2, self.https_proxy)
            + str_field(3, self.ftp_proxy)
            + str_field(4, self.no_proxy)
            + str_field(5, self.all_proxy)
        )


@dataclass(frozen=True, slots=True)
class CDIDevice:
    """A CDI device (``vendor.com/class=name``) to expose to an exec (Go's ``AddCDIDevice``)."""

    name: str
    optional: bool = False


# --- the op ---------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def _encode_platform(p: Platform) -> bytes:
    # Every exec carries a platform and a build uses very few: encode each once.
    return encode_platform(
        os=p.os,
        architecture=p.architecture,
        variant=p.variant,
        os_version=p.os_version,
        os_features=p.os_features,
    )


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class ExecOp(Vertex):
    """An ``ExecOp`` vertex.  Build it with ``State.run``; fields are already validated and resolved.

    ``mounts`` are sorted by destination (the root ``/`` among them) and
    ``outputs[i]`` is the output index of ``mounts[i]`` (-1: none);
    ``platform`` is the op's platform (``None``: the marshal's default);
    ``run_platform`` the one given to ``run()`` itself, which Go gives the
    States of the op's outputs.
    """

    meta: ExecMeta
    cwd: str
    mounts: tuple[Mount, ...]
    outputs: tuple[int, ...]
    secrets: tuple[SecretMount, ...]
    ssh: tuple[SSHMount, ...]
    proxy_env: ProxyEnv | None
    cdi_devices: tuple[CDIDevice, ...]
    platform: Platform | None
    run_platform: Platform | None
    constraints: Constraints
    inputs: tuple[Output, ...]

    def _inputs(self) -> tuple[Output, ...]:
        return self.inputs

    def _encode(self, ctx: MarshalContext) -> tuple[bytes, OpMetadata]:
        index: dict[tuple[str, int], int] = {}
        input_msgs: list[bytes] = []
        mounts: list[bytes] = []
        bind_caps = False
        for m, output in zip(self.mounts, self.outputs, strict=True):
            source = m._source_output()
            if source is not None:
                source = follow(source, ctx)  # an llb.lazy State may stand for scratch: no input then
            if source is None:
                input_index = -1
            else:
                bind_caps = bind_caps or not (m.cache_id or m.tmpfs)
                # Go compares the encoded inputs (EqualVT): equal (digest, index) pairs share one.
                digest = ctx.marshaled(source.vertex).digest
                k = (digest, source.index)
                found = index.get(k)
                if found is None:
                    found = index[k] = len(input_msgs)
                    input_msgs.append(encode_input(digest, source.index))
                input_index = found
            body = (
                int_field(1, input_index)
                + str_field(2, m.selector)
                + str_field(3, m.dest)
                + int_field(4, output)
                + bool_field(5, m.readonly)
            )
            if m.cache_id:
                body += int_field(6, _MOUNT_CACHE)
            elif m.tmpfs:
                # Go always sets TmpfsOpt, so an empty one is written when there is no size.
                body += int_field(6, _MOUNT_TMPFS)
                body += len_field(19, int_field(1, m.tmpfs_size))
            if m.cache_id:
                cache_opt = str_field(1, m.cache_id) + int_field(2, _SHARING[m.cache_sharing])
                body += len_field(20, cache_opt)
            body += int_field(24, _CONTENT_CACHE[m.content_cache])
            mounts.append(len_field(2, body))

        secret_env: list[bytes] = []
        for s in self.secrets:
            if s.env is not None:
                entry = str_field(1, s.id) + str_field(2, s.env) + bool_field(3, s.optional)
                secret_env.append(len_field(5, entry))
            if s.dest is not None:
                opt = (
                    str_field(1, s.id)
                    + int_field(2, s.uid)
                    + int_field(3, s.gid)
                    + int_field(4, s.mode)
                    + bool_field(5, s.optional)
                )
                body = (
                    int_field(1, -1) + str_field(3, s.dest) + int_field(6, _MOUNT_SECRET) + len_field(21, opt)
                )
                mounts.append(len_field(2, body))
        for h in self.ssh:
            opt = (
                str_field(1, h.id)
                + int_field(2, h.uid)
                + int_field(3, h.gid)
                + int_field(4, h.mode)
                + bool_field(5, h.optional)
            )
            assert h.dest is not None  # filled in when the op was built
            body = int_field(1, -1) + str_field(3, h.dest) + int_field(6, _MOUNT_SSH) + len_field(22, opt)
            mounts.append(len_field(2, body))

        meta = self.meta
        meta_msg = (
            repeated_str(1, meta.args)
            + repeated_str(2, meta.env_array())
            + str_field(3, self.cwd)
            + str_field(4, meta.user)
        )
        if self.proxy_env is not None:
            meta_msg += len_field(5, self.proxy_env.encode())
        meta_msg += b"".join(
            len_field(6, str_field(1, host) + str_field(2, ip)) for host, ip in meta.extra_hosts
        )
        meta_msg += str_field(7, meta.hostname)
        meta_msg += b"".join(
            len_field(9, str_field(1, u.name) + int_field(2, u.soft) + int_field(3, u.hard))
            for u in meta.ulimits
        )
        meta_msg += str_field(10, meta.cgroup_parent)
        meta_msg += bool_field(11, True)  # removeMountStubsRecursive: Go always sets it
        if meta.valid_exit_codes:
            meta_msg += len_field(12, b"".join(varint(c) for c in meta.valid_exit_codes))

        payload = (
            len_field(1, meta_msg)
            + b"".join(mounts)
            + int_field(3, NETWORK_MODES[meta.network])
            + int_field(4, SECURITY_MODES[meta.security])
            + b"".join(secret_env)
            + b"".join(
                len_field(6, str_field(1, d.name) + bool_field(2, d.optional)) for d in self.cdi_devices
            )
        )
        platform = self.platform if self.platform is not None else ctx.platform
        data = encode_op(
            inputs=input_msgs,
            platform=_encode_platform(platform),
            worker_filters=self.constraints.require,
            op_field=OP_EXEC,
            op_payload=payload,
        )
        caps = self._caps()
        if bind_caps:
            caps.add("exec.mount.bind")
        return data, self.constraints.metadata(caps)

    def _caps(self) -> set[str]:
        # The addCap calls of Go's ExecOp.Marshal, in the same conditions (exec.mount.bind, which
        # depends on the sources as marshaled, is added by _encode).
        meta = self.meta
        caps = {"exec.meta.base"}
        if meta.valid_exit_codes:
            caps.add("exec.validexitcode")
        if meta.ulimits:
            caps.add("exec.meta.ulimit")
        if meta.network != "sandbox":
            caps.add("exec.meta.network")
        if meta.security == "insecure":
            caps.add("exec.meta.security")
        if self.proxy_env is not None:
            caps.add("exec.meta.proxyenv")
        for m in self.mounts:
            if m.selector:
                caps.add("exec.mount.selector")
            if m.cache_id:
                caps.update(("exec.mount.cache", "exec.mount.cache.sharing"))
            elif m.tmpfs:
                caps.add("exec.mount.tmpfs")
                if m.tmpfs_size > 0:
                    caps.add("exec.mount.tmpfs.size")
            if m.content_cache != "default":
                caps.add("exec.mount.cache.content")
        if self.secrets:
            caps.add("exec.mount.secret")
            if any(s.env is not None for s in self.secrets):
                caps.add("exec.secretenv")
        if self.ssh:
            caps.add("exec.mount.ssh")
        if self.cdi_devices:
            caps.add("exec.meta.cdi")
        return caps

    def __repr__(self) -> str:
        shown = " ".join(self.meta.args)
        if len(shown) > 60:
            shown = shown[:57] + "..."
        return f"<ExecOp {shown}>"


_AnyMount = TypeVar("_AnyMount", bound=MountSpec)


def mount_list(mounts: Iterable[_AnyMount]) -> list[_AnyMount]:
    """``mounts`` as a list; ``mounts=llb.bind(...)`` without brackets is told so, rather
    than with Python's "object is not iterable"."""
    if isinstance(mounts, Mount | SecretMount | SSHMount):
        raise TypeError("mounts must be a list of mounts, e.g. mounts=[llb.tmpfs('/tmp')]")
    return list(mounts)


def build_exec(
    base: BaseState,
    meta: ExecMeta,
    args: str | Sequence[str] | None,
    *,
    shell: bool,
    env: Mapping[str, str] | None,
    cwd: str | None,
    user: str | None,
    hostname: str | None,
    network: NetworkMode | None,
    security: SecurityMode | None,
    extra_hosts: Mapping[str, str] | None,
    ulimits: Iterable[Ulimit | tuple[str, int, int]],
    cgroup_parent: str | None,
    valid_exit_codes: Iterable[int] | None,
    mounts: Iterable[MountSpec],
    secret_env: Mapping[str, str] | None,
    proxy_env: ProxyEnv | None,
    readonly_rootfs: bool,
    cdi_devices: Iterable[CDIDevice | str],
    platform: Platform | str | None,
    name: str | None,
    description: Mapping[str, str] | None,
    ignore_cache: bool,
    fresh: bool,
    constraints: Constraints | None,
) -> tuple[ExecOp, Output | None]:
    """The op of ``State.run`` (see there): the options resolved against ``base`` and its settings ``meta``.

    ``base`` is the State the command runs on (its root mount); returns the op
    and the output holding the root filesystem after the command: an output of
    the op, or ``base.output`` itself for a read-only root.
    """
    if args is not None:
        if shell:
            if not isinstance(args, str):
                raise TypeError("run(shell=True) needs the command as one str")
            meta = dataclasses.replace(meta, args=("/bin/sh", "-c", args))
        else:
            meta = dataclasses.replace(meta, args=to_args(args))
    elif shell:
        raise ValueError("run(shell=True) needs a command")
    if not meta.args:
        raise ValueError("run() needs a command: pass args or set State.with_args() first")
    for key, value in (env or {}).items():
        meta = meta.with_env(key, value)
    if fresh:
        # Drawn here, once per run() call: every graph built gets a new op digest, while
        # the ExecState (a value) keeps its id however often it is marshaled or solved.
        meta = meta.with_env(FRESH_RUN_ENV, new_id())
    if user is not None:
        meta = dataclasses.replace(meta, user=user)
    if hostname is not None:
        meta = dataclasses.replace(meta, hostname=hostname)
    if network is not None:
        meta = dataclasses.replace(meta, network=check_network(network))
    if security is not None:
        meta = dataclasses.replace(meta, security=check_security(security))
    if extra_hosts:
        added = tuple((host, format_ip(ip)) for host, ip in extra_hosts.items())
        meta = dataclasses.replace(meta, extra_hosts=meta.extra_hosts + added)
    limits = tuple(check_ulimit(*u) for u in ulimits)
    if limits:
        meta = dataclasses.replace(meta, ulimits=meta.ulimits + limits)
    if cgroup_parent is not None:
        meta = dataclasses.replace(meta, cgroup_parent=cgroup_parent)
    if valid_exit_codes is not None:
        meta = dataclasses.replace(meta, valid_exit_codes=check_exit_codes(valid_exit_codes))
    work_dir = base.working_dir if cwd is None else _paths.resolve_dir(base.working_dir, cwd)
    if not work_dir:
        raise ValueError("run() needs a working directory")

    fs_mounts: list[Mount] = [Mount(dest="/", source=base, readonly=readonly_rootfs)]
    secrets: list[SecretMount] = []
    ssh: list[SSHMount] = []
    for m in mount_list(mounts):
        if isinstance(m, Mount):
            if m.source is not None and m.source.output is None:
                m = dataclasses.replace(m, source=None)  # scratch: Go's nil source, input -1
            fs_mounts.append(m)
        elif isinstance(m, SecretMount):
            secrets.append(m)
        elif isinstance(m, SSHMount):
            ssh.append(m)
        else:
            raise TypeError(f"not a mount: {m!r} (use llb.bind, cache_mount, tmpfs, secret_mount, ssh_mount)")
    for env_name, secret_id in (secret_env or {}).items():
        secrets.append(secret_mount(env=env_name, id=secret_id))
    if base.output is None:
        fs_mounts[0] = dataclasses.replace(fs_mounts[0], source=None)

    # Go sorts by destination with strings.Compare (byte order = code point order for UTF-8).
    fs_mounts.sort(key=lambda m: m.dest)
    seen_dests: set[str] = set()
    for m in fs_mounts:
        if m.dest in seen_dests:
            raise ValueError(f"two mounts at {m.dest!r}")
        seen_dests.add(m.dest)
    outputs: list[int] = []
    next_output = 0
    for m in fs_mounts:
        if m.has_output:
            outputs.append(next_output)
            next_output += 1
        else:
            outputs.append(-1)

    ssh = [
        h if h.dest is not None else dataclasses.replace(h, dest=f"/run/buildkit/ssh_agent.{i}")
        for i, h in enumerate(ssh)
    ]
    if ssh and meta.get_env("SSH_AUTH_SOCK") is None:
        assert ssh[0].dest is not None
        meta = meta.with_env("SSH_AUTH_SOCK", ssh[0].dest)

    devices = tuple(CDIDevice(d) if isinstance(d, str) else d for d in cdi_devices)
    run_platform = Platform.parse(platform) if isinstance(platform, str) else platform
    sources = (m._source_output() for m in fs_mounts)
    op = ExecOp(
        meta=meta,
        cwd=work_dir,
        mounts=tuple(fs_mounts),
        outputs=tuple(outputs),
        secrets=tuple(secrets),
        ssh=tuple(ssh),
        proxy_env=proxy_env,
        cdi_devices=devices,
        platform=run_platform if run_platform is not None else base.platform,
        run_platform=run_platform,
        constraints=op_constraints(
            constraints, name=name, description=description, ignore_cache=ignore_cache
        ),
        inputs=tuple(dict.fromkeys(s for s in sources if s is not None)),
    )
    root = op.outputs[[m.dest for m in op.mounts].index("/")]
    return op, base.output if root < 0 else Output(op, root)
