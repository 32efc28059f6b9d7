"""``llb.to_yaml``: llblib's ``ToYAML`` tree, written with Go yaml.v3's layout.

* Golden files (``tests/golden/yaml/<scenario>.yaml``) are byte-exact.  The
  scenarios are llblib's ``TestYAML`` cases plus cases for the bugs we fix.
  Exec/merge/diff/git/BUILD graphs are made from ``pb`` messages directly
  (:class:`PbGraph`), so they pin the renderer, not a builder API; the image
  config that llblib resolves (env, working dir of ``golang:1.20.1`` and
  busybox) is written into the exec ops as fixed values.
* Every golden is also checked structurally: ``yaml.safe_load`` of the text must
  equal ``to_yaml_tree`` *including alias identity*.
* The emitter has its own byte-exact tests (quoting, escapes, literal blocks,
  comments, anchors) on hand-made node trees.

Set ``LLBLIB_UPDATE_GOLDEN=1`` to rewrite the golden files after a deliberate change.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
import yaml as pyyaml

from llblib_async import llb
from llblib_async._pb import pb
from llblib_async.llb.graph_yaml import MACHINE_DEPENDENT_KEYS, to_yaml, to_yaml_nodes, to_yaml_tree
from llblib_async.llb.yaml_emitter import emit
from llblib_async.llb.yaml_nodes import YamlAlias, YamlMap, YamlScalar, YamlSeq, to_plain

GOLDEN_DIR = Path(__file__).parent / "golden" / "yaml"
UPDATE = os.environ.get("LLBLIB_UPDATE_GOLDEN") == "1"
REDACT = (*MACHINE_DEPENDENT_KEYS, "secret")
AMD64 = llb.Platform("linux", "amd64")

GOLANG_ENV = [
    "PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "GOLANG_VERSION=1.20.1",
    "GOPATH=/go",
]
BUSYBOX_ENV = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
BUSYBOX_238 = "busybox@sha256:238497f91e51816fc6abe8acd5276c156cad31c38197318f3e8e5242aae8332e"
BUSYBOX_B5D = "busybox@sha256:b5d6fe0712636ceb7430189de28819e195e8966372edfc2d9409d79402a0dc16"
GIT_COMMIT = "baaf67ba976460a51ef198abab88baae376c32d8"


# ---------------------------------------------------------------------------------------------
# Building graphs from pb messages
# ---------------------------------------------------------------------------------------------


class PbGraph:
    """Collects ``pb.Op`` messages (deduplicated by digest) and makes ``pb.Definition``s of them."""

    def __init__(self) -> None:
        self.ops: dict[str, bytes] = {}
        self.meta: dict[str, pb.OpMetadata] = {}

    def add(self, op: pb.Op, *, name: str | None = None, ignore_cache: bool = False) -> str:
        """Add ``op`` (its inputs must be added already); return its digest."""
        data = bytes(op)
        dgst = "sha256:" + hashlib.sha256(data).hexdigest()
        self.ops.setdefault(dgst, data)
        if name is not None or ignore_cache:
            description = {"llb.customname": name} if name is not None else {}
            self.meta[dgst] = pb.OpMetadata(description=description, ignore_cache=ignore_cache)
        return dgst

    def include(self, state: llb.State) -> str:
        """Add the ops of a State built with our API (marshaled for linux/amd64); return its head."""
        definition = llb.marshal(state, platform=AMD64)
        for dgst, data in zip(definition.digests[:-1], definition.ops[:-1], strict=True):
            self.ops.setdefault(dgst, data)
            meta = definition.metadata[dgst]
            name = meta.description_map.get("llb.customname")
            if name is not None:
                self.meta[dgst] = pb.OpMetadata(description={"llb.customname": name})
        assert definition.head_digest is not None
        return definition.head_digest

    def definition(self, head: str, index: int = 0) -> pb.Definition:
        """A Definition of everything added so far, whose result is output ``index`` of ``head``."""
        terminal = bytes(pb.Op(inputs=[pb.Input(digest=head, index=index)]))
        # Like marshaled definitions, every op has metadata (llblib dereferences it unchecked).
        metadata = {d: self.meta.get(d, pb.OpMetadata()) for d in self.ops}
        return pb.Definition(def_=[*self.ops.values(), terminal], metadata=metadata)


def inp(dgst: str, index: int = 0) -> pb.Input:
    return pb.Input(digest=dgst, index=index)


def exec_op(
    inputs: Iterable[str | pb.Input],
    args: list[str],
    mounts: list[pb.Mount],
    *,
    env: list[str] | None = None,
    cwd: str = "/",
    **kwargs: Any,
) -> pb.Op:
    meta_fields = {k: kwargs.pop(k) for k in ("user", "hostname", "extra_hosts") if k in kwargs}
    constraints = kwargs.pop("constraints", None)
    return pb.Op(
        inputs=[i if isinstance(i, pb.Input) else inp(i) for i in inputs],
        exec=pb.ExecOp(
            meta=pb.Meta(args=args, env=env if env is not None else [], cwd=cwd, **meta_fields),
            mounts=mounts,
            **kwargs,
        ),
        platform=pb.Platform(os="linux", architecture="amd64"),
        constraints=constraints,
    )


def root_mount(input_index: int = 0) -> pb.Mount:
    return pb.Mount(input=input_index, dest="/", output=0)


def bind_mount(input_index: int, dest: str, output: int = -1, *, readonly: bool = False) -> pb.Mount:
    return pb.Mount(input=input_index, dest=dest, output=output, readonly=readonly)


def golang(g: PbGraph) -> str:
    return g.include(llb.image("golang:1.20.1", platform="linux/amd64"))


def git_source(g: PbGraph) -> str:
    attrs = {
        "git.authheadersecret": "GIT_AUTH_HEADER",
        "git.authtokensecret": "GIT_AUTH_TOKEN",
        "git.fullurl": "https://github.com/moby/buildkit.git",
        "git.keepgitdir": "true",
    }
    return g.add(
        pb.Op(source=pb.SourceOp(identifier=f"git://github.com/moby/buildkit.git#{GIT_COMMIT}", attrs=attrs))
    )


def cached_local(**local_options: Any) -> llb.State:
    """llblib's ``Solver.Local``: the local source copied onto scratch in a step named ``caching …``."""
    src = llb.local(".", name=".", shared_key_hint="hint", unique_id="unique", **local_options)
    return llb.scratch().file(llb.copy(src, "/", "/"), name="caching local://.")


