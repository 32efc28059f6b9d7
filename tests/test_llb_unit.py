"""Unit tests of the sans-IO LLB builder (no daemon): API behaviour, Go rules, dedup, memoisation, speed."""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
from pathlib import Path
from typing import Any, TypeVar

import pytest

from llblib_async import llb
from llblib_async._pb import pb
from llblib_async.errors import BuildKitError
from llblib_async.llb.fileop import FileOp
from llblib_async.llb.vertex import Output

AMD64 = llb.Platform("linux", "amd64")
ARM64 = llb.Platform("linux", "arm64")


def _op(state: llb.State) -> pb.Op:
    """The head op of ``state``, decoded."""
    definition = llb.marshal(state, platform=AMD64)
    return pb.Op.parse(definition.ops[-2])


T = TypeVar("T")


def _some(value: T | None) -> T:
    """A message field the test expects to be set (mypy: narrows ``Optional``)."""
    assert value is not None
    return value


def _file_actions(state: llb.State) -> list[pb.FileAction]:
    op = _op(state)
    assert op.file is not None
    actions: list[pb.FileAction] = op.file.actions
    return actions


# --- immutability ----------------------------------------------------------------------------------


def test_state_is_frozen() -> None:
    st = llb.image("alpine")
    with pytest.raises(dataclasses.FrozenInstanceError):
        st.working_dir = "/x"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        st.output = None  # type: ignore[misc]


def test_methods_return_new_states_and_leave_the_original_alone() -> None:
    base = llb.image("alpine")
    before = llb.digest(base, platform=AMD64)
    moved = base.with_dir("/work")
    changed = moved.mkdir("sub")
    assert base.working_dir == "/"
    assert moved.working_dir == "/work"
    assert moved.output == base.output
    assert changed.output != base.output
    assert changed.working_dir == "/work"
    assert llb.digest(base, platform=AMD64) == before


def test_with_output_keeps_every_other_field() -> None:
    # with_output() lists the fields by hand for speed; this catches a field added without it.
    values: dict[str, Any] = {
        "working_dir": "/w",
        "platform": ARM64,
        "exec_meta": llb.scratch().with_env("A", "1").with_user("nobody").exec_meta,
        "image_config": llb.ImageConfig.from_json(b'{"architecture":"arm64","os":"linux","config":{}}'),
    }
    st = llb.State(**values)
    missing = {f.name for f in dataclasses.fields(llb.State)} - set(values) - {"output"}
    assert not missing, f"extend this test and State.with_output() for {missing}"
    out = llb.image("alpine").output
    moved = st.with_output(out)
    assert moved.output == out
    for name, value in values.items():
        assert getattr(moved, name) == value


def test_scratch_is_empty() -> None:
    st = llb.scratch()
    assert st.is_scratch
    assert st == llb.State()
    definition = llb.marshal(st)
    assert definition.ops == ()
    assert definition.head_digest is None
    assert definition.to_pb() == pb.Definition()
    assert definition.to_bytes() == b""
    with pytest.raises(ValueError, match="scratch"):
        llb.digest(st)


def test_file_action_chains_branch_without_sharing() -> None:
    root = llb.mkdir("/a")
    left = root.mkfile("/a/l", b"l")
    right = root.rm("/a/r")
    assert len(_file_actions(llb.scratch().file(root))) == 1
    left_actions = _file_actions(llb.scratch().file(left))
    right_actions = _file_actions(llb.scratch().file(right))
    assert [a.mkfile is not None for a in left_actions] == [False, True]
    assert [a.rm is not None for a in right_actions] == [False, True]
    with pytest.raises(dataclasses.FrozenInstanceError):
        root._prev = left  # type: ignore[misc]


def test_one_action_chain_can_be_applied_to_several_states() -> None:
    action = llb.mkdir("sub")
    a = llb.scratch().with_dir("/a").file(action)
    b = llb.scratch().with_dir("/b").file(action)
    assert _some(_file_actions(a)[0].mkdir).path == "/a/sub"
    assert _some(_file_actions(b)[0].mkdir).path == "/b/sub"


# --- chaining ----------------------------------------------------------------------------------------


