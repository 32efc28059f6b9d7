"""fsutil port without a daemon: Go FileMode bits, patternmatcher, walker, path checks,
and the diffcopy sender/receiver talking to each other in memory.

The walker is also cross-checked field by field against Go's fsutil itself (a tiny Go
program built from the module cache) when the Go toolchain is available.
"""

from __future__ import annotations

import errno
import hashlib
import inspect
import json
import os
import shutil
import socket
import stat
import subprocess
from pathlib import Path
from typing import Any

import anyio
import pytest

from llblib_async._fsutil import gomode, patterns, wire
from llblib_async._fsutil.beneath import Beneath, split_rel
from llblib_async._fsutil.patterns import BadPatternError, MatchInfo, MatchType, PatternMatcher
from llblib_async._fsutil.receive import OrderValidator, ReceiveStats, receive_tree, validate_path
from llblib_async._fsutil.send import parse_request_options, send_tree
from llblib_async._fsutil.walk import FilterOptions, MapResult, walk, walk_order_key
from llblib_async._pb.fsutil.types import Packet, PacketPacketType, Stat

IS_ROOT = os.geteuid() == 0
PT = PacketPacketType


# --------------------------------------------------------------------------- helpers


def _write(root: Path, rel: str, data: bytes | str = b"x", mode: int = 0o644) -> Path:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data.encode() if isinstance(data, str) else data)
    p.chmod(mode)
    return p


def _xattrs_supported(path: Path) -> bool:
    try:
        os.setxattr(path, "user.llblib-probe", b"1")
        os.removexattr(path, "user.llblib-probe")
        return True
    except OSError:
        return False