def file_op(inputs: Iterable[str], *actions: pb.FileAction) -> pb.Op:
    return pb.Op(inputs=[inp(i) for i in inputs], file=pb.FileOp(actions=list(actions)))


def action(input: int = -1, secondary: int = -1, output: int = 0, **kind: Any) -> pb.FileAction:
    return pb.FileAction(input=input, secondary_input=secondary, output=output, **kind)


def mkfile_action(path: str, data: bytes, *, input: int = -1, output: int = 0, **extra: Any) -> pb.FileAction:
    mk = pb.FileActionMkFile(path=path, mode=0o644, data=data, timestamp=-1, **extra)
    return action(input=input, output=output, mkfile=mk)


# ---------------------------------------------------------------------------------------------
# Scenarios: llblib's TestYAML cases
# ---------------------------------------------------------------------------------------------

Targets = tuple[Any, ...]


def scenario_scratch() -> Targets:
    return (llb.scratch(),)


def scenario_image() -> Targets:
    return (llb.image("golang:1.20.1", platform="linux/amd64"),)


def scenario_local() -> Targets:
    return (cached_local(),)


def scenario_file() -> Targets:
    baz = llb.scratch().file(llb.mkfile("baz", b"baz content", 0o644))
    chain = (
        llb.mkdir("foo", 0o755)
        .mkfile("foo/bar", b"bar content", 0o644)
        .mkfile("foo/bad", b"bad content", 0o644)
        .copy(baz, "/", "foo")
        .rm("foo/bad")
    )
    return (llb.scratch().file(chain),)


def scenario_diff() -> Targets:
    base = llb.image("golang:1.20.1", platform="linux/amd64")
    g = PbGraph()
    lower = g.include(base)
    upper = g.include(base.file(llb.mkdir("/foobar", 0o755).mkfile("/foobar/file", b"contents", 0o644)))
    op = pb.Op(
        inputs=[inp(lower), inp(upper)],
        diff=pb.DiffOp(lower=pb.LowerDiffInput(input=0), upper=pb.UpperDiffInput(input=1)),
    )
    return (g.definition(g.add(op)),)


def scenario_merge() -> Targets:
    g = PbGraph()
    image = golang(g)
    files = g.include(
        llb.scratch().file(llb.mkdir("/foobar", 0o755)).file(llb.mkfile("/foobar/file", b"contents"))
    )
    op = pb.Op(
        inputs=[inp(image), inp(files)],
        merge=pb.MergeOp(inputs=[pb.MergeInput(input=0), pb.MergeInput(input=1)]),
    )
    return (g.definition(g.add(op)),)


def scenario_run() -> Targets:
    g = PbGraph()
    run = g.add(exec_op([golang(g)], ["/bin/true"], [root_mount()], env=GOLANG_ENV, cwd="/go"))
    return (g.definition(run),)


def scenario_runs() -> Targets:
    states = []
    for args, name in ((["/bin/true"], "good build"), (["/bin/false"], "bad build")):
        g = PbGraph()
        run = g.add(exec_op([golang(g)], args, [root_mount()], env=GOLANG_ENV, cwd="/go"), name=name)
        states.append(g.definition(run))
    return tuple(states)


def scenario_mounts() -> Targets:
    g = PbGraph()
    image, git = golang(g), git_source(g)
    run = exec_op(
        [image, git],
        ["/bin/true"],
        [root_mount(0), bind_mount(1, "/git", readonly=True), bind_mount(-1, "/scratch", 1)],
        env=[*GOLANG_ENV, "FOO=BAR"],
        cwd="/go",
        extra_hosts=[pb.HostIp(host="home", ip="127.0.0.1")],
        security=pb.SecurityMode.INSECURE,
    )
    return (g.definition(g.add(run)),)


def _propagated_mounts(root: pb.Input, scratch: int, src: int) -> list[pb.Mount]:
    cache = pb.CacheOpt(id="myid", sharing=pb.CacheSharingOpt.PRIVATE)
    return [
        root_mount(0),
        pb.Mount(input=-1, dest="/cache", output=-1, mount_type=pb.MountType.CACHE, cache_opt=cache),
        bind_mount(1, "/git", readonly=True),
        bind_mount(scratch, "/scratch", 1),
        bind_mount(src, "/src", 2),
        pb.Mount(input=-1, dest="/tmpfs", output=-1, mount_type=pb.MountType.TMPFS, tmpfs_opt=pb.TmpfsOpt()),
    ]


