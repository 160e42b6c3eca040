"""`dlc bench`: time a model file or the standard suite on dlc's backends and on peers."""
from __future__ import annotations

import argparse
import os
import sys

from dlc.cli import (MODEL_HELP, REPO_ROOT, UsageError, add_model_argument, import_file,
                     load_model, register, split_model_ref)

SUITE_FILE = REPO_ROOT / "examples" / "suite.py"
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")

EPILOG = """\
examples:
  dlc bench --suite standard --backends eager,llvm --peers numpy,torch --json out.json
  dlc bench examples/suite.py:gemm --threads 1 --repeat 20
  dlc bench examples/mlp.py --kernels
  dlc bench examples/suite.py:lenet --backends llvm --profile

Every implementation is checked against the eager backend before it is timed; a peer that
is not installed is skipped with one line saying how to install it (pip install
'dlc[bench]'). BLAS and OpenMP thread counts are read when a process starts, so with
--threads the command restarts itself once with OMP_NUM_THREADS, OPENBLAS_NUM_THREADS and
MKL_NUM_THREADS set. With --threads below the cores this process may use, it is also
pinned to that many cores: jax (XLA) takes no thread count, and its threads then share
those cores like everyone else's.

""" + MODEL_HELP


def _configure(p: argparse.ArgumentParser) -> None:
    add_model_argument(p, nargs="?")
    p.add_argument("--suite", choices=["standard"], help="run the standard suite "
                   "(examples/suite.py) instead of one model")
    p.add_argument("--workloads", help="comma-separated subset of the suite's workloads")
    p.add_argument("--tiny", action="store_true",
                   help="the suite at tiny sizes (checks the harness, not the machine)")
    p.add_argument("--backends", default="eager", help="comma-separated (default eager)")
    p.add_argument("--peers", default="", help="comma-separated: numpy, torch, "
                   "torch-compile, jax, onnxruntime (default none)")
    p.add_argument("--threads", type=int, default=os.cpu_count(),
                   help="threads for dlc and for every peer (default: all cores)")
    p.add_argument("--batch", type=int, help="batch size for workloads that have one")
    p.add_argument("--repeat", type=int, default=10, help="timed samples (default 10)")
    p.add_argument("--warmup", type=int, default=2, help="untimed calls first (default 2)")
    p.add_argument("--kernels", action="store_true",
                   help="also time each fused kernel against its ops run one by one")
    p.add_argument("--profile", action="store_true",
                   help="llvm: time every kernel inside the compiled call (cycle counters "
                        "around each kernel), slowest first")
    p.add_argument("--no-floors", action="store_true",
                   help="skip measuring copy bandwidth and sgemm rate")
    p.add_argument("--json", metavar="OUT", help="write machine, options and every sample")
    p.add_argument("--plot", metavar="OUT.png", help="bar chart of speedups (matplotlib)")
    p.add_argument("--markdown", metavar="OUT.md",
                   help="the table as a Markdown page (how docs/benchmarks.md is made)")


def _pin_threads(threads: int) -> None:
    """Restart with the thread variables set, when run as the `dlc` program and they
    differ (inside another program, e.g. a test, the caller sets them); as the program,
    keep to `threads` cores too (pin_cores)."""
    as_program = os.path.basename(sys.argv[0]) in ("dlc", "__main__.py")
    if as_program:
        pin_cores(threads)
    want = str(threads)
    if all(os.environ.get(v) == want for v in THREAD_VARS):
        return
    if as_program:
        for v in THREAD_VARS:
            os.environ[v] = want
        os.execv(sys.executable, [sys.executable, "-m", "dlc", *sys.argv[1:]])
    print(f"note: {', '.join(THREAD_VARS)} are not {want}; BLAS and OpenMP libraries keep "
          f"the thread counts this process started with", file=sys.stderr)


def pin_cores(threads: int) -> list[int]:
    """Keep this process (and what it starts) to `threads` of the cores it may use, when
    that is fewer: a library that takes no thread count (XLA) then runs on as many cores
    as the others. Returns the cores kept."""
    cores = sorted(os.sched_getaffinity(0))
    if 0 < threads < len(cores):
        cores = cores[:threads]
        os.sched_setaffinity(0, cores)
    return cores