def make_tree(root: Path) -> None:
    """A tree with every kind of entry fsutil handles (devices only as root)."""
    root.mkdir(parents=True, exist_ok=True)
    _write(root, "a/b", "in a")
    _write(root, "a.b", "dot")
    _write(root, "a-b", "dash")
    _write(root, "a0/c", "zero")
    _write(root, "A", "upper")
    _write(root, "é.txt", "utf8")
    _write(root, "exe.sh", "#!/bin/sh\necho hi\n", 0o755)
    _write(root, "ro", "read only", 0o400)
    _write(root, "suid", "s", 0o4755)
    _write(root, "sgid", "g", 0o2711)
    _write(root, "empty.txt", b"")
    _write(root, "deep/er/still/file.go", "package x\n")
    _write(root, "docs/README.md", "# readme\n")
    _write(root, "docs/x.md", "x\n")
    _write(root, "big.bin", os.urandom(300_000) + b"tail")  # several DATA packets
    (root / "sticky").mkdir()
    (root / "sticky").chmod(0o1777)
    (root / "private").mkdir(mode=0o700)
    _write(root, "private/secret", "s", 0o600)
    (root / "emptydir").mkdir()
    os.link(root / "a.b", root / "hardlink")
    os.link(root / "a.b", root / "deep/hardlink2")
    os.symlink("a.b", root / "ln-rel")
    os.symlink("/etc/passwd", root / "ln-abs-out")
    os.symlink("../../outside", root / "ln-rel-out")
    os.symlink("docs", root / "ln-dir")
    os.symlink("does-not-exist", root / "ln-dangling")
    os.mkfifo(root / "fifo")
    if IS_ROOT:
        os.mknod(root / "chardev", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
        os.mknod(root / "blkdev", 0o640 | stat.S_IFBLK, os.makedev(259, 70000))
    if _xattrs_supported(root / "a.b"):
        os.setxattr(root / "a.b", "user.test", b"hello")
        os.setxattr(root / "docs", "user.dir", b"d")
    # Fixed mtimes (ns precision) so the copy's can be compared exactly.
    for i, p in enumerate(sorted(root.rglob("*"), key=lambda x: len(x.parts), reverse=True)):
        os.utime(p, ns=(1_600_000_000_123_456_789 + i, 1_600_000_000_123_456_789 + i), follow_symlinks=False)


def snapshot(root: Path) -> dict[str, dict[str, Any]]:
    """Everything a faithful copy must reproduce, per relative path."""
    out: dict[str, dict[str, Any]] = {}
    inode_first: dict[tuple[int, int], str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath, name)
            rel = p.relative_to(root).as_posix()
            st = os.lstat(p)
            e: dict[str, Any] = {"mode": oct(st.st_mode), "mtime": st.st_mtime_ns}
            if stat.S_ISREG(st.st_mode):
                e["sha"] = hashlib.sha256(p.read_bytes()).hexdigest()
                key = (st.st_dev, st.st_ino)
                e["same_inode_as"] = inode_first.setdefault(key, rel)
            elif stat.S_ISLNK(st.st_mode):
                e["link"] = os.readlink(p)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                e["rdev"] = st.st_rdev
            try:
                names = os.listxattr(p, follow_symlinks=False)
                e["xattrs"] = {k: os.getxattr(p, k, follow_symlinks=False) for k in names}
            except OSError:
                pass
            out[rel] = e
    return out


class MemConn:
    """One end of an in-memory diffcopy stream (a :class:`wire.PacketConn`)."""

    def __init__(
        self,
        inbox: anyio.abc.ObjectReceiveStream[bytes],
        outbox: anyio.abc.ObjectSendStream[bytes],
    ) -> None:
        self.inbox = inbox
        self.outbox = outbox
        self.sent: list[Packet] = []

    async def recv(self) -> bytes | None:
        try:
            return await self.inbox.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            return None

    async def send(self, data: bytes) -> None:
        self.sent.append(Packet.parse(data))
        await self.outbox.send(data)

    async def close(self) -> None:
        await self.outbox.aclose()


def conn_pair(buffer: int = 8) -> tuple[MemConn, MemConn]:
    a_send, b_recv = anyio.create_memory_object_stream[bytes](buffer)
    b_send, a_recv = anyio.create_memory_object_stream[bytes](buffer)
    return MemConn(a_recv, a_send), MemConn(b_recv, b_send)


def stats_of(root: Path, opts: FilterOptions | None = None) -> list[Stat]:
    gen = walk(root, opts)
    try:
        return list(gen)
    finally:
        gen.close()


# --------------------------------------------------------------------------- gomode


@pytest.mark.parametrize(
    ("st_mode", "go"),
    [
        (stat.S_IFREG | 0o644, 0o644),
        (stat.S_IFREG | 0o4755, gomode.MODE_SETUID | 0o755),
        (stat.S_IFREG | 0o2711, gomode.MODE_SETGID | 0o711),
        (stat.S_IFDIR | 0o1777, gomode.MODE_DIR | gomode.MODE_STICKY | 0o777),
        (stat.S_IFDIR | 0o755, 0x800001ED),  # the spec's observed dir 0755
        (stat.S_IFLNK | 0o777, gomode.MODE_SYMLINK | 0o777),
        (stat.S_IFIFO | 0o600, gomode.MODE_NAMED_PIPE | 0o600),
        (stat.S_IFCHR | 0o620, gomode.MODE_DEVICE | gomode.MODE_CHAR_DEVICE | 0o620),
        (stat.S_IFBLK | 0o660, gomode.MODE_DEVICE | 0o660),
        (stat.S_IFSOCK | 0o755, gomode.MODE_SOCKET | 0o755),
    ],
)
def test_gomode_roundtrip(st_mode: int, go: int) -> None:
    assert gomode.from_posix(st_mode) == go
    assert gomode.to_posix(go) == st_mode
    assert gomode.chmod_bits(go) == stat.S_IMODE(st_mode)
    assert gomode.is_regular(go) == stat.S_ISREG(st_mode)
    assert gomode.is_dir(go) == stat.S_ISDIR(st_mode)
    assert gomode.is_symlink(go) == stat.S_ISLNK(st_mode)


def test_gomode_device_numbers_match_go() -> None:
    rdev = os.makedev(259, 70000)
    assert (gomode.go_major(rdev), gomode.go_minor(rdev)) == (259, 70000)
    assert os.makedev(gomode.go_major(rdev), gomode.go_minor(rdev)) == rdev


# --------------------------------------------------------------------------- patternmatcher (Go tests)

# patternmatcher_test.go TestMatches: (pattern, text, pass)
MATCHES = [
    ("**", "file", True),
    ("**", "file/", True),
    ("**/", "file", True),
    ("**/", "file/", True),
    ("**", "/", True),
    ("**/", "/", True),
    ("**", "dir/file", True),
    ("**/", "dir/file", True),
    ("**", "dir/file/", True),
    ("**/", "dir/file/", True),
    ("**/**", "dir/file", True),
    ("**/**", "dir/file/", True),
    ("dir/**", "dir/file", True),
    ("dir/**", "dir/file/", True),
    ("dir/**", "dir/dir2/file", True),
    ("dir/**", "dir/dir2/file/", True),
    ("**/dir", "dir", True),
    ("**/dir", "dir/file", True),
    ("**/dir2/*", "dir/dir2/file", True),
    ("**/dir2/*", "dir/dir2/file/", True),
    ("**/dir2/**", "dir/dir2/dir3/file", True),
    ("**/dir2/**", "dir/dir2/dir3/file/", True),
    ("**file", "file", True),
    ("**file", "dir/file", True),
    ("**/file", "dir/file", True),
    ("**file", "dir/dir/file", True),
    ("**/file", "dir/dir/file", True),
    ("**/file*", "dir/dir/file", True),
    ("**/file*", "dir/dir/file.txt", True),
    ("**/file*txt", "dir/dir/file.txt", True),
    ("**/file*.txt", "dir/dir/file.txt", True),
    ("**/file*.txt*", "dir/dir/file.txt", True),
    ("**/**/*.txt", "dir/dir/file.txt", True),
    ("**/**/*.txt2", "dir/dir/file.txt", False),
    ("**/*.txt", "file.txt", True),
    ("**/**/*.txt", "file.txt", True),
    ("a**/*.txt", "a/file.txt", True),
    ("a**/*.txt", "a/dir/file.txt", True),
    ("a**/*.txt", "a/dir/dir/file.txt", True),
    ("a/*.txt", "a/dir/file.txt", False),
    ("a/*.txt", "a/file.txt", True),
    ("a/*.txt**", "a/file.txt", True),
    ("a[b-d]e", "ae", False),
    ("a[b-d]e", "ace", True),
    ("a[b-d]e", "aae", False),
    ("a[^b-d]e", "aze", True),
    (".*", ".foo", True),
    (".*", "foo", False),
    ("abc.def", "abcdef", False),
    ("abc.def", "abc.def", True),
    ("abc.def", "abcZdef", False),
    ("abc?def", "abcZdef", True),
    ("abc?def", "abcdef", False),
    ("a\\\\", "a\\", True),
    ("**/foo/bar", "foo/bar", True),
    ("**/foo/bar", "dir/foo/bar", True),
    ("**/foo/bar", "dir/dir2/foo/bar", True),
    ("abc/**", "abc", False),
    ("abc/**", "abc/def", True),
    ("abc/**", "abc/def/ghi", True),
    ("**/.foo", ".foo", True),
    ("**/.foo", "bar.foo", False),
    ("a(b)c/def", "a(b)c/def", True),
    ("a(b)c/def", "a(b)c/xyz", False),
    ("a.|)$(}+{bc", "a.|)$(}+{bc", True),
    (
        "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
        "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
        True,
    ),
    ("dist/*.whl", "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", True),
    ("a\\*b", "a*b", True),  # non-Windows only upstream
]
MULTI = [
    (["**", "!util/docker/web"], "util/docker/web/foo", False),
    (["**", "!util/docker/web", "util/docker/web/foo"], "util/docker/web/foo", True),
    (
        ["**", "!dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl"],
        "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
        False,
    ),
    (["**", "!dist/*.whl"], "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", False),
]
ALL_MATCHES = [([p], t, ok) for p, t, ok in MATCHES] + MULTI


def _parent_prefixes(text: str) -> list[str]:
    parent = patterns.go_dir(text)
    if parent == ".":
        return []
    dirs = parent.split("/")
    return ["/".join(dirs[: i + 1]) for i in range(len(dirs))]


@pytest.mark.parametrize(("pats", "text", "ok"), ALL_MATCHES)
def test_patternmatcher_matches_or_parent_matches(pats: list[str], text: str, ok: bool) -> None:
    assert PatternMatcher(pats).matches_or_parent_matches(text) is ok


@pytest.mark.parametrize(("pats", "text", "ok"), ALL_MATCHES)
def test_patternmatcher_matches_using_parent_results(pats: list[str], text: str, ok: bool) -> None:
    pm = PatternMatcher(pats)
    info = MatchInfo()
    for prefix in _parent_prefixes(text):
        _, info = pm.matches_using_parent_results(prefix, info)
    assert pm.matches_using_parent_results(text, info)[0] is ok
    # ... and without context, like MatchesUsingParentResultsNoContext
    assert pm.matches_using_parent_results(text, MatchInfo())[0] is ok


@pytest.mark.parametrize(("pat", "text", "ok"), MATCHES)
def test_patternmatcher_matches_using_parent_result(pat: str, text: str, ok: bool) -> None:
    pm = PatternMatcher([pat])
    parent_matched = False
    for prefix in _parent_prefixes(text):
        parent_matched = pm.matches_using_parent_result(prefix, parent_matched)
    assert pm.matches_using_parent_result(text, parent_matched) is ok


# patternmatcher_test.go matchTests (Go's filepath.Match tests through Matches)
FILEPATH_MATCH = [
    ("abc", "abc", True, False),
    ("*", "abc", True, False),
    ("*c", "abc", True, False),
    ("a*", "a", True, False),
    ("a*", "abc", True, False),
    ("a*", "ab/c", True, False),
    ("a*/b", "abc/b", True, False),
    ("a*/b", "a/c/b", False, False),
    ("a*b*c*d*e*/f", "axbxcxdxe/f", True, False),
    ("a*b*c*d*e*/f", "axbxcxdxexxx/f", True, False),
    ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", False, False),
    ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", False, False),
    ("a*b?c*x", "abxbbxdbxebxczzx", True, False),
    ("a*b?c*x", "abxbbxdbxebxczzy", False, False),
    ("ab[c]", "abc", True, False),
    ("ab[b-d]", "abc", True, False),
    ("ab[e-g]", "abc", False, False),
    ("ab[^c]", "abc", False, False),
    ("ab[^b-d]", "abc", False, False),
    ("ab[^e-g]", "abc", True, False),
    ("a\\*b", "a*b", True, False),
    ("a\\*b", "ab", False, False),
    ("a?b", "a☺b", True, False),
    ("a[^a]b", "a☺b", True, False),
    ("a???b", "a☺b", False, False),
    ("a[^a][^a][^a]b", "a☺b", False, False),
    ("[a-ζ]*", "\u03b1", True, False),  # Greek alpha
    ("*[a-ζ]", "A", False, False),
    ("a?b", "a/b", False, False),
    ("a*b", "a/b", False, False),
    ("[\\]a]", "]", True, False),
    ("[\\-]", "-", True, False),
    ("[x\\-]", "x", True, False),
    ("[x\\-]", "-", True, False),
    ("[x\\-]", "z", False, False),
    ("[\\-x]", "x", True, False),
    ("[\\-x]", "-", True, False),
    ("[\\-x]", "a", False, False),
    ("[]a]", "]", False, True),
    ("[-]", "-", False, True),
    ("[x-]", "x", False, True),
    ("[x-]", "-", False, True),
    ("[x-]", "z", False, True),
    ("[-x]", "x", False, True),
    ("[-x]", "-", False, True),
    ("[-x]", "a", False, True),
    ("\\", "a", False, True),
    ("[a-b-c]", "a", False, True),
    ("[", "a", False, True),
    ("[^", "a", False, True),
    ("[^bc", "a", False, True),
    ("a[", "a", False, True),
    ("a[", "ab", False, True),
    ("*x", "xxx", True, False),
]


@pytest.mark.parametrize(("pat", "text", "ok", "bad"), FILEPATH_MATCH)
def test_patternmatcher_filepath_match_table(pat: str, text: str, ok: bool, bad: bool) -> None:
    if bad:
        with pytest.raises(BadPatternError):
            patterns.matches(text, [pat])
    else:
        assert patterns.matches(text, [pat]) is ok


def test_patternmatcher_simple_cases() -> None:
    assert patterns.matches("fileutils.go", ["*"])
    assert patterns.matches("fileutils.go", ["*.go"])
    assert patterns.matches("fileutils.go", ["!fileutils.go", "*.go"])
    assert not patterns.matches("docs/README.md", ["docs", "!docs/README.md"])
    assert not patterns.matches("docs/README.md", ["docs/", "!docs/README.md"])
    assert not patterns.matches("docs/README.md", ["docs/*", "!docs/README.md"])
    assert not patterns.matches("fileutils.go", ["*.go", "!fileutils.go"])
    assert not patterns.matches(".", ["*.go"])
    assert not patterns.matches("/any/path/there", [])
    with pytest.raises(ValueError, match="illegal exclusion pattern"):
        patterns.matches("fileutils.go", ["!"])
    with pytest.raises(BadPatternError):
        patterns.matches("/any/path/there", ["["])


def test_patternmatcher_clean_patterns() -> None:
    assert len(PatternMatcher(["docs", "config"]).patterns) == 2
    assert len(PatternMatcher(["docs", "config", ""]).patterns) == 2
    assert PatternMatcher(["docs", "!docs/README.md"]).exclusions()
    assert PatternMatcher(["docs", "  !docs/README.md"]).exclusions()
    assert PatternMatcher(["docs", "!docs/README.md  "]).exclusions()
    with pytest.raises(ValueError, match="illegal exclusion"):
        PatternMatcher(["!"])


# patternmatcher_test.go compileTests ("/" separator)
COMPILE = [
    ("*", MatchType.REGEXP, r"^[^/]*$"),
    ("file*", MatchType.REGEXP, r"^file[^/]*$"),
    ("*file", MatchType.REGEXP, r"^[^/]*file$"),
    ("a*/b", MatchType.REGEXP, r"^a[^/]*/b$"),
    ("**", MatchType.SUFFIX, None),
    ("**/**", MatchType.REGEXP, r"^(.*/)?.*$"),
    ("dir/**", MatchType.PREFIX, None),
    ("**/dir", MatchType.SUFFIX, None),
    ("**/dir2/*", MatchType.REGEXP, r"^(.*/)?dir2/[^/]*$"),
    ("**/dir2/**", MatchType.REGEXP, r"^(.*/)?dir2/.*$"),
    ("**file", MatchType.SUFFIX, None),
    ("**/file*txt", MatchType.REGEXP, r"^(.*/)?file[^/]*txt$"),
    ("**/**/*.txt", MatchType.REGEXP, r"^(.*/)?(.*/)?[^/]*\.txt$"),
    ("a[b-d]e", MatchType.REGEXP, r"^a[b-d]e$"),
    (".*", MatchType.REGEXP, r"^\.[^/]*$"),
    ("abc.def", MatchType.EXACT, None),
    ("abc?def", MatchType.REGEXP, r"^abc[^/]def$"),
    ("**/foo/bar", MatchType.SUFFIX, None),
    ("a(b)c/def", MatchType.EXACT, None),
    ("a.|)$(}+{bc", MatchType.EXACT, None),
    ("dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", MatchType.EXACT, None),
]


@pytest.mark.parametrize(("pat", "kind", "regexp"), COMPILE)
def test_patternmatcher_compile(pat: str, kind: MatchType, regexp: str | None) -> None:
    p = patterns.Pattern(cleaned_pattern=patterns.clean(pat))
    p.compile("/")
    assert p.match_type == kind
    if kind == MatchType.REGEXP:
        assert p.regexp_source == regexp


def test_patternmatcher_malformed_pattern_fails_every_time() -> None:
    pm = PatternMatcher(["[Local-Only]/"])  # passes filepath.Match, fails as a regexp
    for _ in range(2):
        with pytest.raises(BadPatternError):
            pm.matches_or_parent_matches("x")


@pytest.mark.parametrize(
    ("path", "cleaned"),
    [
        ("", "."),
        ("a/b/..", "a"),
        ("a/..", "."),
        ("/a/..", "/"),
        ("../../a", "../../a"),
        ("a/../../b", "../b"),
        ("//a//b/./c/", "/a/b/c"),
        ("/..", "/"),
    ],
)
def test_go_clean(path: str, cleaned: str) -> None:
    assert patterns.clean(path) == cleaned


# --------------------------------------------------------------------------- walker


def test_walk_order_is_go_walkdir_order(tmp_path: Path) -> None:
    for rel in ["a/b", "a.b", "a-b", "a0/c", "A", "B/x", "_", "é", "a/b.c/d", "a/b-c", "z~"]:
        _write(tmp_path, rel)
    paths = [s.path for s in stats_of(tmp_path)]
    # Per directory byte order, depth first: "a" and its subtree come before "a-b"
    # even though "a-b" < "a/b" as plain strings.
    assert paths == [
        "A",
        "B",
        "B/x",
        "_",
        "a",
        "a/b",
        "a/b-c",
        "a/b.c",
        "a/b.c/d",
        "a-b",
        "a.b",
        "a0",
        "a0/c",
        "z~",
        "é",
    ]
    assert paths == sorted(paths, key=walk_order_key)


def test_walk_stat_fields(tmp_path: Path) -> None:
    make_tree(tmp_path)
    by_path = {s.path: s for s in stats_of(tmp_path)}
    assert "" not in by_path  # the root is not sent
    assert "." not in by_path
    for s in by_path.values():
        assert (s.uid, s.gid) == (0, 0)  # Go's resetUIDAndGID
        st = os.lstat(tmp_path / s.path)
        assert s.mod_time == st.st_mtime_ns
    assert by_path["exe.sh"].mode == 0o755
    assert by_path["ro"].mode == 0o400
    assert by_path["suid"].mode == gomode.MODE_SETUID | 0o755
    assert by_path["sgid"].mode == gomode.MODE_SETGID | 0o711
    assert by_path["sticky"].mode == gomode.MODE_DIR | gomode.MODE_STICKY | 0o777
    assert by_path["docs"].mode == gomode.MODE_DIR | 0o755
    assert by_path["docs"].size == 0
    assert by_path["big.bin"].size == 300_004
    assert by_path["fifo"].mode == gomode.MODE_NAMED_PIPE | 0o644
    assert by_path["ln-rel"].mode == gomode.MODE_SYMLINK | 0o777
    assert by_path["ln-rel"].linkname == "a.b"
    assert by_path["ln-rel"].size == len("a.b")
    if IS_ROOT:
        dev = by_path["chardev"]
        assert dev.mode == gomode.MODE_DEVICE | gomode.MODE_CHAR_DEVICE | 0o600
        assert (dev.devmajor, dev.devminor) == (1, 3)
        assert (by_path["blkdev"].devmajor, by_path["blkdev"].devminor) == (259, 70000)
    if "user.test" in os.listxattr(tmp_path / "a.b"):
        assert by_path["a.b"].xattrs == {"user.test": b"hello"}
        assert by_path["docs"].xattrs == {"user.dir": b"d"}


def test_walk_hardlinks(tmp_path: Path) -> None:
    make_tree(tmp_path)
    by_path = {s.path: s for s in stats_of(tmp_path)}
    # The first path of the inode in walk order carries the content ...
    assert by_path["a.b"].linkname == ""
    # ... later ones point at it; Go keeps their real size (mkstat sets Size last).
    assert by_path["deep/hardlink2"].linkname == "a.b"
    assert by_path["hardlink"].linkname == "a.b"
    assert by_path["hardlink"].size == by_path["a.b"].size == 3
    # If the first path is filtered out, the next one becomes the primary (WithHardlinkReset).
    only = {s.path: s for s in stats_of(tmp_path, FilterOptions(exclude_patterns=["a.b"]))}
    assert only["deep/hardlink2"].linkname == ""
    assert only["hardlink"].linkname == "deep/hardlink2"


def test_walk_symlinks_are_never_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    _write(outside, "secret.txt", "do not send")
    (outside / "unreadable").mkdir(mode=0o000)
    root = tmp_path / "ctx"
    _write(root, "file", "ok")
    os.symlink(outside, root / "out-dir")
    os.symlink(outside / "secret.txt", root / "out-file")
    os.symlink(outside / "unreadable", root / "out-unreadable")
    stats = stats_of(root)
    assert [s.path for s in stats] == ["file", "out-dir", "out-file", "out-unreadable"]
    for s in stats[1:]:
        assert gomode.is_symlink(s.mode)
        assert s.linkname.startswith(str(outside))
    # followpaths resolve links *inside* the tree only: nothing outside is included.
    followed = stats_of(root, FilterOptions(follow_paths=["out-dir/secret.txt"]))
    assert [s.path for s in followed] == ["out-dir"]


def test_walk_sockets_are_sent_like_go(tmp_path: Path) -> None:
    # fsutil clears the socket mode bit instead of dropping the entry, so Go sends a
    # socket as a regular (empty) file; we do the same for identical trees.
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(tmp_path / "sock"))
    finally:
        sock.close()
    (s,) = stats_of(tmp_path)
    assert s.path == "sock"
    assert gomode.is_regular(s.mode)
    assert s.mode & gomode.MODE_SOCKET == 0
    assert s.size == 0