def scenario_propagated() -> Targets:
    # llblib's Persistent(): the second run's writable mounts start from the first run's outputs.
    g = PbGraph()
    image, git = golang(g), git_source(g)
    local = g.include(cached_local(include=[".golangci.yaml"]))
    first = g.add(
        exec_op(
            [image, git, local],
            ["/bin/true"],
            _propagated_mounts(inp(image), -1, 2),
            env=[*GOLANG_ENV, "FOO=BAR"],
            cwd="/go",
        )
    )
    second_inputs = [inp(first, 0), inp(git), inp(first, 1), inp(first, 2)]
    second = g.add(
        exec_op(
            second_inputs,
            ["/bin/false"],
            _propagated_mounts(second_inputs[0], 2, 3),
            env=[*GOLANG_ENV, "FOO=BAZ"],
            cwd="/go",
        )
    )
    return (g.definition(second, 1), g.definition(second, 2))


def _busybox_exec(g: PbGraph, args: list[str], *mounts: pb.Mount, env: list[str] = BUSYBOX_ENV) -> str:
    image = g.include(llb.image(BUSYBOX_238, platform="linux/amd64"))
    return g.add(exec_op([image], args, [root_mount(), *mounts], env=env))


def scenario_secrets() -> Targets:
    g = PbGraph()
    secret = pb.Mount(
        input=-1,
        dest="/secret",
        mount_type=pb.MountType.SECRET,
        secret_opt=pb.SecretOpt(id="f00b4r", mode=0o400),
    )
    return (g.definition(_busybox_exec(g, ["cat", "/secret"], secret)),)


SSH_ID = "sha256:1be2e4bbd95ae9923ecbc938c27258dd34270988a892f721811283b541016b2b"


def forward_definition() -> pb.Definition:
    g = PbGraph()
    ssh = pb.Mount(
        input=-1,
        dest="/tmp/unix.sock",
        mount_type=pb.MountType.SSH,
        ssh_opt=pb.SshOpt(id=SSH_ID, mode=0o600),
    )
    env = [*BUSYBOX_ENV, "SSH_AUTH_SOCK=/tmp/unix.sock"]
    return g.definition(_busybox_exec(g, ["cat", "/tmp/unix.sock"], ssh, env=env))


def scenario_forward() -> Targets:
    return (forward_definition(),)


def scenario_script() -> Targets:
    g = PbGraph()
    return (g.definition(_busybox_exec(g, ["/bin/sh", "-c", "echo multi\necho line\necho statement"])),)


def scenario_dockerfile_user() -> Targets:
    g = PbGraph()
    base = g.include(
        llb.image(
            BUSYBOX_B5D,
            platform="linux/arm64",
            name=f"[1/3] FROM docker.io/library/{BUSYBOX_B5D}",
        )
    )
    owner = pb.ChownOpt(user=pb.UserOpt(by_name=pb.NamedUserOpt(name="nobody", input=-1)))
    mkdir = pb.FileActionMkDir(path="/tmp", mode=0o755, make_parents=True, owner=owner, timestamp=-1)
    workdir = g.add(file_op([base], action(input=0, mkdir=mkdir)), name="[2/3] WORKDIR /tmp")
    run = exec_op(
        [workdir], ["/bin/sh", "-c", "echo hi"], [root_mount()], env=BUSYBOX_ENV, cwd="/tmp", user="nobody"
    )
    return (g.definition(g.add(run, name="[3/3] RUN echo hi")),)


def _dockerfile_copy(src: str) -> pb.FileActionCopy:
    return pb.FileActionCopy(
        src=src,
        dest=src,
        mode=-1,
        follow_symlink=True,
        dir_copy_contents=True,
        create_dest_path=True,
        allow_wildcard=True,
        allow_empty_wildcard=True,
        timestamp=-1,
    )


def scenario_dockerfile() -> Targets:
    g = PbGraph()
    base = g.include(
        llb.image(BUSYBOX_B5D, platform="linux/arm64", name=f"[hi 1/2] FROM docker.io/library/{BUSYBOX_B5D}")
    )
    runs = {}
    for stage in ("start", "hi"):
        cmd = f"echo {stage} > {stage}"
        op = exec_op([base], ["/bin/sh", "-c", cmd], [root_mount()], env=BUSYBOX_ENV)
        runs[stage] = g.add(op, name=f"[{stage} 2/2] RUN {cmd}")
    first = g.add(
        file_op([runs["start"]], action(input=-1, secondary=0, copy=_dockerfile_copy("/start"))),
        name="[download 1/2] COPY --from=start start start",
    )
    second = g.add(
        file_op([first, runs["hi"]], action(input=0, secondary=1, copy=_dockerfile_copy("/hi"))),
        name="[download 2/2] COPY --from=hi hi hi",
    )
    return (g.definition(second),)


def scenario_def() -> Targets:
    # llblib.BuildDefinition: a FILE op writes the definition, a BUILD op solves it.
    embedded = bytes(forward_definition())
    g = PbGraph()
    mkfile = mkfile_action("/buildkit.llb.definition", embedded)
    file = g.add(file_op([], mkfile))
    build = pb.Op(
        inputs=[inp(file)], build=pb.BuildOp(inputs={"buildkit.llb.definition": pb.BuildInput(input=0)})
    )
    return (g.definition(g.add(build)),)


# ---------------------------------------------------------------------------------------------
# Scenarios: what we render differently (bugs fixed in llblib) and other node kinds
# ---------------------------------------------------------------------------------------------


