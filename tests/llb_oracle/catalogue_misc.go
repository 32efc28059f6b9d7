package main

// Graph-level behaviour: empty definitions, shared subgraphs (diamonds), op order
// and deduplication, metadata merging of identical vertices, custom names,
// descriptions and ignore-cache on file ops (and the terminal op's meta.* caps),
// action chains reused on several states, state platforms.  Python side:
// tests/llb_catalogue/misc.py.

import (
	"strconv"

	"github.com/containerd/platforms"
	"github.com/moby/buildkit/client/llb"
)

func miscBase() llb.State { return llb.Image("alpine:3.20") }

func init() {
	register("misc_empty_scratch", func() llb.State { return llb.Scratch() })

	// --- shared subgraphs ----------------------------------------------------------------------
	register("misc_diamond", func() llb.State {
		base := miscBase().File(llb.Mkdir("/x", 0o755))
		l := base.File(llb.Mkfile("/x/l", 0o644, []byte("l")))
		r := base.File(llb.Mkfile("/x/r", 0o644, []byte("r")))
		return l.File(llb.Copy(r, "/x/r", "/x/r"))
	})
	register("misc_double_diamond", func() llb.State {
		cur := miscBase()
		for i := range 2 {
			s := strconv.Itoa(i)
			l := cur.File(llb.Mkfile("/l"+s, 0o644, []byte(s)))
			r := cur.File(llb.Mkfile("/r"+s, 0o644, []byte(s)))
			cur = l.File(llb.Copy(r, "/r"+s, "/r"+s))
		}
		return cur
	})
	register("misc_lattice", func() llb.State {
		// A 3x3 grid: node (i,j) copies from (i-1,j) and (i,j-1); many paths reach each node.
		var grid [3][3]llb.State
		for i := range 3 {
			for j := range 3 {
				name := "/n" + strconv.Itoa(i) + strconv.Itoa(j)
				switch {
				case i == 0 && j == 0:
					grid[i][j] = llb.Scratch().File(llb.Mkfile(name, 0o644, nil))
				case i == 0:
					grid[i][j] = grid[i][j-1].File(llb.Mkfile(name, 0o644, nil))
				case j == 0:
					grid[i][j] = grid[i-1][j].File(llb.Mkfile(name, 0o644, nil))
				default:
					grid[i][j] = grid[i][j-1].File(llb.Copy(grid[i-1][j], "/", "/").Mkfile(name, 0o644, nil))
				}
			}
		}
		return grid[2][2]
	})
	register("misc_fan_in_many_sources", func() llb.State {
		var fa *llb.FileAction
		for i := range 12 {
			src := llb.Image("busybox:1." + strconv.Itoa(30+i))
			dest := "/v" + strconv.Itoa(i)
			if fa == nil {
				fa = llb.Copy(src, "/bin/busybox", dest)
			} else {
				fa = fa.Copy(src, "/bin/busybox", dest)
			}
		}
		return llb.Scratch().File(fa)
	})
	register("misc_shared_local_at_depths", func() llb.State {
		ctx := llb.Local("ctx", llb.SessionID("s1"))
		a := miscBase().File(llb.Copy(ctx, "/a", "/a"))
		b := a.File(llb.Mkdir("/b", 0o755))
		c := b.File(llb.Copy(ctx, "/c", "/b/c"))
		return c.File(llb.Copy(a, "/a", "/a2").Copy(ctx, "/d", "/d"))
	})
	register("misc_deep_chain", func() llb.State {
		st := llb.Scratch()
		for i := range 64 {
			st = st.File(llb.Mkfile("/f"+strconv.Itoa(i), 0o644, []byte(strconv.Itoa(i))))
		}
		return st
	})

	// --- identical vertices (same bytes, different objects) -----------------------------------
	register("misc_dup_vertices_names_merge", func() llb.State {
		one := llb.Image("alpine:3.20", llb.WithCustomName("one"))
		two := llb.Image("alpine:3.20", llb.WithCustomName("two"), llb.WithDescription(map[string]string{"extra": "2"}))
		return one.File(llb.Copy(two, "/a", "/b"))
	})
	register("misc_dup_vertices_ignore_cache_merge", func() llb.State {
		plain := llb.Image("alpine:3.20")
		nocache := llb.Image("alpine:3.20", llb.IgnoreCache)
		return llb.Scratch().File(llb.Copy(plain, "/a", "/a").Copy(nocache, "/b", "/b"))
	})
	register("misc_dup_file_ops", func() llb.State {
		a := miscBase().File(llb.Mkdir("/same", 0o755))
		b := miscBase().File(llb.Mkdir("/same", 0o755), llb.WithCustomName("again"))
		return a.File(llb.Copy(b, "/same", "/other"))
	})

	// --- names, descriptions and ignore-cache on file ops -------------------------------------
	register("misc_file_op_named", func() llb.State {
		return miscBase().File(llb.Mkdir("/n", 0o755), llb.WithCustomName("make /n"))
	})
	register("misc_file_op_description", func() llb.State {
		return miscBase().File(llb.Mkdir("/n", 0o755),
			llb.WithDescription(map[string]string{"b": "2", "a": "1", "llb.customname": "from description"}))
	})
	register("misc_file_op_name_over_description", func() llb.State {
		return miscBase().File(llb.Mkdir("/n", 0o755),
			llb.WithDescription(map[string]string{"llb.customname": "loses", "k": "v"}),
			llb.WithCustomName("wins"))
	})
	register("misc_file_op_ignore_cache", func() llb.State {
		return miscBase().File(llb.Mkdir("/n", 0o755), llb.IgnoreCache)
	})
	register("misc_meta_caps_from_several_ops", func() llb.State {
		a := miscBase().File(llb.Mkdir("/a", 0o755), llb.IgnoreCache)
		b := a.File(llb.Mkdir("/b", 0o755), llb.WithCustomName("b"))
		return b.File(llb.Mkdir("/c", 0o755))
	})

	// --- one action chain applied to several states / extended in two directions -------------
	register("misc_action_reused_on_two_states", func() llb.State {
		act := llb.Mkdir("a", 0o755).Mkfile("a/f", 0o644, []byte("f"))
		s1 := miscBase().File(act)
		s2 := llb.Image("busybox:1.36").Dir("/w").File(act)
		return s1.File(llb.Copy(s2, "/w/a", "/b"))
	})
	register("misc_action_branches", func() llb.State {
		root := llb.Mkdir("/a", 0o755)
		x := root.Mkfile("/a/x", 0o644, []byte("x"))
		y := root.Mkdir("/a/y", 0o700)
		sx := llb.Scratch().File(x)
		sy := llb.Scratch().File(y)
		return sx.File(llb.Copy(sy, "/a/y", "/a/y"))
	})

	// --- platforms: only image sources carry one, file ops never do ---------------------------
	register("misc_state_platform_file_op", func() llb.State {
		return llb.Scratch().Platform(platforms.MustParse("linux/arm64")).File(llb.Mkdir("/p", 0o755))
	})
	register("misc_mixed_platform_images", func() llb.State {
		arm := llb.Image("alpine:3.20", llb.Platform(platforms.MustParse("linux/arm64")))
		amd := llb.Image("alpine:3.20")
		return amd.File(llb.Copy(arm, "/bin", "/arm/bin"))
	})
}
