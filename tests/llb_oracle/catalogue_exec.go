package main

// Exec ops (every run option, every mount kind, output numbering, platforms,
// state-level exec settings), merge and diff.  Python side:
// tests/llb_catalogue/exec.py.

import (
	"net"

	"github.com/containerd/platforms"
	"github.com/moby/buildkit/client/llb"
)

// Helpers are prefixed "exec" because all catalogue_*.go files share package main.

func execImage() llb.State { return llb.Image("busybox:1.36") }
func execCtx() llb.State   { return llb.Local("ctx", llb.SessionID("s1")) }

func init() {
	// --- command line ----------------------------------------------------------------------------
	register("exec_basic", func() llb.State {
		return execImage().Run(llb.Shlex("echo hi")).Root()
	})
	register("exec_shlex_quoting", func() llb.State {
		// google/shlex: quotes group, a backslash in "..." escapes any rune, # starts a comment
		// only at the start of a word, \r separates.
		return execImage().Run(llb.Shlex(`sh -c "echo \"a  b\" \q" 'it''s' x#y` + "\r" + `z # trailing comment`)).Root()
	})
	register("exec_args_list", func() llb.State {
		return execImage().Run(llb.Args([]string{"/bin/sh", "-c", "echo $HOME > /out", ""})).Root()
	})

	// --- environment ------------------------------------------------------------------------------
	register("exec_env_order", func() llb.State {
		// Setting a key again moves it to the end (EnvList.ToArray order).
		st := execImage().AddEnv("A", "1").AddEnv("B", "2").AddEnv("A", "3").AddEnv("EMPTY", "")
		return st.Run(llb.Shlex("env"), llb.AddEnv("C", "$A:x"), llb.AddEnv("B", "run")).Root()
	})
	register("exec_env_inherited_by_next_run", func() llb.State {
		st := execImage().AddEnv("PATH", "/custom/bin").Dir("/w")
		first := st.Run(llb.Shlex("touch f"), llb.AddEnv("ONLY_FIRST", "1")).Root()
		return first.Run(llb.Shlex("ls")).Root()
	})

	// --- dir, user, hostname, cgroup ---------------------------------------------------------------
	register("exec_dir_relative", func() llb.State {
		return execImage().Dir("/work").Run(llb.Shlex("pwd"), llb.Dir("sub/../deeper")).Root()
	})
	register("exec_user_hostname_cgroup", func() llb.State {
		return execImage().User("nobody").Run(llb.Shlex("id"), llb.User("1000:1000"),
			llb.Hostname("box"), llb.WithCgroupParent("/buildkit/custom")).Root()
	})
	register("exec_state_settings", func() llb.State {
		st := execImage().Dir("/srv").User("app").Hostname("h1").
			Network(llb.NetModeHost).Security(llb.SecurityModeInsecure).
			AddExtraHost("db", net.ParseIP("10.0.0.2")).AddUlimit(llb.UlimitNproc, 10, 20).
			WithCgroupParent("cg").AddEnv("K", "V")
		return st.Run(llb.Shlex("true")).Root()
	})

	// --- network, security, hosts, ulimits, exit codes, proxy -------------------------------------
	register("exec_network_host", func() llb.State {
		return execImage().Run(llb.Shlex("true"), llb.Network(llb.NetModeHost)).Root()
	})
	register("exec_network_none", func() llb.State {
		return execImage().Run(llb.Shlex("true"), llb.Network(llb.NetModeNone)).Root()
	})
	register("exec_network_sandbox_explicit", func() llb.State {
		return execImage().Network(llb.NetModeNone).Run(llb.Shlex("true"), llb.Network(llb.NetModeSandbox)).Root()
	})
	register("exec_security_insecure", func() llb.State {
		return execImage().Run(llb.Shlex("true"), llb.Security(llb.SecurityModeInsecure)).Root()
	})
	register("exec_extra_hosts", func() llb.State {
		return execImage().AddExtraHost("first", net.ParseIP("192.168.1.1")).Run(llb.Shlex("cat /etc/hosts"),
			llb.AddExtraHost("v6", net.ParseIP("2001:0db8:0000:0000:0000:0000:0000:0001")),
			llb.AddExtraHost("mapped", net.ParseIP("::ffff:1.2.3.4")),
			llb.AddExtraHost("first", net.ParseIP("10.0.0.1"))).Root()
	})
	register("exec_ulimits", func() llb.State {
		return execImage().Run(llb.Shlex("ulimit -a"),
			llb.AddUlimit(llb.UlimitNofile, 1024, 2048),
			llb.AddUlimit(llb.UlimitCore, -1, -1),
			llb.AddUlimit(llb.UlimitStack, 0, 8388608)).Root()
	})
	register("exec_valid_exit_codes", func() llb.State {
		return execImage().Run(llb.Shlex("sh -c 'exit 3'"), llb.ValidExitCodes(0, 3, 255, -1)).Root()
	})
	register("exec_proxy_env", func() llb.State {
		return execImage().Run(llb.Shlex("env"), llb.WithProxy(llb.ProxyEnv{
			HTTPProxy: "http://proxy:3128", HTTPSProxy: "https://proxy:3129",
			FTPProxy: "ftp://proxy", NoProxy: "localhost,.internal", AllProxy: "socks5://proxy",
		})).Root()
	})
	register("exec_proxy_env_empty", func() llb.State {
		return execImage().Run(llb.Shlex("env"), llb.WithProxy(llb.ProxyEnv{})).Root()
	})
	register("exec_cdi_devices", func() llb.State {
		return execImage().Run(llb.Shlex("nvidia-smi"),
			llb.AddCDIDevice(llb.CDIDeviceName("nvidia.com/gpu=all")),
			llb.AddCDIDevice(llb.CDIDeviceName("vendor.com/dev=x"), llb.CDIDeviceOptional)).Root()
	})

	// --- metadata: names, ignore-cache, worker constraints ----------------------------------------
	register("exec_named_ignore_cache", func() llb.State {
		return execImage().Run(llb.Shlex("date"), llb.WithCustomName("what time is it"), llb.IgnoreCache,
			llb.WithDescription(map[string]string{"com.example.step": "1"})).Root()
	})
	register("exec_worker_constraints", func() llb.State {
		return execImage().Run(llb.Shlex("true"),
			llb.Require(`labels."org.mobyproject.buildkit.worker.executor"==oci`)).Root()
	})

	// --- bind mounts and outputs ------------------------------------------------------------------
	register("exec_bind_outputs_sorted", func() llb.State {
		// Mounts are added unsorted; outputs are numbered in dest order (/ = 0, /a = 1, /m = 2, /z = 3).
		es := execImage().Run(llb.Shlex("true"),
			llb.AddMount("/z", llb.Scratch()),
			llb.AddMount("/a", execCtx()),
			llb.AddMount("/m", llb.Image("alpine:3.20"), llb.SourcePath("/etc")))
		return es.GetMount("/m")
	})
	register("exec_bind_output_then_root", func() llb.State {
		es := execImage().Run(llb.Shlex("true"), llb.AddMount("/out", llb.Scratch()))
		return es.Root().File(llb.Copy(es.GetMount("/out"), "/", "/result"))
	})
	register("exec_bind_same_source_twice", func() llb.State {
		ctx := execCtx()
		es := execImage().Run(llb.Shlex("true"),
			llb.AddMount("/ro", ctx, llb.Readonly),
			llb.AddMount("/rw", ctx, llb.SourcePath("/sub")))
		return es.GetMount("/rw")
	})
	register("exec_bind_root_as_mount_source", func() llb.State {
		// The base is also mounted elsewhere: one op input serves both mounts.
		base := execImage()
		return base.Run(llb.Shlex("true"), llb.AddMount("/base", base, llb.Readonly)).Root()
	})
	register("exec_bind_readonly_get_mount", func() llb.State {
		// GetMount of a read-only mount is its source (here: the local).
		es := execImage().Run(llb.Shlex("true"), llb.AddMount("/src", execCtx(), llb.Readonly))
		return es.GetMount("/src")
	})
	register("exec_bind_force_no_output", func() llb.State {
		es := execImage().Run(llb.Shlex("true"),
			llb.AddMount("/scratchpad", llb.Scratch(), llb.ForceNoOutput),
			llb.AddMount("/w", llb.Scratch()))
		return es.GetMount("/w")
	})
	register("exec_bind_content_cache", func() llb.State {
		return execImage().Run(llb.Shlex("true"),
			llb.AddMount("/on", execCtx(), llb.Readonly, llb.ContentCache(llb.MountContentCacheOn)),
			llb.AddMount("/off", llb.Image("alpine:3.20"), llb.Readonly, llb.ContentCache(llb.MountContentCacheOff))).Root()
	})
	register("exec_readonly_rootfs", func() llb.State {
		es := execImage().Run(llb.Shlex("true"), llb.ReadonlyRootFS(), llb.AddMount("/out", llb.Scratch()))
		return es.GetMount("/out")
	})
	register("exec_scratch_root", func() llb.State {
		es := llb.Scratch().Run(llb.Args([]string{"/bin/true"}), llb.AddMount("/out", llb.Scratch()))
		return es.GetMount("/out")
	})
	register("exec_relative_mount_dest", func() llb.State {
		// A dest sorting before "/" (".") makes the root output index 1.
		es := execImage().Run(llb.Shlex("true"), llb.AddMount(".hidden", llb.Scratch()))
		return es.Root()
	})

	// --- cache and tmpfs mounts -------------------------------------------------------------------
	register("exec_cache_mounts", func() llb.State {
		return execImage().Run(llb.Shlex("true"),
			llb.AddMount("/c/shared", llb.Scratch(), llb.AsPersistentCacheDir("shared-id", llb.CacheMountShared)),
			llb.AddMount("/c/private", llb.Scratch(), llb.AsPersistentCacheDir("private-id", llb.CacheMountPrivate)),
			llb.AddMount("/c/locked", llb.Scratch(), llb.AsPersistentCacheDir("locked-id", llb.CacheMountLocked))).Root()
	})
	register("exec_cache_mount_with_base", func() llb.State {
		seed := llb.Scratch().File(llb.Mkdir("/seed", 0o755))
		return execImage().Run(llb.Shlex("true"),
			llb.AddMount("/cache", seed, llb.AsPersistentCacheDir("seeded", llb.CacheMountShared), llb.SourcePath("/seed"))).Root()
	})
	register("exec_tmpfs", func() llb.State {
		return execImage().Run(llb.Shlex("true"),
			llb.AddMount("/tmp", llb.Scratch(), llb.Tmpfs()),
			llb.AddMount("/run/big", llb.Scratch(), llb.Tmpfs(llb.TmpfsSize(64<<20)))).Root()
	})

	// --- secrets and ssh --------------------------------------------------------------------------
	register("exec_secret_mounts", func() llb.State {
		return execImage().Run(llb.Shlex("cat /run/secrets/a"),
			llb.AddSecret("/run/secrets/a", llb.SecretID("sa"), llb.SecretFileOpt(1000, 1001, 0o440), llb.SecretOptional),
			llb.AddSecret("/b")).Root()
	})
	register("exec_secret_env", func() llb.State {
		both := "/run/secrets/both"
		return execImage().Run(llb.Shlex("env"),
			llb.AddSecret("TOKEN", llb.SecretAsEnv(true)),
			llb.AddSecretWithDest("tok", nil, llb.SecretAsEnvName("API_TOKEN"), llb.SecretOptional),
			llb.AddSecretWithDest("both-id", &both, llb.SecretAsEnvName("BOTH"))).Root()
	})
	register("exec_ssh_default", func() llb.State {
		return execImage().Run(llb.Shlex("ssh-add -l"), llb.AddSSHSocket()).Root()
	})
	register("exec_ssh_options", func() llb.State {
		return execImage().Run(llb.Shlex("ssh-add -l"),
			llb.AddSSHSocket(llb.SSHID("default")),
			llb.AddSSHSocket(llb.SSHID("gh"), llb.SSHSocketOpt("/run/gh.sock", 1000, 1000, 0o400), llb.SSHOptional),
			llb.AddSSHSocket(llb.SSHID("third"))).Root()
	})
	register("exec_ssh_keeps_auth_sock", func() llb.State {
		return execImage().AddEnv("SSH_AUTH_SOCK", "/custom.sock").
			Run(llb.Shlex("true"), llb.AddSSHSocket(llb.SSHID("default"))).Root()
	})

	// --- platforms --------------------------------------------------------------------------------
	register("exec_platform_from_image", func() llb.State {
		img := llb.Image("busybox:1.36", llb.Platform(platforms.MustParse("linux/arm64")))
		return img.Run(llb.Shlex("uname -m")).Root()
	})
	register("exec_platform_from_state", func() llb.State {
		return execImage().Platform(platforms.MustParse("linux/arm/v7")).Run(llb.Shlex("uname -m")).Root()
	})
	register("exec_platform_run_option", func() llb.State {
		// The run option's platform goes to the op and to the States of its outputs.
		arm := platforms.MustParse("linux/arm64")
		es := execImage().Run(llb.Shlex("true"), llb.Platform(arm), llb.AddMount("/out", llb.Scratch()))
		next := es.GetMount("/out").Run(llb.Shlex("true")).Root()
		return llb.Merge([]llb.State{es.Root(), next})
	})

	// --- chains -----------------------------------------------------------------------------------
	register("exec_chain_root_and_mount", func() llb.State {
		first := execImage().Run(llb.Shlex("make"), llb.AddMount("/out", llb.Scratch()))
		second := first.Root().Run(llb.Shlex("make install"), llb.AddMount("/artifacts", first.GetMount("/out")))
		return second.GetMount("/artifacts")
	})
	register("exec_golden_v025_run", func() llb.State {
		// The "run" graph of /work/shared/testdata/llb-golden-v0.25.json.
		loc := llb.Local("ctx", llb.ExcludePatterns([]string{"*.log", "node_modules"}),
			llb.FollowPaths([]string{"Dockerfile"}), llb.SharedKeyHint("ctx"), llb.SessionID("sess123"))
		return llb.Image("alpine:3.20").Run(llb.Shlex("sh -c 'echo hi > /out'"), llb.AddEnv("FOO", "bar"),
			llb.Dir("/work"), llb.User("1000:1000"), llb.Network(llb.NetModeNone),
			llb.AddMount("/cache", llb.Scratch(), llb.AsPersistentCacheDir("mycache", llb.CacheMountLocked)),
			llb.AddMount("/src", loc, llb.Readonly, llb.SourcePath("/sub")),
			llb.AddMount("/tmp", llb.Scratch(), llb.Tmpfs(llb.TmpfsSize(1<<20))),
			llb.AddSecret("/run/secrets/tok", llb.SecretID("tok")),
			llb.AddSSHSocket(llb.SSHID("default")),
			llb.WithCustomName("custom run"), llb.IgnoreCache).Root()
	})

	// --- merge ------------------------------------------------------------------------------------
	register("exec_merge_three", func() llb.State {
		a := llb.Scratch().File(llb.Mkfile("/a", 0o644, []byte("a")))
		b := llb.Scratch().File(llb.Mkfile("/b", 0o644, []byte("b")))
		return llb.Merge([]llb.State{execImage(), a, b}, llb.WithCustomName("merge three"))
	})
	register("exec_merge_drops_scratch", func() llb.State {
		a := llb.Scratch().File(llb.Mkfile("/a", 0o644, []byte("a")))
		return llb.Merge([]llb.State{llb.Scratch(), execImage(), llb.Scratch(), a})
	})
	register("exec_merge_single_is_input", func() llb.State {
		return llb.Merge([]llb.State{llb.Scratch(), execImage().Dir("/x")})
	})
	register("exec_merge_only_scratch", func() llb.State {
		return llb.Merge([]llb.State{llb.Scratch(), llb.Scratch()})
	})
	register("exec_merge_same_input_twice", func() llb.State {
		img := execImage()
		return llb.Merge([]llb.State{img, img})
	})
	register("exec_merge_keeps_first_settings", func() llb.State {
		a := execImage().Dir("/first").AddEnv("FROM", "first")
		b := llb.Image("alpine:3.20").Dir("/second")
		return llb.Merge([]llb.State{a, b}, llb.IgnoreCache).Run(llb.Shlex("pwd")).Root()
	})

	// --- diff -------------------------------------------------------------------------------------
	register("exec_diff_basic", func() llb.State {
		base := execImage()
		return llb.Diff(base, base.Run(llb.Shlex("touch /new")).Root(), llb.WithCustomName("what changed"))
	})
	register("exec_diff_upper_scratch", func() llb.State {
		return llb.Diff(execImage(), llb.Scratch())
	})
	register("exec_diff_lower_scratch_is_upper", func() llb.State {
		return llb.Diff(llb.Scratch(), execImage())
	})
	register("exec_diff_same_state", func() llb.State {
		img := execImage()
		return llb.Diff(img, img)
	})
	register("exec_diff_merged_onto_other_base", func() llb.State {
		base := execImage()
		changes := llb.Diff(base, base.Run(llb.Shlex("touch /x"), llb.AddMount("/out", llb.Scratch())).Root())
		return llb.Merge([]llb.State{llb.Image("alpine:3.20"), changes})
	})
}
