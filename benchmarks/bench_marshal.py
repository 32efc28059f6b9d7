"""Marshal benchmark: llblib_async.llb against BuildKit's Go client/llb on the same graphs.

``nox -s bench -- marshal`` (or ``python benchmarks/bench_marshal.py``) builds the Go
oracle (``tests/llb_oracle``, its ``-bench`` mode) and, for graphs of 1k, 10k and 50k
ops in three shapes, measures in the same run on the same machine:

* ``chain``   — N file ops on scratch, each ``mkfile("/f<i>")`` on the previous one;
* ``diamond`` — ``image("alpine:3.20")`` then (N-1)/3 steps of ``l = cur.mkfile(…)``,
  ``r = cur.mkfile(…)``, ``cur = l.copy(r, …)`` (every op is reached along two paths);
* ``exec``    — ``image("alpine:3.20")`` then N-1 execs ``sh -c "echo <i> >> /log"``,
  each on the previous one's root with a shared cache mount ``c`` at ``/c``.

Build time (making the States) and marshal time (``llb.marshal`` / ``State.Marshal``)
are reported separately: the fastest of several repetitions, each on a freshly built
graph, because both libraries cache an op's bytes on its vertex.  Both sides must
produce the same head digest — the graphs are op-for-op identical.  Each side and size
runs in its own process, so peak RSS is per size.  Memory: Python — ``tracemalloc`` in
a separate pass (graph = traced memory held by the built graph, marshal peak = peak
traced memory above that while marshaling); Go — heap held by the graph after a GC, and
bytes allocated while marshaling.

Python only (Go has no counterpart to time it against): importing each marshaled
graph back with ``llb.from_definition`` (from its serialized bytes) and marshaling the
imported graph again, fastest of the same repetitions, with their scaling.

The last line printed is ``marshal ratio (python/go) at 10k ops: X``, X = Python
marshal time / Go marshal time for the 10k-op chain.  ``--sizes 1000,5000`` and
``--reps N`` override the defaults; ``--profile`` writes a cProfile of the Python
10k chain marshal and prints its top functions.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import os
import pstats
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

from llblib_async import llb

ROOT = Path(__file__).resolve().parent.parent
ORACLE = ROOT / "tests" / "llb_oracle"
SHAPES = ("chain", "diamond", "exec")
SIZES = (1_000, 10_000, 50_000)
RATIO_SHAPE, RATIO_SIZE = "chain", 10_000
PLATFORM = "linux/amd64"
GO_FALLBACKS = ("/usr/local/go/bin/go",)
NAIVE_MAX = 10_000  # Go's naive chain is quadratic: ~6 s at 10k ops, minutes at 50k


# --- the graphs (keep in step with tests/llb_oracle/bench.go) -----------------------------------


def build_graph(shape: str, n: int) -> llb.State:
    """The benchmark graph ``shape`` with ``n`` ops (the diamond rounds down to 1 + 3k)."""
    if shape == "chain":
        st = llb.scratch()
        for i in range(n):
            s = str(i)
            st = st.mkfile("/f" + s, s)
        return st
    if shape == "diamond":
        cur = llb.image("alpine:3.20")
        for i in range((n - 1) // 3):
            s = str(i)
            left = cur.mkfile("/l" + s, s)
            right = cur.mkfile("/r" + s, s)
            cur = left.copy(right, "/r" + s, "/r" + s)
        return cur
    if shape == "exec":
        cur = llb.image("alpine:3.20")
        cache = [llb.cache_mount("/c", id="c")]
        for i in range(n - 1):
            cur = cur.run(["sh", "-c", "echo " + str(i) + " >> /log"], mounts=cache).root
        return cur
    raise ValueError(f"unknown shape {shape!r}")


# --- one measurement (run in a fresh process) ----------------------------------------------------


def measure_python(shape: str, n: int, reps: int) -> dict[str, Any]:
    """Time ``reps`` build+marshal rounds, then measure memory once with tracemalloc."""
    best_build = best_marshal = best_build_cpu = best_marshal_cpu = 1 << 62
    ops, head = 0, ""
    for _ in range(reps):
        gc.collect()
        c0 = time.process_time_ns()
        t0 = time.perf_counter_ns()
        st = build_graph(shape, n)
        t1 = time.perf_counter_ns()
        c1 = time.process_time_ns()
        definition = llb.marshal(st, platform=PLATFORM)
        t2 = time.perf_counter_ns()
        c2 = time.process_time_ns()
        best_build = min(best_build, t1 - t0)
        best_marshal = min(best_marshal, t2 - t1)
        best_build_cpu = min(best_build_cpu, c1 - c0)
        best_marshal_cpu = min(best_marshal_cpu, c2 - c1)
        ops, head = len(definition.ops) - 1, definition.head_digest or ""
        del st, definition
    best_import, best_remarshal = measure_import(build_graph(shape, n), reps)
    max_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    st = build_graph(shape, n)
    graph = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.reset_peak()
    before = tracemalloc.get_traced_memory()[0]
    definition = llb.marshal(st, platform=PLATFORM)
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del st, definition
    return {
        "shape": shape,
        "n": n,
        "ops": ops,
        "head": head,
        "reps": reps,
        "build_ns": best_build,
        "marshal_ns": best_marshal,
        "marshal_ns_per_op": best_marshal / ops,
        "import_ns": best_import,
        "remarshal_ns": best_remarshal,
        "build_cpu_ns": best_build_cpu,
        "marshal_cpu_ns": best_marshal_cpu,
        "graph_live_bytes": graph,
        "marshal_peak_bytes": peak - before,
        "def_live_bytes": current - before,
        "max_rss_bytes": max_rss,
    }


def measure_import(st: llb.State, reps: int) -> tuple[int, int]:
    """Fastest ``llb.from_definition`` of ``st``'s serialized Definition, and fastest marshal
    of the imported graph (each repetition imports afresh: marshal caches on the vertices)."""
    data = llb.marshal(st, platform=PLATFORM).to_bytes()
    del st
    best_import = best_remarshal = 1 << 62
    for _ in range(reps):
        gc.collect()
        t0 = time.perf_counter_ns()
        imported = llb.from_definition(data)
        t1 = time.perf_counter_ns()
        again = llb.marshal(imported, platform=PLATFORM)
        t2 = time.perf_counter_ns()
        if again.to_bytes() != data:
            raise AssertionError("the imported graph does not marshal to the original Definition")
        best_import = min(best_import, t1 - t0)
        best_remarshal = min(best_remarshal, t2 - t1)
        del imported, again
    return best_import, best_remarshal


def profile_python(shape: str, n: int, out: Path) -> None:
    """cProfile one marshal of a fresh graph; print the top functions."""
    st = build_graph(shape, n)
    profiler = cProfile.Profile()
    profiler.enable()
    llb.marshal(st, platform=PLATFORM)
    profiler.disable()
    profiler.dump_stats(out)
    print(f"\ncProfile of llb.marshal ({shape}, {n} ops), saved to {out}:")
    pstats.Stats(profiler).sort_stats("tottime").print_stats(15)


# --- driver --------------------------------------------------------------------------------------


def find_go() -> str:
    found = shutil.which("go") or next((g for g in GO_FALLBACKS if os.access(g, os.X_OK)), None)
    if found is None:
        sys.exit("bench_marshal: the Go toolchain (`go`) is not on PATH nor in /usr/local/go/bin")
    return found


def go_env() -> dict[str, str]:
    env = dict(os.environ)
    env["GOFLAGS"] = (env.get("GOFLAGS", "") + " -mod=mod").strip()
    return env


def build_oracle(workdir: Path) -> tuple[Path, float]:
    binary = workdir / "llboracle"
    t0 = time.perf_counter()
    subprocess.run(
        [find_go(), "build", "-trimpath", "-buildvcs=false", "-o", str(binary), "."],
        cwd=ORACLE,
        env=go_env(),
        check=True,
    )
    return binary, time.perf_counter() - t0


def run_json(cmd: list[str]) -> dict[str, Any]:
    proc = subprocess.run(cmd, check=True, capture_output=True, text=True)
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def default_reps(n: int) -> int:
    return max(3, min(20, 100_000 // n))


Result = dict[str, Any]
Results = dict[tuple[str, int], tuple[Result, Result]]  # (shape, n) -> (python, go)


def _mib(n: float) -> str:
    return f"{n / (1 << 20):.1f}"


def report_time(results: Results) -> None:
    print("\ntime: fastest of reps; build = making the States, marshal = llb.marshal / State.Marshal")
    rows: list[tuple[str, ...]] = [
        (
            *("shape", "ops", "reps", "py build ms", "py marshal ms", "py µs/op", "go build ms"),
            *("go marshal ms", "go µs/op", "marshal py/go", "(cpu time)", "build py/go"),
        )
    ]
    for (shape, _), (py, go) in results.items():
        rows.append(
            (
                shape,
                str(py["ops"]),
                str(py["reps"]),
                f"{py['build_ns'] / 1e6:.1f}",
                f"{py['marshal_ns'] / 1e6:.1f}",
                f"{py['marshal_ns'] / py['ops'] / 1e3:.2f}",
                f"{go['build_ns'] / 1e6:.1f}",
                f"{go['marshal_ns'] / 1e6:.1f}",
                f"{go['marshal_ns'] / go['ops'] / 1e3:.2f}",
                f"{py['marshal_ns'] / go['marshal_ns']:.2f}",
                f"{py['marshal_cpu_ns'] / max(go['marshal_cpu_ns'], 1):.2f}",
                f"{py['build_ns'] / go['build_ns']:.2f}",
            )
        )
    print_table(rows)


def report_import(results: Results) -> None:
    print(
        "\nimport (python only): llb.from_definition of the serialized Definition, then llb.marshal "
        "of the imported graph; fastest of reps"
    )
    rows: list[tuple[str, ...]] = [("shape", "ops", "import ms", "import µs/op", "re-marshal ms", "µs/op")]
    for (shape, _), (py, _go) in results.items():
        ops = py["ops"]
        rows.append(
            (
                shape,
                str(ops),
                f"{py['import_ns'] / 1e6:.1f}",
                f"{py['import_ns'] / ops / 1e3:.2f}",
                f"{py['remarshal_ns'] / 1e6:.1f}",
                f"{py['remarshal_ns'] / ops / 1e3:.2f}",
            )
        )
    print_table(rows)


def report_memory(results: Results) -> None:
    print(
        "\nmemory (MiB, and bytes per op): python graph = traced memory held by the built graph, "
        "marshal peak = peak above it while marshaling; go graph = heap held after GC, "
        "marshal alloc = bytes allocated while marshaling; rss = the process's peak"
    )
    rows: list[tuple[str, ...]] = [
        (
            *("shape", "ops", "py graph", "B/op", "py marshal peak", "B/op", "py rss"),
            *("go graph", "B/op", "go marshal alloc", "B/op", "go rss"),
        )
    ]
    for (shape, _), (py, go) in results.items():
        ops = py["ops"]
        rows.append(
            (
                shape,
                str(ops),
                _mib(py["graph_live_bytes"]),
                f"{py['graph_live_bytes'] / ops:.0f}",
                _mib(py["marshal_peak_bytes"]),
                f"{py['marshal_peak_bytes'] / ops:.0f}",
                _mib(py["max_rss_bytes"]),
                _mib(go["graph_live_bytes"]),
                f"{go['graph_live_bytes'] / ops:.0f}",
                _mib(go["marshal_alloc_bytes"]),
                f"{go['marshal_alloc_bytes'] / ops:.0f}",
                _mib(go["max_rss_bytes"]),
            )
        )
    print_table(rows)


def report_scaling(results: Results, small: int, big: int) -> None:
    print(f"\nscaling {small} -> {big} ops: per-op cost at {big} / per-op cost at {small} (1.00 = linear)")

    def growth(b: Result, s: Result, key: str) -> str:
        return f"{(b[key] / b['ops']) / (s[key] / s['ops']):.2f}"

    for shape in SHAPES:
        if (shape, small) not in results or (shape, big) not in results:
            continue
        (py_s, go_s), (py_b, go_b) = results[shape, small], results[shape, big]
        print(
            f"  {shape:8} python: marshal time {growth(py_b, py_s, 'marshal_ns')} "
            f"(cpu {growth(py_b, py_s, 'marshal_cpu_ns')}), "
            f"build time {growth(py_b, py_s, 'build_ns')}, "
            f"graph memory {growth(py_b, py_s, 'graph_live_bytes')}, "
            f"marshal memory {growth(py_b, py_s, 'marshal_peak_bytes')}, "
            f"import time {growth(py_b, py_s, 'import_ns')}, "
            f"re-marshal time {growth(py_b, py_s, 'remarshal_ns')} | "
            f"go: marshal time {growth(go_b, go_s, 'marshal_ns')} "
            f"(cpu {growth(go_b, go_s, 'marshal_cpu_ns')}), "
            f"graph memory {growth(go_b, go_s, 'graph_live_bytes')}"
        )


def print_table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(
                cell.rjust(w) if i else cell.ljust(w)
                for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            )
        )


def run(sizes: list[int], reps: int, *, naive: bool, profile: bool) -> int:
    with tempfile.TemporaryDirectory(prefix="bench-marshal-") as tmp:
        binary, go_build_s = build_oracle(Path(tmp))
        go_version = subprocess.run([find_go(), "version"], capture_output=True, text=True).stdout.strip()
        print(f"python {sys.version.split()[0]}; {go_version}; {os.cpu_count()} CPUs, load {os.getloadavg()}")
        print(f"go oracle built in {go_build_s:.1f}s (not part of any measurement)")
        results: Results = {}
        for shape in SHAPES:
            for n in sizes:
                r = reps or default_reps(n)
                go = run_json([str(binary), "-bench", str(n), "-shape", shape, "-reps", str(r)])
                py = run_json([sys.executable, __file__, "--worker", shape, str(n), str(r)])
                if (py["ops"], py["head"]) != (go["ops"], go["head"]):
                    print(
                        f"ERROR: {shape}/{n}: the python and go graphs differ "
                        f"(ops {py['ops']} vs {go['ops']}, head {py['head']} vs {go['head']})"
                    )
                    return 1
                results[shape, n] = (py, go)

        report_time(results)
        report_import(results)
        if naive and (slow := [n for n in sizes if n <= NAIVE_MAX]):
            runs = [
                run_json([str(binary), "-bench", str(n), "-shape", "chain", "-reps", "1", "-naive"])
                for n in slow
            ]
            shown = ", ".join(f"{r['ops']} ops {r['marshal_ns'] / 1e6:.0f} ms" for r in runs)
            print(
                "go chain built without re-rooting its States (st = st.File(...); client/llb looks each "
                f"op's dir up through every earlier State, O(n²)): marshal {shown}"
            )
        report_memory(results)
        if len(sizes) > 1:
            report_scaling(results, sizes[-2], sizes[-1])
        if profile:
            profile_python(RATIO_SHAPE, RATIO_SIZE, Path(tempfile.gettempdir()) / "bench_marshal.prof")
        if (RATIO_SHAPE, RATIO_SIZE) in results:
            py, go = results[RATIO_SHAPE, RATIO_SIZE]
            print(f"marshal ratio (python/go) at 10k ops: {py['marshal_ns'] / go['marshal_ns']:.2f}")
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="comma-separated op counts")
    parser.add_argument("--reps", type=int, default=0, help="repetitions per size (default: by size)")
    parser.add_argument(
        "--skip-naive", action="store_true", help="skip timing Go's quadratic naive chain (<= 10k ops)"
    )
    parser.add_argument("--profile", action="store_true", help="cProfile the Python 10k chain marshal")
    parser.add_argument("--worker", nargs=3, metavar=("SHAPE", "N", "REPS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        shape, n, reps = args.worker
        print(json.dumps(measure_python(shape, int(n), int(reps))))
        return 0
    sizes = sorted(int(s) for s in args.sizes.split(",") if s)
    return run(sizes, args.reps, naive=not args.skip_naive, profile=args.profile)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
