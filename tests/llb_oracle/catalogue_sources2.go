package main

// The remaining sources and the per-op constraints: git:// (URL forms, refs,
// subdirs, auth, ssh options, checksums, bundles), http(s):// (every option),
// oci-layout:// and the blob sources, image options (layer limit, checksum,
// record type, a digest pinned by a meta resolver), every ConstraintsOpt kind,
// and definition import (llb.NewDefinitionOp) with ops built on top.
// Python side: tests/llb_catalogue/sources2.py.
//
// ssh remotes always get KnownSSHHosts: without it Go's llb.Git ssh-keyscans the
// host over the network (Python never does), which would make the case depend
// on the network.

import (
	"context"

	"github.com/moby/buildkit/client/llb"
	"github.com/moby/buildkit/client/llb/sourceresolver"
	digest "github.com/opencontainers/go-digest"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"
)

const (
	src2Digest  = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	src2Digest2 = "sha256:fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"
	src2HostKey = "github.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
	src2Commit  = "1f0ba7fdb1ef2e2b8d4e6e8b5f0b1c9d3e7a6b5c"
)

// src2Resolver is a fake image meta resolver: it "resolves" every ref to src2Digest2.
type src2Resolver struct{}

func (src2Resolver) ResolveImageConfig(_ context.Context, ref string, _ sourceresolver.Opt) (string, digest.Digest, []byte, error) {
	return ref, digest.Digest(src2Digest2), []byte(`{"architecture":"amd64","os":"linux","config":{"Env":["A=b"]}}`), nil
}

// src2Import marshals st for platform p and wraps the Definition in a DefinitionOp State.
func src2Import(st llb.State, p ocispecs.Platform) llb.State {
	def, err := st.Marshal(context.Background(), llb.Platform(p))
	if err != nil {
		panic(err)
	}
	op, err := llb.NewDefinitionOp(def.ToPB())
	if err != nil {
		panic(err)
	}
	return llb.NewState(op)
}

