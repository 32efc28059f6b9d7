"""Exec ops, merge and diff — the Python twin of ``tests/llb_oracle/catalogue_exec.go``.

Every run option and mount kind, output numbering, platforms, state-level exec
settings, and Go's special cases of ``Merge``/``Diff``.  The Go expression of
each case is next to it in the Go file, under the same name.
"""

from __future__ import annotations

from llblib_async import llb
from llblib_async.llb.vertex import Constraints

from . import Builder


def _image() -> llb.State:
    return llb.image("busybox:1.36")


def _ctx() -> llb.State:
    return llb.local("/tmp/llb-catalogue/ctx", name="ctx", session_id="s1")


# --- environment -----------------------------------------------------------------------------------


def _env_order() -> llb.State:
    st = _image().with_env("A", "1").with_env("B", "2").with_env("A", "3").with_env("EMPTY", "")
    return st.run("env", env={"C": "$A:x", "B": "run"})


def _env_inherited_by_next_run() -> llb.State:
    st = _image().with_env("PATH", "/custom/bin").with_dir("/w")
    first = st.run("touch f", env={"ONLY_FIRST": "1"}).root
    return first.run("ls")


def _state_settings() -> llb.State:
    st = (
        _image()
        .with_dir("/srv")
        .with_user("app")
        .with_hostname("h1")
        .with_network("host")
        .with_security("insecure")
        .with_extra_host("db", "10.0.0.2")
        .with_ulimit("nproc", 10, 20)
        .with_cgroup_parent("cg")
        .with_env("K", "V")
    )
    return st.run("true")


# --- bind mounts and outputs -------------------------------------------------------------------------


def _bind_outputs_sorted() -> llb.State:
    es = _image().run(
        "true",
        mounts=[
            llb.bind("/z", llb.scratch()),
            llb.bind("/a", _ctx()),
            llb.bind("/m", llb.image("alpine:3.20"), selector="/etc"),
        ],
    )
    return es.get_mount("/m")


def _bind_output_then_root() -> llb.State:
    es = _image().run("true", mounts=[llb.bind("/out", llb.scratch())])
    return es.root.copy(es.get_mount("/out"), "/", "/result")


def _bind_same_source_twice() -> llb.State:
    ctx = _ctx()
    es = _image().run(
        "true", mounts=[llb.bind("/ro", ctx, readonly=True), llb.bind("/rw", ctx, selector="/sub")]
    )
    return es.get_mount("/rw")


def _bind_root_as_mount_source() -> llb.State:
    base = _image()
    return base.run("true", mounts=[llb.bind("/base", base, readonly=True)]).root


def _bind_force_no_output() -> llb.State:
    es = _image().run(
        "true", mounts=[llb.bind("/scratchpad", llb.scratch(), no_output=True), llb.bind("/w", llb.scratch())]
    )
    return es.get_mount("/w")


def _bind_content_cache() -> llb.State:
    return _image().run(
        "true",
        mounts=[
            llb.bind("/on", _ctx(), readonly=True, content_cache="on"),
            llb.bind("/off", llb.image("alpine:3.20"), readonly=True, content_cache="off"),
        ],
    )


# --- secrets and ssh ---------------------------------------------------------------------------------


def _secret_env() -> llb.State:
    return _image().run(
        "env",
        mounts=[
            llb.secret_mount(env="TOKEN"),
            llb.secret_mount(id="tok", env="API_TOKEN", optional=True),
            llb.secret_mount("/run/secrets/both", id="both-id", env="BOTH"),
        ],
    )


def _ssh_options() -> llb.State:
    return _image().run(
        "ssh-add -l",
        mounts=[
            llb.ssh_mount(),
            llb.ssh_mount("/run/gh.sock", id="gh", uid=1000, gid=1000, mode=0o400, optional=True),
            llb.ssh_mount(id="third"),
        ],
    )


# --- platforms and chains ----------------------------------------------------------------------------


def _platform_run_option() -> llb.State:
    es = _image().run(
        "true", platform=llb.Platform("linux", "arm64"), mounts=[llb.bind("/out", llb.scratch())]
    )
    nxt = es.get_mount("/out").run("true").root
    return llb.merge([es.root, nxt])


def _chain_root_and_mount() -> llb.State:
    first = _image().run("make", mounts=[llb.bind("/out", llb.scratch())])
    second = first.root.run("make install", mounts=[llb.bind("/artifacts", first.get_mount("/out"))])
    return second.get_mount("/artifacts")


