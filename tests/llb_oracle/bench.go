package main

// The Go side of `nox -s bench -- marshal` (benchmarks/bench_marshal.py builds the
// same graphs in Python, op for op, and checks that both sides get the same head
// digest).  Shapes:
//
//	chain    n file ops on scratch, each Mkfile("/f<i>") on the previous one
//	diamond  Image("alpine:3.20"), then (n-1)/3 steps of
//	         l = cur+Mkfile("/l<i>"), r = cur+Mkfile("/r<i>"), cur = l+Copy(r, "/r<i>", "/r<i>")
//	exec     Image("alpine:3.20"), then n-1 execs `sh -c "echo <i> >> /log"`, each on the
//	         previous one's root with a shared cache mount "c" at /c
//
// By default each new state is re-rooted with llb.NewState(st.Output()): client/llb
// States are linked lists of settings (Dir, platform, env…) and every op's Marshal
// looks its working dir and platform up through that list, so a chain built the
// naive way (st = st.File(...)) marshals in O(n²) — about 5.6 s for 10k ops.
// Re-rooting gives identical op bytes (same head digest) in linear time, so it is
// the fair baseline; -naive measures the plain form.
//
// Every repetition builds a fresh graph (client/llb caches each vertex's marshaled
// bytes, so re-marshaling a graph would measure the cache).  Times are the fastest
// repetition; memory comes from one extra repetition between forced GCs.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"syscall"
	"time"

	"github.com/moby/buildkit/client/llb"
)

type benchResult struct {
	Shape             string  `json:"shape"`
	Naive             bool    `json:"naive"`
	N                 int     `json:"n"`
	Ops               int     `json:"ops"` // ops in the Definition, without the terminal op
	Head              string  `json:"head"`
	Reps              int     `json:"reps"`
	BuildNs           int64   `json:"build_ns"`
	MarshalNs         int64   `json:"marshal_ns"`
	MarshalNsPerOp    float64 `json:"marshal_ns_per_op"`
	BuildCPUNs        int64   `json:"build_cpu_ns"`        // process CPU time (all threads, so GC workers count)
	MarshalCPUNs      int64   `json:"marshal_cpu_ns"`      // fastest repetition, like the wall times
	BuildAllocBytes   uint64  `json:"build_alloc_bytes"`   // allocated while building the graph
	GraphLiveBytes    int64   `json:"graph_live_bytes"`    // heap held by the built graph
	MarshalAllocBytes uint64  `json:"marshal_alloc_bytes"` // allocated while marshaling
	DefLiveBytes      int64   `json:"def_live_bytes"`      // heap held by the Definition afterwards
	MaxRSSBytes       int64   `json:"max_rss_bytes"`
}

func benchGraph(shape string, n int, naive bool) (llb.State, error) {
	reroot := func(st llb.State) llb.State {
		if naive {
			return st
		}
		return llb.NewState(st.Output())
	}
	switch shape {
	case "chain":
		st := llb.Scratch()
		for i := range n {
			st = reroot(st.File(llb.Mkfile("/f"+strconv.Itoa(i), 0o644, []byte(strconv.Itoa(i)))))
		}
		return st, nil
	case "diamond":
		cur := llb.Image("alpine:3.20")
		for i := range (n - 1) / 3 {
			s := strconv.Itoa(i)
			l := cur.File(llb.Mkfile("/l"+s, 0o644, []byte(s)))
			r := cur.File(llb.Mkfile("/r"+s, 0o644, []byte(s)))
			cur = reroot(l.File(llb.Copy(r, "/r"+s, "/r"+s)))
		}
		return cur, nil
	case "exec":
		cur := llb.Image("alpine:3.20")
		for i := range n - 1 {
			cur = reroot(cur.Run(
				llb.Args([]string{"sh", "-c", "echo " + strconv.Itoa(i) + " >> /log"}),
				llb.AddMount("/c", llb.Scratch(), llb.AsPersistentCacheDir("c", llb.CacheMountShared)),
			).Root())
		}
		return cur, nil
	}
	return llb.State{}, fmt.Errorf("unknown shape %q (chain, diamond or exec)", shape)
}

// cpuNow is the CPU time (user+system, all threads) this process has used.
func cpuNow() int64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

func fastest(best, v int64) int64 {
	if best < 0 || v < best {
		return v
	}
	return best
}

func heapStats() runtime.MemStats {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m
}

func runBench(ctx context.Context, shape string, n, reps int, naive bool) error {
	if reps < 1 {
		reps = 1
	}
	res := benchResult{Shape: shape, Naive: naive, N: n, Reps: reps, BuildNs: -1, MarshalNs: -1, BuildCPUNs: -1, MarshalCPUNs: -1}
	for range reps {
		runtime.GC()
		c0 := cpuNow()
		t0 := time.Now()
		st, err := benchGraph(shape, n, naive)
		if err != nil {
			return err
		}
		t1 := time.Now()
		c1 := cpuNow()
		def, err := st.Marshal(ctx, llb.LinuxAmd64)
		if err != nil {
			return err
		}
		t2 := time.Now()
		c2 := cpuNow()
		res.BuildCPUNs = fastest(res.BuildCPUNs, c1-c0)
		res.MarshalCPUNs = fastest(res.MarshalCPUNs, c2-c1)
		res.BuildNs = fastest(res.BuildNs, t1.Sub(t0).Nanoseconds())
		res.MarshalNs = fastest(res.MarshalNs, t2.Sub(t1).Nanoseconds())
		head, err := def.Head()
		if err != nil {
			return err
		}
		res.Ops = len(def.Def) - 1
		res.Head = head.String()
	}
	res.MarshalNsPerOp = float64(res.MarshalNs) / float64(res.Ops)

	m0 := heapStats()
	st, _ := benchGraph(shape, n, naive)
	m1 := heapStats()
	def, err := st.Marshal(ctx, llb.LinuxAmd64)
	if err != nil {
		return err
	}
	m2 := heapStats()
	res.BuildAllocBytes = m1.TotalAlloc - m0.TotalAlloc
	res.GraphLiveBytes = int64(m1.HeapAlloc) - int64(m0.HeapAlloc)
	res.MarshalAllocBytes = m2.TotalAlloc - m1.TotalAlloc
	res.DefLiveBytes = int64(m2.HeapAlloc) - int64(m1.HeapAlloc)
	runtime.KeepAlive(st)
	runtime.KeepAlive(def)

	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		res.MaxRSSBytes = ru.Maxrss * 1024 // Linux reports KiB
	}
	return json.NewEncoder(os.Stdout).Encode(res)
}