def test_chain_is_one_op_with_relative_inputs() -> None:
    src = llb.image("busybox")
    st = llb.image("alpine").file(
        llb.mkdir("/a").copy(src, "/bin/sh", "/a/sh").mkfile("/a/f", "text").rm("/a/sh"),
        name="four actions",
    )
    op = _op(st)
    assert len(op.inputs) == 2  # alpine (base) then busybox (copy source)
    actions = _some(op.file).actions
    assert [a.input for a in actions] == [0, 2, 3, 4]  # first on input 0, then on action k-1
    assert [a.secondary_input for a in actions] == [-1, 1, -1, -1]
    assert [a.output for a in actions] == [-1, -1, -1, 0]  # only the last action is the op's output
    assert _some(actions[2].mkfile).data == b"text"
    definition = llb.marshal(st, platform=AMD64)
    head = definition.metadata[definition.head_digest or ""]
    assert head.description_map == {"llb.customname": "four actions"}
    assert head.caps == {"file.base"}


def test_state_conveniences_equal_single_action_file_ops() -> None:
    base = llb.image("alpine")
    src = llb.image("busybox")
    pairs = [
        (base.mkdir("/d", 0o700, parents=True), base.file(llb.mkdir("/d", 0o700, parents=True))),
        (base.mkfile("/f", b"x", 0o600), base.file(llb.mkfile("/f", b"x", 0o600))),
        (base.rm("/f", allow_not_found=True), base.file(llb.rm("/f", allow_not_found=True))),
        (base.symlink("/t", "/l"), base.file(llb.symlink("/t", "/l"))),
        (base.copy(src, "/bin", "/b/", mode=0o755), base.file(llb.copy(src, "/bin", "/b/", mode=0o755))),
    ]
    for convenience, explicit in pairs:
        assert llb.digest(convenience, platform=AMD64) == llb.digest(explicit, platform=AMD64)


def test_go_defaults_that_are_not_proto_zero() -> None:
    src = llb.image("busybox")
    actions = _file_actions(llb.scratch().file(llb.mkdir("/d").mkfile("/d/f", b"").copy(src, "/a", "/b")))
    assert _some(actions[0].mkdir).timestamp == -1  # -1: don't touch; 0 = epoch
    assert _some(actions[0].mkdir).mode == 0o755
    assert _some(actions[1].mkfile).mode == 0o644
    assert _some(actions[2].copy).mode == -1  # -1: keep; 0 = chmod 000
    assert _some(actions[2].copy).timestamp == -1


def test_timestamps_from_ns_and_aware_datetimes() -> None:
    when = datetime.datetime(
        2024, 1, 2, 3, 4, 5, 123456, tzinfo=datetime.timezone(datetime.timedelta(hours=2))
    )
    expected = int(when.timestamp()) * 1_000_000_000 + 123456 * 1000
    actions = _file_actions(llb.scratch().file(llb.mkdir("/d", timestamp=when).mkdir("/e", timestamp=5)))
    assert _some(actions[0].mkdir).timestamp == expected
    assert _some(actions[1].mkdir).timestamp == 5


def test_owners() -> None:
    st = llb.image("alpine")
    cases: list[tuple[llb.Owner, pb.ChownOpt]] = [
        ("root", pb.ChownOpt(user=pb.UserOpt(by_id=0))),
        ("1000:1001", pb.ChownOpt(user=pb.UserOpt(by_id=1000), group=pb.UserOpt(by_id=1001))),
        ("app:", pb.ChownOpt(user=pb.UserOpt(by_name=pb.NamedUserOpt(name="app", input=0)))),
        (
            "app:staff",
            pb.ChownOpt(
                user=pb.UserOpt(by_name=pb.NamedUserOpt(name="app", input=0)),
                group=pb.UserOpt(by_name=pb.NamedUserOpt(name="staff", input=0)),
            ),
        ),
        (7, pb.ChownOpt(user=pb.UserOpt(by_id=7))),
        (
            (7, "wheel"),
            pb.ChownOpt(
                user=pb.UserOpt(by_id=7), group=pb.UserOpt(by_name=pb.NamedUserOpt(name="wheel", input=0))
            ),
        ),
    ]
    for owner, expected in cases:
        got = _some(_file_actions(st.mkdir("/d", owner=owner))[0].mkdir).owner
        assert got == expected, owner
    # On scratch a named user has no base to resolve against: input -1, like Go.
    got = _some(_file_actions(llb.scratch().mkdir("/d", owner="app"))[0].mkdir).owner
    assert got == pb.ChownOpt(user=pb.UserOpt(by_name=pb.NamedUserOpt(name="app", input=-1)))


# --- relative path resolution -------------------------------------------------------------------------


