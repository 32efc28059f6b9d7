"""File ops — the Python twin of ``tests/llb_oracle/catalogue_file.go``.

Mapping of Go spellings: ``WithUser("a:b")`` → ``owner="a:b"``, ``WithUIDGID(u, g)`` →
``owner=(u, g)``, ``ChmodOpt{Mode: m}`` → ``mode=m``, ``ChmodOpt{ModeStr: s}`` →
``mode=s``, ``WithCreatedTime(t)`` → ``timestamp=`` (ns int, or an aware datetime when
``t`` has no sub-microsecond part), ``&CopyInfo{...}`` → the copy keyword arguments.
"""

from __future__ import annotations

import datetime
from typing import Any

from llblib_async import llb

from . import Builder

_UTC = datetime.UTC
_TS = 1_700_000_000_123_456_789  # Go: time.Unix(1700000000, 123456789)


def _ctx() -> llb.State:
    # Go: llb.Local("ctx", llb.SessionID("s1"))
    return llb.local("/tmp/llb-catalogue/ctx", name="ctx", session_id="s1")


def _image() -> llb.State:
    return llb.image("alpine:3.20")


def _owner_forms() -> llb.State:
    return _image().file(
        llb.mkdir("/o1", owner=1000)  # Go: WithUser("1000")
        .mkdir("/o2", owner="1000:2000")
        .mkdir("/o3", owner="app")
        .mkdir("/o4", owner="app:staff")
        .mkdir("/o5", owner="root")
        .mkdir("/o6", owner="root:root")
        .mkdir("/o7", owner="app:")
        .mkdir("/o8", owner="0:app")
        .mkdir("/o9", owner="-1:-2")
        .mkdir("/o10", owner="4294967295")  # out of int32 range: a *name*, as in Go
        .mkdir("/o11", owner=(5, 6))
        .mkdir("/o12", owner=(4294967295, 0))
        .mkdir("/o13", owner=("app", 5))  # Go: ChownOpt{User: {Name: "app"}, Group: {UID: 5}}
    )


def _copy(src: str, dest: str, **kwargs: Any) -> Builder:
    def build() -> llb.State:
        return llb.scratch().copy(_ctx(), src, dest, **kwargs)

    return build


def _copy_all_options() -> llb.State:
    return (
        _image()
        .with_dir("/work")
        .file(
            llb.copy(
                _ctx().with_dir("/src"),
                "pkg/*",
                "out/",
                follow_symlinks=True,
                contents_only=True,
                include=["a", "b"],
                exclude=["c"],
                required_paths=["a"],
                attempt_unpack=True,
                create_dest_path=True,
                allow_wildcard=True,
                allow_empty_wildcard=True,
                always_replace_existing_dest_paths=True,
                owner="app:1000",
                mode=0o640,
                timestamp=datetime.datetime(2020, 2, 29, 23, 59, 59, 999999, tzinfo=_UTC),
            )
        )
    )


def _copy_sources_dedup_order() -> llb.State:
    a = llb.image("busybox:1.36")
    b = llb.local("/tmp/llb-catalogue/other", name="other", session_id="s1")
    c = llb.image("debian:bookworm")
    return _image().file(
        llb.copy(a, "/bin", "/a/bin")
        .copy(b, "/", "/b")
        .copy(a, "/etc", "/a/etc")
        .copy(c, "/usr", "/c/usr")
        .copy(b, "/x", "/b/x")
    )


def _copy_dest_forms() -> llb.State:
    src = _ctx()
    return (
        _image()
        .with_dir("/w")
        .file(
            llb.copy(src, "/a", ".")
            .copy(src, "/b", "./")
            .copy(src, "/c", "/.")
            .copy(src, "/d", "sub/.")
            .copy(src, "/e", "..")
            .copy(src, "/f", "../../../up")
            .copy(src, "/g", "x//y/")
            .copy(src, "//h//i/", "//j//k/")
            .copy(src, "k/../l/.", "m/./n")
        )
    )


def _binary_data() -> llb.State:
    return llb.scratch().mkfile("/bin.dat", bytes(range(256)), 0o600)


