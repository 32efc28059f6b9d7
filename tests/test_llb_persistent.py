"""``llb.persistent`` (Go llblib's ``Persistent`` / ``MountPropagator``) without a daemon.

The graph it builds is checked byte for byte against llblib's ``propagated`` YAML
golden (made by Go's ``Persistent``), then each method and each Go quirk we fix.
Live runs are in ``tests/test_llb_persistent_live.py``.
"""

from __future__ import annotations

import dataclasses
import inspect

import pytest
from test_llb_yaml import AMD64, GIT_COMMIT, GOLANG_ENV_MAP, GOLDEN_DIR, REDACT, api_scenarios, cached_local

from llblib_async import BuildKitError, llb
from llblib_async.llb.persistent import RunOptions


def _golang() -> llb.State:
    return llb.image("golang:1.20.1", platform="linux/amd64")


def _git() -> llb.State:
    return llb.git("https://github.com/moby/buildkit.git", GIT_COMMIT, keep_git_dir=True)


def _extra() -> list[llb.Mount]:
    return [llb.cache_mount("/cache", id="myid", sharing="private"), llb.tmpfs("/tmpfs")]


def _go_propagated() -> llb.Persistent:
    """TestYAML's ``propagated`` case through ``llb.persistent``, as Go builds it with ``Persistent``."""
    ws = llb.persistent(
        _golang(),
        mounts=[
            llb.bind("/scratch", llb.scratch()),
            llb.bind("/git", _git(), readonly=True),
            llb.bind("/src", cached_local(include=[".golangci.yaml"])),
        ],
    )
    ws = ws.run(["/bin/true"], env={**GOLANG_ENV_MAP, "FOO": "BAR"}, cwd="/go", mounts=_extra())
    return ws.run(["/bin/false"], env={**GOLANG_ENV_MAP, "FOO": "BAZ"}, cwd="/go", mounts=_extra())


def test_two_runs_render_llblib_propagated_golden() -> None:
    ws = _go_propagated()
    targets = (ws.mount("/scratch"), ws.mount("/src"))
    got = llb.to_yaml(*targets, platform=AMD64, redact=REDACT, redact_value="test-constant")
    assert got == (GOLDEN_DIR / "propagated.yaml").read_text(encoding="utf-8")


def test_two_runs_give_the_op_bytes_of_the_runs_chained_by_hand() -> None:
    ws = _go_propagated()
    by_hand = api_scenarios()["propagated"]()  # first.root.run(..., bind(first.get_mount(...)))
    for state, expected in zip((ws.mount("/scratch"), ws.mount("/src")), by_hand, strict=True):
        got = llb.marshal(state, platform=AMD64)
        want = llb.marshal(expected, platform=AMD64)
        assert (got.ops, got.digests) == (want.ops, want.digests)


def test_run_result_root_mounts_and_last() -> None:
    ws = _go_propagated()
    assert ws.last is not None
    op = ws.last.exec_op
    assert op is not None
    assert op.meta.args == ("/bin/false",)
    assert ws.root.output == ws.last.output
    assert ws.mount("/scratch").output == ws.last.get_mount("/scratch").output
    assert ws.mount("/src").output == ws.last.get_mount("/src").output
    # Read-only: the configured source, unchanged by the runs.
    assert llb.digest(ws.mount("/git")) == llb.digest(_git())
    assert [m.dest for m in ws.mounts] == ["/scratch", "/git", "/src"]
    assert ws.mounts[1].readonly


def test_root_records_run_history_like_llblib_run() -> None:
    ws = _go_propagated()
    config = ws.root.image_config
    assert config is not None
    assert [h.created_by for h in config.history] == ["RUN /bin/true", "RUN /bin/false"]
    assert not config.history[-1].empty_layer


def test_run_keywords_are_not_propagated() -> None:
    base = llb.image("busybox", platform="linux/amd64")
    ws = llb.persistent(base, mounts=[llb.bind("/work", llb.scratch())])
    ws = ws.run("touch /work/a", env={"ONLY": "first"}, cwd="/work", mounts=[llb.tmpfs("/tmp")])
    assert [m.dest for m in ws.mounts] == ["/work"]
    ws = ws.run("true")
    assert ws.last is not None
    assert ws.last.exec_op is not None
    op = ws.last.exec_op
    assert [m.dest for m in op.mounts] == ["/", "/work"]
    assert op.cwd == "/"
    assert op.meta.get_env("ONLY") is None


def test_as_run_mounts_current_states_in_a_plain_run() -> None:
    base = llb.image("busybox", platform="linux/amd64")
    ws = llb.persistent(base, mounts=[llb.bind("/work", llb.scratch(), selector="sub")]).run("true")
    assert ws.last is not None
    plain = base.run("ls /work", mounts=ws.mounts)
    assert plain.exec_op is not None
    (work,) = (m for m in plain.exec_op.mounts if m.dest == "/work")
    assert work.source is not None
    assert work.source.output == ws.last.get_mount("/work").output
    assert work.selector == "sub"


@pytest.mark.parametrize(
    ("mount", "dest"),
    [
        (llb.tmpfs("/tmpfs"), "/tmpfs"),
        (llb.cache_mount("/cache", id="c"), "/cache"),
        (llb.bind("/drop", llb.scratch(), no_output=True), "/drop"),
        (llb.secret_mount("/run/secret", id="s"), "/run/secret"),
        (llb.secret_mount(env="TOKEN", id="tok"), "tok"),
        (llb.ssh_mount("/ssh.sock"), "/ssh.sock"),
        (llb.bind("/", llb.scratch()), "/"),
    ],
)
def test_mounts_without_contents_to_carry_are_refused(mount: llb.Mount, dest: str) -> None:
    with pytest.raises(llb.MountPropagationError) as err:
        llb.persistent(llb.scratch(), mounts=[mount])
    assert err.value.dest == dest
    assert repr(dest) in str(err.value)
    assert isinstance(err.value, ValueError)
    assert isinstance(err.value, BuildKitError)