def test_relative_paths_resolve_against_the_working_dir() -> None:
    st = llb.scratch().with_dir("/work").with_dir("sub/../app")
    assert st.working_dir == "/work/app"
    actions = _file_actions(
        st.file(llb.mkdir("d").mkfile("d/f", b"").rm("../x").copy(llb.scratch(), "a", "out/"))
    )
    assert _some(actions[0].mkdir).path == "/work/app/d"
    assert _some(actions[1].mkfile).path == "/work/app/d/f"
    assert _some(actions[2].rm).path == "/work/x"
    assert _some(actions[3].copy).dest == "/work/app/out/"  # trailing slash kept


def test_copy_source_resolves_against_the_source_dir() -> None:
    src = llb.image("busybox").with_dir("/usr")
    actions = _file_actions(llb.scratch().with_dir("/dst").copy(src, "bin/", "."))
    assert _some(actions[0].copy).src == "/usr/bin"  # cleaned, like Go's sourcePath
    assert _some(actions[0].copy).dest == "/dst"


@pytest.mark.parametrize(
    ("dest", "expected"),
    [
        ("/a/b", "/a/b"),
        ("/a/b/", "/a/b/"),
        ("b/.", "/w/b/."),
        ("/.", "/."),
        ("//x//y/", "/x/y/"),
        ("..", "/"),
    ],
)
def test_copy_dest_normalization_matches_go(dest: str, expected: str) -> None:
    actions = _file_actions(llb.scratch().with_dir("/w").copy(llb.scratch(), "/", dest))
    assert _some(actions[0].copy).dest == expected


def test_absolute_working_dir_is_kept_verbatim_like_go() -> None:
    st = llb.scratch().with_dir("/x/../y/")
    assert st.working_dir == "/x/../y/"
    assert _some(_file_actions(st.mkdir("z"))[0].mkdir).path == "/y/z"


def test_symlink_paths_are_sent_verbatim_like_go() -> None:
    action = _file_actions(llb.scratch().with_dir("/w").symlink("target", "link"))[0]
    assert action.symlink == pb.FileActionSymlink(oldpath="target", newpath="link", timestamp=-1)


# --- sources -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("alpine", "docker.io/library/alpine:latest"),
        ("alpine:3.20", "docker.io/library/alpine:3.20"),
        ("library/alpine", "docker.io/library/alpine:latest"),
        ("docker.io/alpine", "docker.io/library/alpine:latest"),
        ("index.docker.io/user/app", "docker.io/user/app:latest"),
        ("user/app:1.0", "docker.io/user/app:1.0"),
        ("ghcr.io/o/r", "ghcr.io/o/r:latest"),
        ("localhost/x", "localhost/x:latest"),
        ("localhost:5000/x:y", "localhost:5000/x:y"),
        ("Example.com/x", "Example.com/x:latest"),
        ("[::1]:5000/x", "[::1]:5000/x:latest"),
        ("alpine@sha256:" + "a" * 64, "docker.io/library/alpine@sha256:" + "a" * 64),
        ("alpine:3@sha256:" + "a" * 64, "docker.io/library/alpine:3@sha256:" + "a" * 64),
    ],
)
def test_image_refs_are_normalized_like_docker(ref: str, expected: str) -> None:
    assert llb.normalize_image_ref(ref) == expected
    op = _op(llb.image(ref))
    assert op.source is not None
    assert op.source.identifier == "docker-image://" + expected


@pytest.mark.parametrize(
    "ref",
    [
        "",
        "Alpine",
        "alpine:",
        "alpine:bad tag",
        "-alpine",
        "alpine@sha256:abc",
        "alpine@md5:" + "a" * 32,
        "alpine@sha256:" + "A" * 64,
        "a" * 64,
        "x/" + "a" * 300,
        "alpine:" + "t" * 129,
    ],
)
def test_bad_image_refs_raise_a_typed_error(ref: str) -> None:
    with pytest.raises(llb.InvalidReferenceError) as info:
        llb.image(ref)
    assert info.value.reference == ref
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, BuildKitError)
    assert repr(ref) in str(info.value)


