"""Git, http, oci-layout and blob sources, image options, constraints and definition import —
the Python twin of ``tests/llb_oracle/catalogue_sources2.go``.

Each builder is the Python spelling of the Go case with the same name; the Go
expression is in the comment where the mapping is not obvious.  Go's
``llb.Git(url, fragment, …)`` maps to ``llb.git(url, ref, …)``; Go's
ConstraintsOpts map to ``name=``/``description=``/``ignore_cache=`` and
``constraints=llb.Constraints.of(…)``.
"""

from __future__ import annotations

from llblib_async import llb

from . import Builder

_DIGEST = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
_DIGEST2 = "sha256:fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"
_HOST_KEY = "github.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
_COMMIT = "1f0ba7fdb1ef2e2b8d4e6e8b5f0b1c9d3e7a6b5c"
_PUBKEY = "-----BEGIN PGP PUBLIC KEY BLOCK-----\nxx\n-----END PGP PUBLIC KEY BLOCK-----\n"
_SIGNATURE = b"-----BEGIN PGP SIGNATURE-----\nyy\n-----END PGP SIGNATURE-----\n"


def _import(state: llb.State, platform: str) -> llb.State:
    """Go's ``llb.NewState(llb.NewDefinitionOp(st.Marshal(ctx, llb.Platform(p)).ToPB()))``."""
    return llb.from_definition(llb.marshal(state, platform=platform).to_pb())


def _import_diamond() -> llb.State:
    img = llb.image("alpine:3.20")
    left = img.mkdir("/l")
    right = img.mkdir("/r")
    diamond = left.copy(right, "/r", "/r")
    return _import(diamond, "linux/amd64").rm("/l")


