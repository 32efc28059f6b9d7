"""Unit tests of exec ops, exec settings, merge and diff (no daemon).

Byte-for-byte checks against Go live in two places: here, the ``run``, ``merge``,
``diff`` and ``multiout`` graphs of ``/work/shared/testdata/llb-golden-v0.25.json``
(Go client/llb v0.25.0) built with the Python API; and in ``tests/test_llb_oracle.py``,
the ``exec_*`` cases of ``tests/llb_catalogue/exec.py`` against the Go oracle
(``tests/llb_oracle/catalogue_exec.go``, client/llb v0.34.2).  The tests below pin
the Go rules those graphs rely on one at a time, plus the Python API's behaviour.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from llblib_async import llb
from llblib_async._pb import pb
from llblib_async.llb.exec import ExecOp

AMD64 = llb.Platform("linux", "amd64")
ARM64 = llb.Platform("linux", "arm64")
# Go-marshaled ops (client/llb v0.25.0) from the project's shared test data, committed here.
SHARED_FIXTURE = Path(__file__).parent / "golden" / "llb-golden-v0.25.json"


def _ops(state: llb.State) -> list[pb.Op]:
    return [pb.Op.parse(op) for op in llb.marshal(state, platform=AMD64).ops[:-1]]


def _head(state: llb.State) -> pb.Op:
    return pb.Op.parse(llb.marshal(state, platform=AMD64).ops[-2])


def _exec(state: llb.State) -> pb.ExecOp:
    op = _head(state).exec
    assert op is not None
    return op


def _caps(state: llb.State) -> set[str]:
    definition = llb.marshal(state, platform=AMD64)
    return set(definition.metadata[definition.head_digest or ""].caps)


def _image() -> llb.State:
    return llb.image("busybox:1.36")


def _ctx() -> llb.State:
    return llb.local("/tmp/ctx", name="ctx", session_id="s1")


# --- Go's v0.25 golden graphs, built with the API --------------------------------------------------


def _golden_local() -> llb.State:
    # llb.Local("ctx", ExcludePatterns{"*.log","node_modules"}, FollowPaths{"Dockerfile"},
    #           SharedKeyHint("ctx"), SessionID("sess123"))
    return llb.local(
        "/somewhere/ctx",
        name="ctx",
        exclude=["*.log", "node_modules"],
        follow_paths=["Dockerfile"],
        shared_key_hint="ctx",
        session_id="sess123",
    )


def _golden_fileop() -> llb.State:
    action = (
        llb.mkdir("/a/b", 0o755, parents=True)
        .mkfile("/a/b/f.txt", b"data", timestamp=1700000000000000005)
        .copy(
            _golden_local(), "/src/*.go", "/dst/", create_dest_path=True, allow_wildcard=True, include=["x"]
        )
        .rm("/a/b/f.txt", allow_not_found=True)
        .symlink("/a", "/link", owner="root")
    )
    return llb.scratch().file(action)


def _golden_run() -> llb.ExecState:
    # Image("alpine:3.20").Run(Shlex("sh -c 'echo hi > /out'"), AddEnv("FOO","bar"), Dir("/work"),
    #   User("1000:1000"), Network(NetModeNone),
    #   AddMount("/cache", Scratch(), AsPersistentCacheDir("mycache", CacheMountLocked)),
    #   AddMount("/src", local, Readonly, SourcePath("/sub")),
    #   AddMount("/tmp", Scratch(), Tmpfs(TmpfsSize(1<<20))),
    #   AddSecret("/run/secrets/tok", SecretID("tok")), AddSSHSocket(SSHID("default")),
    #   WithCustomName("custom run"), IgnoreCache)
    return llb.image("alpine:3.20").run(
        "sh -c 'echo hi > /out'",
        env={"FOO": "bar"},
        cwd="/work",
        user="1000:1000",
        network="none",
        mounts=[
            llb.cache_mount("/cache", id="mycache", sharing="locked"),
            llb.bind("/src", _golden_local(), readonly=True, selector="/sub"),
            llb.tmpfs("/tmp", size=1 << 20),
            llb.secret_mount("/run/secrets/tok", id="tok"),
            llb.ssh_mount(),
        ],
        name="custom run",
        ignore_cache=True,
    )


GOLDEN_BUILDERS: dict[str, Callable[[], llb.State]] = {
    "run": _golden_run,
    # Merge([]State{image, fileop, run})
    "merge": lambda: llb.merge([llb.image("alpine:3.20"), _golden_fileop(), _golden_run()]),
    # Diff(image, run)
    "diff": lambda: llb.diff(llb.image("alpine:3.20"), _golden_run()),
    # run.GetMount("/src"): a read-only mount's "output" is its source, the local
    "multiout": lambda: _golden_run().get_mount("/src"),
}

# name -> (sha256 of Go's Definition with map entries sorted, Go's op digests)
GOLDEN_V025: dict[str, tuple[str, tuple[str, ...]]] = {
    "run": (
        "f836ad76d431b6f3eab1e4c83833c6c27ba0532870838c033070b90d791626d5",
        (
            "sha256:52ad980af60eade03cf05fce2206c19483941c8d9a53f43a293199ac3344a235",
            "sha256:fe19b01f3eb68ef6e2dafe6d9b0596b122d79d2994da7b776b47f71dfcc9d2fb",
            "sha256:7a6ac4c034b7c460a62f71a1c6d5447ef9acd5b538f9421d61dd0bc3a2ffe402",
            "sha256:4325e8a06b838d45426d8d633d8c698ae7cf974a35dddf910d8e810bc3b0a701",
        ),
    ),
    "merge": (
        "4742d0295980a5dc5340dc874ae20046ddd102a513a277cbbe18f2048ba44667",
        (
            "sha256:52ad980af60eade03cf05fce2206c19483941c8d9a53f43a293199ac3344a235",
            "sha256:fe19b01f3eb68ef6e2dafe6d9b0596b122d79d2994da7b776b47f71dfcc9d2fb",
            "sha256:556c04815a8e0fc31c821de4582c21ae1464fade4b2e088d819492fd895d7bf7",
            "sha256:7a6ac4c034b7c460a62f71a1c6d5447ef9acd5b538f9421d61dd0bc3a2ffe402",
            "sha256:f551dde440b07384d324ac56ee6ed1fdb9b84ae3002386e5aa05c833716c895e",
            "sha256:7611ca6cf4e4a0681ad41626cb69a484a5c884d6df2ec48bc7d463a960665b1b",
        ),
    ),
    "diff": (
        "f5be7648992d635c601cd471a735e4582375708767dc318147ae7c3eca05ee38",
        (
            "sha256:52ad980af60eade03cf05fce2206c19483941c8d9a53f43a293199ac3344a235",
            "sha256:fe19b01f3eb68ef6e2dafe6d9b0596b122d79d2994da7b776b47f71dfcc9d2fb",
            "sha256:7a6ac4c034b7c460a62f71a1c6d5447ef9acd5b538f9421d61dd0bc3a2ffe402",
            "sha256:096a7af6d3b7f87cd8cf8be146da5ca0477232fd89ad406e659e695813014b5f",
            "sha256:bab487fdc49d68089247336b79bd5ddde9b25e64c8a9ac2a488bdd02168cbdcb",
        ),
    ),
    "multiout": (
        "6e17dc90507e27f74a173bb62077bb3ba698d22c45b1744f966f2cf604ae0d39",
        (
            "sha256:fe19b01f3eb68ef6e2dafe6d9b0596b122d79d2994da7b776b47f71dfcc9d2fb",
            "sha256:172d959e562080ae7552cae452ea4af299c2646641332d27174a3cbbe6fbfb7d",
        ),
    ),
}


@pytest.mark.parametrize("name", sorted(GOLDEN_V025))
def test_golden_v025_graph_is_byte_identical(name: str) -> None:
    expected_sha, expected_digests = GOLDEN_V025[name]
    definition = llb.marshal(GOLDEN_BUILDERS[name](), platform=AMD64)
    assert list(definition.digests) == list(expected_digests)
    assert [hashlib.sha256(op).hexdigest() for op in definition.ops] == [
        d.removeprefix("sha256:") for d in expected_digests
    ]
    assert hashlib.sha256(definition.to_bytes()).hexdigest() == expected_sha
    assert definition.head_digest == expected_digests[-2]


@pytest.mark.parametrize("name", sorted(GOLDEN_V025))
def test_golden_v025_against_the_shared_fixture(name: str) -> None:
    case = {c["name"]: c for c in json.loads(SHARED_FIXTURE.read_text())}[name]
    definition = llb.marshal(GOLDEN_BUILDERS[name](), platform=AMD64)
    assert [op.hex() for op in definition.ops] == case["ops"]
    assert list(definition.digests) == case["dgst"]
    assert definition.to_pb() == pb.Definition.parse(bytes.fromhex(case["def"]))


# --- exec settings on State ---------------------------------------------------------------------------


def test_env_order_follows_go_envlist() -> None:
    st = llb.scratch().with_env("A", "1").with_env("B", "2").with_env("A", "3").with_env("C", "4")
    # Setting a key again moves it to the end; removing drops it (Go's EnvList.ToArray order).
    assert list(st.env.items()) == [("B", "2"), ("A", "3"), ("C", "4")]
    assert list(st.without_env("B").with_env("B", "5").env) == ["A", "C", "B"]
    assert st.get_env("A") == "3"
    assert st.get_env("nope") is None
    assert st.get_env("nope", "dflt") == "dflt"
    assert st.with_envs({"Z": "1", "A": "0"}).exec_meta.env_array() == ["B=2", "C=4", "Z=1", "A=0"]


def test_env_is_read_only_and_not_expanded() -> None:
    st = llb.scratch().with_env("P", "$PATH:/x")
    assert st.env["P"] == "$PATH:/x"
    with pytest.raises(TypeError):
        st.env["Q"] = "1"  # type: ignore[index]


@pytest.mark.parametrize("key", ["", "A=B"])
def test_env_rejects_names_go_would_mangle(key: str) -> None:
    with pytest.raises(ValueError, match="environment variable name"):
        llb.scratch().with_env(key, "v")


def test_settings_are_immutable_values() -> None:
    base = _image()
    configured = (
        base.with_user("app")
        .with_hostname("h")
        .with_network("none")
        .with_security("insecure")
        .with_extra_host("db", "10.0.0.1")
        .with_ulimit("nofile", 1, 2)
        .with_cgroup_parent("cg")
        .with_args("echo hi")
    )
    assert base.exec_meta == llb.scratch().exec_meta
    assert (configured.user, configured.hostname, configured.network, configured.security) == (
        "app",
        "h",
        "none",
        "insecure",
    )
    assert configured.extra_hosts == (("db", "10.0.0.1"),)
    assert configured.ulimits == (llb.Ulimit("nofile", 1, 2),)
    assert configured.cgroup_parent == "cg"
    assert configured.args == ("echo", "hi")
    with pytest.raises(dataclasses.FrozenInstanceError):
        configured.exec_meta = base.exec_meta  # type: ignore[misc]
    # Every op builder keeps the settings.
    assert configured.mkdir("/x").exec_meta == configured.exec_meta
    assert configured.run("true").exec_meta == configured.exec_meta
    assert configured.with_output(None).exec_meta == configured.exec_meta


def test_with_output_keeps_every_field() -> None:
    # State.with_output() lists the fields by hand for speed.
    st = llb.State(working_dir="/w", platform=ARM64).with_env("A", "1").with_user("u")
    moved = st.with_output(_image().output)
    for f in dataclasses.fields(llb.State):
        if f.name != "output":
            assert getattr(moved, f.name) == getattr(st, f.name), f.name


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda st: st.with_network("bridge"), "network must be"),
        (lambda st: st.with_security("privileged"), "security must be"),
        (lambda st: st.with_extra_host("h", "not-an-ip"), "does not appear to be an IPv4 or IPv6"),
        (lambda st: st.with_extra_host("h", "fe80::1%eth0"), "zoned"),
        (lambda st: st.with_ulimit("", 1, 1), "ulimit name"),
        (lambda st: st.with_ulimit("nofile", 1 << 63, 1), "int64"),
        (lambda st: st.run("true", valid_exit_codes=[1 << 31]), "int32"),
    ],
)
def test_bad_settings_are_refused(call: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call(_image())  # type: ignore[operator]


def test_extra_host_ips_are_written_like_go() -> None:
    st = (
        _image()
        .with_extra_host("a", "2001:0db8:0000:0000:0000:0000:0000:0001")
        .with_extra_host("b", "::ffff:1.2.3.4")
        .with_extra_host("c", "0:0:0:0:0:0:0:1")
    )
    meta = _exec(st.run("true")).meta
    assert meta is not None
    assert [(h.host, h.ip) for h in meta.extra_hosts] == [
        ("a", "2001:db8::1"),
        ("b", "1.2.3.4"),
        ("c", "::1"),
    ]


# --- the command line ---------------------------------------------------------------------------------


# Inputs and what github.com/google/shlex.Split returns for them (run through Go).
SHLEX_GO = [
    ("echo hi", ["echo", "hi"]),
    ("  a\tb\r\nc  ", ["a", "b", "c"]),
    ('a"b c"d', ["ab cd"]),
    ("it''s", ["its"]),
    ('"\\a\\\\"', ["a\\"]),
    ("'\\n'", ["\\n"]),
    ("x#y #z", ["x#y"]),
    ("#only comment", []),
    ("a #c\nb", ["a", "b"]),
    ('""', [""]),
    ("''", [""]),
    ('a "" b', ["a", "", "b"]),
    ('é "ü x"', ["é", "ü x"]),
    ("a\\ b", ["a b"]),
]


@pytest.mark.parametrize(("text", "words"), SHLEX_GO)
def test_shlex_split_matches_go(text: str, words: list[str]) -> None:
    assert llb.shlex_split(text) == words


@pytest.mark.parametrize(
    ("text", "error"),
    [('"unterminated', "expecting closing quote"), ("trailing\\", "after escape character")],
)
def test_shlex_split_refuses_what_go_silently_truncates(text: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        llb.shlex_split(text)


def test_run_args_forms() -> None:
    def args(st: llb.State) -> list[str]:
        meta = _exec(st).meta
        assert meta is not None
        return list(meta.args)

    img = _image()
    assert args(img.run("echo 'a b'")) == ["echo", "a b"]
    assert args(img.run(["echo", "a b"])) == ["echo", "a b"]
    assert args(img.run("echo $HOME > /x", shell=True)) == ["/bin/sh", "-c", "echo $HOME > /x"]
    assert args(img.with_args(["ls", "-l"]).run()) == ["ls", "-l"]
    assert args(img.with_args("ls").run("pwd")) == ["pwd"]
    with pytest.raises(ValueError, match="needs a command"):
        img.run()
    with pytest.raises(ValueError, match="needs a command"):
        img.run([])
    with pytest.raises(TypeError, match="shell=True"):
        img.run(["a"], shell=True)
    with pytest.raises(TypeError, match="bytes"):
        img.run(b"echo")  # type: ignore[arg-type]


# --- what run() returns ----------------------------------------------------------------------------


def test_run_options_apply_to_the_exec_only() -> None:
    base = _image().with_dir("/w").with_env("A", "1")
    es = base.run("true", env={"B": "2"}, cwd="sub", user="u", network="none", hostname="h")
    meta = _exec(es).meta
    assert meta is not None
    assert (list(meta.env), meta.cwd, meta.user, meta.hostname) == (["A=1", "B=2"], "/w/sub", "u", "h")
    assert _exec(es).network == pb.NetMode.NONE
    # Like Go's State.Run, the result keeps the settings of the State run() was called on.
    assert es.working_dir == "/w"
    assert dict(es.env) == {"A": "1"}
    assert es.network == "sandbox"
    # … and a later exec inherits them.
    meta2 = _exec(es.run("true")).meta
    assert meta2 is not None
    assert (list(meta2.env), meta2.cwd) == (["A=1"], "/w")
    assert base.run("true").output != base.output


def test_exec_state_root_and_repr() -> None:
    es = _image().run("echo hi")
    assert isinstance(es, llb.ExecState)
    assert type(es.root) is llb.State
    assert es.root.output == es.output
    # the root keeps the settings, including the image's pending base config
    assert es.root == llb.State(output=es.output, image_config=es.image_config)
    assert es.image_config is not None
    assert es.image_config.is_bare_base
    assert "ExecOp echo hi" in repr(es)


def test_mounts_are_sorted_and_writable_binds_numbered() -> None:
    es = _image().run(
        "true",
        mounts=[
            llb.bind("/z", llb.scratch()),
            llb.tmpfs("/t"),
            llb.bind("/a", _ctx()),
            llb.cache_mount("/c", id="c"),
            llb.bind("/r", _ctx(), readonly=True),
            llb.bind("/n", llb.scratch(), no_output=True),
            llb.bind("/m", _image(), selector="/etc"),
        ],
    )
    mounts = _exec(es).mounts
    assert [m.dest for m in mounts] == ["/", "/a", "/c", "/m", "/n", "/r", "/t", "/z"]
    assert [m.output for m in mounts] == [0, 1, -1, 2, -1, -1, -1, 3]
    assert [m.input for m in mounts] == [0, 1, -1, 0, -1, 1, -1, -1]
    assert [m.readonly for m in mounts] == [False, False, False, False, False, True, False, False]
    assert mounts[3].selector == "/etc"
    # /m's source is the same image as the root: one op input for both.
    assert len(_head(es).inputs) == 2
    for dest, index in [("/", 0), ("/a", 1), ("/m", 2), ("/z", 3)]:
        out = es.get_mount(dest).output
        assert out is not None
        assert isinstance(out.vertex, ExecOp)
        assert out.index == index
        definition = llb.marshal(es.get_mount(dest), platform=AMD64)
        assert definition.head_digest == llb.digest(es, platform=AMD64)
        assert pb.Op.parse(definition.ops[-1]).inputs == [
            pb.Input(digest=definition.head_digest, index=index)
        ]


def test_get_mount_states() -> None:
    ctx = _ctx()
    es = (
        _image()
        .with_dir("/w")
        .with_env("A", "1")
        .run(
            "true",
            mounts=[
                llb.bind("/out", llb.scratch()),
                llb.bind("/ro", ctx.with_dir("/x"), readonly=True),
                llb.tmpfs("/tmp"),
                llb.cache_mount("/cache", id="c"),
                llb.bind("/gone", llb.scratch(), no_output=True),
                llb.secret_mount("/run/secrets/s", id="s"),
            ],
        )
    )
    out = es.get_mount("/out")
    # Like Go's GetMount: a fresh State (dir "/", no env).
    assert (out.working_dir, dict(out.env)) == ("/", {})
    assert es.get_mount("/ro").output == ctx.output
    assert es.get_mount("/ro").working_dir == "/"
    for dest, kind in [("/tmp", "tmpfs"), ("/cache", "cache"), ("/gone", "no-output")]:
        with pytest.raises(ValueError, match=kind):
            es.get_mount(dest)
    for dest in ["/nope", "/run/secrets/s"]:
        with pytest.raises(KeyError):
            es.get_mount(dest)


def test_readonly_rootfs_root_is_the_base() -> None:
    base = _image()
    es = base.run("true", readonly_rootfs=True, mounts=[llb.bind("/out", llb.scratch())])
    assert es.output == base.output
    mounts = _exec(es.get_mount("/out")).mounts
    assert [(m.dest, m.readonly, m.output) for m in mounts] == [("/", True, -1), ("/out", False, 0)]


def test_scratch_sources_are_input_minus_one() -> None:
    es = llb.scratch().run(["/bin/true"], mounts=[llb.bind("/out", llb.scratch())])
    op = _head(es.get_mount("/out"))
    assert op.inputs == []
    assert op.exec is not None
    assert [m.input for m in op.exec.mounts] == [-1, -1]
    assert "exec.mount.bind" not in _caps(es.get_mount("/out"))


def test_duplicate_and_bad_mounts_are_refused() -> None:
    img = _image()
    with pytest.raises(ValueError, match="two mounts at '/x'"):
        img.run("true", mounts=[llb.tmpfs("/x"), llb.bind("/x", img)])
    with pytest.raises(ValueError, match="two mounts at '/'"):
        img.run("true", mounts=[llb.bind("/", img)])
    with pytest.raises(TypeError, match="list of mounts"):
        img.run("true", mounts=llb.tmpfs("/x"))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not a mount"):
        img.run("true", mounts=["/x"])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="must not be empty"):
        llb.tmpfs("")
    with pytest.raises(ValueError, match="out of range"):
        llb.tmpfs("/t", size=-1)
    with pytest.raises(ValueError, match="sharing"):
        llb.cache_mount("/c", id="c", sharing="exclusive")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cache mount id"):
        llb.cache_mount("/c", id="")
    with pytest.raises(ValueError, match="destination file, an env var name, or both"):
        llb.secret_mount()
    with pytest.raises(ValueError, match="out of range"):
        llb.secret_mount("/s", uid=-1)
    with pytest.raises(ValueError, match="content_cache"):
        llb.bind("/b", img, content_cache="yes")  # type: ignore[arg-type]


def test_secret_mounts_and_env() -> None:
    es = _image().run(
        "true",
        mounts=[
            llb.secret_mount("/run/secrets/a"),
            llb.secret_mount(env="TOKEN"),
            llb.secret_mount("/both", id="b", env="BOTH", uid=1, gid=2, mode=0o440, optional=True),
        ],
        secret_env={"API": "api-secret"},
    )
    op = _exec(es)
    secrets = [(m.dest, m.secret_opt) for m in op.mounts if m.mount_type == pb.MountType.SECRET]
    assert secrets == [
        ("/run/secrets/a", pb.SecretOpt(id="/run/secrets/a", mode=0o400)),
        ("/both", pb.SecretOpt(id="b", uid=1, gid=2, mode=0o440, optional=True)),
    ]
    assert [(s.id, s.name, s.optional) for s in op.secretenv] == [
        ("TOKEN", "TOKEN", False),
        ("b", "BOTH", True),
        ("api-secret", "API", False),
    ]
    assert {"exec.mount.secret", "exec.secretenv"} <= _caps(es)
    assert "exec.secretenv" not in _caps(_image().run("true", mounts=[llb.secret_mount("/s")]))


def test_ssh_sockets_default_targets_and_auth_sock() -> None:
    es = _image().run("true", mounts=[llb.ssh_mount(), llb.ssh_mount("/my.sock", id="k"), llb.ssh_mount()])
    op = _exec(es)
    ssh = [(m.dest, m.ssh_opt) for m in op.mounts if m.mount_type == pb.MountType.SSH]
    assert ssh == [
        ("/run/buildkit/ssh_agent.0", pb.SshOpt(id="default", mode=0o600)),
        ("/my.sock", pb.SshOpt(id="k", mode=0o600)),
        ("/run/buildkit/ssh_agent.2", pb.SshOpt(id="default", mode=0o600)),
    ]
    assert op.meta is not None
    assert list(op.meta.env) == ["SSH_AUTH_SOCK=/run/buildkit/ssh_agent.0"]
    kept = _exec(_image().with_env("SSH_AUTH_SOCK", "/x").run("true", mounts=[llb.ssh_mount()])).meta
    assert kept is not None
    assert list(kept.env) == ["SSH_AUTH_SOCK=/x"]


def test_meta_defaults_like_go() -> None:
    op = _exec(_image().run("true"))
    assert op.meta == pb.Meta(args=["true"], cwd="/", remove_mount_stubs_recursive=True)
    # No PATH: Go adds one only when marshaling with caps of a daemon lacking exec.meta.setsdefaultpath.
    assert op.network == pb.NetMode.UNSET
    assert op.security == pb.SecurityMode.SANDBOX
    assert [(m.dest, m.input, m.output) for m in op.mounts] == [("/", 0, 0)]


@pytest.mark.parametrize(
    ("options", "caps"),
    [
        ({}, {"exec.meta.base", "exec.mount.bind"}),
        ({"network": "none"}, {"exec.meta.network"}),
        ({"network": "host"}, {"exec.meta.network"}),
        ({"security": "insecure"}, {"exec.meta.security"}),
        ({"ulimits": [("nofile", 1, 2)]}, {"exec.meta.ulimit"}),
        ({"valid_exit_codes": [0, 3]}, {"exec.validexitcode"}),
        ({"proxy_env": llb.ProxyEnv()}, {"exec.meta.proxyenv"}),
        ({"cdi_devices": ["a.com/b=c"]}, {"exec.meta.cdi"}),
        ({"mounts": [llb.tmpfs("/t")]}, {"exec.mount.tmpfs"}),
        ({"mounts": [llb.tmpfs("/t", size=1)]}, {"exec.mount.tmpfs", "exec.mount.tmpfs.size"}),
        ({"mounts": [llb.cache_mount("/c", id="c")]}, {"exec.mount.cache", "exec.mount.cache.sharing"}),
        ({"mounts": [llb.bind("/b", _ctx(), selector="/s")]}, {"exec.mount.selector"}),
        ({"mounts": [llb.bind("/b", _ctx(), content_cache="on")]}, {"exec.mount.cache.content"}),
        ({"mounts": [llb.ssh_mount()]}, {"exec.mount.ssh"}),
        ({"mounts": [llb.secret_mount("/s")]}, {"exec.mount.secret"}),
        ({"secret_env": {"E": "s"}}, {"exec.mount.secret", "exec.secretenv"}),
        # Go sends no cap for these.
        ({"cgroup_parent": "x", "hostname": "h", "user": "u"}, set()),
        ({"extra_hosts": {"h": "1.2.3.4"}}, set()),
        ({"network": "sandbox", "security": "sandbox"}, set()),
    ],
)
def test_caps_follow_go(options: dict[str, object], caps: set[str]) -> None:
    got = _caps(_image().run("true", **options))  # type: ignore[arg-type]
    base = {"exec.meta.base", "exec.mount.bind"}
    assert got == base | caps


def test_names_and_ignore_cache_go_to_metadata() -> None:
    es = _image().run("true", name="step", ignore_cache=True, description={"k": "v"})
    definition = llb.marshal(es, platform=AMD64)
    meta = definition.metadata[definition.head_digest or ""]
    assert meta.ignore_cache
    assert meta.description_map == {"k": "v", "llb.customname": "step"}


def _env(state: llb.State) -> list[str]:
    meta = _exec(state).meta
    assert meta is not None
    return list(meta.env)


def _fresh_ids(state: llb.State) -> list[str]:
    prefix = llb.FRESH_RUN_ENV + "="
    return [e.removeprefix(prefix) for e in _env(state) if e.startswith(prefix)]


def test_fresh_run_adds_a_random_id_to_the_env_and_nothing_else() -> None:
    es = _image().run("date", env={"A": "1"}, fresh=True)
    plain = _image().run("date", env={"A": "1"})
    [fresh_id] = _fresh_ids(es)
    assert len(fresh_id) == 25
    assert fresh_id.isalnum()
    assert _env(es) == ["A=1", f"LLBLIB_IGNORE_CACHE={fresh_id}"]
    # Not BuildKit's ignore-cache flag, and without fresh= the op is the plain one (Go's bytes).
    definition = llb.marshal(es, platform=AMD64)
    assert not definition.metadata[definition.head_digest or ""].ignore_cache
    assert _fresh_ids(plain) == []
    without = _exec(es)
    assert without.meta is not None
    without.meta.env = without.meta.env[:-1]
    assert bytes(without) == bytes(_exec(plain))


def test_fresh_run_is_new_per_build_of_the_graph_and_stable_per_state() -> None:
    def build() -> llb.ExecState:
        return _image().run("date", fresh=True)

    first, second = build(), build()
    assert llb.digest(first, platform=AMD64) != llb.digest(second, platform=AMD64)
    assert _fresh_ids(first) != _fresh_ids(second)
    # One State is one op however often it is marshaled: what makes it run once per session.
    assert llb.marshal(first, platform=AMD64).ops == llb.marshal(first, platform=AMD64).ops
    assert llb.digest(first, platform=AMD64) == llb.digest(first, platform=AMD64)
    assert llb.to_yaml(first, platform=AMD64) == llb.to_yaml(first, platform=AMD64)
    assert llb.to_yaml(first, platform=AMD64) != llb.to_yaml(second, platform=AMD64)
    # States built on it contain that same op, not a new draw.
    child = first.file(llb.mkdir("/x")).run("true")
    assert llb.marshal(first, platform=AMD64).ops[-2] in llb.marshal(child, platform=AMD64).ops
    assert _fresh_ids(child) == []


def test_fresh_run_option_draws_an_id_per_application() -> None:
    # As Go's IgnoreCache: one id each time the option is applied, and config_ops.run applies
    # the run options once (Go's llblib.Run applied them twice, drawing two ids).
    option = llb.config_ops.apply_run("date", fresh=True)
    one, two = _image().apply(option), _image().apply(option)
    assert _fresh_ids(one) != _fresh_ids(two)
    ran = llb.config_ops.run(_image(), "date", fresh=True)
    assert len(_fresh_ids(ran)) == 1
    assert ran.image_config is not None
    assert ran.image_config.history[-1].created_by == "RUN date"


def test_exec_platforms() -> None:
    def platform(st: llb.State, default: llb.Platform = AMD64) -> pb.Platform | None:
        return pb.Op.parse(llb.marshal(st, platform=default).ops[-2]).platform

    img = _image()
    assert platform(img.run("true")) == pb.Platform(architecture="amd64", os="linux")
    assert platform(img.run("true"), ARM64) == pb.Platform(architecture="arm64", os="linux")
    assert platform(img.with_platform(ARM64).run("true")) == pb.Platform(architecture="arm64", os="linux")
    es = img.run("true", platform="linux/arm/v7", mounts=[llb.bind("/o", llb.scratch())])
    assert platform(es) == pb.Platform(architecture="arm", os="linux", variant="v7")
    # Go gives the States of the op's outputs the run option's platform, not the base's.
    assert es.platform == llb.Platform("linux", "arm", "v7")
    assert es.get_mount("/o").platform == llb.Platform("linux", "arm", "v7")
    assert (
        img.with_platform(ARM64).run("true", mounts=[llb.bind("/o", llb.scratch())]).get_mount("/o").platform
        is None
    )
    assert img.with_platform(ARM64).run("true").platform == ARM64


def test_memoised_per_default_platform() -> None:
    es = _image().run("true")
    first = llb.marshal(es, platform=AMD64)
    assert llb.marshal(es, platform=AMD64) == first
    assert llb.marshal(es, platform=ARM64).digests != first.digests


# --- merge and diff --------------------------------------------------------------------------------


def test_merge_special_cases() -> None:
    img = _image().with_dir("/x")
    assert llb.merge([]) == llb.scratch()
    assert llb.merge([llb.scratch(), llb.scratch()]) == llb.scratch()
    assert llb.merge([llb.scratch(), img]) is img
    merged = llb.merge([img.with_env("A", "1"), llb.scratch(), llb.image("alpine")], name="m")
    assert (merged.working_dir, dict(merged.env)) == ("/x", {"A": "1"})
    op = _head(merged)
    assert op.merge is not None
    assert [i.input for i in op.merge.inputs] == [0, 1]
    assert op.platform is None
    assert _caps(merged) == {"mergeop"}
    with pytest.raises(TypeError, match="iterable of States"):
        llb.merge(img)  # type: ignore[arg-type]


def test_merge_keeps_repeated_inputs() -> None:
    img = _image()
    op = _head(llb.merge([img, img, img]))
    assert op.merge is not None
    assert [i.input for i in op.merge.inputs] == [0, 1, 2]
    assert len(op.inputs) == 3
    assert len({i.digest for i in op.inputs}) == 1


def test_diff_special_cases() -> None:
    img = _image().with_dir("/d")
    assert llb.diff(llb.scratch(), llb.scratch()) == llb.scratch()
    assert llb.diff(llb.scratch(), img) is img
    to_scratch = llb.diff(img, llb.scratch())
    assert to_scratch.working_dir == "/d"
    op = _head(to_scratch)
    assert op.diff == pb.DiffOp(lower=pb.LowerDiffInput(input=0), upper=pb.UpperDiffInput(input=-1))
    assert op.platform is None
    same = _head(llb.diff(img, img))
    assert same.diff == pb.DiffOp(lower=pb.LowerDiffInput(input=0), upper=pb.UpperDiffInput(input=1))
    assert len(same.inputs) == 2
    assert _caps(to_scratch) == {"diffop"}


def test_merge_of_diffs_dedups_shared_ops() -> None:
    base = _image()
    a = llb.diff(base, base.run("touch /a").root)
    b = llb.diff(base, base.run("touch /b").root)
    definition = llb.marshal(llb.merge([base, a, b]), platform=AMD64)
    # image, run a, diff a, run b, diff b, merge, terminal: the image once.
    assert len(definition.ops) == 7
    assert len(set(definition.digests)) == 7


# --- scale ---------------------------------------------------------------------------------------------


def test_long_exec_chain_encodes_each_exec_once(monkeypatch: pytest.MonkeyPatch) -> None:
    encoded: list[ExecOp] = []
    encode = ExecOp._encode

    def counting(self: ExecOp, ctx: Any) -> Any:
        encoded.append(self)
        return encode(self, ctx)

    monkeypatch.setattr(ExecOp, "_encode", counting)
    st: llb.State = _image()
    for i in range(5000):
        st = st.run(["sh", "-c", f"echo {i} >> /log"], mounts=[llb.cache_mount("/c", id="c")]).root
    definition = llb.marshal(st, platform=AMD64)
    assert len(definition.ops) == 5002
    # Each exec is encoded once (its inputs' digests come from the memo, not a re-walk)...
    assert len(encoded) == len({id(op) for op in encoded}) == 5000
    # ...and never again: marshaling on top of the chain encodes only the new exec.
    assert llb.marshal(st.run("true").root, platform=AMD64).ops[:-2] == definition.ops[:-1]
    assert len(encoded) == 5001
    # (How fast long graphs marshal is measured by ``nox -s bench -- marshal``.)