def test_walk_filters(tmp_path: Path) -> None:
    make_tree(tmp_path)

    def paths(**kw: Any) -> list[str]:
        return [s.path for s in stats_of(tmp_path, FilterOptions(**kw))]

    assert paths(include_patterns=["docs"]) == ["docs", "docs/README.md", "docs/x.md"]
    # Parents of an included entry are still sent, so the tree stays valid.
    assert paths(include_patterns=["deep/er/still/file.go"]) == [
        "deep",
        "deep/er",
        "deep/er/still",
        "deep/er/still/file.go",
    ]
    assert paths(include_patterns=["**/*.md"]) == ["docs", "docs/README.md", "docs/x.md"]
    assert "docs/x.md" not in paths(exclude_patterns=["docs", "!docs/README.md"])
    assert "docs/README.md" in paths(exclude_patterns=["docs", "!docs/README.md"])
    assert paths(exclude_patterns=["**"]) == []
    # followpaths resolve symlinks into include patterns
    assert paths(follow_paths=["ln-dir/README.md"]) == ["docs", "docs/README.md", "ln-dir"]

    def no_docs(path: str, st: Stat) -> MapResult:
        return MapResult.SKIP_DIR if path == "docs" else MapResult.KEEP

    assert not [p for p in paths(map=no_docs) if p.startswith("docs")]
    with pytest.raises(ValueError, match="invalid excludepatterns"):
        paths(exclude_patterns=["["])


