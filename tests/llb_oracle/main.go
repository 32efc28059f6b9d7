// Command llboracle is the Go reference ("oracle") for llblib_async.llb.
//
// It marshals a catalogue of LLB graphs with BuildKit's own client/llb (the
// version pinned in go.mod, equal to [go] buildkit in proto/pins.toml) and
// writes what Go produced to golden.json.  tests/test_llb_oracle.py builds the
// same graphs with the Python API (tests/llb_catalogue/*.py, same case names)
// and requires byte-identical ops, digests and Definition.
//
// github.com/coryb/llblib is not used: the Go module proxy does not serve it,
// so every case is written against client/llb alone.
//
// Usage (from this directory; `nox -s oracle` does this):
//
//	go run . [-o golden.json]     regenerate the golden file
//	go run . -check golden.json   fail (exit 1) if the file is not what this code produces
//	go run . -list                print the case names
//	go run . -bench N [-shape chain|diamond] [-reps R] [-naive]
//	                              time building and marshaling an N-op graph (see bench.go)
//
// # Adding cases
//
// Cases live in catalogue_*.go files, one per area, each registering its cases
// from init():
//
//	func init() {
//		register("file_mkdir_basic", func() llb.State {
//			return llb.Scratch().File(llb.Mkdir("/a", 0o755))
//		})
//	}
//
// Names are lower_snake_case, unique across all files, and prefixed by area
// (src_, file_, misc_, exec_, src2_ …).  The Python module with the same area
// (tests/llb_catalogue/<area>.py) exposes CASES = {name: builder}.  Every case
// is marshaled with st.Marshal(ctx, llb.LinuxAmd64) — Python:
// llb.marshal(state, platform="linux/amd64") — and must be deterministic: a
// case is built and marshaled twice and both results must agree, which
// catches e.g. llb.Local without SessionID/LocalUniqueID (Go then picks a
// random local.unique).
//
// # golden.json
//
// For each case (sorted by name): "ops" — hex of every Definition.Def entry in
// Go's order, "digests" — their sha256 digests, "head" — the digest of the op
// the terminal op points at ("" for an empty Definition), and "def" — hex of
// the whole pb.Definition.  Go fills the Definition's maps (metadata, each
// OpMetadata's caps and description, source locations) in random order, so
// "def" is serialized with protobuf-go's Deterministic option, which writes
// map entries sorted by key; the message itself is exactly def.ToPB().  The
// op bytes need no such treatment: client/llb already marshals each op
// deterministically.
package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"runtime/pprof"
	"sort"
	"strings"

	"github.com/moby/buildkit/client/llb"
	digest "github.com/opencontainers/go-digest"
	"google.golang.org/protobuf/proto"
)

const buildkitModule = "github.com/moby/buildkit"

// defaultPlatform is the platform every case is marshaled for (llb.LinuxAmd64).
const defaultPlatform = "linux/amd64"

var (
	cases    = map[string]func() llb.State{}
	caseName = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
)

// register adds a catalogue case.  Call it from init() in a catalogue_*.go file.
func register(name string, fn func() llb.State) {
	if !caseName.MatchString(name) {
		panic(fmt.Sprintf("case name %q must be lower_snake_case ([a-z][a-z0-9_]*)", name))
	}
	if fn == nil {
		panic(fmt.Sprintf("case %q: nil builder", name))
	}
	if _, dup := cases[name]; dup {
		panic(fmt.Sprintf("case %q registered twice", name))
	}
	cases[name] = fn
}

// goldenCase is what Go produced for one case.
type goldenCase struct {
	Ops     []string `json:"ops"`
	Digests []string `json:"digests"`
	Head    string   `json:"head"`
	Def     string   `json:"def"`
}

// goldenFile is the layout of golden.json.
type goldenFile struct {
	Comment  string                `json:"comment"`
	Buildkit string                `json:"buildkit"`
	Platform string                `json:"platform"`
	Cases    map[string]goldenCase `json:"cases"`
}

func marshalCase(ctx context.Context, fn func() llb.State) (c goldenCase, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	def, err := fn().Marshal(ctx, llb.LinuxAmd64)
	if err != nil {
		return c, err
	}
	c.Ops = make([]string, 0, len(def.Def))
	c.Digests = make([]string, 0, len(def.Def))
	for _, op := range def.Def {
		c.Ops = append(c.Ops, hex.EncodeToString(op))
		c.Digests = append(c.Digests, digest.FromBytes(op).String())
	}
	if len(def.Def) > 0 {
		head, err := def.Head()
		if err != nil {
			return c, err
		}
		c.Head = head.String()
	}
	// Deterministic: map entries sorted by key (Go's map iteration order is random).
	dt, err := proto.MarshalOptions{Deterministic: true}.Marshal(def.ToPB())
	if err != nil {
		return c, err
	}
	c.Def = hex.EncodeToString(dt)
	return c, nil
}

func buildkitVersion() string {
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, dep := range info.Deps {
			if dep.Path == buildkitModule {
				if dep.Replace != nil {
					return dep.Replace.Version
				}
				return dep.Version
			}
		}
	}
	return "unknown"
}