def scenario_secret_envs() -> Targets:
    g = PbGraph()
    run = exec_op(
        [golang(g)],
        ["env"],
        [root_mount()],
        secretenv=[
            pb.SecretEnv(id="db-password", name="DB_PASSWORD"),
            pb.SecretEnv(id="token", name="TOKEN"),
        ],
        network=pb.NetMode.NONE,
        hostname="builder",
    )
    return (g.definition(g.add(run, ignore_cache=True)),)


def scenario_file_actions() -> Targets:
    when = datetime.datetime(2024, 2, 29, 12, 30, 5, 120000, tzinfo=datetime.UTC)
    chain = (
        llb.mkdir("/etc/app", 0o700, parents=True, owner=(1000, 1000), timestamp=when)
        .mkfile("/etc/app/conf", "key: value\nother: 'x'\n", 0o600, owner="app:staff")
        .mkfile("/bin.dat", b"\xff\xfe\x00binary", 0o644, timestamp=0)
        .symlink("/etc/app/conf", "/conf", timestamp=1_700_000_000_000_000_001)
        .rm("/tmp/*", allow_not_found=True, allow_wildcard=True)
    )
    src = llb.image("alpine:3.20", platform="linux/amd64")
    copy = llb.copy(
        src,
        "/etc/*.conf",
        "/conf/",
        allow_wildcard=True,
        include=["a*", "b*"],
        exclude=["*.bak"],
        owner=0,
        mode=0o640,
        timestamp=when,
        attempt_unpack=True,
    )
    return (llb.scratch().file(chain, name="files").file(copy, name="copy: yes"),)


def scenario_fixed_graphs() -> Targets:
    """Graphs llblib could not render: copy from an earlier action, diff against scratch, nested MOUNT."""
    g = PbGraph()
    image = golang(g)
    # COPY whose source is the MKDIR action before it (llblib: index out of range).
    chain = g.add(
        file_op(
            [image],
            action(input=0, output=-1, mkdir=pb.FileActionMkDir(path="/a", mode=0o755, timestamp=-1)),
            action(
                input=0,
                secondary=1,
                output=0,
                copy=pb.FileActionCopy(src="/a", dest="/b", mode=-1, timestamp=-1),
            ),
        )
    )
    # DIFF whose lower side is scratch (llblib: error).
    diff = g.add(
        pb.Op(
            inputs=[inp(chain)],
            diff=pb.DiffOp(lower=pb.LowerDiffInput(input=-1), upper=pb.UpperDiffInput(input=0)),
        )
    )
    # An exec whose /out mount output is consumed before the exec is rendered anywhere else.
    run = g.add(
        exec_op(
            [diff],
            ["make"],
            [root_mount(0), bind_mount(-1, "/out", 1)],
            constraints=pb.WorkerConstraints(filter=["os==linux", "arch==amd64"]),
        ),
        name="make\nrelease",
    )
    merged = g.add(
        pb.Op(
            inputs=[inp(run, 1), inp(run, 0)],
            merge=pb.MergeOp(
                inputs=[pb.MergeInput(input=0), pb.MergeInput(input=-1), pb.MergeInput(input=1)]
            ),
        ),
        name="# merged",
    )
    return (g.definition(merged), g.definition(run, 1))


SCENARIOS: dict[str, Callable[[], Targets]] = {
    "scratch": scenario_scratch,
    "image": scenario_image,
    "local": scenario_local,
    "file": scenario_file,
    "diff": scenario_diff,
    "merge": scenario_merge,
    "run": scenario_run,
    "runs": scenario_runs,
    "mounts": scenario_mounts,
    "propagated": scenario_propagated,
    "secrets": scenario_secrets,
    "forward": scenario_forward,
    "script": scenario_script,
    "dockerfile-user": scenario_dockerfile_user,
    "dockerfile": scenario_dockerfile,
    "def": scenario_def,
    "secret-envs": scenario_secret_envs,
    "file-actions": scenario_file_actions,
    "fixed-graphs": scenario_fixed_graphs,
}


def render(name: str) -> str:
    return to_yaml(*SCENARIOS[name](), platform=AMD64, redact=REDACT, redact_value="test-constant")


# ---------------------------------------------------------------------------------------------
# Structural comparison (alias identity included)
# ---------------------------------------------------------------------------------------------


def assert_same_tree(got: Any, want: Any, path: str = "$") -> None:
    """``got == want`` and objects shared in one tree are shared at the same places in the other."""
    pairs: dict[int, int] = {}
    reverse: dict[int, int] = {}
    stack: list[tuple[Any, Any, str]] = [(got, want, path)]
    while stack:
        a, b, where = stack.pop()
        assert type(a) is type(b), f"{where}: {type(a).__name__} != {type(b).__name__}"
        if isinstance(a, dict | list):
            seen_a, seen_b = pairs.get(id(a)), reverse.get(id(b))
            assert seen_a in (None, id(b)), f"{where}: sharing differs"
            assert seen_b in (None, id(a)), f"{where}: sharing differs"
            if seen_a is not None:
                continue
            pairs[id(a)], reverse[id(b)] = id(b), id(a)
            if isinstance(a, dict):
                assert list(a) == list(b), f"{where}: keys {list(a)} != {list(b)}"
                stack.extend((a[k], b[k], f"{where}.{k}") for k in a)
            else:
                assert len(a) == len(b), f"{where}: {len(a)} items != {len(b)}"
                stack.extend((x, y, f"{where}[{i}]") for i, (x, y) in enumerate(zip(a, b, strict=True)))
        else:
            assert a == b, f"{where}: {a!r} != {b!r}"