def test_walk_is_a_lazy_generator(tmp_path: Path) -> None:
    for i in range(50):
        _write(tmp_path, f"d{i:02}/sub/f")
    assert inspect.isgenerator(walk(tmp_path))
    fds_before = len(os.listdir("/proc/self/fd"))
    gen = walk(tmp_path)
    first = next(gen)
    assert first.path == "d00"
    gen.close()  # releases the directory descriptors it held
    assert len(os.listdir("/proc/self/fd")) == fds_before


def test_parse_request_options() -> None:
    from multidict import MultiDict

    md = MultiDict(
        [
            ("dir-name", "ctx"),
            ("exclude-patterns", "*.log"),
            ("exclude-patterns", "tmp"),
            ("include-patterns", "%C3%A9t%C3%A9+x"),
            ("include-patterns-encoded", "1"),
            ("followpaths", ".dockerignore"),
        ]
    )
    name, opts = parse_request_options(md)
    assert name == "ctx"
    assert opts.exclude_patterns == ["*.log", "tmp"]
    assert opts.include_patterns == ["été x"]
    assert opts.follow_paths == [".dockerignore"]
    assert parse_request_options(MultiDict())[0] == ""


# --------------------------------------------------------------------------- path validation


@pytest.mark.parametrize(
    "bad", ["", ".", "..", "../x", "a/../../x", "/etc/passwd", "a//b", "a/./b", "a/", "a/..", "x\x00y"]
)
def test_validate_path_rejects(bad: str) -> None:
    with pytest.raises(ValueError, match="path"):
        validate_path(bad)