def _golden_v025_run() -> llb.State:
    loc = llb.local(
        "/tmp/llb-catalogue/ctx",
        name="ctx",
        exclude=["*.log", "node_modules"],
        follow_paths=["Dockerfile"],
        shared_key_hint="ctx",
        session_id="sess123",
    )
    return (
        llb.image("alpine:3.20")
        .run(
            "sh -c 'echo hi > /out'",
            env={"FOO": "bar"},
            cwd="/work",
            user="1000:1000",
            network="none",
            mounts=[
                llb.cache_mount("/cache", id="mycache", sharing="locked"),
                llb.bind("/src", loc, readonly=True, selector="/sub"),
                llb.tmpfs("/tmp", size=1 << 20),
                llb.secret_mount("/run/secrets/tok", id="tok"),
                llb.ssh_mount(),
            ],
            name="custom run",
            ignore_cache=True,
        )
        .root
    )


# --- merge and diff ----------------------------------------------------------------------------------


def _file(path: str) -> llb.State:
    return llb.scratch().mkfile(path, path[1:])


def _merge_keeps_first_settings() -> llb.State:
    a = _image().with_dir("/first").with_env("FROM", "first")
    b = llb.image("alpine:3.20").with_dir("/second")
    return llb.merge([a, b], ignore_cache=True).run("pwd").root


def _merge_same_input_twice() -> llb.State:
    img = _image()
    return llb.merge([img, img])


def _diff_basic() -> llb.State:
    base = _image()
    return llb.diff(base, base.run("touch /new").root, name="what changed")


def _diff_same_state() -> llb.State:
    img = _image()
    return llb.diff(img, img)


def _diff_merged_onto_other_base() -> llb.State:
    base = _image()
    changes = llb.diff(base, base.run("touch /x", mounts=[llb.bind("/out", llb.scratch())]).root)
    return llb.merge([llb.image("alpine:3.20"), changes])