def test_per_run_tmpfs_cache_and_secret_mounts_are_fine() -> None:
    ws = llb.persistent(llb.image("busybox"), mounts=[llb.bind("/work", llb.scratch())])
    mounts: list[llb.Mount | llb.SecretMount] = [
        llb.tmpfs("/tmpfs"),
        llb.cache_mount("/cache", id="c"),
        llb.secret_mount("/s", id="s"),
    ]
    ws = ws.run("true", mounts=mounts).run("true", mounts=mounts)
    assert ws.mount("/work").output is not None


def test_a_mount_point_given_twice_is_refused() -> None:
    with pytest.raises(llb.MountPropagationError, match="mounted twice") as err:
        llb.persistent(llb.scratch(), mounts=[llb.bind("/a", llb.scratch()), llb.bind("/a", llb.scratch())])
    assert err.value.dest == "/a"


def test_a_per_run_mount_on_a_propagated_point_is_refused() -> None:
    ws = llb.persistent(llb.image("busybox"), mounts=[llb.bind("/work", llb.scratch())])
    with pytest.raises(ValueError, match="'/work' is a propagated mount already"):
        ws.run("true", mounts=[llb.tmpfs("/work")])


def test_mounts_must_be_a_list_of_bind_mounts() -> None:
    with pytest.raises(TypeError, match="list of mounts"):
        llb.persistent(llb.scratch(), mounts=llb.bind("/a", llb.scratch()))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="list of mounts"):
        llb.persistent(llb.image("busybox")).run("true", mounts=llb.tmpfs("/t"))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"llb\.bind"):
        llb.persistent(llb.scratch(), mounts=["/a"])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="root must be a State"):
        llb.persistent("busybox")  # type: ignore[arg-type]


def test_mount_before_the_first_run_is_the_configured_source() -> None:
    src = llb.scratch().mkfile("/f", b"x")
    ws = llb.persistent(llb.scratch(), mounts=[llb.bind("/src", src), llb.Mount(dest="/empty")])
    assert ws.mount("/src") is src
    assert ws.mount("/empty") == llb.scratch()  # a bare Mount(dest) is a bind of scratch
    assert ws.last is None


def test_mount_of_an_unknown_point_names_it() -> None:
    ws = llb.persistent(llb.scratch(), mounts=[llb.bind("/src", llb.scratch())])
    with pytest.raises(KeyError, match=r"'/nowhere'.*'/src'"):
        ws.mount("/nowhere")


def test_with_mount_adds_a_mount_later_runs_use() -> None:
    base = llb.image("busybox", platform="linux/amd64")
    given = llb.scratch().mkfile("/given", b"given")
    ws = llb.persistent(base).run("true").with_mount("/extra", given)
    assert ws.mount("/extra") is given
    ws = ws.run("cp /extra/given /extra/seen")
    assert ws.last is not None
    assert ws.last.exec_op is not None
    (extra,) = (m for m in ws.last.exec_op.mounts if m.dest == "/extra")
    assert extra.source is not None
    assert extra.source.output == given.output
    assert not extra.readonly
    assert ws.mount("/extra").output == ws.last.get_mount("/extra").output


def test_with_mount_replaces_the_source_and_keeps_the_options() -> None:
    other = llb.scratch().mkfile("/o", b"o")
    ws = llb.persistent(llb.scratch(), mounts=[llb.bind("/ro", llb.scratch(), readonly=True, selector="s")])
    ws2 = ws.with_mount("/ro", other)
    assert ws2.mount("/ro") is other
    assert ws2.mounts[0].readonly
    assert ws2.mounts[0].selector == "s"
    assert ws.mount("/ro") == llb.scratch()


def test_with_root_and_apply_root() -> None:
    ws = llb.persistent(llb.scratch(), mounts=[llb.bind("/a", llb.scratch())])
    ws2 = ws.with_root(ws.root.with_dir("/app").mkdir("x"))
    assert ws2.root.working_dir == "/app"
    assert ws2.mounts == ws.mounts
    assert ws.root == llb.scratch()


def test_values_are_immutable_and_branch() -> None:
    base = llb.image("busybox", platform="linux/amd64")
    ws = llb.persistent(base, mounts=[llb.bind("/work", llb.scratch())])
    first = ws.run("echo a > /work/a", shell=True)
    other = ws.run("echo b > /work/b", shell=True)
    assert ws.root is base
    assert ws.mount("/work") == llb.scratch()
    assert ws.last is None
    assert first.mount("/work").output != other.mount("/work").output
    with pytest.raises(dataclasses.FrozenInstanceError):
        ws.root = llb.scratch()  # type: ignore[misc]
    assert first.with_mount("/work", llb.scratch()).mount("/work") == llb.scratch()
    assert first.mount("/work").output is not None


def test_run_options_match_state_run() -> None:
    # RunOptions types **options of Persistent.run: it must follow every keyword State.run gains.
    params = inspect.signature(llb.State.run).parameters
    keywords = {n for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}
    assert RunOptions.__optional_keys__ == keywords - {"mounts"}
    run_annotations = llb.State.run.__annotations__  # strings: the modules use postponed annotations
    options = {k: v.__forward_arg__ for k, v in RunOptions.__annotations__.items()}
    assert options == {k: run_annotations[k] for k in options}


def test_package_exports() -> None:
    assert {"MountPropagationError", "Persistent", "persistent"} <= set(llb.__all__)
    assert llb.persistent(llb.scratch()) == llb.Persistent(llb.scratch())