@pytest.mark.parametrize("good", ["a", "a/b", "..a", "a..", "a/..b/c", "é/ü"])
def test_validate_path_accepts(good: str) -> None:
    validate_path(good)


def test_order_validator(tmp_path: Path) -> None:
    make_tree(tmp_path)
    v = OrderValidator()
    for s in stats_of(tmp_path):
        v.check(s.path, gomode.is_dir(s.mode))  # a real walk passes

    def run(entries: list[tuple[str, bool]]) -> None:
        v = OrderValidator()
        for p, is_dir in entries:
            v.check(p, is_dir)

    run(
        [
            ("a", True),
            ("a/b", False),
            ("a-b", False),
            ("b", True),
            ("b/c", True),
            ("b/c/d", False),
            ("c", False),
        ]
    )
    with pytest.raises(ValueError, match="out of order"):
        run([("b", False), ("a", False)])
    with pytest.raises(ValueError, match="out of order"):
        run([("a", False), ("a", False)])  # duplicates
    with pytest.raises(ValueError, match="out of order"):
        run([("x/y", False)])  # parent never sent
    with pytest.raises(ValueError, match="out of order"):
        run([("ln", False), ("ln/passwd", False)])  # parent sent as a non-directory
    with pytest.raises(ValueError, match="out of order"):
        run([("a", True), ("b", False), ("a/c", False)])  # back into a closed dir


