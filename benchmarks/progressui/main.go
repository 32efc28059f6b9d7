// Command progressui feeds recorded BuildKit Status streams to Go's progressui.
//
// It is the Go side of two comparisons (BuildKit pinned in go.mod, like the LLB
// oracle under tests/llb_oracle):
//
//   - tests/test_progress_go.py runs it in plain mode on the recorded streams in
//     tests/progress_streams/ and compares what Go prints with PlainProgress;
//   - benchmarks/bench_progress.py runs it in tty mode (a pseudo-terminal whose
//     other end is drained) for the throughput and replay measurements.
//
// Input: rawjson lines (client.SolveStatus), optionally gzipped; the extra keys
// "request" and "_t" of the recordings are read as well.
//
//	go run . -mode plain -in FILE            print Go's plain output to stdout
//	go run . -mode tty -in FILE -total N     feed N messages (the stream repeated,
//	                                         digests renamed per repetition) as fast
//	                                         as the display takes them
//	go run . -mode tty -in FILE -replay      feed at the recorded rate ("_t"); with
//	                                         -total N the stream is replayed again
//	                                         after itself until N messages were fed
//
// The tty modes print one JSON line: messages, seconds, msgs_per_s, cpu_seconds, peak_rss_mib.
package main

import (
	"bufio"
	"compress/gzip"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/console"
	"github.com/moby/buildkit/client"
	"github.com/moby/buildkit/util/progress/progressui"
	digest "github.com/opencontainers/go-digest"
)

type recorded struct {
	client.SolveStatus
	T float64 `json:"_t"`
}

func load(path string) ([]recorded, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var r io.Reader = f
	if strings.HasSuffix(path, ".gz") {
		gz, err := gzip.NewReader(f)
		if err != nil {
			return nil, err
		}
		r = gz
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<28)
	var out []recorded
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		var rec recorded
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			return nil, err
		}
		out = append(out, rec)
	}
	return out, sc.Err()
}

func rename(d digest.Digest, rep int) digest.Digest {
	if rep == 0 || d == "" {
		return d
	}
	return digest.Digest(fmt.Sprintf("%s-r%d", d, rep))
}

// copyFor returns message i of repetition rep: a fresh copy with renamed digests.
func copyFor(m *client.SolveStatus, rep int) *client.SolveStatus {
	out := &client.SolveStatus{}
	for _, v := range m.Vertexes {
		c := *v
		c.Digest = rename(v.Digest, rep)
		c.Inputs = nil
		for _, in := range v.Inputs {
			c.Inputs = append(c.Inputs, rename(in, rep))
		}
		out.Vertexes = append(out.Vertexes, &c)
	}
	for _, s := range m.Statuses {
		c := *s
		c.Vertex = rename(s.Vertex, rep)
		out.Statuses = append(out.Statuses, &c)
	}
	for _, l := range m.Logs {
		c := *l
		c.Vertex = rename(l.Vertex, rep)
		out.Logs = append(out.Logs, &c)
	}
	for _, w := range m.Warnings {
		c := *w
		c.Vertex = rename(w.Vertex, rep)
		out.Warnings = append(out.Warnings, &c)
	}
	return out
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

func peakRSSMiB() float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Maxrss) / 1024 // kilobytes on Linux
}

func main() {
	mode := flag.String("mode", "plain", "plain, tty or rawjson")
	in := flag.String("in", "", "recorded stream (.jsonl or .jsonl.gz)")
	total := flag.Int("total", 0, "messages to feed (the stream repeated); 0 = the stream once")
	replay := flag.Bool("replay", false, "feed at the recorded rate")
	step := flag.Duration("step", 0, "pause between messages (plain comparisons)")
	flag.Parse()

	msgs, err := load(*in)
	if err != nil {
		fmt.Fprintln(os.Stderr, "progressui:", err)
		os.Exit(2)
	}
	n := *total
	if n == 0 {
		n = len(msgs)
	}

	var out io.Writer = os.Stdout
	if *mode == "tty" {
		pty, slavePath, err := console.NewPty()
		if err != nil {
			fmt.Fprintln(os.Stderr, "progressui: pty:", err)
			os.Exit(2)
		}
		defer pty.Close()
		_ = pty.Resize(console.WinSize{Height: 50, Width: 160})
		go func() { _, _ = io.Copy(io.Discard, pty) }()
		slave, err := os.OpenFile(slavePath, os.O_RDWR, 0)
		if err != nil {
			fmt.Fprintln(os.Stderr, "progressui: pty slave:", err)
			os.Exit(2)
		}
		defer slave.Close()
		out = slave
	}
	display, err := progressui.NewDisplay(out, progressui.DisplayMode(*mode))
	if err != nil {
		fmt.Fprintln(os.Stderr, "progressui:", err)
		os.Exit(2)
	}

	ch := make(chan *client.SolveStatus, 16)
	cpu0 := cpuSeconds()
	start := time.Now()
	span := msgs[len(msgs)-1].T + 0.1 // one replay of the stream, in seconds
	go func() {
		defer close(ch)
		for i := 0; i < n; i++ {
			rep, k := i/len(msgs), i%len(msgs)
			m := &msgs[k].SolveStatus
			if *replay {
				at := start.Add(time.Duration((float64(rep)*span + msgs[k].T) * float64(time.Second)))
				time.Sleep(time.Until(at))
			}
			if rep > 0 {
				m = copyFor(m, rep)
			} else {
				c := *m
				m = &c
			}
			ch <- m
			if *step > 0 {
				time.Sleep(*step)
			}
		}
	}()
	if _, err := display.UpdateFrom(context.Background(), ch); err != nil {
		fmt.Fprintln(os.Stderr, "progressui:", err)
		os.Exit(1)
	}
	elapsed := time.Since(start).Seconds()
	if *mode == "tty" {
		res := map[string]float64{
			"messages":     float64(n),
			"seconds":      elapsed,
			"msgs_per_s":   float64(n) / elapsed,
			"cpu_seconds":  cpuSeconds() - cpu0,
			"peak_rss_mib": peakRSSMiB(),
		}
		b, _ := json.Marshal(res)
		fmt.Fprintln(os.Stdout, string(b))
	}
}