def test_image_platform() -> None:
    plain = llb.image("alpine")
    assert plain.platform is None
    assert _op(plain).platform == pb.Platform(os="linux", architecture="amd64")  # marshal default
    arm = llb.image("alpine", platform="linux/arm64")
    assert arm.platform == ARM64
    assert _op(arm).platform == pb.Platform(os="linux", architecture="arm64")
    # The default platform is part of the memo key: one graph, two defaults, two digests.
    assert llb.digest(plain, platform=AMD64) != llb.digest(plain, platform=ARM64)
    assert llb.digest(plain, platform=AMD64) == llb.digest(plain, platform="linux/amd64")
    # Platform-less ops (file, local) carry no platform even if their inputs do.
    assert _op(arm.mkdir("/x")).platform is None


def test_image_constraints_and_resolve_mode() -> None:
    st = llb.image("alpine", name="base", ignore_cache=True, resolve_mode="pull")
    definition = llb.marshal(st, platform=AMD64)
    meta = definition.metadata[definition.digests[0]]
    assert meta.ignore_cache
    assert meta.description_map == {"llb.customname": "base"}
    assert meta.caps == {"source.image", "source.image.resolvemode"}
    assert definition.metadata[definition.digests[-1]].caps == {
        "constraints",
        "platform",
        "meta.ignorecache",
        "meta.description",
    }
    with pytest.raises(ValueError, match="resolve_mode"):
        llb.image("alpine", resolve_mode="always")  # type: ignore[arg-type]


def test_local_source(tmp_path: Path) -> None:
    st = llb.local(
        tmp_path,
        include=["src/<x>&", "ü"],
        exclude=["*.pyc"],
        follow_paths=["Dockerfile"],
        shared_key_hint="hint",
        unique_id="u",
    )
    name = llb.default_local_name(tmp_path)
    assert name.startswith(tmp_path.name[:20])
    op = _op(st)
    assert op.source is not None
    assert op.source.identifier == "local://" + name
    assert op.source.attrs == {
        # Go's json.Marshal: compact, UTF-8, HTML characters escaped.
        "local.includepattern": '["src/\\u003cx\\u003e\\u0026","ü"]',
        "local.excludepatterns": '["*.pyc"]',
        "local.followpaths": '["Dockerfile"]',
        "local.sharedkeyhint": "hint",
        "local.unique": "u",
    }
    assert json.loads(op.source.attrs["local.includepattern"]) == ["src/<x>&", "ü"]
    definition = llb.marshal(st)
    assert definition.locals == {name: tmp_path}
    assert definition.metadata[definition.digests[0]].caps == {
        "source.local",
        "source.local.includepatterns",
        "source.local.excludepatterns",
        "source.local.followpaths",
        "source.local.sharedkeyhint",
        "source.local.unique",
    }


def test_local_names_and_unique_ids_are_stable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ctx dir").mkdir()
    relative = llb.local("ctx dir")
    absolute = llb.local(tmp_path / "ctx dir")
    assert llb.digest(relative) == llb.digest(absolute)
    definition = llb.marshal(relative)
    ((name, path),) = definition.locals.items()
    assert path == tmp_path / "ctx dir"
    suffix = hashlib.sha256(str(path).encode()).hexdigest()[:12]
    assert name == f"ctx_dir-{suffix}"  # header-safe characters only
    other = llb.local(tmp_path)
    assert llb.digest(other) != llb.digest(relative)
    # With a session id Go adds no local.unique (the session already scopes the source).
    op = _op(llb.local(tmp_path, name="ctx", session_id="s"))
    assert op.source is not None
    assert op.source.attrs == {"local.session": "s"}


def test_local_name_clash_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = llb.local(tmp_path / "a", name="ctx")
    b = llb.local(tmp_path / "b", name="ctx")
    st = llb.scratch().copy(a, "/", "/a").copy(b, "/", "/b")
    with pytest.raises(ValueError, match="'ctx'"):
        llb.marshal(st)
    same = llb.scratch().copy(a, "/", "/a").copy(llb.local(tmp_path / "a", name="ctx"), "/", "/b")
    assert llb.marshal(same).locals == {"ctx": tmp_path / "a"}


# --- errors ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", [-1, 0o1000, 0o4755, 0o10000])
def test_bad_mkdir_and_mkfile_modes(mode: int) -> None:
    with pytest.raises(ValueError, match="mode"):
        llb.mkdir("/d", mode)
    with pytest.raises(ValueError, match="mode"):
        llb.mkfile("/f", b"", mode)


