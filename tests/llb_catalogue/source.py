"""Source ops (docker-image://, local://) — the Python twin of ``tests/llb_oracle/catalogue_source.go``.

Each builder below is the Python spelling of the Go case with the same name; the Go
expression is in the comment where the mapping is not obvious.  A ``local()`` needs a
host path, which only ends up in ``Definition.locals``, never in the op bytes.
"""

from __future__ import annotations

from llblib_async import llb

from . import Builder

_DIGEST = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
_CTX = "/tmp/llb-catalogue/ctx"


def _image(ref: str) -> Builder:
    return lambda: llb.image(ref)


CASES: dict[str, Builder] = {
    # --- docker-image:// references ------------------------------------------------------------
    "src_image_short_name": _image("alpine"),
    "src_image_tag": _image("alpine:3.20"),
    "src_image_user_repo": _image("user/app:1"),
    "src_image_fully_qualified": _image("docker.io/library/debian:bookworm"),
    "src_image_index_docker_io": _image("index.docker.io/nginx"),
    "src_image_registry_port": _image("localhost:5000/team/x/y"),
    "src_image_digest": _image("ghcr.io/o/r@" + _DIGEST),
    "src_image_tag_and_digest": _image("busybox:1.36@" + _DIGEST),
    # --- platforms (Go: llb.Platform(platforms.MustParse(s))) ----------------------------------
    "src_image_platform_arm64": lambda: llb.image("alpine:3.20", platform="linux/arm64"),
    "src_image_platform_arm_v7": lambda: llb.image("alpine:3.20", platform="linux/arm/v7"),
    "src_image_platform_arm64_v8": lambda: llb.image("alpine:3.20", platform="linux/arm64/v8"),
    "src_image_platform_windows_osversion": lambda: llb.image(
        "mcr.microsoft.com/windows/nanoserver:ltsc2022", platform="windows(10.0.20348+win32k+xyz)/amd64"
    ),
    # Go: llb.Platform(ocispecs.Platform{OS: "linux", Architecture: "riscv64"})
    "src_image_platform_struct": lambda: llb.image("alpine:3.20", platform=llb.Platform("linux", "riscv64")),
    # --- resolve modes --------------------------------------------------------------------------
    "src_image_resolve_default": lambda: llb.image("alpine:3.20", resolve_mode="default"),
    "src_image_resolve_pull": lambda: llb.image("alpine:3.20", resolve_mode="pull"),
    "src_image_resolve_local": lambda: llb.image("alpine:3.20", resolve_mode="local"),
    # --- names, descriptions, ignore-cache ------------------------------------------------------
    "src_image_named": lambda: llb.image("alpine:3.20", name="base image"),
    "src_image_description_ignore_cache": lambda: llb.image(
        "alpine:3.20",
        description={"com.example.z": "last", "com.example.a": "first", "unicode": "ü → ☃"},
        ignore_cache=True,
    ),
    "src_image_everything": lambda: llb.image(
        "ghcr.io/o/r:v1",
        platform="linux/arm64",
        resolve_mode="pull",
        description={"k": "v"},
        name="pulled",
        ignore_cache=True,
    ),
    # --- local:// -------------------------------------------------------------------------------
    "src_local_session": lambda: llb.local(_CTX, name="ctx", session_id="s1"),
    # Go: llb.Local("ctx", llb.LocalUniqueID("u1"))
    "src_local_unique_id": lambda: llb.local(_CTX, name="ctx", unique_id="u1"),
    "src_local_include": lambda: llb.local(_CTX, name="ctx", unique_id="u1", include=["src/**", "*.go"]),
    "src_local_exclude": lambda: llb.local(
        _CTX, name="ctx", session_id="s1", exclude=["node_modules", "**/*.pyc", "!keep.pyc"]
    ),
    "src_local_follow_paths": lambda: llb.local(
        _CTX, name="ctx", session_id="s1", follow_paths=["Dockerfile", "sub/link"]
    ),
    "src_local_json_escaping": lambda: llb.local(
        _CTX,
        name="ctx",
        session_id="s1",
        include=["a<b>&c", "ü/*", 'x\ny\t"q"\\', "\u2028\u2029", "\x01"],
    ),
    "src_local_empty_pattern_lists": lambda: llb.local(
        _CTX, name="ctx", session_id="s1", include=[], exclude=(), follow_paths=[]
    ),
    "src_local_shared_key_hint": lambda: llb.local(
        _CTX, name="ctx", unique_id="u1", shared_key_hint="ctx-hint"
    ),
    # Go: llb.Differ(llb.DiffNone, true)
    "src_local_differ_none_required": lambda: llb.local(
        _CTX, name="ctx", unique_id="u1", differ="none", differ_required=True
    ),
    "src_local_differ_metadata_optional": lambda: llb.local(
        _CTX, name="ctx", unique_id="u1", differ="metadata", differ_required=False
    ),
    "src_local_named_described": lambda: llb.local(
        _CTX,
        name="ctx",
        session_id="s1",
        custom_name="context",
        description={"com.example": "x"},
        ignore_cache=True,
    ),
    "src_local_everything": lambda: llb.local(
        _CTX,
        name="my-ctx.v2",
        session_id="sess-123",
        include=["src", "go.*"],
        exclude=["*.tmp"],
        follow_paths=["go.mod"],
        shared_key_hint="hint",
        differ="metadata",
        differ_required=True,
        custom_name="everything",
        ignore_cache=True,
    ),
}
