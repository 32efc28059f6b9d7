"""``llb.image``'s pending base config (sans-IO): the marker, where it goes, the FROM-like merge.

The live side (the request pipeline resolving the base and the pushed configs) is in
``test_image_base_live.py``.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path

import pytest

import llblib_async
from llblib_async import llb
from llblib_async._pb.moby.buildkit.v1 import frontend as gw
from llblib_async._pipeline.solve_request import put_image_config
from llblib_async.exporters import ImageExport, LocalExport, OCIExport
from llblib_async.llb import config_ops as co
from llblib_async.llb.base_config import using_base_resolver
from llblib_async.llb.frontend import frontend_spec
from llblib_async.llb.image_config import BaseImage, HealthCheck, History, ImageConfig, RunConfig
from llblib_async.request import Request

AMD64 = llb.Platform("linux", "amd64")
BASE_JSON = json.dumps(
    {
        "architecture": "arm64",
        "os": "linux",
        "variant": "v8",
        "created": "2024-01-02T03:04:05.123456789Z",
        "author": "base author",
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + "a" * 64]},
        "config": {
            "User": "nobody",
            "Env": ["PATH=/base/bin", "LANG=C", "KEEP=1"],
            "Entrypoint": ["/entry"],
            "Cmd": ["/bin/sh"],
            "WorkingDir": "/base",
            "Labels": {"a": "base", "b": "base"},
            "ExposedPorts": {"80/tcp": {}},
            "Volumes": {"/data": {}},
            "StopSignal": "SIGQUIT",
            "Shell": ["/bin/ash", "-c"],
            "OnBuild": ["RUN echo base"],
            "Healthcheck": {"Test": ["CMD", "true"]},
        },
        "history": [{"created": "2024-01-02T03:04:05Z", "created_by": "base layer"}],
    }
).encode()
BASE = ImageConfig.from_json(BASE_JSON).adopted()


class FakeResolver:
    """An ``ImageConfigResolver`` answering from memory (``missing`` refs fail like a daemon)."""

    def __init__(self, raw: bytes = BASE_JSON, *, missing: str | None = None) -> None:
        self.raw = raw
        self.missing = missing
        self.calls: list[tuple[str, llb.Platform | None]] = []

    async def resolve(self, ref: str, platform: llb.Platform | None) -> tuple[str, bytes]:
        self.calls.append((ref, platform))
        if ref == self.missing:
            raise llblib_async.SolveError(f"{ref}: not found")
        return "sha256:" + "d" * 64, self.raw


def _own(state: llb.State) -> ImageConfig:
    assert state.image_config is not None
    return state.image_config


# --- the marker ----------------------------------------------------------------------------------


def test_image_records_its_pending_base() -> None:
    st = llb.image("busybox:1.36", platform="linux/arm64")
    config = _own(st)
    assert config.base == BaseImage("docker.io/library/busybox:1.36", llb.Platform("linux", "arm64"))
    assert config.is_bare_base
    assert _own(llb.image("busybox")).base == BaseImage("docker.io/library/busybox:latest", None)
    pinned = llb.image("busybox:1.36", digest="sha256:" + "1" * 64)
    assert _own(pinned).base == BaseImage("docker.io/library/busybox:1.36@sha256:" + "1" * 64, None)
    assert llb.image("busybox", inherit_config=False).image_config is None


def _plain(inherit: bool) -> llb.State:
    return llb.image("alpine:3.20", inherit_config=inherit)


def _ran(inherit: bool) -> llb.State:
    return _plain(inherit).run("true").root


def _helped(inherit: bool) -> llb.State:
    return _plain(inherit).apply(co.add_default_env("A", "1"), co.apply_run("echo hi"), co.cmd("x"))


def test_the_marker_changes_nothing_that_is_marshaled() -> None:
    for build in (_plain, _ran, _helped):
        with_base, without = build(True), build(False)
        assert llb.marshal(with_base, platform=AMD64) == llb.marshal(without, platform=AMD64)
        assert llb.to_yaml(with_base) == llb.to_yaml(without)
        embedded = co.marshal_with_image_config(with_base, platform=AMD64, embed=True)
        plain = co.marshal_with_image_config(without, platform=AMD64, embed=True)
        assert embedded.definition == plain.definition
        assert embedded.config_json == plain.config_json
    bare = co.marshal_with_image_config(llb.image("alpine"), embed=True)
    assert bare.image_config is None  # nothing of its own: "null" in the metadata, as before
    assert llb.image_config_from_definition(bare.definition) is None


def test_the_marker_survives_helpers_and_replace() -> None:
    base = BaseImage("docker.io/library/alpine:3.20", None)
    st = llb.image("alpine:3.20")
    derived = [
        st.mkfile("/f", "x"),
        st.run("true").root,
        st.with_env("A", "1").with_dir("/w"),
        st.apply(co.cmd("x")),
        st.apply(co.add_default_env("A", "1"), co.default_dir("/w"), co.default_user("u")),
        st.apply(co.apply_run("true"), co.entrypoint("/e")),
        st.apply(co.copy(llb.scratch().mkfile("/a", "a"), "/a", "/b")),
        co.run(st, "true"),
        llb.merge([st, llb.scratch().mkfile("/a", "a")]),
        co.merge([st, llb.scratch().mkfile("/a", "a")]),
        co.merge([llb.scratch().mkfile("/a", "a"), st]),
    ]
    for state in derived:
        assert _own(state).base == base, state
    config = _own(st.apply(co.cmd("x")))
    assert dataclasses.replace(config, author="me").base == base
    assert config.with_epoch(1_700_000_000).base == base
    assert config.adopted().base == base
    # the JSON never mentions it, and the empty config still takes the State's platform
    assert (
        config.to_json() == _own(llb.image("alpine:3.20", inherit_config=False).apply(co.cmd("x"))).to_json()
    )
    assert config != _own(llb.image("alpine:3.20", inherit_config=False).apply(co.cmd("x")))
    assert (
        _own(llb.image("alpine", platform="linux/arm64").apply(co.cmd("x"))).platform.architecture == "arm64"
    )


async def test_the_marker_is_dropped_when_the_config_comes_from_elsewhere() -> None:
    st = llb.image("alpine:3.20").apply(co.cmd("x"))
    assert llb.scratch().copy(st, "/", "/").image_config is None
    assert st.run("true", mounts=[llb.bind("/out", llb.scratch())]).get_mount("/out").image_config is None
    assert _own(co.diff(st, st.mkfile("/f", "x"))).base is None  # a diff does not contain the base
    assert _own(st.with_image_config(ImageConfig.from_json(BASE_JSON))).base is None
    assert _own(co.image_defaults(BASE)(st)).base is None
    resolved = await co.resolve_image("alpine:3.20", FakeResolver(), platform=AMD64)
    assert _own(resolved).base is None
    assert _own(resolved.apply(co.cmd("y"))).base is None
    assert llb.dockerfile("FROM scratch\n").image_config is None
    assert llb.frontend("example.com/frontend:1").image_config is None
    # merge: an input with a config of its own wins over a bare image
    with_own = llb.scratch().mkfile("/a", "a").apply(co.cmd("own"))
    assert _own(co.merge([llb.image("alpine"), with_own])).base is None


# --- the merge rule ------------------------------------------------------------------------------


def test_a_bare_image_exports_the_base_config() -> None:
    assert llb.merge_base_config(BASE, _own(llb.image("alpine"))) == BASE


def test_merge_like_from() -> None:
    own = _own(
        llb.image("alpine").apply(
            co.add_default_env("LANG", "en_US.UTF-8"),
            co.add_default_env("NEW", "x"),
            co.add_label("b", "own"),
            co.add_label("c", "own"),
            co.add_exposed_port("8080/tcp"),
            co.add_volume("/cache"),
            co.cmd("serve"),
        )
    )
    merged = llb.merge_base_config(BASE, own)
    c = merged.config
    assert c.env == ("PATH=/base/bin", "LANG=en_US.UTF-8", "KEEP=1", "NEW=x")
    assert c.label_map == {"a": "base", "b": "own", "c": "own"}
    assert c.exposed_ports == ("80/tcp", "8080/tcp")
    assert c.volumes == ("/cache", "/data")
    assert (c.user, c.working_dir, c.stop_signal, c.shell) == (
        "nobody",
        "/base",
        "SIGQUIT",
        ("/bin/ash", "-c"),
    )
    assert c.healthcheck == HealthCheck(test=("CMD", "true"))
    assert (c.entrypoint, c.cmd) == (("/entry",), ("serve",))
    assert c.on_build == ()  # the base's triggers are not inherited, as in Docker
    assert merged.history[0] == History(created="2024-01-02T03:04:05Z", created_by="base layer")
    assert [h.created_by for h in merged.history[1:]] == [
        "ENV LANG=en_US.UTF-8 NEW=x",
        "LABEL b=own c=own",
        "EXPOSE 8080/tcp",
        "VOLUME /cache",
        'CMD ["serve"]',
    ]
    assert merged.platform == llb.default_platform()  # the State's config names one
    assert merged.created == own.created  # the helpers' zero time (with_epoch sets a real one)
    assert merged.author == "base author"
    assert merged.rootfs == BASE.rootfs
    assert merged.container_config.cmd == ("serve",)
    assert merged.container_config.labels == (("a", "base"), ("b", "own"), ("c", "own"))
    assert merged.base is None


def test_merge_settings_the_state_sets_win() -> None:
    own = _own(
        llb.image("alpine").apply(
            co.default_user("app"),
            co.default_dir("/srv"),
            co.stop_signal("SIGTERM"),
            co.run_shell("/bin/bash", "-c"),
            co.healthcheck(HealthCheck.of("NONE")),
            co.add_onbuild("RUN echo own"),
        )
    )
    c = llb.merge_base_config(BASE, own).config
    assert (c.user, c.working_dir, c.stop_signal, c.shell) == ("app", "/srv", "SIGTERM", ("/bin/bash", "-c"))
    assert c.healthcheck == HealthCheck(test=("NONE",))
    assert c.on_build == ("RUN echo own",)
    assert (c.entrypoint, c.cmd) == (("/entry",), ("/bin/sh",))  # neither set: the base's


def test_merge_entrypoint_without_cmd_drops_the_base_cmd() -> None:
    merged = llb.merge_base_config(BASE, _own(llb.image("alpine").apply(co.entrypoint("/app"))))
    assert (merged.config.entrypoint, merged.config.cmd) == (("/app",), ())
    assert merged.container_config.cmd is None
    both = llb.merge_base_config(
        BASE, _own(llb.image("alpine").apply(co.entrypoint("/app"), co.cmd("--help")))
    )
    assert (both.config.entrypoint, both.config.cmd) == (("/app",), ("--help",))


def test_merge_platform_from_the_base_when_the_state_has_none() -> None:
    own = ImageConfig(config=RunConfig(cmd=("x",)), base=BaseImage("docker.io/library/alpine:latest"))
    merged = llb.merge_base_config(BASE, own)
    assert merged.platform == llb.Platform("linux", "arm64", "v8")
    assert merged.created == BASE.created


# --- resolving ----------------------------------------------------------------------------------


async def test_resolve_base_config_asks_for_the_base_platform_or_the_host() -> None:
    fake = FakeResolver()
    own = _own(llb.image("alpine:3.20").apply(co.cmd("x")))
    merged = await llb.resolve_base_config(own, fake)
    assert fake.calls == [("docker.io/library/alpine:3.20", llb.default_platform())]
    assert merged.config.env == BASE.config.env
    await llb.resolve_base_config(_own(llb.image("alpine:3.20", platform="linux/arm64")), fake)
    assert fake.calls[-1] == ("docker.io/library/alpine:3.20", llb.Platform("linux", "arm64"))
    plain = _own(llb.scratch().apply(co.cmd("x")))
    assert await llb.resolve_base_config(plain, fake) is plain
    assert len(fake.calls) == 2


async def test_resolve_base_config_failures_name_the_ref() -> None:
    ref = "registry.example/missing/image:1"
    own = _own(llb.image(ref).apply(co.cmd("x")))
    with pytest.raises(llblib_async.BaseImageError, match="missing/image:1") as info:
        await llb.resolve_base_config(own, FakeResolver(missing=ref))
    assert info.value.ref == ref
    assert isinstance(info.value.__cause__, llblib_async.SolveError)
    with pytest.raises(llblib_async.BaseImageError, match=r"missing/image:1.*config"):
        await llb.resolve_base_config(own, FakeResolver(raw=b"[1, 2]"))


# --- the request's view -------------------------------------------------------------------------


def test_request_pending_base_config() -> None:
    st = llb.image("alpine").apply(co.cmd("x"))
    push = ImageExport("example.com/a:b", push=True)
    assert Request.of(st, exports=[push]).pending_base_config == st.image_config
    assert (
        Request.of(st, exports=[LocalExport(Path("out")), OCIExport("o.tar")]).pending_base_config
        == st.image_config
    )
    assert Request.of(st, exports=[LocalExport(Path("out"))]).pending_base_config is None
    explicit = ImageExport("example.com/a:b", image_config=b"{}")
    assert Request.of(st, exports=[explicit]).pending_base_config is None
    assert Request.of(llb.image("alpine", inherit_config=False), exports=[push]).pending_base_config is None
    bare = Request.of(llb.image("alpine"), exports=[push])
    assert bare.image_config is None  # nothing of its own
    assert bare.pending_base_config is not None
    assert bare.pending_base_config.is_bare_base
    assert Request.of(st).image_config == st.image_config


def test_put_image_config_puts_the_merged_config_in_the_result_metadata() -> None:
    result = gw.Result()
    merged = llb.merge_base_config(BASE, _own(llb.image("alpine").apply(co.cmd("x"))))
    put_image_config(result, [ImageExport("example.com/a:b")], [], resolved=merged)
    assert result.metadata["containerimage.config"] == merged.to_json()


async def test_frontend_inputs_on_llb_image_pass_the_merged_config() -> None:
    bare = llb.image("alpine:3.20")
    helped = bare.apply(co.add_default_env("A", "1"))
    st = llb.frontend("example.com/frontend:1", inputs={"bare": bare, "helped": helped})
    spec = frontend_spec(st)
    assert spec is not None

    def metadata(opts: Mapping[str, str], name: str) -> ImageConfig | None:
        raw = opts.get(f"input-metadata:{name}")
        if raw is None:
            return None
        return ImageConfig.from_json(base64.b64decode(json.loads(raw)["containerimage.config"]))

    # Outside a build: nothing for a bare image, the State's own config otherwise (as before).
    request = await spec.request(platform=AMD64)
    assert metadata(request.opts, "bare") is None
    assert metadata(request.opts, "helped") == dataclasses.replace(_own(helped), base=None)
    # In a build with a base resolver: merged onto the base's config, for the frontend's platform.
    fake = FakeResolver()
    with using_base_resolver(fake):
        request = await spec.request(platform=AMD64)
    assert metadata(request.opts, "bare") == BASE
    helped_config = metadata(request.opts, "helped")
    assert helped_config is not None
    assert helped_config.config.env == (*BASE.config.env, "A=1")
    assert fake.calls == [("docker.io/library/alpine:3.20", AMD64)] * 2
