package main

// Source ops the Python API builds today: docker-image:// (reference forms,
// platforms, resolve modes, names) and local:// (every option).  Python side:
// tests/llb_catalogue/source.py.

import (
	"github.com/containerd/platforms"
	"github.com/moby/buildkit/client/llb"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"
)

const srcFakeDigest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func init() {
	// --- docker-image:// references (normalized like Docker) ---------------------------------
	register("src_image_short_name", func() llb.State { return llb.Image("alpine") })
	register("src_image_tag", func() llb.State { return llb.Image("alpine:3.20") })
	register("src_image_user_repo", func() llb.State { return llb.Image("user/app:1") })
	register("src_image_fully_qualified", func() llb.State { return llb.Image("docker.io/library/debian:bookworm") })
	register("src_image_index_docker_io", func() llb.State { return llb.Image("index.docker.io/nginx") })
	register("src_image_registry_port", func() llb.State { return llb.Image("localhost:5000/team/x/y") })
	register("src_image_digest", func() llb.State { return llb.Image("ghcr.io/o/r@" + srcFakeDigest) })
	register("src_image_tag_and_digest", func() llb.State { return llb.Image("busybox:1.36@" + srcFakeDigest) })

	// --- platforms: explicit ones win over the marshal default (linux/amd64) -------------------
	register("src_image_platform_arm64", func() llb.State {
		return llb.Image("alpine:3.20", llb.Platform(platforms.MustParse("linux/arm64")))
	})
	register("src_image_platform_arm_v7", func() llb.State {
		return llb.Image("alpine:3.20", llb.Platform(platforms.MustParse("linux/arm/v7")))
	})
	register("src_image_platform_arm64_v8", func() llb.State {
		// containerd's Parse keeps an explicit v8 variant (only Normalize drops it).
		return llb.Image("alpine:3.20", llb.Platform(platforms.MustParse("linux/arm64/v8")))
	})
	register("src_image_platform_windows_osversion", func() llb.State {
		return llb.Image("mcr.microsoft.com/windows/nanoserver:ltsc2022",
			llb.Platform(platforms.MustParse("windows(10.0.20348+win32k+xyz)/amd64")))
	})
	register("src_image_platform_struct", func() llb.State {
		return llb.Image("alpine:3.20", llb.Platform(ocispecs.Platform{OS: "linux", Architecture: "riscv64"}))
	})

	// --- resolve modes -----------------------------------------------------------------------
	register("src_image_resolve_default", func() llb.State { return llb.Image("alpine:3.20", llb.ResolveModeDefault) })
	register("src_image_resolve_pull", func() llb.State { return llb.Image("alpine:3.20", llb.ResolveModeForcePull) })
	register("src_image_resolve_local", func() llb.State { return llb.Image("alpine:3.20", llb.ResolveModePreferLocal) })

	// --- names, descriptions, ignore-cache ---------------------------------------------------
	register("src_image_named", func() llb.State {
		return llb.Image("alpine:3.20", llb.WithCustomName("base image"))
	})
	register("src_image_description_ignore_cache", func() llb.State {
		return llb.Image("alpine:3.20",
			llb.WithDescription(map[string]string{"com.example.z": "last", "com.example.a": "first", "unicode": "ü → ☃"}),
			llb.IgnoreCache)
	})
	register("src_image_everything", func() llb.State {
		return llb.Image("ghcr.io/o/r:v1",
			llb.Platform(platforms.MustParse("linux/arm64")),
			llb.ResolveModeForcePull,
			llb.WithDescription(map[string]string{"k": "v"}),
			llb.WithCustomName("pulled"),
			llb.IgnoreCache)
	})

	// --- local:// ----------------------------------------------------------------------------
	register("src_local_session", func() llb.State { return llb.Local("ctx", llb.SessionID("s1")) })
	register("src_local_unique_id", func() llb.State { return llb.Local("ctx", llb.LocalUniqueID("u1")) })
	register("src_local_include", func() llb.State {
		return llb.Local("ctx", llb.LocalUniqueID("u1"), llb.IncludePatterns([]string{"src/**", "*.go"}))
	})
	register("src_local_exclude", func() llb.State {
		return llb.Local("ctx", llb.SessionID("s1"), llb.ExcludePatterns([]string{"node_modules", "**/*.pyc", "!keep.pyc"}))
	})
	register("src_local_follow_paths", func() llb.State {
		return llb.Local("ctx", llb.SessionID("s1"), llb.FollowPaths([]string{"Dockerfile", "sub/link"}))
	})
	register("src_local_json_escaping", func() llb.State {
		// Go's json.Marshal escapes <, >, & and U+2028/9 even inside strings; keeps other UTF-8.
		return llb.Local("ctx", llb.SessionID("s1"),
			llb.IncludePatterns([]string{"a<b>&c", "ü/*", "x\ny\t\"q\"\\", "\u2028\u2029", "\x01"}))
	})
	register("src_local_empty_pattern_lists", func() llb.State {
		return llb.Local("ctx", llb.SessionID("s1"),
			llb.IncludePatterns([]string{}), llb.ExcludePatterns(nil), llb.FollowPaths([]string{}))
	})
	register("src_local_shared_key_hint", func() llb.State {
		return llb.Local("ctx", llb.LocalUniqueID("u1"), llb.SharedKeyHint("ctx-hint"))
	})
	register("src_local_differ_none_required", func() llb.State {
		return llb.Local("ctx", llb.LocalUniqueID("u1"), llb.Differ(llb.DiffNone, true))
	})
	register("src_local_differ_metadata_optional", func() llb.State {
		return llb.Local("ctx", llb.LocalUniqueID("u1"), llb.Differ(llb.DiffMetadata, false))
	})
	register("src_local_named_described", func() llb.State {
		return llb.Local("ctx", llb.SessionID("s1"), llb.WithCustomName("context"),
			llb.WithDescription(map[string]string{"com.example": "x"}), llb.IgnoreCache)
	})
	register("src_local_everything", func() llb.State {
		return llb.Local("my-ctx.v2",
			llb.SessionID("sess-123"),
			llb.IncludePatterns([]string{"src", "go.*"}),
			llb.ExcludePatterns([]string{"*.tmp"}),
			llb.FollowPaths([]string{"go.mod"}),
			llb.SharedKeyHint("hint"),
			llb.Differ(llb.DiffMetadata, true),
			llb.WithCustomName("everything"),
			llb.IgnoreCache)
	})
}