# ---------------------------------------------------------------------------------------------
# Golden tests
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_golden(name: str) -> None:
    got = render(name)
    path = GOLDEN_DIR / f"{name}.yaml"
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(got, encoding="utf-8")
    assert got == path.read_text(encoding="utf-8")


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_golden_structure(name: str) -> None:
    text = (GOLDEN_DIR / f"{name}.yaml").read_text(encoding="utf-8")
    tree = to_yaml_tree(*SCENARIOS[name](), platform=AMD64, redact=REDACT, redact_value="test-constant")
    assert_same_tree(tree, pyyaml.safe_load(text))


# The same graphs built with the State API render the same goldens (an integration check of the
# builders: the goldens above are made from pb messages).

GOLANG_ENV_MAP = dict(e.split("=", 1) for e in GOLANG_ENV)
BUSYBOX_ENV_MAP = dict(e.split("=", 1) for e in BUSYBOX_ENV)


def api_scenarios() -> dict[str, Callable[[], Targets]]:
    golang_st = llb.image("golang:1.20.1", platform="linux/amd64")
    busybox = llb.image(BUSYBOX_238, platform="linux/amd64")
    git = llb.git("https://github.com/moby/buildkit.git", GIT_COMMIT, keep_git_dir=True)

    def run(args: list[str], **options: Any) -> llb.State:
        return golang_st.run(args, env=GOLANG_ENV_MAP, cwd="/go", **options).root

    def mounts() -> Targets:
        binds = [llb.bind("/scratch", llb.scratch()), llb.bind("/git", git, readonly=True)]
        env = {**GOLANG_ENV_MAP, "FOO": "BAR"}
        st = golang_st.run(
            ["/bin/true"],
            env=env,
            cwd="/go",
            security="insecure",
            extra_hosts={"home": "127.0.0.1"},
            mounts=binds,
        )
        return (st.root,)

    def propagated() -> Targets:
        def extra() -> list[llb.Mount]:
            return [llb.cache_mount("/cache", id="myid", sharing="private"), llb.tmpfs("/tmpfs")]

        local = cached_local(include=[".golangci.yaml"])
        first = golang_st.run(
            ["/bin/true"],
            env={**GOLANG_ENV_MAP, "FOO": "BAR"},
            cwd="/go",
            mounts=[
                llb.bind("/scratch", llb.scratch()),
                llb.bind("/git", git, readonly=True),
                llb.bind("/src", local),
                *extra(),
            ],
        )
        second = first.root.run(
            ["/bin/false"],
            env={**GOLANG_ENV_MAP, "FOO": "BAZ"},
            cwd="/go",
            mounts=[
                llb.bind("/scratch", first.get_mount("/scratch")),
                llb.bind("/git", git, readonly=True),
                llb.bind("/src", first.get_mount("/src")),
                *extra(),
            ],
        )
        return (second.get_mount("/scratch"), second.get_mount("/src"))

    def upper() -> llb.State:
        return golang_st.file(llb.mkdir("/foobar", 0o755).mkfile("/foobar/file", b"contents", 0o644))

    merge_files = (
        llb.scratch().file(llb.mkdir("/foobar", 0o755)).file(llb.mkfile("/foobar/file", b"contents"))
    )
    return {
        "run": lambda: (run(["/bin/true"]),),
        "runs": lambda: (run(["/bin/true"], name="good build"), run(["/bin/false"], name="bad build")),
        "mounts": mounts,
        "propagated": propagated,
        "merge": lambda: (llb.merge([golang_st, merge_files]),),
        "diff": lambda: (llb.diff(golang_st, upper()),),
        "secrets": lambda: (
            busybox.run(["cat", "/secret"], env=BUSYBOX_ENV_MAP, mounts=[llb.secret_mount("/secret")]).root,
        ),
        "forward": lambda: (
            busybox.run(
                ["cat", "/tmp/unix.sock"],
                env=BUSYBOX_ENV_MAP,
                mounts=[llb.ssh_mount("/tmp/unix.sock", id=SSH_ID)],
            ).root,
        ),
        "script": lambda: (
            busybox.run(["/bin/sh", "-c", "echo multi\necho line\necho statement"], env=BUSYBOX_ENV_MAP).root,
        ),
    }


@pytest.mark.parametrize("name", list(api_scenarios()))
def test_state_api_renders_the_goldens(name: str) -> None:
    targets = api_scenarios()[name]()
    got = to_yaml(*targets, platform=AMD64, redact=REDACT, redact_value="test-constant")
    assert got == (GOLDEN_DIR / f"{name}.yaml").read_text(encoding="utf-8")


# ---------------------------------------------------------------------------------------------
# API behaviour
# ---------------------------------------------------------------------------------------------


def test_package_exports() -> None:
    assert llb.to_yaml is to_yaml
    assert llb.to_yaml_tree is to_yaml_tree


def test_state_definition_and_pb_definition_render_alike() -> None:
    st = scenario_file()[0]
    definition = llb.marshal(st, platform=AMD64)
    texts = {to_yaml(t, platform=AMD64) for t in (st, definition, definition.to_pb())}
    assert len(texts) == 1


def test_platform_defaults_like_marshal() -> None:
    st = llb.image("alpine")
    assert "platform: linux/arm64\n" in to_yaml(st, platform="linux/arm64")
    host = llb.default_platform()
    assert f"platform: {host.os}/{host.architecture}\n" in to_yaml(st)


def test_ignore_cache_is_shown_for_every_op_kind() -> None:
    # llblib shows it for EXEC only; a cache-busted source or file op is just as relevant.
    st = llb.image("alpine", platform="linux/amd64", ignore_cache=True).mkdir("/x", ignore_cache=True)
    (item,) = to_yaml_tree(st)
    assert item["ignore-cache"] is True
    assert item["actions"][0]["input"]["ignore-cache"] is True