def test_bad_arguments() -> None:
    with pytest.raises(TypeError):
        llb.mkdir("/d", True)
    with pytest.raises(TypeError):
        llb.mkdir("/d", "755")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="copy mode"):
        llb.copy(llb.scratch(), "/a", "/b", mode=0o10000)
    with pytest.raises(ValueError, match="copy mode"):
        llb.copy(llb.scratch(), "/a", "/b", mode="")
    with pytest.raises(TypeError, match="State"):
        llb.copy("alpine", "/a", "/b")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not a str"):
        llb.copy(llb.scratch(), "/a", "/b", include="*.py")
    with pytest.raises(TypeError, match="not a str"):
        llb.local("/tmp", exclude="*.pyc")
    with pytest.raises(ValueError, match="empty"):
        llb.mkdir("")
    with pytest.raises(ValueError, match="timezone-aware"):
        llb.mkdir("/d", timestamp=datetime.datetime(2024, 1, 1))
    with pytest.raises(ValueError, match="out of range"):
        llb.mkdir("/d", owner=-1)
    with pytest.raises(ValueError, match="out of range"):
        llb.mkdir("/d", owner=(0, 1 << 32))
    with pytest.raises(TypeError, match="FileAction"):
        llb.scratch().file("mkdir /d")  # type: ignore[arg-type]


# --- platforms ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("linux/amd64", llb.Platform("linux", "amd64")),
        ("linux/x86_64", llb.Platform("linux", "amd64")),
        ("linux/arm64", llb.Platform("linux", "arm64")),
        ("linux/aarch64", llb.Platform("linux", "arm64")),
        ("linux/arm64/v8", llb.Platform("linux", "arm64", "v8")),  # containerd's Parse keeps an explicit v8
        ("linux/arm", llb.Platform("linux", "arm")),
        ("linux/arm/7", llb.Platform("linux", "arm", "v7")),
        ("linux/armhf", llb.Platform("linux", "arm")),  # Parse drops the default v7 of a two-part spec
        ("Linux/AMD64", llb.Platform("linux", "amd64")),
        ("windows(10.0.17763)/amd64", llb.Platform("windows", "amd64", "", "10.0.17763")),
    ],
)
def test_platform_parse(spec: str, expected: llb.Platform) -> None:
    assert llb.Platform.parse(spec) == expected


def test_platform_normalize_and_default() -> None:
    assert llb.Platform("linux", "aarch64", "8").normalize() == ARM64
    assert llb.Platform("macos", "x86_64", "v1").normalize() == llb.Platform("darwin", "amd64")
    assert llb.Platform("linux", "arm").normalize() == llb.Platform("linux", "arm", "v7")
    assert str(llb.Platform("linux", "arm", "v7")) == "linux/arm/v7"
    host = llb.default_platform()
    assert host == host.normalize()
    assert llb.digest(llb.image("alpine")) == llb.digest(llb.image("alpine"), platform=host)
    for bad in ("linux/*", "linux/a b", "nonsense", "linux/amd64/v1/x/y"):
        with pytest.raises(ValueError):  # noqa: PT011
            llb.Platform.parse(bad)


# --- dedup and memoisation ----------------------------------------------------------------------------


def test_shared_and_equal_inputs_are_emitted_once() -> None:
    base = llb.image("alpine").mkdir("/x")
    left = base.mkfile("/x/l", b"l")
    right = base.mkfile("/x/r", b"r")
    st = left.copy(right, "/x/r", "/x/r")
    definition = llb.marshal(st, platform=AMD64)
    assert len(definition.ops) == 6  # image, mkdir, left, right, copy, terminal
    assert len(set(definition.digests)) == len(definition.digests)
    # dependencies first
    position = {d: i for i, d in enumerate(definition.digests)}
    for i, data in enumerate(definition.ops[:-1]):
        for inp in pb.Op.parse(data).inputs:
            assert position[inp.digest] < i
    # Two separately built but identical images are one op; their metadata is merged.
    a = llb.image("alpine", name="one")
    b = llb.image("alpine", name="two")
    definition = llb.marshal(a.copy(b, "/", "/b"), platform=AMD64)
    assert len(definition.ops) == 3
    assert definition.metadata[definition.digests[0]].description_map == {"llb.customname": "two"}
    assert len(pb.Op.parse(definition.ops[1]).inputs) == 1