CASES: dict[str, Builder] = {
    # --- git: URL forms --------------------------------------------------------------------------
    "src2_git_https_ref_keepgitdir": lambda: llb.git(
        "https://github.com/moby/buildkit.git", "v0.13.0", keep_git_dir=True
    ),
    "src2_git_https_no_ref": lambda: llb.git("https://github.com/moby/buildkit.git"),
    "src2_git_no_scheme": lambda: llb.git("github.com/moby/buildkit", "main"),
    "src2_git_http_port_full_ref": lambda: llb.git("http://127.0.0.1:8080/repo.git", "refs/tags/v1.2.3"),
    "src2_git_git_protocol_commit": lambda: llb.git("git://example.com/org/repo", _COMMIT),
    "src2_git_escaped_url_userinfo": lambda: llb.git("https://user:p%40ss@example.com/a%20b/c%2Fd.git"),
    "src2_git_ssh_scp": lambda: llb.git(
        "git@github.com:moby/buildkit.git", "master", known_ssh_hosts=_HOST_KEY
    ),
    # Go: KnownSSHHosts twice (the second key ends in "\n"), MountSSHSock("deploy-key")
    "src2_git_ssh_url_options": lambda: llb.git(
        "ssh://git@example.com:2222/org/repo.git",
        known_ssh_hosts=["example.com ssh-rsa AAAA1", "example.com ssh-ed25519 AAAA2\n"],
        mount_ssh_sock="deploy-key",
    ),
    # --- git: refs and sub-directories -----------------------------------------------------------
    "src2_git_fragment_subdir": lambda: llb.git("https://example.com/r.git", "v1:/docs/../sub/"),
    "src2_git_fragment_dot_subdir": lambda: llb.git("https://example.com/r.git", "v1:."),
    # Go: Git(url, "", GitRef("main"), GitSubDir("/a/b/"))
    "src2_git_subdir_option": lambda: llb.git("https://example.com/r.git", "main", subdir="/a/b/"),
    "src2_git_subdir_only": lambda: llb.git("https://example.com/r.git", subdir="docs"),
    # --- git: auth, checksums, checkout options, bundles -----------------------------------------
    "src2_git_auth_secrets": lambda: llb.git(
        "https://example.com/private.git",
        "main",
        auth_token_secret="MY_TOKEN",
        auth_header_secret="MY_HEADER",
    ),
    "src2_git_auth_token_only": lambda: llb.git("https://example.com/private.git", auth_token_secret="TOK"),
    # Go: GitChecksum, GitSkipSubmodules, GitMTimeCommit, GitFetchByCommit, GitAdvice(true)
    "src2_git_checkout_options": lambda: llb.git(
        "https://example.com/r.git",
        "v1",
        checksum=_COMMIT,
        skip_submodules=True,
        mtime="commit",
        fetch_by_commit=True,
        advice=True,
    ),
    # Go: GitBundleURL(locator, GitBundleOCIStore("sess1", "bundles")), GitCheckoutBundle()
    "src2_git_bundle": lambda: llb.git(
        "https://example.com/r.git",
        "main",
        checksum=_COMMIT,
        bundle="oci-layout+blob://example.com/bundles@" + _DIGEST,
        bundle_oci_store=("sess1", "bundles"),
        checkout_bundle=True,
    ),
    # --- http(s) -----------------------------------------------------------------------------------
    "src2_http_plain": lambda: llb.http("https://example.com/file.tar.gz"),
    "src2_http_filename_chmod": lambda: llb.http(
        "https://example.com/file.tar.gz", filename="f.tgz", chmod=0o600
    ),
    # Go: Chown(1000, 1001), Header(HTTPHeader{Accept, UserAgent}), VerifyPGPSignature{PubKey, Signature}
    "src2_http_every_option": lambda: llb.http(
        "http://127.0.0.1:8000/dl/tool?v=1",
        checksum=_DIGEST,
        filename="tool",
        chmod=0o4755,
        uid=1000,
        gid=1001,
        auth_header_secret="DL_AUTH",
        headers={"Accept": "application/octet-stream", "User-Agent": "llb/1"},
        pgp_pubkey=_PUBKEY,
        pgp_signature=_SIGNATURE,
    ),
    # Go: Chown(7, 0), Header(HTTPHeader{Accept: "application/json"})
    "src2_http_uid_only_header_accept": lambda: llb.http(
        "https://example.com/x.json", uid=7, headers={"accept": "application/json"}
    ),
    # --- oci-layout and blobs ----------------------------------------------------------------------
    # Go: OCIStore("sess1", "store1"), OCILayerLimit(2)
    "src2_oci_layout": lambda: llb.oci_layout(
        "example.com/img@" + _DIGEST, store_id="store1", session_id="sess1", layer_limit=2
    ),
    "src2_oci_layout_platform": lambda: llb.oci_layout(
        "docker.io/library/alpine@" + _DIGEST, store_id="store2", platform="linux/arm64"
    ),
    # Go: OCILayoutBlob(ref, ImageBlobOCIStore("", "store1"), Filename("layer.tar"), Chmod(0o644))
    "src2_oci_layout_blob": lambda: llb.oci_layout_blob(
        "example.com/img@" + _DIGEST, store_id="store1", filename="layer.tar", chmod=0o644
    ),
    "src2_image_blob": lambda: llb.image_blob(
        "busybox@" + _DIGEST, filename="blob", chmod=0o640, uid=1, gid=2
    ),
    # --- image options ---------------------------------------------------------------------------------
    # Go: WithLayerLimit(3), WithImageChecksum(digest)
    "src2_image_layer_limit_checksum": lambda: llb.image("alpine:3.20", layer_limit=3, checksum=_DIGEST),
    # Go: MarkImageInternal, ResolveModeForcePull
    "src2_image_internal_pull": lambda: llb.image("alpine:3.20", record_type="internal", resolve_mode="pull"),
    # Go: Image("busybox:1.36", WithMetaResolver(r), ResolveDigest(true)) with r resolving to _DIGEST2
    "src2_image_resolved_digest": lambda: llb.image("busybox:1.36", digest=_DIGEST2),
    "src2_image_resolved_digest_file_on_top": lambda: llb.image("busybox", digest=_DIGEST2).mkdir("/x"),
    # --- constraints -------------------------------------------------------------------------------------
    # Go: ProgressGroup("pg1", "Group one", false) on the image, (…, true) on the file op
    "src2_constraint_progress_group": lambda: llb.image(
        "alpine:3.20", constraints=llb.Constraints(progress_group=llb.ProgressGroup("pg1", "Group one"))
    ).mkdir(
        "/a", constraints=llb.Constraints(progress_group=llb.ProgressGroup("pg1", "Group one", weak=True))
    ),
    "src2_constraint_require": lambda: llb.git(
        "https://example.com/r.git",
        "main",
        constraints=llb.Constraints(require=('labels."org.mobyproject.buildkit.worker.executor"==oci',)),
    ).mkdir("/a", constraints=llb.Constraints(require=("labels.a==b", "labels.c!=d"))),
    # Go: WithExportCache() on the http source, WithoutExportCache() on the file op
    "src2_constraint_export_cache": lambda: llb.http(
        "https://example.com/f", constraints=llb.Constraints(export_cache=True)
    ).mkdir("/a", constraints=llb.Constraints(export_cache=False)),
    # Go: WithDescription({llb.customname: "from description", com.example: x}), WithCustomName("custom"),
    #     IgnoreCache, ProgressGroup("g", "", false), Require("labels.z==1"), WithExportCache()
    "src2_constraint_everything_on_file": lambda: llb.scratch().mkdir(
        "/a",
        name="custom",
        ignore_cache=True,
        constraints=llb.Constraints.of(
            description={"llb.customname": "from description", "com.example": "x"},
            progress_group=llb.ProgressGroup("g"),
            require=["labels.z==1"],
            export_cache=True,
        ),
    ),
    # Go: Git(url, "", IgnoreCache) and HTTP(url, WithCustomName("fetch f")) copied into scratch
    "src2_constraint_ignore_cache_git_http": lambda: llb.scratch().file(
        llb.copy(llb.git("https://example.com/r.git", ignore_cache=True), "/", "/src/").copy(
            llb.http("https://example.com/f", name="fetch f"), "/f", "/f"
        )
    ),
    # --- definition import ---------------------------------------------------------------------------------
    "src2_definition_import_round_trip": lambda: _import(
        llb.image("alpine:3.20").mkdir("/a", name="mk"), "linux/amd64"
    ),
    "src2_definition_import_build_on_top": lambda: _import(
        llb.image("alpine:3.20").mkdir("/a"), "linux/amd64"
    ).file(llb.mkfile("/a/f", b"x").copy(llb.http("https://example.com/f"), "/f", "/a/g")),
    "src2_definition_import_other_platform": lambda: _import(llb.image("alpine:3.20"), "linux/arm64").mkdir(
        "/x", 0o700
    ),
    "src2_definition_import_shared_input": _import_diamond,
}