def test_no_targets_is_an_empty_sequence() -> None:
    assert to_yaml() == "[]\n"
    assert to_yaml_tree() == []


def test_scratch_twice_is_anchored_once() -> None:
    assert (
        to_yaml(llb.scratch(), llb.scratch()) == "- &scratch\n  type: SOURCE\n  source: scratch\n- *scratch\n"
    )


def test_tree_shares_nodes_across_items() -> None:
    good, bad = to_yaml_tree(*scenario_runs())
    assert good["mounts"][0]["input"] is bad["mounts"][0]["input"]
    assert good["mounts"][0]["input"] == {
        "type": "SOURCE",
        "source": "docker-image://docker.io/library/golang:1.20.1",
        "platform": "linux/amd64",
    }


def test_tree_values_have_python_types() -> None:
    (item,) = to_yaml_tree(*scenario_file_actions())
    copy = item["actions"][0]
    assert copy["owner"] == {"user": 0}
    assert copy["mode"] == "0o640"
    assert copy["allow-wildcard"] is True
    actions = copy["dest-input"]["actions"]
    assert actions[2]["data"] == b"\xff\xfe\x00binary"
    assert actions[4]["allow-not-found"] is True
    assert actions[4]["input"] is actions[3]


def test_redact_defaults_and_sequences() -> None:
    st = cached_local()
    text = to_yaml(st, redact=MACHINE_DEPENDENT_KEYS)
    assert "{local.sharedkeyhint: <redacted>, local.unique: <redacted>}" in text
    nodes = to_yaml_nodes(st, redact=["include-patterns", "dest"])
    (item,) = to_yaml_tree(scenario_file_actions()[0], redact=["include-patterns"])
    assert item["actions"][0]["include-patterns"] == ["<redacted>", "<redacted>"]
    copy = nodes.items[0]
    assert isinstance(copy, YamlMap)
    actions = copy.get("actions")
    assert isinstance(actions, YamlSeq)
    assert isinstance(actions.items[0], YamlMap)
    dest = actions.items[0].get("dest")
    assert isinstance(dest, YamlScalar)
    assert dest.value == "<redacted>"
    with pytest.raises(TypeError, match="iterable of keys"):
        to_yaml(st, redact="local.unique")


def test_secret_values_never_appear() -> None:
    st = llb.image("alpine").run(
        ["true"], secret_env={"TOKEN": "token-id"}, mounts=[llb.secret_mount("/run/s", id="db")]
    )
    text = to_yaml(st.root)
    assert "secret-envs: [TOKEN=token-id]" in text
    assert "secret: db\n" in text


def test_timestamps_are_utc_whatever_the_local_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    monkeypatch.setenv("TZ", "Pacific/Kiritimati")
    time.tzset()
    try:
        half_second_before_epoch = -500_000_000
        st = llb.scratch().file(
            llb.mkdir("/a", timestamp=half_second_before_epoch).mkfile("/a/b", "x", timestamp=1)
        )
        text = to_yaml(st)
    finally:
        monkeypatch.undo()
        time.tzset()
    assert 'timestamp: "1969-12-31T23:59:59.5Z"' in text
    assert 'timestamp: "1970-01-01T00:00:00.000000001Z"' in text


def test_top_level_output_of_a_non_exec_op_shows_the_index() -> None:
    g = PbGraph()
    two_outputs = g.add(
        file_op(
            [],
            action(output=0, mkdir=pb.FileActionMkDir(path="/a", mode=0o755, timestamp=-1)),
            action(output=1, mkdir=pb.FileActionMkDir(path="/b", mode=0o755, timestamp=-1)),
        )
    )
    (item,) = to_yaml_tree(g.definition(two_outputs, 1))
    assert item["type"] == "MOUNT"
    assert item["output"] == 1
    assert item["input"]["type"] == "FILE"


def test_exec_output_without_a_matching_mount_aliases_the_exec() -> None:
    g = PbGraph()
    run = g.add(exec_op([], ["true"], [bind_mount(-1, "/", 0)]))
    # The second item asks for output 3, which no mount produces: input aliases the exec node.
    root, wrapper = to_yaml_tree(g.definition(run), g.definition(run, 3))
    assert wrapper["type"] == "MOUNT"
    assert wrapper["output"] == 3
    assert wrapper["input"] is root


def test_build_of_an_empty_definition_builds_scratch() -> None:
    g = PbGraph()
    file = g.add(file_op([], mkfile_action("/buildkit.llb.definition", b"")))
    build = g.add(
        pb.Op(
            inputs=[inp(file)], build=pb.BuildOp(inputs={"buildkit.llb.definition": pb.BuildInput(input=0)})
        )
    )
    (item,) = to_yaml_tree(g.definition(build))
    assert item["build"] == {"type": "SOURCE", "source": "scratch"}
    assert item["inputs"]["buildkit.llb.definition"]["actions"][0]["input"] is item["build"]


def test_deep_graphs_do_not_hit_the_recursion_limit() -> None:
    import sys

    st = llb.scratch()
    depth = sys.getrecursionlimit() + 100
    for i in range(depth):
        st = st.file(llb.mkdir(f"/d{i}"))
    text = to_yaml(st)
    assert text.count("type: MKDIR") == depth
    tree = to_yaml_tree(st)
    assert tree[0]["actions"][0]["path"] == f"/d{depth - 1}"


