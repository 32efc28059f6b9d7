"""Graph-level behaviour — the Python twin of ``tests/llb_oracle/catalogue_misc.go``.

Empty definitions, shared subgraphs, op order and deduplication, metadata merging of
identical vertices, names/descriptions/ignore-cache on file ops, action chains reused
on several states, state platforms.
"""

from __future__ import annotations

from llblib_async import llb

from . import Builder


def _base() -> llb.State:
    return llb.image("alpine:3.20")


def _diamond() -> llb.State:
    base = _base().mkdir("/x")
    left = base.mkfile("/x/l", b"l")
    right = base.mkfile("/x/r", b"r")
    return left.copy(right, "/x/r", "/x/r")


def _double_diamond() -> llb.State:
    cur = _base()
    for i in range(2):
        s = str(i)
        left = cur.mkfile("/l" + s, s)
        right = cur.mkfile("/r" + s, s)
        cur = left.copy(right, "/r" + s, "/r" + s)
    return cur


def _lattice() -> llb.State:
    grid: dict[tuple[int, int], llb.State] = {}
    for i in range(3):
        for j in range(3):
            name = f"/n{i}{j}"
            if i == 0 and j == 0:
                grid[i, j] = llb.scratch().mkfile(name, b"")
            elif i == 0:
                grid[i, j] = grid[i, j - 1].mkfile(name, b"")
            elif j == 0:
                grid[i, j] = grid[i - 1, j].mkfile(name, b"")
            else:
                grid[i, j] = grid[i, j - 1].file(llb.copy(grid[i - 1, j], "/", "/").mkfile(name, b""))
    return grid[2, 2]


def _fan_in_many_sources() -> llb.State:
    action: llb.FileAction | None = None
    for i in range(12):
        src = llb.image(f"busybox:1.{30 + i}")
        dest = f"/v{i}"
        action = (
            llb.copy(src, "/bin/busybox", dest) if action is None else action.copy(src, "/bin/busybox", dest)
        )
    assert action is not None
    return llb.scratch().file(action)


def _shared_local_at_depths() -> llb.State:
    ctx = llb.local("/tmp/llb-catalogue/ctx", name="ctx", session_id="s1")
    a = _base().copy(ctx, "/a", "/a")
    b = a.mkdir("/b")
    c = b.copy(ctx, "/c", "/b/c")
    return c.file(llb.copy(a, "/a", "/a2").copy(ctx, "/d", "/d"))


def _deep_chain() -> llb.State:
    st = llb.scratch()
    for i in range(64):
        st = st.mkfile(f"/f{i}", str(i))
    return st


def _dup_vertices_names_merge() -> llb.State:
    one = llb.image("alpine:3.20", name="one")
    two = llb.image("alpine:3.20", name="two", description={"extra": "2"})
    return one.copy(two, "/a", "/b")


def _dup_vertices_ignore_cache_merge() -> llb.State:
    plain = llb.image("alpine:3.20")
    nocache = llb.image("alpine:3.20", ignore_cache=True)
    return llb.scratch().file(llb.copy(plain, "/a", "/a").copy(nocache, "/b", "/b"))


def _dup_file_ops() -> llb.State:
    a = _base().mkdir("/same")
    b = _base().mkdir("/same", name="again")
    return a.copy(b, "/same", "/other")


def _meta_caps_from_several_ops() -> llb.State:
    a = _base().mkdir("/a", ignore_cache=True)
    b = a.mkdir("/b", name="b")
    return b.mkdir("/c")


def _action_reused_on_two_states() -> llb.State:
    act = llb.mkdir("a").mkfile("a/f", b"f")
    s1 = _base().file(act)
    s2 = llb.image("busybox:1.36").with_dir("/w").file(act)
    return s1.copy(s2, "/w/a", "/b")


def _action_branches() -> llb.State:
    root = llb.mkdir("/a")
    x = root.mkfile("/a/x", b"x")
    y = root.mkdir("/a/y", 0o700)
    return llb.scratch().file(x).copy(llb.scratch().file(y), "/a/y", "/a/y")


def _mixed_platform_images() -> llb.State:
    arm = llb.image("alpine:3.20", platform="linux/arm64")
    return llb.image("alpine:3.20").copy(arm, "/bin", "/arm/bin")


CASES: dict[str, Builder] = {
    "misc_empty_scratch": llb.scratch,
    # --- shared subgraphs ----------------------------------------------------------------------
    "misc_diamond": _diamond,
    "misc_double_diamond": _double_diamond,
    "misc_lattice": _lattice,
    "misc_fan_in_many_sources": _fan_in_many_sources,
    "misc_shared_local_at_depths": _shared_local_at_depths,
    "misc_deep_chain": _deep_chain,
    # --- identical vertices --------------------------------------------------------------------
    "misc_dup_vertices_names_merge": _dup_vertices_names_merge,
    "misc_dup_vertices_ignore_cache_merge": _dup_vertices_ignore_cache_merge,
    "misc_dup_file_ops": _dup_file_ops,
    # --- names, descriptions, ignore-cache on file ops -----------------------------------------
    "misc_file_op_named": lambda: _base().mkdir("/n", name="make /n"),
    "misc_file_op_description": lambda: _base().file(
        llb.mkdir("/n"), description={"b": "2", "a": "1", "llb.customname": "from description"}
    ),
    "misc_file_op_name_over_description": lambda: _base().file(
        llb.mkdir("/n"), description={"llb.customname": "loses", "k": "v"}, name="wins"
    ),
    "misc_file_op_ignore_cache": lambda: _base().mkdir("/n", ignore_cache=True),
    "misc_meta_caps_from_several_ops": _meta_caps_from_several_ops,
    # --- action chains -------------------------------------------------------------------------
    "misc_action_reused_on_two_states": _action_reused_on_two_states,
    "misc_action_branches": _action_branches,
    # --- platforms -----------------------------------------------------------------------------
    "misc_state_platform_file_op": lambda: llb.scratch().with_platform("linux/arm64").mkdir("/p"),
    "misc_mixed_platform_images": _mixed_platform_images,
}