def _workloads(args: argparse.Namespace) -> list[tuple]:
    """(Workload, size) pairs to run."""
    from dlc.bench.workload import Workload
    suite = import_file(SUITE_FILE).SUITE
    if args.suite:
        chosen = suite
        if args.workloads:
            names = args.workloads.split(",")
            unknown = [n for n in names if n not in {w.name for w in suite}]
            if unknown:
                raise UsageError(f"unknown workload(s) {', '.join(unknown)}; the suite has "
                                 f"{', '.join(w.name for w in suite)}")
            chosen = [w for w in suite if w.name in names]
        return [(w, dict(w.tiny if args.tiny else w.size)) for w in chosen]
    if not args.model:
        raise UsageError("name a model (FILE.py[:NAME]) or --suite standard")
    path, name = split_model_ref(args.model)
    if path.resolve() == SUITE_FILE and name:
        match = [w for w in suite if name in (w.name, w.build.__name__)]
        if match:
            w = match[0]
            return [(w, dict(w.tiny if args.tiny else w.size))]
    loaded = load_model(args.model, seed=args.seed)
    wl = Workload(loaded.label, lambda: (loaded.target, loaded.specs), {}, {})
    return [(wl, {})]


@register("bench", "time a model or the standard suite on backends and peers", _configure,
          description="Time a model file (or the standard suite) on dlc's backends and on "
                      "peer frameworks: median/min/max per call, compile time, speedup over "
                      "eager, fraction of the machine's floor.", epilog=EPILOG)
def cmd_bench(args: argparse.Namespace) -> int:
    from backends.registry import BACKENDS
    from dlc.bench import peers as peer_mod
    from dlc.bench import report
    from dlc.bench.floors import measure_floors
    from dlc.bench.machine import describe
    from dlc.bench.runner import run_workload

    _pin_threads(args.threads)
    backends = [b for b in args.backends.split(",") if b]
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown:
        raise UsageError(f"unknown backend(s) {', '.join(unknown)}; available: "
                         f"{', '.join(sorted(BACKENDS))}")
    if args.profile and "llvm" not in backends:
        raise UsageError("--profile times the kernels of the llvm backend: add "
                         "--backends llvm")
    peers = []
    for p in (p for p in args.peers.split(",") if p):
        why = peer_mod.missing(p)
        if why and p not in peer_mod.PEERS:
            raise UsageError(why)
        if why:
            print(why, file=sys.stderr)
        else:
            peers.append(p)
    work = _workloads(args)
    if args.batch:
        for _, size in work:
            if "batch" in size:
                size["batch"] = args.batch
    floors = None if args.no_floors else measure_floors(args.threads, tiny=args.tiny)
    results = []
    for i, (wl, size) in enumerate(work, 1):
        def progress(msg: str, i=i) -> None:
            print(f"[{i}/{len(work)}] {msg}", file=sys.stderr, flush=True)
        results += run_workload(wl, size, backends, peers, floors, args.repeat, args.warmup,
                                args.threads, kernels=args.kernels, seed=args.seed,
                                profile=args.profile,
                                progress=progress)
    print(report.table(results, floors))
    if args.kernels:
        for r in results:
            if r.kernels:
                print()
                print(report.kernel_table(r))
    if args.profile:
        from backends.llvm.profile import profile_table
        for r in results:
            if r.profile:
                print(f"\nkernels of {r.workload} on {r.impl}, timed in the call "
                      f"({args.threads} threads, mean of {args.repeat * 5} calls):")
                print(profile_table(r.profile))
    if args.json:
        options = {k: v for k, v in vars(args).items() if not k.startswith("_") and
                   isinstance(v, (str, int, float, bool, type(None)))}
        report.write_json(args.json, describe(args.threads), floors, results, options)
        print(f"wrote {args.json}", file=sys.stderr)
    if args.markdown:
        import datetime
        command = "dlc " + " ".join(sys.argv[1:]) if sys.argv[1:2] == ["bench"] else \
            "dlc bench ..."
        text = report.markdown(results, floors, describe(args.threads), command,
                               datetime.date.today().isoformat())
        report.atomic_write(args.markdown, text)
        print(f"wrote {args.markdown}", file=sys.stderr)
    if args.plot:
        report.plot(args.plot, results)
        print(f"wrote {args.plot}", file=sys.stderr)
    return 1 if any(not r.ok for r in results) else 0
