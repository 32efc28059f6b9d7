package main

// File ops: every action (mkdir, mkfile, rm, symlink, copy), every copy option,
// owner forms, modes, timestamps, chains of actions and relative paths resolved
// against working dirs.  Python side: tests/llb_catalogue/file.py.

import (
	"time"

	"github.com/moby/buildkit/client/llb"
)

// Helpers are prefixed "file" because all catalogue_*.go files share package main.

func fileCtx() llb.State   { return llb.Local("ctx", llb.SessionID("s1")) }
func fileImage() llb.State { return llb.Image("alpine:3.20") }

// fileTS is a timestamp with nanoseconds (Python: an int of ns).
var fileTS = time.Unix(1700000000, 123456789)

// fileCopy applies one copy from the session local "ctx" to scratch.
func fileCopy(src, dest string, opts ...llb.CopyOption) llb.State {
	return llb.Scratch().File(llb.Copy(fileCtx(), src, dest, opts...))
}

func init() {
	// --- mkdir ---------------------------------------------------------------------------------
	register("file_mkdir_basic", func() llb.State { return llb.Scratch().File(llb.Mkdir("/a", 0o755)) })
	register("file_mkdir_parents", func() llb.State {
		return llb.Scratch().File(llb.Mkdir("/a/b/c", 0o700, llb.WithParents(true)))
	})
	register("file_mkdir_mode_zero", func() llb.State { return llb.Scratch().File(llb.Mkdir("/z", 0)) })
	register("file_mkdir_owner_timestamp", func() llb.State {
		return fileImage().File(llb.Mkdir("/srv/data", 0o750, llb.WithParents(true),
			llb.WithUser("www-data:www-data"), llb.WithCreatedTime(fileTS)))
	})

	// --- mkfile --------------------------------------------------------------------------------
	register("file_mkfile_basic", func() llb.State {
		return llb.Scratch().File(llb.Mkfile("/hello.txt", 0o644, []byte("hello\n")))
	})
	register("file_mkfile_binary_data", func() llb.State {
		data := make([]byte, 256)
		for i := range data {
			data[i] = byte(i)
		}
		return llb.Scratch().File(llb.Mkfile("/bin.dat", 0o600, data))
	})
	register("file_mkfile_empty", func() llb.State {
		return llb.Scratch().File(llb.Mkfile("/empty", 0o644, nil))
	})
	register("file_mkfile_mode_zero", func() llb.State {
		return llb.Scratch().File(llb.Mkfile("/m0", 0, []byte("x")))
	})
	register("file_mkfile_uidgid_datetime", func() llb.State {
		return llb.Scratch().File(llb.Mkfile("/f", 0o640, []byte("x"), llb.WithUIDGID(1000, 1000),
			llb.WithCreatedTime(time.Date(2024, 1, 2, 3, 4, 5, 6000, time.UTC))))
	})
	register("file_mkfile_timestamp_zone", func() llb.State {
		return llb.Scratch().File(llb.Mkfile("/f", 0o644, nil,
			llb.WithCreatedTime(time.Date(2024, 6, 1, 12, 0, 0, 0, time.FixedZone("", 2*3600)))))
	})
	register("file_mkfile_timestamp_pre_epoch", func() llb.State {
		return llb.Scratch().File(llb.Mkfile("/old", 0o644, nil, llb.WithCreatedTime(time.Unix(-86400, 5))))
	})
	register("file_mkfile_timestamp_epoch", func() llb.State {
		// 0 = the Unix epoch (not "unset", which is -1); proto3 omits it on the wire.
		return llb.Scratch().File(llb.Mkfile("/epoch", 0o644, nil, llb.WithCreatedTime(time.Unix(0, 0))))
	})

	// --- rm ------------------------------------------------------------------------------------
	register("file_rm_basic", func() llb.State { return fileImage().File(llb.Rm("/etc/motd")) })
	register("file_rm_allow_not_found", func() llb.State {
		return fileImage().File(llb.Rm("/nope", llb.WithAllowNotFound(true)))
	})
	register("file_rm_wildcard", func() llb.State {
		return fileImage().File(llb.Rm("/var/cache/apk/*", llb.WithAllowWildcard(true)))
	})
	register("file_rm_both_relative", func() llb.State {
		return fileImage().Dir("/tmp").File(llb.Rm("build-*", llb.WithAllowNotFound(true), llb.WithAllowWildcard(true)))
	})

	// --- symlink -------------------------------------------------------------------------------
	register("file_symlink_basic", func() llb.State {
		return fileImage().File(llb.Symlink("/bin/busybox", "/bin/sh2"))
	})
	register("file_symlink_verbatim_paths_owner_ts", func() llb.State {
		// Go sends symlink paths as given: no resolution against the working dir.
		return fileImage().Dir("/work").File(llb.Symlink("../target", "rel/link",
			llb.WithUser("app:staff"), llb.WithCreatedTime(fileTS)))
	})

	// --- owners --------------------------------------------------------------------------------
	register("file_owner_forms", func() llb.State {
		return fileImage().File(
			llb.Mkdir("/o1", 0o755, llb.WithUser("1000")).
				Mkdir("/o2", 0o755, llb.WithUser("1000:2000")).
				Mkdir("/o3", 0o755, llb.WithUser("app")).
				Mkdir("/o4", 0o755, llb.WithUser("app:staff")).
				Mkdir("/o5", 0o755, llb.WithUser("root")).
				Mkdir("/o6", 0o755, llb.WithUser("root:root")).
				Mkdir("/o7", 0o755, llb.WithUser("app:")).
				Mkdir("/o8", 0o755, llb.WithUser("0:app")).
				Mkdir("/o9", 0o755, llb.WithUser("-1:-2")).
				Mkdir("/o10", 0o755, llb.WithUser("4294967295")).
				Mkdir("/o11", 0o755, llb.WithUIDGID(5, 6)).
				Mkdir("/o12", 0o755, llb.WithUIDGID(4294967295, 0)).
				Mkdir("/o13", 0o755, llb.ChownOpt{User: &llb.UserOpt{Name: "app"}, Group: &llb.UserOpt{UID: 5}}))
	})
	register("file_owner_name_on_scratch", func() llb.State {
		// No base to read /etc/passwd from: the by-name input is -1.
		return llb.Scratch().File(llb.Mkfile("/f", 0o644, nil, llb.WithUser("app:staff")))
	})
	register("file_owner_names_in_chain", func() llb.State {
		return fileImage().File(
			llb.Mkdir("/a", 0o755).
				Mkfile("/a/f", 0o644, []byte("x"), llb.WithUser("app")).
				Copy(fileCtx(), "/x", "/a/x", llb.WithUser("app:staff")).
				Symlink("f", "/a/l", llb.WithUser("nobody")))
	})

	// --- copy: one option at a time ---------------------------------------------------------
	register("file_copy_basic", func() llb.State { return fileCopy("/", "/") })
	register("file_copy_follow_symlinks", func() llb.State {
		return fileCopy("/link", "/out", &llb.CopyInfo{FollowSymlinks: true})
	})
	register("file_copy_contents_only", func() llb.State {
		return fileCopy("/dir", "/out/", &llb.CopyInfo{CopyDirContentsOnly: true})
	})
	register("file_copy_attempt_unpack", func() llb.State {
		return fileCopy("/app.tar.gz", "/opt/", &llb.CopyInfo{AttemptUnpack: true})
	})
	register("file_copy_create_dest_path", func() llb.State {
		return fileCopy("/f", "/deep/er/f", &llb.CopyInfo{CreateDestPath: true})
	})
	register("file_copy_wildcard", func() llb.State {
		return fileCopy("/src/*.go", "/dst/", &llb.CopyInfo{AllowWildcard: true})
	})
	register("file_copy_empty_wildcard", func() llb.State {
		return fileCopy("/maybe/*", "/dst/", &llb.CopyInfo{AllowWildcard: true, AllowEmptyWildcard: true})
	})
	register("file_copy_include_exclude", func() llb.State {
		return fileCopy("/", "/app/", &llb.CopyInfo{
			IncludePatterns: []string{"src/**", "go.mod", "go.sum"},
			ExcludePatterns: []string{"**/*_test.go", "!src/keep_test.go"},
		})
	})
	register("file_copy_with_exclude_patterns_option", func() llb.State {
		return fileCopy("/", "/app/", llb.WithExcludePatterns([]string{".git", "*.md"}))
	})
	register("file_copy_owner_user_group", func() llb.State {
		return fileCopy("/f", "/f", llb.WithUser("app:staff"))
	})
	register("file_copy_owner_ids", func() llb.State {
		return fileCopy("/f", "/f", llb.WithUIDGID(1000, 1000))
	})
	register("file_copy_mode_int", func() llb.State {
		return fileCopy("/f", "/f", llb.ChmodOpt{Mode: 0o755})
	})
	register("file_copy_mode_zero", func() llb.State {
		// Mode 0 means chmod 000 (proto3 omits it); "keep the modes" is -1, the default.
		return fileCopy("/f", "/f", llb.ChmodOpt{Mode: 0})
	})
	register("file_copy_mode_setuid", func() llb.State {
		return fileCopy("/bin/tool", "/bin/tool", llb.ChmodOpt{Mode: 0o4755})
	})
	register("file_copy_mode_string", func() llb.State {
		return fileCopy("/f", "/f", llb.ChmodOpt{ModeStr: "u+x,g-w"})
	})
	register("file_copy_mode_string_octal", func() llb.State {
		return fileCopy("/f", "/f", llb.ChmodOpt{ModeStr: "0755"})
	})
	register("file_copy_timestamp", func() llb.State {
		return fileCopy("/f", "/f", llb.WithCreatedTime(fileTS))
	})
	register("file_copy_always_replace", func() llb.State {
		return fileCopy("/", "/", &llb.CopyInfo{AlwaysReplaceExistingDestPaths: true})
	})
	register("file_copy_required_paths", func() llb.State {
		return fileCopy("/", "/app/", &llb.CopyInfo{RequiredPaths: []string{"go.mod", "src/main.go"}})
	})
	register("file_copy_all_options", func() llb.State {
		return fileImage().Dir("/work").File(llb.Copy(fileCtx().Dir("/src"), "pkg/*", "out/",
			&llb.CopyInfo{
				FollowSymlinks:                 true,
				CopyDirContentsOnly:            true,
				IncludePatterns:                []string{"a", "b"},
				ExcludePatterns:                []string{"c"},
				RequiredPaths:                  []string{"a"},
				AttemptUnpack:                  true,
				CreateDestPath:                 true,
				AllowWildcard:                  true,
				AllowEmptyWildcard:             true,
				AlwaysReplaceExistingDestPaths: true,
			},
			llb.WithUser("app:1000"),
			llb.ChmodOpt{Mode: 0o640},
			llb.WithCreatedTime(time.Date(2020, 2, 29, 23, 59, 59, 999999000, time.UTC))))
	})

	// --- copy sources: scratch, the base itself, the same source twice, many sources ---------
	register("file_copy_from_scratch", func() llb.State {
		return fileImage().File(llb.Copy(llb.Scratch(), "/", "/empty"))
	})
	register("file_copy_from_own_base", func() llb.State {
		base := fileImage()
		return base.File(llb.Copy(base, "/etc", "/etc.bak"))
	})
	register("file_copy_sources_dedup_order", func() llb.State {
		// Go lists inputs as: base, then copy sources from the last action back to the first.
		a := llb.Image("busybox:1.36")
		b := llb.Local("other", llb.SessionID("s1"))
		c := llb.Image("debian:bookworm")
		return fileImage().File(
			llb.Copy(a, "/bin", "/a/bin").
				Copy(b, "/", "/b").
				Copy(a, "/etc", "/a/etc").
				Copy(c, "/usr", "/c/usr").
				Copy(b, "/x", "/b/x"))
	})

	// --- relative paths against working dirs ------------------------------------------------
	register("file_relative_paths_in_dirs", func() llb.State {
		return fileImage().Dir("/app").Dir("sub").File(
			llb.Mkdir("x/y", 0o755, llb.WithParents(true)).
				Mkfile("x/y/z.txt", 0o644, []byte("z")).
				Rm("../old").
				Mkdir("./dot", 0o755))
	})
	register("file_copy_relative_src_dest", func() llb.State {
		return fileImage().Dir("/work").File(
			llb.Copy(fileCtx().Dir("/src"), "pkg/", "./out/").
				Copy(fileCtx().Dir("/src/a/b"), "../x", "y"))
	})
	register("file_copy_dest_forms", func() llb.State {
		src := fileCtx()
		return fileImage().Dir("/w").File(
			llb.Copy(src, "/a", ".").
				Copy(src, "/b", "./").
				Copy(src, "/c", "/.").
				Copy(src, "/d", "sub/.").
				Copy(src, "/e", "..").
				Copy(src, "/f", "../../../up").
				Copy(src, "/g", "x//y/").
				Copy(src, "//h//i/", "//j//k/").
				Copy(src, "k/../l/.", "m/./n"))
	})
	register("file_dir_unclean_absolute", func() llb.State {
		return llb.Scratch().Dir("/x/../y/").File(llb.Mkdir("z", 0o755))
	})
	register("file_dir_relative_chain", func() llb.State {
		return llb.Scratch().Dir("a").Dir("b/../c").Dir("./d").File(llb.Mkfile("f", 0o644, nil))
	})

	// --- chains of actions --------------------------------------------------------------------
	register("file_chain_every_action", func() llb.State {
		return fileImage().File(
			llb.Mkdir("/app", 0o755).
				Mkfile("/app/a.txt", 0o644, []byte("a")).
				Copy(fileCtx(), "/src", "/app/src", &llb.CopyInfo{CreateDestPath: true}).
				Rm("/app/a.txt").
				Symlink("/app/src", "/app/current").
				Copy(llb.Image("busybox:1.36"), "/bin/busybox", "/app/bin/busybox", llb.ChmodOpt{Mode: 0o755}))
	})
	register("file_chain_ops_with_dirs", func() llb.State {
		return llb.Scratch().
			File(llb.Mkdir("/a", 0o755)).Dir("/a").
			File(llb.Mkdir("b", 0o700)).Dir("b").
			File(llb.Mkfile("c", 0o644, nil)).
			File(llb.Symlink("c", "/a/b/d"))
	})
}