def test_copy_sources_are_emitted_in_go_order() -> None:
    # Go's FileAction.allOutputs lists copy sources from the LAST action back to the first.
    a = llb.image("busybox")
    b = llb.image("alpine")
    definition = llb.marshal(llb.scratch().file(llb.copy(a, "/", "/a").copy(b, "/", "/b")), platform=AMD64)
    assert definition.digests[0] == llb.digest(b, platform=AMD64)
    assert definition.digests[1] == llb.digest(a, platform=AMD64)
    op = pb.Op.parse(definition.ops[2])
    assert [i.digest for i in op.inputs] == [definition.digests[1], definition.digests[0]]  # action order


def _count_encodes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls = [0]
    original = FileOp._encode

    def counting(self: FileOp, ctx: Any) -> Any:
        calls[0] += 1
        return original(self, ctx)

    monkeypatch.setattr(FileOp, "_encode", counting)
    return calls


def test_vertices_are_encoded_once_and_never_rewalked(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _count_encodes(monkeypatch)
    st = llb.image("alpine")
    for i in range(50):
        st = st.mkfile(f"/f{i}", b"x")
    first = llb.marshal(st, platform=AMD64)
    assert calls[0] == 50
    assert llb.marshal(st, platform=AMD64) == first
    assert llb.digest(st, platform=AMD64) == first.head_digest
    assert calls[0] == 50  # fully memoised
    bigger = st.mkfile("/last", b"y")
    assert len(llb.marshal(bigger, platform=AMD64).ops) == len(first.ops) + 1
    assert calls[0] == 51  # only the new vertex was encoded
    llb.marshal(bigger, platform=ARM64)  # another default platform is another memo entry
    assert calls[0] == 102


def test_diamond_lattice_is_linear(monkeypatch: pytest.MonkeyPatch) -> None:
    # 60 layers of diamonds = 2**60 paths from the head to the image; only a walk that visits each
    # vertex once can finish.
    calls = _count_encodes(monkeypatch)
    st = llb.image("alpine")
    for i in range(60):
        left = st.mkfile(f"/l{i}", b"l")
        right = st.mkfile(f"/r{i}", b"r")
        st = left.copy(right, f"/r{i}", f"/r{i}")
    definition = llb.marshal(st, platform=AMD64)
    assert len(definition.ops) == 1 + 3 * 60 + 1
    assert calls[0] == 3 * 60


def _chain(n: int) -> llb.State:
    st = llb.image("alpine")
    for i in range(n):
        st = st.mkfile(f"/f{i}", b"x")
    return st


def test_deep_chain_has_no_recursion_limit() -> None:
    st = _chain(20_000)
    definition = llb.marshal(st, platform=AMD64)
    assert len(definition.ops) == 20_002
    assert definition.head_digest == llb.digest(st, platform=AMD64)
    assert "20000 actions" not in repr(st)  # repr stays shallow
    assert repr(llb.mkdir("/a").mkdir("/b").mkdir("/c").mkdir("/d")).endswith("(4 actions))")


# --- Definition ----------------------------------------------------------------------------------------


def test_definition_to_pb() -> None:
    st = llb.image("alpine").mkdir("/x", name="make x")
    definition = llb.marshal(st, platform=AMD64)
    message = definition.to_pb()
    assert message.def_ == list(definition.ops)
    assert list(message.metadata) == sorted(definition.digests)
    assert message.source is not None
    assert set(message.source.locations) == set(definition.digests[:-1])
    terminal = pb.Op.parse(definition.ops[-1])
    assert terminal == pb.Op(inputs=[pb.Input(digest=definition.head_digest or "")])
    assert message.metadata[definition.digests[-1]].caps == {
        "constraints": True,
        "meta.description": True,
        "platform": True,
    }
    assert bytes(message) != b""
    assert pb.Definition.parse(definition.to_bytes()) == message
    with pytest.raises(TypeError):
        definition.metadata["x"] = llb.OpMetadata()  # type: ignore[index]


def test_digest_is_sha256_of_op_bytes() -> None:
    st = llb.image("alpine").mkfile("/f", b"hi")
    definition = llb.marshal(st, platform=AMD64)
    for data, dgst in zip(definition.ops, definition.digests, strict=True):
        assert dgst == "sha256:" + hashlib.sha256(data).hexdigest()
    assert llb.digest(st, platform=AMD64) == definition.digests[-2]


def test_output_index_reaches_the_terminal() -> None:
    vertex = llb.image("alpine").output
    assert vertex is not None
    second = llb.State(output=Output(vertex.vertex, 1))
    definition = llb.marshal(second, platform=AMD64)
    assert pb.Op.parse(definition.ops[-1]).inputs[0].index == 1
    assert "[1]" in repr(second)