def _bad_definitions() -> dict[str, pb.Definition]:
    g = PbGraph()
    missing = "sha256:" + "0" * 64
    bad: dict[str, pb.Definition] = {}
    bad["op sha256:0000"] = g.definition(missing)
    run = g.add(exec_op([], ["true"], [bind_mount(2, "/", 0)]))
    bad["mount '/' uses input 2"] = g.definition(run)
    passthrough = g.add(pb.Op(passthrough=pb.PassthroughOp(id="x")))
    bad["unexpected op type"] = g.definition(passthrough)
    empty_action = g.add(file_op([], pb.FileAction(input=-1, secondary_input=-1)))
    bad["unexpected file action type"] = g.definition(empty_action)
    later = g.add(file_op([], action(input=3, mkdir=pb.FileActionMkDir(path="/x", mode=0o755))))
    bad["uses the output of action 3"] = g.definition(later)
    no_def = g.add(pb.Op(build=pb.BuildOp()))
    bad["missing its buildkit.llb.definition input"] = g.definition(no_def)
    merge = g.add(pb.Op(merge=pb.MergeOp(inputs=[pb.MergeInput(input=1)])))
    bad["merge input 0 uses input 1"] = g.definition(merge)
    bad["terminal op has no input"] = pb.Definition(def_=[bytes(pb.Op())])
    return bad


@pytest.mark.parametrize(("message", "definition"), list(_bad_definitions().items()))
def test_malformed_graphs_raise_value_error(message: str, definition: pb.Definition) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        to_yaml(definition)


def test_unsupported_target_type() -> None:
    with pytest.raises(TypeError, match=r"expected a State, Definition or pb\.Definition"):
        to_yaml("docker-image://alpine")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Emitter
# ---------------------------------------------------------------------------------------------


def emitter_sample() -> YamlSeq:
    """A tree exercising yaml.v3's layout rules; EMITTER_SAMPLE is what yaml.v3 writes for it."""
    scalar = YamlScalar
    shared = YamlMap([("type", scalar("SOURCE")), ("source", scalar("scratch"))], anchor="scratch")
    entry = YamlMap([("mountpoint", scalar("/out")), ("output", scalar(1))], anchor="ref0_1")
    named = YamlMap(
        [("type", scalar("FILE")), ("input", shared)], anchor="ref1_0", comment="[2/3] WORKDIR /tmp"
    )

    def strings(*values: str | bytes, flow: bool = False) -> YamlSeq:
        return YamlSeq([scalar(v) for v in values], flow=flow)

    return YamlSeq(
        [
            YamlMap(
                [
                    ("type", scalar("EXEC")),
                    ("args", strings("/bin/sh", "-c", "echo a: b, c > [d]", "it's", flow=True)),
                    ("env", strings("PATH=/usr/bin:/bin", "true", "", "x #y", "tab\there", flow=True)),
                    (
                        "attrs",
                        YamlMap(
                            [("git.fullurl", scalar("https://x/y.git")), ("git.keepgitdir", scalar("true"))],
                            flow=True,
                        ),
                    ),
                    (
                        "extra-hosts",
                        YamlSeq(
                            [YamlMap([("host", scalar("home")), ("ip", scalar("127.0.0.1"))], flow=True)]
                        ),
                    ),
                    ("mode", scalar("0o644")),
                    ("numbers", strings("1.5", "0x1F", "1_000", "2024-01-02", "-", "- x", "~", ".inf")),
                    ("readonly", scalar(True)),
                    ("uid", scalar(0)),
                    (
                        "quoted",
                        strings(
                            ": x",
                            "#x",
                            "*x",
                            " lead",
                            "trail ",
                            "a'b",
                            'say "hi"\\',
                            "\x7f\x1b\u00e9\U0001f600\ufeff",
                        ),
                    ),
                    ("script", strings("echo multi\necho line", "ends\n", "keeps\n\n", "space \nbreak")),
                    ("data", scalar(b"\xff" + bytes(range(200, 256)))),
                    ("short", scalar(b"\xfe\xff")),
                    ("empty-map", YamlMap()),
                    ("empty-seq", YamlSeq()),
                    ("mounts", YamlSeq([entry, YamlMap([("input", named)])])),
                    ("x" * 129, scalar("long key")),
                    ("multi\nline key", scalar("v")),
                ],
                comment="good build\nsecond line",
            ),
            YamlMap(
                [("type", scalar("MOUNT")), ("input", YamlAlias(named)), ("output", YamlAlias(entry))],
                comment="#already a comment",
            ),
            YamlAlias(shared),
        ]
    )


EMITTER_SAMPLE = r"""# good build
# second line
- type: EXEC
  args: [/bin/sh, -c, 'echo a: b, c > [d]', it's]
  env: ['PATH=/usr/bin:/bin', "true", "", 'x #y', "tab\there"]
  attrs: {git.fullurl: 'https://x/y.git', git.keepgitdir: "true"}
  extra-hosts:
    - {host: home, ip: 127.0.0.1}
  mode: "0o644"
  numbers:
    - "1.5"
    - "0x1F"
    - "1_000"
    - "2024-01-02"
    - '-'
    - '- x'
    - "~"
    - ".inf"
  readonly: true
  uid: 0
  quoted:
    - ': x'
    - '#x'
    - '*x'
    - ' lead'
    - 'trail '
    - a'b
    - say "hi"\
    - "\x7F\eé\U0001F600\uFEFF"
  script:
    - |-
      echo multi
      echo line
    - |
      ends
    - |+
      keeps

    - "space \nbreak"
  data: !!binary |
    /8jJysvMzc7P0NHS09TV1tfY2drb3N3e3+Dh4uPk5ebn6Onq6+zt7u/w8fLz9PX29/j5+v
    v8/f7/
  short: !!binary /v8=
  empty-map: {}
  empty-seq: []
  mounts:
    - &ref0_1
      mountpoint: /out
      output: 1
    - input: &ref1_0
        # [2/3] WORKDIR /tmp
        type: FILE
        input: &scratch
            type: SOURCE
            source: scratch
  ? LONG_KEY
  : long key
  ? |-
    multi
    line key
  : v
#already a comment
- type: MOUNT
  input: *ref1_0
  output: *ref0_1
- *scratch
""".replace("LONG_KEY", "x" * 129)