CASES: dict[str, Builder] = {
    # --- command line --------------------------------------------------------------------------------
    "exec_basic": lambda: _image().run("echo hi").root,
    "exec_shlex_quoting": lambda: _image().run(
        "sh -c \"echo \\\"a  b\\\" \\q\" 'it''s' x#y\rz # trailing comment"
    ),
    "exec_args_list": lambda: _image().run(["/bin/sh", "-c", "echo $HOME > /out", ""]),
    # --- environment ---------------------------------------------------------------------------------
    "exec_env_order": _env_order,
    "exec_env_inherited_by_next_run": _env_inherited_by_next_run,
    # --- dir, user, hostname, cgroup -----------------------------------------------------------------
    "exec_dir_relative": lambda: _image().with_dir("/work").run("pwd", cwd="sub/../deeper"),
    "exec_user_hostname_cgroup": lambda: (
        _image()
        .with_user("nobody")
        .run("id", user="1000:1000", hostname="box", cgroup_parent="/buildkit/custom")
    ),
    "exec_state_settings": _state_settings,
    # --- network, security, hosts, ulimits, exit codes, proxy ----------------------------------------
    "exec_network_host": lambda: _image().run("true", network="host"),
    "exec_network_none": lambda: _image().run("true", network="none"),
    "exec_network_sandbox_explicit": lambda: _image().with_network("none").run("true", network="sandbox"),
    "exec_security_insecure": lambda: _image().run("true", security="insecure"),
    "exec_extra_hosts": lambda: (
        _image()
        .with_extra_host("first", "192.168.1.1")
        .run(
            "cat /etc/hosts",
            extra_hosts={
                "v6": "2001:0db8:0000:0000:0000:0000:0000:0001",
                "mapped": "::ffff:1.2.3.4",
                "first": "10.0.0.1",
            },
        )
    ),
    "exec_ulimits": lambda: _image().run(
        "ulimit -a", ulimits=[llb.Ulimit("nofile", 1024, 2048), ("core", -1, -1), ("stack", 0, 8388608)]
    ),
    "exec_valid_exit_codes": lambda: _image().run("sh -c 'exit 3'", valid_exit_codes=[0, 3, 255, -1]),
    "exec_proxy_env": lambda: _image().run(
        "env",
        proxy_env=llb.ProxyEnv(
            http_proxy="http://proxy:3128",
            https_proxy="https://proxy:3129",
            ftp_proxy="ftp://proxy",
            no_proxy="localhost,.internal",
            all_proxy="socks5://proxy",
        ),
    ),
    "exec_proxy_env_empty": lambda: _image().run("env", proxy_env=llb.ProxyEnv()),
    "exec_cdi_devices": lambda: _image().run(
        "nvidia-smi", cdi_devices=["nvidia.com/gpu=all", llb.CDIDevice("vendor.com/dev=x", optional=True)]
    ),
    # --- metadata ------------------------------------------------------------------------------------
    "exec_named_ignore_cache": lambda: _image().run(
        "date", name="what time is it", ignore_cache=True, description={"com.example.step": "1"}
    ),
    "exec_worker_constraints": lambda: _image().run(
        "true",
        constraints=Constraints(require=('labels."org.mobyproject.buildkit.worker.executor"==oci',)),
    ),
    # --- bind mounts and outputs ---------------------------------------------------------------------
    "exec_bind_outputs_sorted": _bind_outputs_sorted,
    "exec_bind_output_then_root": _bind_output_then_root,
    "exec_bind_same_source_twice": _bind_same_source_twice,
    "exec_bind_root_as_mount_source": _bind_root_as_mount_source,
    "exec_bind_readonly_get_mount": lambda: (
        _image().run("true", mounts=[llb.bind("/src", _ctx(), readonly=True)]).get_mount("/src")
    ),
    "exec_bind_force_no_output": _bind_force_no_output,
    "exec_bind_content_cache": _bind_content_cache,
    "exec_readonly_rootfs": lambda: (
        _image().run("true", readonly_rootfs=True, mounts=[llb.bind("/out", llb.scratch())]).get_mount("/out")
    ),
    "exec_scratch_root": lambda: (
        llb.scratch().run(["/bin/true"], mounts=[llb.bind("/out", llb.scratch())]).get_mount("/out")
    ),
    "exec_relative_mount_dest": lambda: (
        _image().run("true", mounts=[llb.bind(".hidden", llb.scratch())]).root
    ),
    # --- cache and tmpfs mounts ----------------------------------------------------------------------
    "exec_cache_mounts": lambda: _image().run(
        "true",
        mounts=[
            llb.cache_mount("/c/shared", id="shared-id"),
            llb.cache_mount("/c/private", id="private-id", sharing="private"),
            llb.cache_mount("/c/locked", id="locked-id", sharing="locked"),
        ],
    ),
    "exec_cache_mount_with_base": lambda: _image().run(
        "true",
        mounts=[llb.cache_mount("/cache", id="seeded", base=llb.scratch().mkdir("/seed"), selector="/seed")],
    ),
    "exec_tmpfs": lambda: _image().run(
        "true", mounts=[llb.tmpfs("/tmp"), llb.tmpfs("/run/big", size=64 << 20)]
    ),
    # --- secrets and ssh -----------------------------------------------------------------------------
    "exec_secret_mounts": lambda: _image().run(
        "cat /run/secrets/a",
        mounts=[
            llb.secret_mount("/run/secrets/a", id="sa", uid=1000, gid=1001, mode=0o440, optional=True),
            llb.secret_mount("/b"),
        ],
    ),
    "exec_secret_env": _secret_env,
    "exec_ssh_default": lambda: _image().run("ssh-add -l", mounts=[llb.ssh_mount(id="")]),
    "exec_ssh_options": _ssh_options,
    "exec_ssh_keeps_auth_sock": lambda: (
        _image().with_env("SSH_AUTH_SOCK", "/custom.sock").run("true", mounts=[llb.ssh_mount()])
    ),
    # --- platforms -----------------------------------------------------------------------------------
    "exec_platform_from_image": lambda: llb.image("busybox:1.36", platform="linux/arm64").run("uname -m"),
    "exec_platform_from_state": lambda: _image().with_platform("linux/arm/v7").run("uname -m"),
    "exec_platform_run_option": _platform_run_option,
    # --- chains --------------------------------------------------------------------------------------
    "exec_chain_root_and_mount": _chain_root_and_mount,
    "exec_golden_v025_run": _golden_v025_run,
    # --- merge ---------------------------------------------------------------------------------------
    "exec_merge_three": lambda: llb.merge([_image(), _file("/a"), _file("/b")], name="merge three"),
    "exec_merge_drops_scratch": lambda: llb.merge([llb.scratch(), _image(), llb.scratch(), _file("/a")]),
    "exec_merge_single_is_input": lambda: llb.merge([llb.scratch(), _image().with_dir("/x")]),
    "exec_merge_only_scratch": lambda: llb.merge([llb.scratch(), llb.scratch()]),
    "exec_merge_same_input_twice": _merge_same_input_twice,
    "exec_merge_keeps_first_settings": _merge_keeps_first_settings,
    # --- diff ----------------------------------------------------------------------------------------
    "exec_diff_basic": _diff_basic,
    "exec_diff_upper_scratch": lambda: llb.diff(_image(), llb.scratch()),
    "exec_diff_lower_scratch_is_upper": lambda: llb.diff(llb.scratch(), _image()),
    "exec_diff_same_state": _diff_same_state,
    "exec_diff_merged_onto_other_base": _diff_merged_onto_other_base,
}