CASES: dict[str, Builder] = {
    # --- mkdir -----------------------------------------------------------------------------------
    "file_mkdir_basic": lambda: llb.scratch().mkdir("/a", 0o755),
    "file_mkdir_parents": lambda: llb.scratch().mkdir("/a/b/c", 0o700, parents=True),
    "file_mkdir_mode_zero": lambda: llb.scratch().mkdir("/z", 0),
    "file_mkdir_owner_timestamp": lambda: _image().mkdir(
        "/srv/data", 0o750, parents=True, owner="www-data:www-data", timestamp=_TS
    ),
    # --- mkfile ----------------------------------------------------------------------------------
    "file_mkfile_basic": lambda: llb.scratch().mkfile("/hello.txt", "hello\n"),
    "file_mkfile_binary_data": _binary_data,
    "file_mkfile_empty": lambda: llb.scratch().mkfile("/empty", b""),
    "file_mkfile_mode_zero": lambda: llb.scratch().mkfile("/m0", b"x", 0),
    "file_mkfile_uidgid_datetime": lambda: llb.scratch().mkfile(
        "/f",
        b"x",
        0o640,
        owner=(1000, 1000),
        timestamp=datetime.datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=_UTC),
    ),
    "file_mkfile_timestamp_zone": lambda: llb.scratch().mkfile(
        "/f",
        b"",
        timestamp=datetime.datetime(2024, 6, 1, 12, tzinfo=datetime.timezone(datetime.timedelta(hours=2))),
    ),
    "file_mkfile_timestamp_pre_epoch": lambda: llb.scratch().mkfile(
        "/old", b"", timestamp=-86400 * 10**9 + 5
    ),
    "file_mkfile_timestamp_epoch": lambda: llb.scratch().mkfile(
        "/epoch", b"", timestamp=datetime.datetime(1970, 1, 1, tzinfo=_UTC)
    ),
    # --- rm --------------------------------------------------------------------------------------
    "file_rm_basic": lambda: _image().rm("/etc/motd"),
    "file_rm_allow_not_found": lambda: _image().rm("/nope", allow_not_found=True),
    "file_rm_wildcard": lambda: _image().rm("/var/cache/apk/*", allow_wildcard=True),
    "file_rm_both_relative": lambda: (
        _image().with_dir("/tmp").rm("build-*", allow_not_found=True, allow_wildcard=True)
    ),
    # --- symlink ---------------------------------------------------------------------------------
    "file_symlink_basic": lambda: _image().symlink("/bin/busybox", "/bin/sh2"),
    "file_symlink_verbatim_paths_owner_ts": lambda: (
        _image().with_dir("/work").symlink("../target", "rel/link", owner="app:staff", timestamp=_TS)
    ),
    # --- owners ----------------------------------------------------------------------------------
    "file_owner_forms": _owner_forms,
    "file_owner_name_on_scratch": lambda: llb.scratch().mkfile("/f", b"", owner="app:staff"),
    "file_owner_names_in_chain": lambda: _image().file(
        llb.mkdir("/a")
        .mkfile("/a/f", b"x", owner="app")
        .copy(_ctx(), "/x", "/a/x", owner="app:staff")
        .symlink("f", "/a/l", owner="nobody")
    ),
    # --- copy: one option at a time --------------------------------------------------------------
    "file_copy_basic": _copy("/", "/"),
    "file_copy_follow_symlinks": _copy("/link", "/out", follow_symlinks=True),
    "file_copy_contents_only": _copy("/dir", "/out/", contents_only=True),
    "file_copy_attempt_unpack": _copy("/app.tar.gz", "/opt/", attempt_unpack=True),
    "file_copy_create_dest_path": _copy("/f", "/deep/er/f", create_dest_path=True),
    "file_copy_wildcard": _copy("/src/*.go", "/dst/", allow_wildcard=True),
    "file_copy_empty_wildcard": _copy("/maybe/*", "/dst/", allow_wildcard=True, allow_empty_wildcard=True),
    "file_copy_include_exclude": _copy(
        "/",
        "/app/",
        include=["src/**", "go.mod", "go.sum"],
        exclude=["**/*_test.go", "!src/keep_test.go"],
    ),
    # Go: llb.WithExcludePatterns([]string{".git", "*.md"})
    "file_copy_with_exclude_patterns_option": _copy("/", "/app/", exclude=[".git", "*.md"]),
    "file_copy_owner_user_group": _copy("/f", "/f", owner="app:staff"),
    "file_copy_owner_ids": _copy("/f", "/f", owner=(1000, 1000)),
    "file_copy_mode_int": _copy("/f", "/f", mode=0o755),
    "file_copy_mode_zero": _copy("/f", "/f", mode=0),
    "file_copy_mode_setuid": _copy("/bin/tool", "/bin/tool", mode=0o4755),
    "file_copy_mode_string": _copy("/f", "/f", mode="u+x,g-w"),
    "file_copy_mode_string_octal": _copy("/f", "/f", mode="0755"),
    "file_copy_timestamp": _copy("/f", "/f", timestamp=_TS),
    "file_copy_always_replace": _copy("/", "/", always_replace_existing_dest_paths=True),
    "file_copy_required_paths": _copy("/", "/app/", required_paths=["go.mod", "src/main.go"]),
    "file_copy_all_options": _copy_all_options,
    # --- copy sources ----------------------------------------------------------------------------
    "file_copy_from_scratch": lambda: _image().copy(llb.scratch(), "/", "/empty"),
    "file_copy_from_own_base": lambda: (lambda base: base.copy(base, "/etc", "/etc.bak"))(_image()),
    "file_copy_sources_dedup_order": _copy_sources_dedup_order,
    # --- relative paths against working dirs -----------------------------------------------------
    "file_relative_paths_in_dirs": lambda: (
        _image()
        .with_dir("/app")
        .with_dir("sub")
        .file(llb.mkdir("x/y", parents=True).mkfile("x/y/z.txt", b"z").rm("../old").mkdir("./dot"))
    ),
    "file_copy_relative_src_dest": lambda: (
        _image()
        .with_dir("/work")
        .file(
            llb.copy(_ctx().with_dir("/src"), "pkg/", "./out/").copy(_ctx().with_dir("/src/a/b"), "../x", "y")
        )
    ),
    "file_copy_dest_forms": _copy_dest_forms,
    "file_dir_unclean_absolute": lambda: llb.scratch().with_dir("/x/../y/").mkdir("z"),
    "file_dir_relative_chain": lambda: (
        llb.scratch().with_dir("a").with_dir("b/../c").with_dir("./d").mkfile("f", b"")
    ),
    # --- chains of actions -----------------------------------------------------------------------
    "file_chain_every_action": lambda: _image().file(
        llb.mkdir("/app")
        .mkfile("/app/a.txt", b"a")
        .copy(_ctx(), "/src", "/app/src", create_dest_path=True)
        .rm("/app/a.txt")
        .symlink("/app/src", "/app/current")
        .copy(llb.image("busybox:1.36"), "/bin/busybox", "/app/bin/busybox", mode=0o755)
    ),
    "file_chain_ops_with_dirs": lambda: (
        llb.scratch()
        .mkdir("/a")
        .with_dir("/a")
        .mkdir("b", 0o700)
        .with_dir("b")
        .mkfile("c", b"")
        .symlink("c", "/a/b/d")
    ),
}