def test_emitter_matches_yaml_v3_byte_for_byte() -> None:
    # EMITTER_SAMPLE was produced by Go gopkg.in/yaml.v3 v3.0.1 (yaml.Marshal) for the same tree.
    assert emit(emitter_sample()) == EMITTER_SAMPLE


def test_emitter_output_reads_back_with_pyyaml() -> None:
    sample = emitter_sample()
    assert_same_tree(pyyaml.safe_load(emit(sample)), to_plain(sample))


def test_emitter_quotes_yaml_1_1_values_that_yaml_v3_leaves_plain() -> None:
    values = ["yes", "on", "Off", "1:30", "=", "<<", "0644", "1.20", "null", "plain"]
    text = emit(YamlSeq([YamlMap([(v, YamlScalar(v)) for v in values])]))
    assert text == (
        '- "yes": "yes"\n  "on": "on"\n  "Off": "Off"\n  "1:30": "1:30"\n  "=": "="\n  "<<": "<<"\n'
        '  "0644": "0644"\n  "1.20": "1.20"\n  "null": "null"\n  plain: plain\n'
    )
    assert pyyaml.safe_load(text) == [{v: v for v in values}]


def test_literals_with_leading_blanks_keep_their_value() -> None:
    # yaml.v3 writes "|4" (and drops the first line break) here, which reads back wrong.
    script = "\nset -e\nmake\n"
    indented = "  two spaces\nnone\n"
    tree = YamlSeq(
        [YamlMap([("args", YamlSeq([YamlScalar(script)])), ("data", YamlScalar(indented))]), YamlScalar("\n")]
    )
    text = emit(tree)
    assert text == (
        "- args:\n    - |2\n\n      set -e\n      make\n  data: |2\n      two spaces\n    none\n- |2+\n\n"
    )
    assert pyyaml.safe_load(text) == [{"args": [script], "data": indented}, "\n"]


TRICKY_STRINGS = [
    "",
    " ",
    "\n",
    "\n\n",
    "x\n",
    "x\n\n",
    "\nx",
    "  x\n y",
    "\ttab",
    "a\r\nb",
    "trailing \n",
    "#!/bin/sh\nset -eu\n",
    "key: value",
    "- item",
    "[a, b]",
    "{a: b}",
    "a, b",
    "'quoted'",
    '"dq"',
    "back\\slash",
    "é ü 中文",
    "\U0001f600",
    "\ufeffbom",
    "\x00nul",
    "\x85nel",
    "a\u2028b",
    "0o755",
    "0x10",
    "1e3",
    "-1",
    "+1",
    ".5",
    "2024-01-02T03:04:05Z",
    "~",
    "True",
    "NO",
    "y",
    "@at",
    "`tick",
    "%pct",
    "&amp",
    "*star",
    "!bang",
    "|pipe",
    ">gt",
    "?q",
    ": c",
    "---",
    "...",
]


@pytest.mark.parametrize("value", TRICKY_STRINGS)
def test_strings_round_trip_through_pyyaml(value: str) -> None:
    tree = YamlSeq(
        [
            YamlMap([("value", YamlScalar(value)), (value, YamlScalar("as key"))]),
            YamlScalar(value),
            YamlSeq([YamlScalar(value)], flow=True),
            YamlMap([("v", YamlScalar(value))], flow=True),
        ]
    )
    assert pyyaml.safe_load(emit(tree)) == [{"value": value, value: "as key"}, value, [value], {"v": value}]


def test_node_helpers() -> None:
    node = YamlMap()
    node.add_str("empty", "")
    node.add_true("no", False)
    node.add_true("yes", True)
    node.add("n", YamlScalar(1))
    assert [k for k, _ in node.items] == ["yes", "n"]
    assert node.get("missing") is None
    unanchored = YamlSeq([YamlScalar("x")])
    with pytest.raises(ValueError, match="without an anchor"):
        emit(YamlSeq([unanchored, YamlAlias(unanchored)]))


def test_anchor_names_stay_unique() -> None:
    # Both inputs of the COPY are earlier actions: llblib would name both anchors ref0_2.
    g = PbGraph()
    mkdir = pb.FileActionMkDir(path="/a", mode=0o755, timestamp=-1)
    copy = pb.FileActionCopy(src="/a", dest="/b", mode=-1, timestamp=-1)
    op = g.add(
        file_op(
            [],
            action(input=-1, output=-1, mkdir=mkdir),
            action(input=-1, output=-1, mkdir=mkdir),
            action(input=0, secondary=1, output=0, copy=copy),
        )
    )
    text = to_yaml(g.definition(op))
    assert "&ref0_2\n" in text
    assert "&ref0_2-2\n" in text
    (item,) = pyyaml.safe_load(text)
    actions = item["actions"]
    assert actions[2]["dest-input"] is actions[0]
    assert actions[2]["src-input"] is actions[1]