// generate marshals every case (twice, to check determinism) into golden.json's bytes.
func generate(ctx context.Context) ([]byte, error) {
	out := goldenFile{
		Comment: "Generated by tests/llb_oracle (`nox -s oracle`) with BuildKit's Go client/llb; do not edit. " +
			"def = pb.Definition serialized with sorted map entries (protobuf-go Deterministic).",
		Buildkit: buildkitVersion(),
		Platform: defaultPlatform,
		Cases:    make(map[string]goldenCase, len(cases)),
	}
	var problems []string
	for _, name := range sortedNames() {
		first, err := marshalCase(ctx, cases[name])
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", name, err))
			continue
		}
		second, err := marshalCase(ctx, cases[name])
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s (second build): %v", name, err))
			continue
		}
		if first.Def != second.Def {
			problems = append(problems, fmt.Sprintf(
				"%s: not deterministic (two builds marshal differently; llb.Local without SessionID or LocalUniqueID?)", name))
			continue
		}
		out.Cases[name] = first
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("%d case(s) failed:\n  %s", len(problems), strings.Join(problems, "\n  "))
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf) // encoding/json writes map keys sorted
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func sortedNames() []string {
	names := make([]string, 0, len(cases))
	for name := range cases {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// describeDiff lists the cases that were added, removed or changed between two golden files.
func describeDiff(oldData, newData []byte) string {
	var oldG, newG goldenFile
	if err := json.Unmarshal(oldData, &oldG); err != nil {
		return fmt.Sprintf("  (the committed file is not valid golden JSON: %v)", err)
	}
	_ = json.Unmarshal(newData, &newG)
	var lines []string
	if oldG.Buildkit != newG.Buildkit {
		lines = append(lines, fmt.Sprintf("  buildkit: %s -> %s", oldG.Buildkit, newG.Buildkit))
	}
	if oldG.Platform != newG.Platform || oldG.Comment != newG.Comment {
		lines = append(lines, "  header (platform/comment) changed")
	}
	names := map[string]struct{}{}
	for n := range oldG.Cases {
		names[n] = struct{}{}
	}
	for n := range newG.Cases {
		names[n] = struct{}{}
	}
	sorted := make([]string, 0, len(names))
	for n := range names {
		sorted = append(sorted, n)
	}
	sort.Strings(sorted)
	for _, n := range sorted {
		o, inOld := oldG.Cases[n]
		c, inNew := newG.Cases[n]
		switch {
		case !inOld:
			lines = append(lines, "  + "+n+" (new case)")
		case !inNew:
			lines = append(lines, "  - "+n+" (case removed)")
		case o.Def != c.Def || o.Head != c.Head || strings.Join(o.Ops, ",") != strings.Join(c.Ops, ","):
			lines = append(lines, "  ~ "+n+" (marshals differently)")
		}
	}
	if len(lines) == 0 {
		lines = append(lines, "  (formatting only)")
	}
	return strings.Join(lines, "\n")
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "llboracle: "+format+"\n", args...)
	os.Exit(1)
}

func main() {
	output := flag.String("o", "golden.json", "write the golden file here")
	check := flag.String("check", "", "verify that this golden file is current instead of writing one")
	list := flag.Bool("list", false, "print the case names and exit")
	benchN := flag.Int("bench", 0, "benchmark mode: build and marshal a graph of this many ops (see bench.go)")
	shape := flag.String("shape", "chain", "benchmark graph shape: chain or diamond")
	reps := flag.Int("reps", 5, "benchmark repetitions (the fastest is reported)")
	naive := flag.Bool("naive", false, "benchmark the graph built without re-rooting states (quadratic in client/llb)")
	cpuProfile := flag.String("cpuprofile", "", "benchmark mode: write a CPU profile of the marshal repetitions here")
	flag.Parse()
	if flag.NArg() > 0 {
		fail("unexpected arguments: %v", flag.Args())
	}
	ctx := context.Background()

	switch {
	case *list:
		for _, n := range sortedNames() {
			fmt.Println(n)
		}
	case *benchN > 0:
		if *cpuProfile != "" {
			f, err := os.Create(*cpuProfile)
			if err != nil {
				fail("%v", err)
			}
			if err := pprof.StartCPUProfile(f); err != nil {
				fail("%v", err)
			}
			defer pprof.StopCPUProfile()
		}
		if err := runBench(ctx, *shape, *benchN, *reps, *naive); err != nil {
			fail("%v", err)
		}
	case *check != "":
		fresh, err := generate(ctx)
		if err != nil {
			fail("%v", err)
		}
		committed, err := os.ReadFile(*check)
		if err != nil {
			fail("%v (run `nox -s oracle` to create it)", err)
		}
		if !bytes.Equal(committed, fresh) {
			tmp, err := os.CreateTemp("", "llb-golden-*.json")
			if err == nil {
				_, err = tmp.Write(fresh)
				tmp.Close()
			}
			where := ""
			if err == nil {
				where = "; the current output is in " + tmp.Name()
			}
			fail("%s is out of date (run `nox -s oracle` and commit it)%s:\n%s",
				*check, where, describeDiff(committed, fresh))
		}
		fmt.Printf("llboracle: %s is current (%d cases, buildkit %s)\n", *check, len(cases), buildkitVersion())
	default:
		fresh, err := generate(ctx)
		if err != nil {
			fail("%v", err)
		}
		tmp := *output + ".tmp"
		if err := os.WriteFile(tmp, fresh, 0o644); err != nil {
			fail("%v", err)
		}
		if err := os.Rename(tmp, *output); err != nil {
			fail("%v", err)
		}
		abs, _ := filepath.Abs(*output)
		fmt.Printf("llboracle: wrote %s (%d cases, buildkit %s)\n", abs, len(cases), buildkitVersion())
	}
}