def test_beneath_never_follows_symlinks(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "root"
    root.mkdir()
    (root / "dir").mkdir()
    os.symlink(outside, root / "ln")
    os.symlink(outside / "f", root / "dir" / "lnf")
    with Beneath(root) as b:
        with pytest.raises(OSError, match="not a directory") as exc:
            b.open("ln/f", os.O_WRONLY | os.O_CREAT)
        assert exc.value.errno in (errno.ELOOP, errno.ENOTDIR)
        with pytest.raises(OSError, match="symbolic links") as exc:
            b.open("dir/lnf", os.O_WRONLY | os.O_CREAT)
        assert exc.value.errno == errno.ELOOP
        with pytest.raises(ValueError, match="clean"):
            b.open("../outside/f", os.O_WRONLY | os.O_CREAT)
    assert list(outside.iterdir()) == []
    with pytest.raises(ValueError, match="relative"):
        split_rel("/abs")


# --------------------------------------------------------------------------- in-memory diffcopy


def test_encode_data_matches_betterproto() -> None:
    for file_id, data in [(0, b""), (0, b"x"), (7, b""), (300, b"y" * 200), (2**32 - 1, b"z" * 40000)]:
        assert wire.encode_data(file_id, data) == bytes(Packet(type=PT.PACKET_DATA, id=file_id, data=data))
    assert wire.END_OF_WALK == b""  # an empty STAT is an empty message, not Stat()
    assert Packet.parse(wire.END_OF_WALK).stat is None


async def test_sender_to_receiver_roundtrip(tmp_path: Path) -> None:
    src, dest = tmp_path / "src", tmp_path / "dest"
    make_tree(src)
    a, b = conn_pair()
    stats = ReceiveStats()
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: send_tree(a, src, chunk=4096))
            await receive_tree(b, dest, stats)
    expected = snapshot(src)
    if "sock" in expected:  # pragma: no cover - make_tree has no socket
        del expected["sock"]
    assert snapshot(dest) == expected
    assert stats.complete
    regular = [p for p in a.sent if p.type == PT.PACKET_DATA and p.data]
    assert max(len(p.data) for p in regular) == 4096
    # Receiver requested each regular file with content exactly once.
    reqs = [p.id for p in b.sent if p.type == PT.PACKET_REQ]
    assert len(reqs) == len(set(reqs)) == stats.files


