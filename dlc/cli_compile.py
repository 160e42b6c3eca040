"""`dlc compile`: compile a model, or resume from an edited dump, and run it once.

    dlc compile --from-stage dumps/06-fuse.dlc [--level O2] [--backend eager]
    dlc compile MODEL [--level O2] [--backend eager]
    dlc compile MODEL -o DIR [--target-cpu NAME] [--embed-weights] [--threads N]

A stage file is the text form that `dlc dump --all DIR` writes as DIR/NN-PASS.dlc. It is
parsed (a malformed or invalid edit is reported at its line:col), the passes of --level
that come after PASS run on it, the backend compiles it, and it runs once on random inputs.
"""
from __future__ import annotations

import argparse
import re
import time
from pathlib import Path

import numpy as np

from dlc.cli import (MODEL_HELP, UsageError, _random_array, add_backend_argument,
                     add_model_argument, display_path, load_model, ms, print_outputs,
                     register, as_list, trace_model)
from dlc.cli_dump import run_with_notes
from passes.manager import INPUT_STAGE, PIPELINES, WEIGHTS_FILE, pipeline

DEFAULT_LEVEL = "O2"
STAGE_FILE = re.compile(r"[0-9]+-(?P<name>[A-Za-z0-9_]+)\.dlc")

EPILOG = f"""\
resuming from a stage:
  --from-stage FILE.dlc reads the text form of a graph, typically a stage written by
  `dlc dump MODEL --all DIR` and edited by hand. A file named NN-PASS.dlc resumes after
  PASS: only the passes of --level that come later run (for NN-{INPUT_STAGE}.dlc, or any
  other name, all of them), in the order of O2:
    {', '.join(PIPELINES['O2'])}

  The text form holds no weights. Parameters, state and constants are read from
  --params FILE.npz if given, else from FILE.npz next to the stage (same name, .npz), else
  from {WEIGHTS_FILE} in the stage's folder (what `dlc dump --all` writes). Arrays are
  matched to inputs by name; arrays for inputs the graph no longer has are ignored.

  User inputs are random: floats in [0, 1), small integers, random booleans (--seed).

ahead-of-time bundles:
  -o DIR compiles with the llvm backend into a bundle that a C program links without
  Python: DIR/NAME.o, DIR/libNAME.so, DIR/NAME.h (the C interface), DIR/NAME.weights
  (unless --embed-weights), DIR/NAME.dlc and DIR/manifest.json (shapes, dtypes, version,
  target, SHA-256 of every file); NAME is the model's NAME or the file's stem. The
  bundle runs on --target-cpu (default: this machine's CPU with all its features;
  x86-64 runs on any x86-64) with --threads threads. dlc.load(DIR) loads it in Python.
  See docs/llvm-backend.md.

{MODEL_HELP}"""


def _configure(p: argparse.ArgumentParser) -> None:
    add_model_argument(p, nargs="?")
    p.add_argument("--from-stage", metavar="FILE.dlc",
                   help="resume from a (hand-edited) dump instead of tracing MODEL")
    p.add_argument("--params", metavar="FILE.npz",
                   help="weights for --from-stage (default: next to the stage file)")
    p.add_argument("--level", choices=sorted(PIPELINES), default=DEFAULT_LEVEL,
                   help=f"the pass pipeline (default {DEFAULT_LEVEL})")
    p.add_argument("--verify", action="store_true", help="verify the graph after every pass")
    add_backend_argument(p)
    p.add_argument("-o", "--output", metavar="DIR",
                   help="write an ahead-of-time bundle (llvm backend) into DIR")
    p.add_argument("--target-cpu", metavar="NAME",
                   help="with -o: the CPU to compile for (default: this machine's)")
    p.add_argument("--embed-weights", action="store_true",
                   help="with -o: put the weights in the object file, not NAME.weights")
    p.add_argument("--threads", type=int, metavar="N",
                   help="with -o: threads of parallel loops (default: every core here)")


def remaining_passes(stage: str | None, level: str) -> tuple[str, ...]:
    """The passes of `level` that come after the pass `stage` (all of them for None)."""
    names = pipeline(level)
    order = PIPELINES["O2"]
    if stage is None or stage not in order:
        return names
    return tuple(p for p in names if order.index(p) > order.index(stage))


def stage_name(path: Path) -> str | None:
    """PASS for a file named NN-PASS.dlc, else None."""
    m = STAGE_FILE.fullmatch(path.name)
    return m.group("name") if m else None


def weights_path(stage: Path, given: str | None) -> Path | None:
    if given is not None:
        if not Path(given).is_file():
            raise UsageError(f"--params {given}: no such file")
        return Path(given)
    for candidate in (stage.with_suffix(".npz"), stage.parent / WEIGHTS_FILE):
        if candidate.is_file():
            return candidate
    return None


