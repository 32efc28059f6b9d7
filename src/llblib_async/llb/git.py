"""Git repositories as sources: ``llb.git`` (Go's ``llb.Git``).

The identifier is ``git://<host><path>[#<ref>[:<subdir>]]`` built from the
parsed remote, so the https and ssh URLs of one repository give the same
identifier; the URL git really uses goes in the ``git.fullurl`` attr.  Both are
op bytes, so the URL is parsed and re-serialized the way Go does it:
BuildKit's ``gitutil.ParseURL`` on top of Go's ``net/url`` (``Parse`` and
``URL.String``), ported below — Python's ``urllib.parse`` unescapes and quotes
differently.  Go strings are bytes, so the port works on UTF-8 bytes.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal, TypeAlias

from ..errors import BuildKitError
from . import _paths
from .source import SourceOp, source_state
from .state import State
from .vertex import Constraints, op_constraints

__all__ = ["GIT_AUTH_HEADER_KEY", "GIT_AUTH_TOKEN_KEY", "GitURL", "GitURLError", "git", "parse_git_url"]

GIT_AUTH_TOKEN_KEY = "GIT_AUTH_TOKEN"
"""Default name of the secret holding a token for HTTPS git remotes (Go's ``GitAuthTokenKey``)."""

GIT_AUTH_HEADER_KEY = "GIT_AUTH_HEADER"
"""Default name of the secret holding an ``Authorization`` header (Go's ``GitAuthHeaderKey``)."""

GitMTime: TypeAlias = Literal["checkout", "commit"]

# Go's net/url encoding modes.
_PATH = "path"
_PATH_SEGMENT = "path-segment"
_HOST = "host"
_ZONE = "zone"
_USER_PASSWORD = "user-password"
_QUERY_COMPONENT = "query-component"
_FRAGMENT = "fragment"

_HEX = b"0123456789abcdefABCDEF"
_UPPER_HEX = "0123456789ABCDEF"
_HOST_SUBDELIMS = frozenset(b"!$&'()*+,;=:[]<>\"")
_RESERVED = frozenset(b"$&+,/:;=?@")

# gitutil: the schemes llb.Git accepts, and what makes a string a URL rather than scp-style.
_SUPPORTED_PROTOCOLS = frozenset({"http", "https", "ssh", "git"})
_PROTO_RE = re.compile(r"^[a-zA-Z0-9]+://")
# sshutil.gitSSHRegex (character classes reordered: Go's [a-zA-Z0-9-_] means the same set).
# Go's "$" (no multi-line flag) is Python's "\Z"; "." excludes "\n" in both.
_SCP_RE = re.compile(r"([a-zA-Z0-9_-]+)@([a-zA-Z0-9.-]+):(.*?)(?:\?(.*?))?(?:#(.*))?\Z")


class GitURLError(BuildKitError, ValueError):
    """A git remote ``llb.git`` cannot use."""


def _should_escape(c: int, mode: str) -> bool:
    """Go's ``shouldEscape`` (net/url gen_encoding_table.go)."""
    if 0x61 <= c <= 0x7A or 0x41 <= c <= 0x5A or 0x30 <= c <= 0x39:
        return False
    if mode in (_HOST, _ZONE) and c in _HOST_SUBDELIMS:
        return False
    if c in b"-_.~":
        return False
    if c in _RESERVED:
        if mode == _PATH:
            return c == 0x3F  # '?'
        if mode == _PATH_SEGMENT:
            return c in b"/;,?"
        if mode == _USER_PASSWORD:
            return c in b"@/?:"
        if mode == _QUERY_COMPONENT:
            return True
        if mode == _FRAGMENT:
            return False
    return not (mode == _FRAGMENT and c in b"!()*")


def _ishex(c: int) -> bool:
    return c in _HEX


def _unescape(s: bytes, mode: str) -> bytes:
    """Go's ``unescape``: decode ``%XX``; hosts reject most unescaped punctuation."""
    i = 0
    n = 0
    while i < len(s):
        c = s[i]
        if c == 0x25:  # '%'
            n += 1
            if i + 2 >= len(s) or not _ishex(s[i + 1]) or not _ishex(s[i + 2]):
                raise GitURLError(f"invalid URL escape {s[i : i + 3].decode(errors='replace')!r}")
            value = int(s[i + 1 : i + 3], 16)
            if mode == _HOST and value < 0x80 and s[i : i + 3] != b"%25":
                raise GitURLError(f"invalid URL escape {s[i : i + 3].decode()!r}")
            if mode == _ZONE and s[i : i + 3] != b"%25" and value != 0x20 and _should_escape(value, _HOST):
                raise GitURLError(f"invalid URL escape {s[i : i + 3].decode()!r}")
            i += 3
        else:
            if mode in (_HOST, _ZONE) and c < 0x80 and _should_escape(c, mode):
                raise GitURLError(f"invalid character {chr(c)!r} in host name")
            i += 1
    if n == 0:
        return s
    out = bytearray()
    i = 0
    while i < len(s):
        if s[i] == 0x25:
            out.append(int(s[i + 1 : i + 3], 16))
            i += 3
        else:
            out.append(s[i])
            i += 1
    return bytes(out)


def _escape(s: bytes, mode: str) -> bytes:
    """Go's ``escape`` (for the modes used here: no ``+`` for spaces)."""
    if not any(_should_escape(c, mode) for c in s):
        return s
    out = bytearray()
    for c in s:
        if _should_escape(c, mode):
            out += b"%" + _UPPER_HEX[c >> 4].encode() + _UPPER_HEX[c & 15].encode()
        else:
            out.append(c)
    return bytes(out)


def _valid_encoded(s: bytes, mode: str) -> bool:
    return all(c in b"!$&'()*+,;=:@[]%" or not _should_escape(c, mode) for c in s)


def _valid_optional_port(port: bytes) -> bool:
    if not port:
        return True
    return port[:1] == b":" and all(0x30 <= c <= 0x39 for c in port[1:])


def _valid_userinfo(s: bytes) -> bool:
    return all(
        0x41 <= c <= 0x5A or 0x61 <= c <= 0x7A or 0x30 <= c <= 0x39 or c in b"-._:~!$&'()*+,;=%@" for c in s
    )


def _parse_host(scheme: str, host: bytes) -> bytes:
    """Go's ``parseHost`` (Go 1.26: strict colons for http(s), IP literals checked)."""
    open_bracket = host.rfind(b"[")
    if open_bracket > 0:
        raise GitURLError("invalid IP-literal")
    if open_bracket == 0:
        close_bracket = host.rfind(b"]")
        if close_bracket < 0:
            raise GitURLError("missing ']' in host")
        colon_port = host[close_bracket + 1 :]
        if not _valid_optional_port(colon_port):
            raise GitURLError(f"invalid port {colon_port.decode(errors='replace')!r} after host")
        colon_port = _unescape(colon_port, _HOST)
        hostname = host[1:close_bracket]
        zone = hostname.find(b"%25")
        if zone >= 0:
            unescaped = _unescape(hostname[:zone], _HOST) + _unescape(hostname[zone:], _ZONE)
        else:
            unescaped = _unescape(hostname, _HOST)
        try:
            addr = ipaddress.ip_address(unescaped.decode())
        except (ValueError, UnicodeDecodeError) as err:
            raise GitURLError(f"invalid host: {err}") from None
        if addr.version == 4:
            raise GitURLError("invalid IP-literal")
        return b"[" + unescaped + b"]" + colon_port
    first_colon = host.find(b":")
    if first_colon != -1:
        i = first_colon
        last_colon = host.rfind(b":")
        if last_colon != first_colon and scheme not in ("http", "https"):
            i = last_colon
        colon_port = host[i:]
        if not _valid_optional_port(colon_port):
            raise GitURLError(f"invalid port {colon_port.decode(errors='replace')!r} after host")
    return _unescape(host, _HOST)


@dataclass(frozen=True, slots=True)
class _GoURL:
    scheme: str
    user: tuple[bytes, bytes | None] | None
    host: bytes
    path: bytes
    raw_path: bytes
    force_query: bool
    raw_query: bytes
    fragment: bytes

    def escaped_path(self) -> bytes:
        if self.raw_path and _valid_encoded(self.raw_path, _PATH):
            try:
                if _unescape(self.raw_path, _PATH) == self.path:
                    return self.raw_path
            except GitURLError:
                pass
        if self.path == b"*":
            return b"*"
        return _escape(self.path, _PATH)

    def remote(self) -> bytes:
        """``URL.String()`` without query and fragment (gitutil's ``Remote``)."""
        out = self.scheme.encode() + b":"
        if self.host or self.path or self.user is not None:
            out += b"//"
        if self.user is not None:
            name, password = self.user
            out += _escape(name, _USER_PASSWORD)
            if password is not None:
                out += b":" + _escape(password, _USER_PASSWORD)
            out += b"@"
        out += _escape(self.host, _HOST)
        path = self.escaped_path()
        if path and path[:1] != b"/" and self.host:
            out += b"/"
        out += path
        if self.force_query:
            out += b"?"
        return out


def _go_url_parse(raw: bytes) -> _GoURL:
    """Go's ``url.Parse`` for ``scheme://…`` strings (what gitutil hands it)."""
    without_fragment, _, fragment = raw.partition(b"#")
    if any(c < 0x20 or c == 0x7F for c in without_fragment):
        raise GitURLError("invalid control character in URL")
    scheme_bytes, _, rest = without_fragment.partition(b":")
    scheme = scheme_bytes.decode().lower()
    force_query = False
    if rest.endswith(b"?") and rest.count(b"?") == 1:
        force_query = True
        rest = rest[:-1]
        raw_query = b""
    else:
        rest, _, raw_query = rest.partition(b"?")
    # _PROTO_RE guarantees "scheme://", so this is always the authority form.
    authority, slash, path_rest = rest[2:].partition(b"/")
    rest = slash + path_rest
    at = authority.rfind(b"@")
    host = _parse_host(scheme, authority[at + 1 :] if at >= 0 else authority)
    user: tuple[bytes, bytes | None] | None = None
    if at >= 0:
        userinfo = authority[:at]
        if not _valid_userinfo(userinfo):
            raise GitURLError("invalid userinfo")
        name, colon, password = userinfo.partition(b":")
        user = (
            _unescape(name, _USER_PASSWORD),
            _unescape(password, _USER_PASSWORD) if colon else None,
        )
    path = _unescape(rest, _PATH)
    raw_path = b"" if _escape(path, _PATH) == rest else rest
    if fragment:
        fragment = _unescape(fragment, _FRAGMENT)
    return _GoURL(scheme, user, host, path, raw_path, force_query, raw_query, fragment)


@dataclass(frozen=True, slots=True)
class GitURL:
    """A parsed git remote (BuildKit's ``gitutil.GitURL``).

    ``scheme`` is ``https``/``http``/``ssh``/``git`` (``ssh`` for scp-style
    ``user@host:path``), ``host`` includes a port, ``path`` is unescaped,
    ``remote`` is the URL handed to git (query and fragment removed), ``query``
    and ``fragment`` what followed ``?`` and ``#`` (``None`` when absent).
    """

    scheme: str
    host: str
    path: str
    remote: str
    query: str | None
    fragment: str | None


def _text(value: bytes, what: str) -> str:
    try:
        return value.decode()
    except UnicodeDecodeError:
        # Go would fail to marshal the op: proto3 strings must be valid UTF-8.
        raise GitURLError(f"the {what} is not valid UTF-8 once unescaped") from None


def parse_git_url(remote: str) -> GitURL:
    """BuildKit's ``gitutil.ParseURL`` with the ``https://`` default of ``llb.Git``.

    ``https://…``, ``http://…``, ``ssh://…`` and ``git://…`` are URLs;
    ``user@host:path`` is scp-style ssh; anything else gets ``https://`` in front
    (``github.com/moby/buildkit`` → ``https://github.com/moby/buildkit``).
    Raises :class:`GitURLError` for other schemes and for what Go's URL parser
    rejects.
    """
    proto = _PROTO_RE.match(remote)
    if proto is None:
        scp = _SCP_RE.match(remote)
        if scp is not None:
            user, host, path, query, fragment = scp.groups()
            # sshutil.SCPStyleURL.String() without query and fragment; the user needs no escaping.
            return GitURL("ssh", host, path, f"{user}@{host}:{path}", query, fragment or None)
        remote = "https://" + remote
        proto = _PROTO_RE.match(remote)
        assert proto is not None
    scheme = proto.group(0)[:-3].lower()
    if scheme not in _SUPPORTED_PROTOCOLS:
        raise GitURLError(f"unsupported git protocol {scheme!r} in {remote!r} (use https, http, ssh or git)")
    raw = remote.encode()
    url = _go_url_parse(raw)
    has_query = b"?" in raw.partition(b"#")[0]
    return GitURL(
        scheme=url.scheme,
        host=_text(url.host, "host"),
        path=_text(url.path, "path"),
        remote=_text(url.remote(), "URL"),
        query=url.raw_query.decode() if has_query else None,
        fragment=_text(url.fragment, "fragment") or None,
    )


def git(
    url: str,
    ref: str | None = None,
    *,
    subdir: str | None = None,
    keep_git_dir: bool = False,
    auth_token_secret: str | None = None,
    auth_header_secret: str | None = None,
    known_ssh_hosts: str | Iterable[str] | None = None,
    mount_ssh_sock: str | None = None,
    checksum: str | None = None,
    skip_submodules: bool = False,
    mtime: GitMTime | None = None,
    fetch_by_commit: bool = False,
    advice: bool = False,
    bundle: str | None = None,
    bundle_oci_store: tuple[str, str] | None = None,
    checkout_bundle: bool = False,
    name: str | None = None,
    description: Mapping[str, str] | None = None,
    ignore_cache: bool = False,
    constraints: Constraints | None = None,
) -> State:
    """A git repository checked out at ``ref`` (Go's ``llb.Git``).

    ``url`` is ``https://host/path``, ``http://…``, ``git://…``, ``ssh://[user@]host/path``
    or scp-style ``user@host:path``; without a scheme ``https://`` is assumed.
    It must not carry a query or fragment (Go would drop them silently): pass the
    ref and sub-directory as arguments.

    * ``ref``: branch, tag, commit or full ref (default: the remote's HEAD).  Go's
      ``"ref:subdir"`` fragment form is accepted too.
    * ``subdir``: check out only this directory of the repository (used as given;
      the ``ref:subdir`` form is cleaned like Go cleans it).
    * ``keep_git_dir``: keep ``.git`` (by default it is removed after the shallow clone).
    * ``auth_token_secret`` / ``auth_header_secret``: names of the session secrets
      with an HTTPS token / ``Authorization`` header.  The defaults
      ``GIT_AUTH_TOKEN`` / ``GIT_AUTH_HEADER`` are always sent; naming them
      explicitly also requires the daemon cap ``source.git.httpauth``, like Go.
    * ssh remotes only (ignored otherwise, like Go): ``known_ssh_hosts``
      (``known_hosts`` lines, one string or several) and ``mount_ssh_sock`` (the
      session's ssh agent id, default ``"default"``).  Go ssh-keyscans the host
      when no known hosts are given; this builder does no I/O and sends none, as
      Go does when the scan fails.
    * ``checksum``: the commit (or prefix) the ref must resolve to;
      ``fetch_by_commit`` fetches that commit directly without resolving the ref.
    * ``skip_submodules``, ``mtime`` (``"checkout"`` or ``"commit"``: file
      times), ``advice`` (let git print its advice messages).
    * ``bundle``: import history from a git bundle blob
      (``docker-image+blob://…@sha256:…`` or ``oci-layout+blob://…@sha256:…``;
      needs ``checksum``), ``bundle_oci_store`` = ``(session_id, store_id)`` for
      the latter; ``checkout_bundle`` produces a ``bundle`` file instead of a work
      tree.
    """
    if not url:
        raise GitURLError("git URL must not be empty")
    remote = parse_git_url(url)
    if remote.fragment is not None or remote.query is not None:
        raise GitURLError(
            f"git URL {url!r} has a query or fragment, which Go's llb.Git drops; "
            "pass the ref and subdir as arguments instead"
        )
    if not remote.host:
        raise GitURLError(f"git URL {url!r} has no host")

    git_ref = ""
    git_subdir = ""
    if ref:
        git_ref, colon, fragment_subdir = ref.partition(":")
        fragment_subdir = _paths.join("/", fragment_subdir).removeprefix("/")
        if colon and fragment_subdir:
            git_subdir = fragment_subdir
    if subdir is not None:
        git_subdir = subdir  # Go's GitSubDir: used as given, after the fragment's.

    identifier = remote.host + _paths.join("/", remote.path)
    if git_ref or git_subdir:
        identifier += "#" + git_ref
        if git_subdir:
            identifier += ":" + git_subdir

    attrs: dict[str, str] = {}
    caps: set[str] = set()
    if keep_git_dir:
        attrs["git.keepgitdir"] = "true"
        caps.add("source.git.keepgitdir")
    attrs["git.fullurl"] = remote.remote
    caps.add("source.git.fullurl")
    # Go sends the default secret names always, but needs the cap only for names the caller chose.
    for attr, value, default in (
        ("git.authtokensecret", auth_token_secret, GIT_AUTH_TOKEN_KEY),
        ("git.authheadersecret", auth_header_secret, GIT_AUTH_HEADER_KEY),
    ):
        secret = default if value is None else value
        if secret:
            attrs[attr] = secret
            if value is not None:
                caps.add("source.git.httpauth")
    if remote.scheme == "ssh":
        if known_ssh_hosts is not None:
            keys = [known_ssh_hosts] if isinstance(known_ssh_hosts, str) else list(known_ssh_hosts)
            # Go's KnownSSHHosts: each key loses one trailing newline and gets one back.
            attrs["git.knownsshhosts"] = "".join(k.removesuffix("\n") + "\n" for k in keys)
        caps.add("source.git.knownsshhosts")
        attrs["git.mountsshsock"] = mount_ssh_sock or "default"
        caps.add("source.git.mountsshsock")
    if checksum:
        attrs["git.checksum"] = checksum
        caps.add("source.git.checksum")
    if skip_submodules:
        attrs["git.skipsubmodules"] = "true"
        caps.add("source.git.skipsubmodules")
    if mtime is not None:
        if mtime not in ("checkout", "commit"):
            raise ValueError(f"mtime must be 'checkout' or 'commit', not {mtime!r}")
        attrs["git.mtime"] = mtime
        caps.add("source.git.mtime")
    if advice:
        attrs["git.advice"] = "true"  # Go adds no cap for it
    if fetch_by_commit:
        attrs["git.fetchbycommit"] = "true"
        caps.add("source.git.fetchbycommit")
    if bundle is not None:
        if not bundle.startswith(("docker-image+blob://", "oci-layout+blob://")):
            raise ValueError(
                f"bundle must be a docker-image+blob:// or oci-layout+blob:// locator, not {bundle!r}"
            )
        attrs["git.bundle"] = bundle
        caps.add("source.git.bundle")
        if bundle_oci_store is not None:
            session_id, store_id = bundle_oci_store
            if session_id:
                attrs["oci.session"] = session_id
            if store_id:
                attrs["oci.store"] = store_id
    elif bundle_oci_store is not None:
        raise ValueError("bundle_oci_store only applies together with bundle")
    if checkout_bundle:
        if keep_git_dir or git_subdir:
            raise ValueError("checkout_bundle cannot be combined with keep_git_dir or a subdir")
        attrs["git.checkoutbundle"] = "true"
        caps.add("source.git.checkoutbundle")
    caps.add("source.git")

    vertex = SourceOp(
        identifier="git://" + identifier,
        attrs=tuple(sorted(attrs.items())),
        caps=frozenset(caps),
        constraints=op_constraints(
            constraints, name=name, description=description, ignore_cache=ignore_cache
        ),
    )
    return source_state(vertex)