class ByteWindow:
    """A one-way packet channel holding at most ``capacity`` bytes (HTTP/2 flow control)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.queue: list[bytes] = []
        self.size = 0
        self.changed = anyio.Condition()

    async def put(self, data: bytes) -> None:
        async with self.changed:
            while self.size and self.size + len(data) > self.capacity:
                await self.changed.wait()
            self.queue.append(data)
            self.size += len(data)
            self.changed.notify_all()

    async def get(self) -> bytes:
        async with self.changed:
            while not self.queue:
                await self.changed.wait()
            data = self.queue.pop(0)
            self.size -= len(data)
            self.changed.notify_all()
            return data


class WindowConn:
    def __init__(self, inbox: ByteWindow, outbox: ByteWindow) -> None:
        self.inbox, self.outbox = inbox, outbox

    async def recv(self) -> bytes | None:
        return await self.inbox.get()

    async def send(self, data: bytes) -> None:
        await self.outbox.put(data)


async def test_roundtrip_does_not_deadlock_on_flow_control(tmp_path: Path) -> None:
    """Flow-controlled like HTTP/2, with more files than the sender queues (128).

    A receiver that sent REQs from the loop reading the stream deadlocked (seen
    with the daemon and 20k files): it blocked on a REQ the sender wasn't reading
    (its request queue full) while the sender's workers blocked on DATA the receiver
    wasn't reading.
    """
    src, dest = tmp_path / "src", tmp_path / "dest"
    for i in range(600):
        _write(src, f"d{i % 3}/f{i:04}", os.urandom(8192))
    to_receiver, to_sender = ByteWindow(64 * 1024), ByteWindow(256)
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            tg.start_soon(send_tree, WindowConn(to_sender, to_receiver), src)
            stats = await receive_tree(WindowConn(to_receiver, to_sender), dest)
    assert stats.files == 600
    assert snapshot(dest) == snapshot(src)


async def test_receiver_merges_into_existing_tree(tmp_path: Path) -> None:
    src, dest = tmp_path / "src", tmp_path / "dest"
    make_tree(src)
    # Existing entries of other types are replaced, unrelated ones kept (Go's Merge).
    _write(dest, "docs", "a file where a dir comes")
    _write(dest, "a.b/inner", "a dir where a file comes")
    os.symlink("/etc", dest / "exe.sh")
    _write(dest, "unrelated", "kept")
    a, b = conn_pair()
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(send_tree, a, src)
            await receive_tree(b, dest)
    got = snapshot(dest)
    assert got.pop("unrelated")["sha"] == hashlib.sha256(b"kept").hexdigest()
    assert got == snapshot(src)


async def _feed(conn: MemConn, packets: list[bytes]) -> None:
    for p in packets:
        await conn.send(p)


def _stat_packet(path: str, mode: int, **kw: Any) -> bytes:
    return wire.encode_stat(Stat(path=path, mode=mode, **kw))


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([("../evil", 0o644, "")], "escapes"),
        ([("/etc/evil", 0o644, "")], "unclean|absolute"),
        ([("a/./b", 0o644, "")], "unclean"),
        ([("ln", gomode.MODE_SYMLINK | 0o777, "/"), ("ln/etc/evil", 0o644, "")], "out of order"),
        ([("x", 0o644, "../../../etc/passwd")], "invalid|escapes"),  # hardlink outside
        ([("x", 0o644, "never-sent")], "unknown path"),
        ([("b", 0o644, ""), ("a", 0o644, "")], "out of order"),
    ],
)
async def test_receiver_rejects_hostile_streams(
    tmp_path: Path, entries: list[tuple[str, int, str]], message: str
) -> None:
    dest = tmp_path / "dest"
    outside = tmp_path / "outside"
    outside.mkdir()
    a, b = conn_pair(buffer=64)
    packets = [_stat_packet(p, m, linkname=ln) for p, m, ln in entries]
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(_feed, a, packets)
            with pytest.raises(wire.TransferError, match=message):
                await receive_tree(b, dest)
            tg.cancel_scope.cancel()
    # The sender is told with an ERR packet, and nothing was written outside.
    assert b.sent[-1].type == PT.PACKET_ERR
    assert list(outside.iterdir()) == []
    assert not (tmp_path / "evil").exists()


async def test_sender_reports_file_changed_after_stat(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _write(src, "keep", "k")
    victim = _write(src, "victim", "original")
    daemon, client = conn_pair(buffer=64)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:

            async def run_sender() -> None:
                with pytest.raises(wire.TransferError, match="victim changed since it was listed"):
                    await send_tree(client, src)

            tg.start_soon(run_sender)
            stats: list[Stat] = []
            while True:  # a receiver that modifies the file between STAT and REQ
                p = Packet.parse(await daemon.inbox.receive())
                if p.stat is None:
                    break
                stats.append(p.stat)
            victim.write_text("changed!!")
            await daemon.send(wire.encode_req([s.path for s in stats].index("victim")))
            err = Packet.parse(await daemon.inbox.receive())
            assert err.type == PT.PACKET_ERR
            assert b"victim" in err.data


async def test_sender_rejects_bad_requests(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _write(src, "dir/f", "x")
    daemon, client = conn_pair(buffer=64)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:

            async def run_sender() -> None:
                with pytest.raises(wire.TransferError, match="invalid file id 0"):
                    await send_tree(client, src)

            tg.start_soon(run_sender)
            await daemon.send(wire.encode_req(0))  # id 0 is the directory "dir"
            while (p := Packet.parse(await daemon.inbox.receive())).type != PT.PACKET_ERR:
                pass
            assert b"invalid file id 0" in p.data


async def test_sender_serves_files_in_parallel_with_bounded_reads(tmp_path: Path) -> None:
    src = tmp_path / "src"
    for i in range(6):
        _write(src, f"f{i}", bytes([i]) * 200_000)
    daemon, client = conn_pair(buffer=1)
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: send_tree(client, src, read_block=65536))
            ids: list[int] = []
            while (p := Packet.parse(await daemon.inbox.receive())).stat is not None:
                ids.append(len(ids))
            for i in ids:
                await daemon.send(wire.encode_req(i))
            open_files: set[int] = set()
            max_open = 0
            done = 0
            data: dict[int, bytearray] = {i: bytearray() for i in ids}
            while done < len(ids):
                p = Packet.parse(await daemon.inbox.receive())
                assert p.type == PT.PACKET_DATA
                if p.data:
                    open_files.add(p.id)
                    max_open = max(max_open, len(open_files))
                    data[p.id] += p.data
                else:
                    open_files.discard(p.id)
                    done += 1
            await daemon.send(wire.FIN)
            assert Packet.parse(await daemon.inbox.receive()).type == PT.PACKET_FIN
    assert 1 < max_open <= 4  # interleaved like Go's 4 workers
    assert all(bytes(data[i]) == bytes([i]) * 200_000 for i in ids)


# --------------------------------------------------------------------------- Go cross-check

GO_FSUTIL_VERSION = "v0.0.0-20261103091533-a72de9dcf763"
GO_WALK_MAIN = r"""
package main

