"""Settings a State carries for the execs run on it: env, args, user, hostname, network… (Go's meta.go).

They do not create ops.  :class:`ExecMeta` holds them as one immutable value on
``State.exec_meta``; :class:`ExecSettings` gives :class:`~llblib_async.llb.State`
its ``with_env``/``with_user``/… methods and read-only properties, each
returning a new State.  ``State.run`` reads them when it builds the exec op.

Go rules kept on purpose:

* the environment is ordered like Go's ``EnvList.ToArray()``: setting a key
  (again) moves it to the end, removing it drops it — the order is part of the
  op bytes;
* values are used verbatim: like client/llb v0.34.2, ``with_env("P", "$PATH:/x")``
  does **not** expand ``$PATH`` (only the shell in the container would);
* a command given as one string is split with the rules of
  ``github.com/google/shlex`` (what Go's ``llb.Shlex`` uses), see :func:`shlex_split`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Literal, NamedTuple, Self, TypeAlias, cast

__all__ = [
    "ExecMeta",
    "ExecSettings",
    "NetworkMode",
    "SecurityMode",
    "Ulimit",
    "format_ip",
    "shlex_split",
]

NetworkMode: TypeAlias = Literal["sandbox", "host", "none"]
"""``sandbox`` (default: own network namespace with the worker's network), ``host``, ``none`` (only lo)."""

SecurityMode: TypeAlias = Literal["sandbox", "insecure"]
"""``insecure`` runs privileged; the daemon needs the ``security.insecure`` entitlement."""

NETWORK_MODES: Mapping[str, int] = MappingProxyType({"sandbox": 0, "host": 1, "none": 2})
"""pb.NetMode values (``sandbox`` is ``UNSET``)."""

SECURITY_MODES: Mapping[str, int] = MappingProxyType({"sandbox": 0, "insecure": 1})
"""pb.SecurityMode values."""

_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1


class Ulimit(NamedTuple):
    """One resource limit for an exec: ``name`` (``nofile``, ``nproc``, ``core``…), soft and hard values."""

    name: str
    soft: int
    hard: int


def check_ulimit(name: str, soft: int, hard: int) -> Ulimit:
    """Validate one ulimit (Go passes them through; refuse what cannot be encoded)."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"ulimit name must be a non-empty string such as 'nofile', got {name!r}")
    for what, value in (("soft", soft), ("hard", hard)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"ulimit {name} {what} limit must be an int, got {value!r}")
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise ValueError(f"ulimit {name} {what} limit {value} does not fit in int64")
    return Ulimit(name, soft, hard)


def format_ip(ip: str | ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """An IP address as Go's ``net.IP.String()`` writes it (what goes into the op).

    IPv6 is compressed as RFC 5952 (Python and Go agree); an IPv4-mapped IPv6
    address is written as plain IPv4, as Go does.  Raises :class:`ValueError` for
    something that is not an IP address (Go's ``net.ParseIP`` would give nil).
    """
    addr = ip if not isinstance(ip, str) else ipaddress.ip_address(ip)
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.scope_id is not None:
            raise ValueError(f"{ip!r}: a zoned IPv6 address cannot be used as an extra host")
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
    return str(addr)


def _check_env_key(key: str) -> str:
    if not isinstance(key, str):
        raise TypeError(f"environment variable name must be a str, got {type(key).__name__}")
    # Go accepts these and writes "=v" / "A=B=v" entries that cannot mean what was intended.
    if not key or "=" in key:
        raise ValueError(f"bad environment variable name {key!r}: must be non-empty and contain no '='")
    return key


def _check_str(value: str, *, what: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, got {type(value).__name__}")
    return value


@dataclass(frozen=True, slots=True)
class ExecMeta:
    """The exec settings of a State (Go keeps these as State values under ``llb.exec.*`` keys).

    ``env`` is ordered as it will be sent (Go's ``EnvList.ToArray()``);
    ``args`` empty means "none set" (``run`` then needs explicit args);
    ``valid_exit_codes`` empty means "only 0".
    """

    env: tuple[tuple[str, str], ...] = ()
    args: tuple[str, ...] = ()
    user: str = ""
    hostname: str = ""
    network: NetworkMode = "sandbox"
    security: SecurityMode = "sandbox"
    extra_hosts: tuple[tuple[str, str], ...] = ()
    ulimits: tuple[Ulimit, ...] = ()
    cgroup_parent: str = ""
    valid_exit_codes: tuple[int, ...] = ()

    def get_env(self, key: str) -> str | None:
        """The value of ``key``, or ``None`` when it is not set."""
        for k, v in self.env:
            if k == key:
                return v
        return None

    def with_env(self, key: str, value: str) -> ExecMeta:
        """Go's ``EnvList.AddOrReplace``: ``key`` gets ``value`` and moves to the end."""
        _check_env_key(key)
        _check_str(value, what=f"value of {key}")
        return replace(self, env=(*(kv for kv in self.env if kv[0] != key), (key, value)))

    def without_env(self, key: str) -> ExecMeta:
        """Go's ``EnvList.Delete``."""
        return replace(self, env=tuple(kv for kv in self.env if kv[0] != key))

    def env_array(self) -> list[str]:
        """``["K=V", …]`` as ``pb.Meta.env``."""
        return [f"{k}={v}" for k, v in self.env]


NO_EXEC_META = ExecMeta()
"""The settings of a State nobody configured (shared, immutable)."""


def check_network(mode: str) -> NetworkMode:
    """Validate a network mode name."""
    if mode in NETWORK_MODES:
        return cast(NetworkMode, mode)
    raise ValueError(f"network must be 'sandbox', 'host' or 'none', not {mode!r}")


def check_security(mode: str) -> SecurityMode:
    """Validate a security mode name."""
    if mode in SECURITY_MODES:
        return cast(SecurityMode, mode)
    raise ValueError(f"security must be 'sandbox' or 'insecure', not {mode!r}")


def to_args(args: str | Sequence[str], *, what: str = "args") -> tuple[str, ...]:
    """A command line: a str is split like Go's ``llb.Shlex``, a sequence is used verbatim."""
    if isinstance(args, str):
        return tuple(shlex_split(args))
    if isinstance(args, bytes):
        raise TypeError(f"{what} must be str or a sequence of str, not bytes")
    out = tuple(args)
    for a in out:
        if not isinstance(a, str):
            raise TypeError(f"{what} entries must be str, got {type(a).__name__}")
    return out


class ExecSettings:
    """Methods :class:`~llblib_async.llb.State` gets for its exec settings (see :class:`ExecMeta`).

    Every ``with_*`` method returns a new State; the settings are used by the
    execs run on that State (and on States derived from it by file ops, merges…).
    """

    __slots__ = ()

    if TYPE_CHECKING:

        @property
        def exec_meta(self) -> ExecMeta: ...

        def _with_exec_meta(self, meta: ExecMeta) -> Self: ...

    # --- environment -------------------------------------------------------------------------------

    @property
    def env(self) -> Mapping[str, str]:
        """The environment (read-only), in the order it is sent (Go's ``State.Env``)."""
        return MappingProxyType(dict(self.exec_meta.env))

    def get_env(self, key: str, default: str | None = None) -> str | None:
        """The value of ``key`` in the environment, or ``default`` (Go's ``State.GetEnv``)."""
        value = self.exec_meta.get_env(key)
        return default if value is None else value

    def with_env(self, key: str, value: str) -> Self:
        """Set ``key`` to ``value`` (Go's ``AddEnv``; no ``$VAR`` expansion, like Go)."""
        return self._with_exec_meta(self.exec_meta.with_env(key, value))

    def with_envs(self, env: Mapping[str, str]) -> Self:
        """Set every ``key: value`` of ``env``, in the mapping's order."""
        meta = self.exec_meta
        for key, value in env.items():
            meta = meta.with_env(key, value)
        return self._with_exec_meta(meta)

    def without_env(self, key: str) -> Self:
        """Remove ``key`` from the environment (Go's ``EnvList.Delete``)."""
        return self._with_exec_meta(self.exec_meta.without_env(key))

    # --- command, user, host -----------------------------------------------------------------------

    @property
    def args(self) -> tuple[str, ...]:
        """The default command of ``run()`` (empty: none)."""
        return self.exec_meta.args

    def with_args(self, args: str | Sequence[str]) -> Self:
        """Set the default command of ``run()``: a str is split like Go's ``llb.Shlex``."""
        return self._with_exec_meta(replace(self.exec_meta, args=to_args(args)))

    @property
    def user(self) -> str:
        """The user execs run as (``""``: the image's default, root)."""
        return self.exec_meta.user

    def with_user(self, user: str) -> Self:
        """Run execs as ``user``: ``"name"``, ``"uid"``, ``"uid:gid"``, ``"name:group"`` (Go's ``User``)."""
        return self._with_exec_meta(replace(self.exec_meta, user=_check_str(user, what="user")))

    @property
    def hostname(self) -> str:
        """The hostname execs see (``""``: BuildKit's default)."""
        return self.exec_meta.hostname

    def with_hostname(self, hostname: str) -> Self:
        """Set the hostname execs see (Go's ``Hostname``)."""
        return self._with_exec_meta(replace(self.exec_meta, hostname=_check_str(hostname, what="hostname")))

    # --- sandbox -----------------------------------------------------------------------------------

    @property
    def network(self) -> NetworkMode:
        """The network mode of execs."""
        return self.exec_meta.network

    def with_network(self, mode: NetworkMode) -> Self:
        """Set the network mode: ``"sandbox"`` (default), ``"host"`` or ``"none"`` (Go's ``Network``)."""
        return self._with_exec_meta(replace(self.exec_meta, network=check_network(mode)))

    @property
    def security(self) -> SecurityMode:
        """The security mode of execs."""
        return self.exec_meta.security

    def with_security(self, mode: SecurityMode) -> Self:
        """Set the security mode: ``"sandbox"`` (default) or ``"insecure"`` (Go's ``Security``)."""
        return self._with_exec_meta(replace(self.exec_meta, security=check_security(mode)))

    @property
    def extra_hosts(self) -> tuple[tuple[str, str], ...]:
        """``(host, ip)`` pairs added to ``/etc/hosts`` of execs, in order."""
        return self.exec_meta.extra_hosts

    def with_extra_host(self, host: str, ip: str | ipaddress.IPv4Address | ipaddress.IPv6Address) -> Self:
        """Add ``host`` → ``ip`` to ``/etc/hosts`` of execs (Go's ``AddExtraHost``)."""
        entry = (_check_str(host, what="host"), format_ip(ip))
        return self._with_exec_meta(replace(self.exec_meta, extra_hosts=(*self.exec_meta.extra_hosts, entry)))

    @property
    def ulimits(self) -> tuple[Ulimit, ...]:
        """The ulimits of execs, in order."""
        return self.exec_meta.ulimits

    def with_ulimit(self, name: str, soft: int, hard: int) -> Self:
        """Add a ulimit (``nofile``, ``nproc``, ``core``…) for execs (Go's ``AddUlimit``)."""
        limit = check_ulimit(name, soft, hard)
        return self._with_exec_meta(replace(self.exec_meta, ulimits=(*self.exec_meta.ulimits, limit)))

    @property
    def cgroup_parent(self) -> str:
        """The parent cgroup of execs (``""``: the worker's default)."""
        return self.exec_meta.cgroup_parent

    def with_cgroup_parent(self, cgroup_parent: str) -> Self:
        """Put execs under the cgroup ``cgroup_parent`` (Go's ``WithCgroupParent``)."""
        value = _check_str(cgroup_parent, what="cgroup_parent")
        return self._with_exec_meta(replace(self.exec_meta, cgroup_parent=value))


# --- github.com/google/shlex ------------------------------------------------------------------------

_SPACE = " \t\r\n"


def shlex_split(text: str) -> list[str]:
    """Split ``text`` into words exactly like ``github.com/google/shlex.Split`` (Go's ``llb.Shlex``).

    Differences from :func:`shlex.split` that this keeps: ``#`` starts a comment
    only at the start of a word; inside double quotes a backslash escapes *any*
    character (``"\\a"`` is ``a``); ``\\r`` is a separator.  Unlike Go's
    ``llb.Shlex``, which silently drops a word with an unterminated quote or a
    trailing backslash, this raises :class:`ValueError`.
    """
    words: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in _SPACE:
            i += 1
            continue
        if ch == "#":
            # A comment runs to the end of the line; other whitespace stays inside it.
            end = text.find("\n", i)
            i = n if end < 0 else end + 1
            continue
        word: list[str] = []
        state = "word"
        while True:
            if i >= n:
                if state == "word":
                    break
                if state in ("escape", "quoted_escape"):
                    raise ValueError(f"cannot split {text!r}: EOF found after escape character")
                raise ValueError(f"cannot split {text!r}: EOF found when expecting closing quote")
            ch = text[i]
            i += 1
            if state == "word":
                if ch in _SPACE:
                    break
                if ch == '"':
                    state = "double"
                elif ch == "'":
                    state = "single"
                elif ch == "\\":
                    state = "escape"
                else:
                    word.append(ch)
            elif state == "escape":
                word.append(ch)
                state = "word"
            elif state == "double":
                if ch == '"':
                    state = "word"
                elif ch == "\\":
                    state = "quoted_escape"
                else:
                    word.append(ch)
            elif state == "quoted_escape":
                word.append(ch)
                state = "double"
            else:  # single quotes: no escapes at all
                if ch == "'":
                    state = "word"
                else:
                    word.append(ch)
        words.append("".join(word))
    return words


def check_exit_codes(codes: Iterable[int]) -> tuple[int, ...]:
    """Validate ``valid_exit_codes`` (int32 on the wire)."""
    if isinstance(codes, int):
        raise TypeError("valid_exit_codes must be an iterable of ints, e.g. [0, 3]")
    out = tuple(codes)
    for c in out:
        if isinstance(c, bool) or not isinstance(c, int):
            raise TypeError(f"exit codes must be ints, got {c!r}")
        if not -(1 << 31) <= c < 1 << 31:
            raise ValueError(f"exit code {c} does not fit in int32")
    return out