func init() {
	// --- git: URL forms -------------------------------------------------------------------------
	register("src2_git_https_ref_keepgitdir", func() llb.State {
		return llb.Git("https://github.com/moby/buildkit.git", "v0.13.0", llb.KeepGitDir())
	})
	register("src2_git_https_no_ref", func() llb.State {
		return llb.Git("https://github.com/moby/buildkit.git", "")
	})
	register("src2_git_no_scheme", func() llb.State {
		return llb.Git("github.com/moby/buildkit", "main")
	})
	register("src2_git_http_port_full_ref", func() llb.State {
		return llb.Git("http://127.0.0.1:8080/repo.git", "refs/tags/v1.2.3")
	})
	register("src2_git_git_protocol_commit", func() llb.State {
		return llb.Git("git://example.com/org/repo", src2Commit)
	})
	register("src2_git_escaped_url_userinfo", func() llb.State {
		return llb.Git("https://user:p%40ss@example.com/a%20b/c%2Fd.git", "")
	})
	register("src2_git_ssh_scp", func() llb.State {
		return llb.Git("git@github.com:moby/buildkit.git", "master", llb.KnownSSHHosts(src2HostKey))
	})
	register("src2_git_ssh_url_options", func() llb.State {
		return llb.Git("ssh://git@example.com:2222/org/repo.git", "",
			llb.KnownSSHHosts("example.com ssh-rsa AAAA1"),
			llb.KnownSSHHosts("example.com ssh-ed25519 AAAA2\n"),
			llb.MountSSHSock("deploy-key"))
	})

	// --- git: refs and sub-directories ---------------------------------------------------------
	register("src2_git_fragment_subdir", func() llb.State {
		return llb.Git("https://example.com/r.git", "v1:/docs/../sub/")
	})
	register("src2_git_fragment_dot_subdir", func() llb.State {
		return llb.Git("https://example.com/r.git", "v1:.")
	})
	register("src2_git_subdir_option", func() llb.State {
		return llb.Git("https://example.com/r.git", "", llb.GitRef("main"), llb.GitSubDir("/a/b/"))
	})
	register("src2_git_subdir_only", func() llb.State {
		return llb.Git("https://example.com/r.git", "", llb.GitSubDir("docs"))
	})

	// --- git: auth, checksums, checkout options, bundles ---------------------------------------
	register("src2_git_auth_secrets", func() llb.State {
		return llb.Git("https://example.com/private.git", "main",
			llb.AuthTokenSecret("MY_TOKEN"), llb.AuthHeaderSecret("MY_HEADER"))
	})
	register("src2_git_auth_token_only", func() llb.State {
		return llb.Git("https://example.com/private.git", "", llb.AuthTokenSecret("TOK"))
	})
	register("src2_git_checkout_options", func() llb.State {
		return llb.Git("https://example.com/r.git", "v1",
			llb.GitChecksum(src2Commit), llb.GitSkipSubmodules(), llb.GitMTimeCommit(),
			llb.GitFetchByCommit(), llb.GitAdvice(true))
	})
	register("src2_git_bundle", func() llb.State {
		return llb.Git("https://example.com/r.git", "main",
			llb.GitChecksum(src2Commit),
			llb.GitBundleURL("oci-layout+blob://example.com/bundles@"+src2Digest,
				llb.GitBundleOCIStore("sess1", "bundles")),
			llb.GitCheckoutBundle())
	})

	// --- http(s) ---------------------------------------------------------------------------------
	register("src2_http_plain", func() llb.State {
		return llb.HTTP("https://example.com/file.tar.gz")
	})
	register("src2_http_filename_chmod", func() llb.State {
		return llb.HTTP("https://example.com/file.tar.gz", llb.Filename("f.tgz"), llb.Chmod(0o600))
	})
	register("src2_http_every_option", func() llb.State {
		return llb.HTTP("http://127.0.0.1:8000/dl/tool?v=1",
			llb.Checksum(digest.Digest(src2Digest)),
			llb.Filename("tool"),
			llb.Chmod(0o4755), // only the permission bits are kept
			llb.Chown(1000, 1001),
			llb.AuthHeaderSecret("DL_AUTH"),
			llb.Header(llb.HTTPHeader{Accept: "application/octet-stream", UserAgent: "llb/1"}),
			llb.VerifyPGPSignature(llb.HTTPSignatureInfo{
				PubKey:    []byte("-----BEGIN PGP PUBLIC KEY BLOCK-----\nxx\n-----END PGP PUBLIC KEY BLOCK-----\n"),
				Signature: []byte("-----BEGIN PGP SIGNATURE-----\nyy\n-----END PGP SIGNATURE-----\n"),
			}))
	})
	register("src2_http_uid_only_header_accept", func() llb.State {
		return llb.HTTP("https://example.com/x.json", llb.Chown(7, 0),
			llb.Header(llb.HTTPHeader{Accept: "application/json"}))
	})

	// --- oci-layout and blobs --------------------------------------------------------------------
	register("src2_oci_layout", func() llb.State {
		return llb.OCILayout("example.com/img@"+src2Digest, llb.OCIStore("sess1", "store1"), llb.OCILayerLimit(2))
	})
	register("src2_oci_layout_platform", func() llb.State {
		return llb.OCILayout("docker.io/library/alpine@"+src2Digest, llb.OCIStore("", "store2"),
			llb.Platform(ocispecs.Platform{OS: "linux", Architecture: "arm64"}))
	})
	register("src2_oci_layout_blob", func() llb.State {
		return llb.OCILayoutBlob("example.com/img@"+src2Digest, llb.ImageBlobOCIStore("", "store1"),
			llb.Filename("layer.tar"), llb.Chmod(0o644))
	})
	register("src2_image_blob", func() llb.State {
		return llb.ImageBlob("busybox@"+src2Digest, llb.Filename("blob"), llb.Chmod(0o640), llb.Chown(1, 2))
	})

	// --- image options -----------------------------------------------------------------------------
	register("src2_image_layer_limit_checksum", func() llb.State {
		return llb.Image("alpine:3.20", llb.WithLayerLimit(3), llb.WithImageChecksum(digest.Digest(src2Digest)))
	})
	register("src2_image_internal_pull", func() llb.State {
		return llb.Image("alpine:3.20", llb.MarkImageInternal, llb.ResolveModeForcePull)
	})
	register("src2_image_resolved_digest", func() llb.State {
		// Python pins the digest directly: llb.image("busybox:1.36", digest=...).
		return llb.Image("busybox:1.36", llb.WithMetaResolver(src2Resolver{}), llb.ResolveDigest(true))
	})
	register("src2_image_resolved_digest_file_on_top", func() llb.State {
		return llb.Image("busybox", llb.WithMetaResolver(src2Resolver{}), llb.ResolveDigest(true)).
			File(llb.Mkdir("/x", 0o755))
	})

	// --- constraints (ConstraintsOpt) on sources and file ops ---------------------------------------
	register("src2_constraint_progress_group", func() llb.State {
		return llb.Image("alpine:3.20", llb.ProgressGroup("pg1", "Group one", false)).
			File(llb.Mkdir("/a", 0o755), llb.ProgressGroup("pg1", "Group one", true))
	})
	register("src2_constraint_require", func() llb.State {
		return llb.Git("https://example.com/r.git", "main", llb.Require(`labels."org.mobyproject.buildkit.worker.executor"==oci`)).
			File(llb.Mkdir("/a", 0o755), llb.Require("labels.a==b", "labels.c!=d"))
	})
	register("src2_constraint_export_cache", func() llb.State {
		return llb.HTTP("https://example.com/f", llb.WithExportCache()).
			File(llb.Mkdir("/a", 0o755), llb.WithoutExportCache())
	})
	register("src2_constraint_everything_on_file", func() llb.State {
		return llb.Scratch().File(llb.Mkdir("/a", 0o755),
			llb.WithDescription(map[string]string{"llb.customname": "from description", "com.example": "x"}),
			llb.WithCustomName("custom"),
			llb.IgnoreCache,
			llb.ProgressGroup("g", "", false),
			llb.Require("labels.z==1"),
			llb.WithExportCache())
	})
	register("src2_constraint_ignore_cache_git_http", func() llb.State {
		return llb.Scratch().File(
			llb.Copy(llb.Git("https://example.com/r.git", "", llb.IgnoreCache), "/", "/src/").
				Copy(llb.HTTP("https://example.com/f", llb.WithCustomName("fetch f")), "/f", "/f"))
	})

	// --- definition import (llb.NewDefinitionOp) ---------------------------------------------------
	register("src2_definition_import_round_trip", func() llb.State {
		return src2Import(llb.Image("alpine:3.20").File(llb.Mkdir("/a", 0o755), llb.WithCustomName("mk")),
			ocispecs.Platform{OS: "linux", Architecture: "amd64"})
	})
	register("src2_definition_import_build_on_top", func() llb.State {
		base := src2Import(llb.Image("alpine:3.20").File(llb.Mkdir("/a", 0o755)),
			ocispecs.Platform{OS: "linux", Architecture: "amd64"})
		return base.File(llb.Mkfile("/a/f", 0o644, []byte("x")).
			Copy(llb.HTTP("https://example.com/f"), "/f", "/a/g"))
	})
	register("src2_definition_import_other_platform", func() llb.State {
		// Imported ops keep the platform they were marshaled for (arm64) in a linux/amd64 marshal.
		base := src2Import(llb.Image("alpine:3.20"), ocispecs.Platform{OS: "linux", Architecture: "arm64"})
		return base.File(llb.Mkdir("/x", 0o700))
	})
	register("src2_definition_import_shared_input", func() llb.State {
		img := llb.Image("alpine:3.20")
		left := img.File(llb.Mkdir("/l", 0o755))
		right := img.File(llb.Mkdir("/r", 0o755))
		diamond := left.File(llb.Copy(right, "/r", "/r"))
		return src2Import(diamond, ocispecs.Platform{OS: "linux", Architecture: "amd64"}).
			File(llb.Rm("/l"))
	})
}