import (
	"context"
	"encoding/json"
	gofs "io/fs"
	"os"

	"github.com/tonistiigi/fsutil"
	"github.com/tonistiigi/fsutil/types"
)

func main() {
	var a struct {
		Root                      string
		Include, Exclude, Follow  []string
	}
	if err := json.Unmarshal([]byte(os.Args[1]), &a); err != nil {
		panic(err)
	}
	enc := json.NewEncoder(os.Stdout)
	fail := func(err error) { enc.Encode(map[string]string{"error": err.Error()}) }
	base, err := fsutil.NewFS(a.Root)
	if err != nil {
		fail(err)
		return
	}
	reset := func(_ string, st *types.Stat) fsutil.MapResult {
		st.Uid, st.Gid = 0, 0
		return fsutil.MapResultKeep
	}
	inner, _ := fsutil.NewFilterFS(base, &fsutil.FilterOpt{Map: reset})
	outer, err := fsutil.NewFilterFS(inner, &fsutil.FilterOpt{
		IncludePatterns: a.Include, ExcludePatterns: a.Exclude, FollowPaths: a.Follow,
	})
	if err != nil {
		fail(err)
		return
	}
	visit := func(_ string, e gofs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := e.Info()
		if err != nil {
			return err
		}
		st := fi.Sys().(*types.Stat)
		x := map[string]string{}
		for k, v := range st.Xattrs {
			x[k] = string(v)
		}
		return enc.Encode(map[string]any{"path": st.Path, "mode": st.Mode, "uid": st.Uid, "gid": st.Gid,
			"size": st.Size, "mtime": st.ModTime, "linkname": st.Linkname, "devmajor": st.Devmajor,
			"devminor": st.Devminor, "xattrs": x})
	}
	if err := fsutil.WithHardlinkReset(outer).Walk(context.Background(), "/", visit); err != nil {
		fail(err)
	}
}
"""


def _go_env() -> dict[str, str]:
    return {**os.environ, "GOFLAGS": "-mod=mod"}


@pytest.fixture(scope="module")
def go_walker(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """fsutil's own walker (as BuildKit's client layers it), built from the Go module proxy.

    fsutil is pinned to the version BuildKit's go.mod names; the first run downloads it.
    """
    go = shutil.which("go")
    if go is None:
        pytest.fail("the Go toolchain is needed to cross-check the walker against fsutil: install Go >= 1.26")
    work = tmp_path_factory.mktemp("gowalk")
    (work / "go.mod").write_text(
        f"module gowalk\n\ngo 1.26\n\nrequire github.com/tonistiigi/fsutil {GO_FSUTIL_VERSION}\n"
    )
    (work / "main.go").write_text(GO_WALK_MAIN)
    for cmd in ([go, "mod", "tidy"], [go, "build", "-o", "gowalk", "."]):
        res = subprocess.run(cmd, cwd=work, env=_go_env(), capture_output=True, text=True, timeout=600)
        if res.returncode != 0:
            pytest.fail(f"cannot build the Go fsutil walker ({' '.join(cmd[1:])}): {res.stderr[-800:]}")
    return work / "gowalk"


GO_CASES: list[dict[str, list[str] | None]] = [
    {},
    {"Exclude": ["*.md"]},
    {"Exclude": ["docs", "!docs/README.md"]},
    {"Include": ["docs"]},
    {"Include": ["deep/er/still/file.go"]},
    {"Include": ["**/*.md"]},
    {"Exclude": ["**"]},
    {"Exclude": ["**", "!a"]},
    {"Include": ["a*"]},
    {"Include": ["deep"], "Exclude": ["a.b"]},
    {"Include": ["deep/hardlink2", "hardlink"]},
    {"Exclude": ["a.b"]},
    {"Follow": ["ln-dir/README.md"]},
    {"Follow": ["ln-*"]},
    {"Follow": ["ln-abs-out"]},
    {"Include": ["private"], "Exclude": ["private/*", "!private/secret"]},
    {"Exclude": ["["]},
]


@pytest.mark.parametrize("case", GO_CASES, ids=[json.dumps(c) for c in GO_CASES])
def test_walk_matches_go_fsutil(go_walker: Path, tmp_path: Path, case: dict[str, list[str] | None]) -> None:
    root = tmp_path / "tree"
    make_tree(root)
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(root / "sock"))
    sock.close()
    out = subprocess.run(
        [str(go_walker), json.dumps({"Root": str(root), **case})],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    go = [json.loads(line) for line in out.splitlines()]
    opts = FilterOptions(
        include_patterns=case.get("Include"),
        exclude_patterns=case.get("Exclude"),
        follow_paths=case.get("Follow"),
    )
    ours: list[dict[str, Any]] = []
    try:
        for s in stats_of(root, opts):
            ours.append(
                {
                    "path": s.path,
                    "mode": s.mode,
                    "uid": s.uid,
                    "gid": s.gid,
                    "size": s.size,
                    "mtime": s.mod_time,
                    "linkname": s.linkname,
                    "devmajor": s.devmajor,
                    "devminor": s.devminor,
                    "xattrs": {k: v.decode() for k, v in s.xattrs.items()},
                }
            )
    except ValueError as e:
        ours.append({"error": str(e)})
    assert ours == go