def load_weights(path: Path | None) -> dict[str, np.ndarray]:
    if path is None:
        return {}
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except (OSError, ValueError) as e:
        raise UsageError(f"{display_path(path)}: not a readable .npz archive ({e})") \
            from None


def _graph_from_stage(args: argparse.Namespace):
    import dlc
    path = Path(args.from_stage)
    try:
        text = path.read_text()
    except OSError as e:
        raise UsageError(f"--from-stage {args.from_stage}: {e.strerror or e}") from None
    graph = dlc.parse(text, display_path(path))
    source = weights_path(path, args.params)
    weights = load_weights(source)
    wanted = [v for v in graph.inputs if v.role != "input"]
    missing = [f"%{v.name}" for v in wanted if v.name not in weights]
    if missing:
        looked = [path.with_suffix(".npz"), path.parent / WEIGHTS_FILE]
        where = display_path(source) if source else \
            " or ".join(display_path(p) for p in looked)
        raise UsageError(f"no weights for {', '.join(missing)} in {where}; pass "
                         f"--params FILE.npz")
    params = {v.name: weights[v.name] for v in wanted}
    return graph, params, stage_name(path)


@register("compile", "compile a model or an edited dump and run it once", _configure,
          description="Compile MODEL, or resume from a stage file written by `dlc dump "
                      "--all` (--from-stage), run the remaining passes and the backend, "
                      "and run the result once on random inputs; with -o DIR, write an "
                      "ahead-of-time bundle that C programs link instead.",
          epilog=EPILOG)
def cmd_compile(args: argparse.Namespace) -> int:
    import dlc
    if (args.model is None) == (args.from_stage is None):
        raise UsageError("give either MODEL or --from-stage FILE.dlc")
    check_bundle_options(args)
    if args.from_stage is not None:
        graph, params, stage = _graph_from_stage(args)
        label = display_path(args.from_stage)
    else:
        loaded = load_model(args.model, args.seed)
        graph, params, stage, label = trace_model(loaded), None, None, loaded.label
    passes = remaining_passes(stage, args.level)
    start = time.perf_counter()
    result = run_with_notes(graph, args.level, passes=passes, verify=args.verify or None)
    if args.output is not None:
        return write_bundle(args, result.graph, params, label, start)
    exe = dlc.compile(result.graph, backend=args.backend, params=params, opt_level="O0")
    compiled = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    inputs = [_random_array(rng, v.type) for v in result.graph.user_inputs]
    outputs = as_list(exe(*inputs))
    done = time.perf_counter()
    print_outputs(outputs)
    ran = ", ".join(s.name for s in result.stages[1:]) or "none"
    print(f"compiled {label} (passes run: {ran}) on the {args.backend} backend in "
          f"{ms(compiled - start)}; ran in {ms(done - compiled)}")
    return 0


# -- ahead-of-time bundles (-o DIR) --------------------------------------------------------------
def check_bundle_options(args: argparse.Namespace) -> None:
    """Bundle options make sense only with -o; a bad --target-cpu fails before tracing."""
    if args.output is None:
        used = [flag for flag, on in (("--target-cpu", args.target_cpu is not None),
                                      ("--embed-weights", args.embed_weights),
                                      ("--threads", args.threads is not None)) if on]
        if used:
            raise UsageError(f"{', '.join(used)} only apply to bundles: add -o DIR")
        return
    if args.backend not in ("eager", "llvm"):  # eager is the default: not a choice made
        raise UsageError(f"-o writes a bundle of the llvm backend, not {args.backend}")
    if args.threads is not None and args.threads < 1:
        raise UsageError(f"--threads {args.threads}: must be at least 1")
    from backends.llvm.target import TargetError, resolve_target
    try:
        resolve_target(args.target_cpu)
    except TargetError as e:
        raise UsageError(f"--target-cpu: {e}") from None


def bundle_name(args: argparse.Namespace, graph) -> str:
    """The model's NAME, else the model file's stem, else the graph's name."""
    if args.model is not None:
        from dlc.cli import split_model_ref
        path, name = split_model_ref(args.model)
        return name or path.stem
    return graph.name


def write_bundle(args: argparse.Namespace, graph, params, label: str, start: float) -> int:
    """Write the bundle of the compiled graph into -o DIR and list its files."""
    from backends.llvm.aot import write_bundle as write
    bundle = write(graph, args.output, name=bundle_name(args, graph), params=params,
                   target_cpu=args.target_cpu, embed_weights=args.embed_weights,
                   threads=args.threads, source=label)
    done = time.perf_counter()
    for role, entry in bundle.manifest["files"].items():
        print(f"  {entry['path']:<24} {entry['bytes']:>12,} bytes  ({role})")
    target = bundle.manifest["target"]
    print(f"wrote the bundle {bundle.name!r} of {label} to {display_path(bundle.directory)} "
          f"for cpu {target['cpu']}, {bundle.manifest['threads']} thread(s), in "
          f"{ms(done - start)}")
    return 0
