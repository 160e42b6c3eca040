"""`dlc dump`: the IR of a model at any stage of the pass pipeline, what a pass changed,
and the fusion and memory reports.

    dlc dump MODEL                      the traced IR
    dlc dump MODEL --after fuse         the IR after one pass (of --level, default O2)
    dlc dump MODEL --all DIR            every stage as DIR/NN-pass.dlc, DIR/index, weights
    dlc dump MODEL --diff cse           a unified diff of the IR before/after one pass
    dlc dump MODEL --explain-fusion     why each pair of nodes was or was not fused
    dlc dump MODEL --memory             the memory plan table
    dlc dump MODEL --memory-plot a.png  the buffers' lifetimes, offset x step
    dlc dump MODEL --llvm | --asm       each kernel's LLVM IR or assembly (llvm backend)
    dlc dump MODEL --kernels            each kernel's generated Triton source (triton backend)
"""
from __future__ import annotations

import argparse
import importlib
import os
import importlib.util
import sys
import warnings
from typing import Any, Callable

from dlc.cli import (MODEL_HELP, UsageError, add_model_argument, load_model, register,
                     trace_model, write_text)
from passes.manager import (INPUT_STAGE, PASSES, PIPELINES, PipelineResult, pipeline,
                            run_pipeline)

FORMATS: dict[str, Callable[[Any], str]] = {
    "text": str,
    "dot": lambda graph: graph.to_dot(),
}
DEFAULT_LEVEL = "O2"
PLOT_HINT = "pip install dlc[plot]"

# report flag -> (the pass whose graph it reads, "module:function" that writes the report)
REPORTS: dict[str, tuple[str, str]] = {
    "explain_fusion": ("fuse", "passes.fuse:explain_fusion"),
    "memory": ("plan_memory", "passes.memory:memory_table"),
    "memory_plot": ("plan_memory", "passes.memory:plot_memory"),
}

LEVEL_LINES = "\n".join(f"    {level}: {', '.join(names) or '(no passes)'}"
                        for level, names in PIPELINES.items())
EPILOG = f"""\
stages:
  The pipeline of --level runs the passes below in order; the graph after each is a
  stage named after the pass (stage 00 is `{INPUT_STAGE}`, the traced graph):
{LEVEL_LINES}
  --all DIR writes DIR/NN-pass.dlc for every stage, DIR/index (stage, pass, nodes,
  kernels, bytes, time) and DIR/weights.npz (the parameters, by name): edit a stage and
  resume from it with `dlc compile --from-stage DIR/NN-pass.dlc`.

{MODEL_HELP}"""


def _configure(p: argparse.ArgumentParser) -> None:
    add_model_argument(p)
    p.add_argument("--format", default="text", choices=sorted(FORMATS),
                   help="text: the IR text form (docs/ir-grammar.md); dot: Graphviz")
    p.add_argument("-o", "--output", metavar="OUT",
                   help="write the IR (after --after PASS, or the last stage) to OUT")
    p.add_argument("--level", choices=sorted(PIPELINES), default=None,
                   help=f"the pass pipeline (default {DEFAULT_LEVEL}); alone, print the IR "
                        f"after its last pass")
    p.add_argument("--after", metavar="PASS",
                   help=f"print the IR after PASS ({', '.join(PASSES)}, or {INPUT_STAGE})")
    p.add_argument("--for-backend", choices=("eager", "llvm", "triton"), default="llvm",
                   help="fuse as for this backend (default llvm): for triton, where a "
                        "kernel launch costs, small independent kernels also merge")
    p.add_argument("--all", metavar="DIR", dest="all_dir",
                   help="write every stage, the index and the weights into DIR")
    p.add_argument("--diff", metavar="PASS",
                   help="print a unified diff of the IR before and after PASS, with counts")
    p.add_argument("--verify", action="store_true",
                   help="verify the graph after every pass")
    p.add_argument("--explain-fusion", action="store_true",
                   help="print every fusion decision with its reason")
    p.add_argument("--memory", action="store_true",
                   help="print the memory plan: buffers, offsets, naive/planned/lower bound")
    p.add_argument("--memory-plot", metavar="OUT.png",
                   help=f"draw the buffers' lifetimes (needs matplotlib: {PLOT_HINT})")
    native = p.add_mutually_exclusive_group()
    native.add_argument("--llvm", action="store_true",
                        help="print each kernel's optimized LLVM IR (llvm backend), headed "
                             "by its op or fused group and file:line")
    native.add_argument("--asm", action="store_true",
                        help="print each kernel's assembly for this machine, headed the same")
    native.add_argument("--kernels", action="store_true",
                        help="print each kernel's generated Triton source (triton backend), "
                             "headed by its group, ops and file:line; with --all DIR also "
                             "write them to DIR/triton/")


def _wants_reports(args: argparse.Namespace) -> bool:
    return bool(args.all_dir or args.diff or args.explain_fusion or args.memory
                or args.memory_plot)


def _check_stage_names(args: argparse.Namespace, level: str) -> None:
    names = pipeline(level)
    for flag, name in (("--after", args.after), ("--diff", args.diff)):
        allowed = names if flag == "--diff" else (INPUT_STAGE,) + names
        if name is not None and name not in allowed:
            raise UsageError(f"{flag} {name}: not a pass of the {level} pipeline; its "
                             f"stages: {', '.join(allowed) or 'none'}")


def _report_function(flag: str) -> Callable:
    module, _, function = REPORTS[flag][1].partition(":")
    option = "--" + flag.replace("_", "-")
    try:
        loaded = importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name == "matplotlib":
            raise UsageError(f"{option} needs matplotlib: {PLOT_HINT}") from None
        raise UsageError(f"{option} needs {module}, which is missing") from None
    if not hasattr(loaded, function):
        raise UsageError(f"{option} needs {module}.{function}(), which is missing")
    return getattr(loaded, function)


def matplotlib_available() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def _run(args: argparse.Namespace, graph, level: str) -> PipelineResult:
    # --after alone stops at that pass; the other reports need the whole pipeline
    stop = args.after if args.after and not _wants_reports(args) else None
    passes = () if stop == INPUT_STAGE else None
    from dlc.compiler import LAUNCHES, LAUNCHES_KEY
    graph.meta[LAUNCHES_KEY] = LAUNCHES.get(args.for_backend, "cheap")
    return run_with_notes(graph, level, passes=passes, verify=args.verify or None,
                          stop_after=None if passes == () else stop,
                          keep_text=bool(args.diff), dump_dir=args.all_dir)


def run_with_notes(graph, level: str, **options) -> PipelineResult:
    """run_pipeline, with a skipped pass noted in one line on stderr rather than as a
    Python warning with its source line."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        result = run_pipeline(graph, level, **options)
    for name, why in result.skipped:
        print(f"dlc: note: {why}; skipped", file=sys.stderr)
    return result


def _print_reports(args: argparse.Namespace, result: PipelineResult) -> None:
    if args.all_dir:
        print(result.index_text(), end="")
        print(f"wrote {len(result.stages)} stages to {args.all_dir}")
    if args.diff:
        from passes.stage_diff import diff_stages
        after = result.stage(args.diff)
        before = result.stages[after.index - 1]
        diff = diff_stages(before.graph, after.graph, before.file_name, after.file_name)
        print(diff.summary(args.diff) + "; in the +++ text unchanged nodes keep their "
              "--- numbers and new ones are %new0, %new1, ...")
        print(diff.text or "(no change)")
    if args.explain_fusion:
        print(_report_function("explain_fusion")(result.stage("fuse").graph).rstrip("\n"))
    if args.memory:
        print(_report_function("memory")(result.stage("plan_memory").graph).rstrip("\n"))
    if args.memory_plot:
        _report_function("memory_plot")(result.stage("plan_memory").graph, args.memory_plot)
        print(f"wrote {args.memory_plot}")


@register("dump", "print the IR of a model, at any stage of the pass pipeline", _configure,
          description="Trace MODEL on its example inputs and print the IR; with --level, "
                      "--after, --all or --diff, run the pass pipeline and show its stages; "
                      "--explain-fusion and --memory report on fusion and memory planning.",
          epilog=EPILOG)
def cmd_dump(args: argparse.Namespace) -> int:
    level = args.level or DEFAULT_LEVEL
    _check_stage_names(args, level)
    if args.memory_plot and not matplotlib_available():
        raise UsageError(f"--memory-plot needs matplotlib, which is not installed: "
                         f"{PLOT_HINT}")
    graph = trace_model(load_model(args.model, args.seed))
    if args.llvm or args.asm:
        return _dump_native(args, graph, level)
    if args.kernels:
        return _dump_triton(args, graph, level)
    if not (args.level or args.after or _wants_reports(args)):
        write_text(FORMATS[args.format](graph), args.output)  # the traced IR
        return 0
    result = _run(args, graph, level)
    _print_reports(args, result)
    if args.after or args.output or not _wants_reports(args):
        stage = result.stage(args.after) if args.after else result.stages[-1]
        write_text(FORMATS[args.format](stage.graph), args.output)
    return 0


def _dump_native(args: argparse.Namespace, graph, level: str) -> int:
    """--llvm / --asm: the kernels of the graph after the whole pipeline of --level."""
    if args.after or _wants_reports(args) or args.format != "text":
        raise UsageError("--llvm and --asm print kernels: they take no --after, --all, "
                         "--diff, --format dot or report flags")
    from backends.llvm.dump import kernel_listing
    result = run_with_notes(graph, level, verify=args.verify or None)
    write_text(kernel_listing(result.graph, "asm" if args.asm else "llvm"), args.output)
    return 0


def _dump_triton(args: argparse.Namespace, graph, level: str) -> int:
    """--kernels: the triton kernels of the graph after the whole pipeline of --level;
    with --all DIR the stages as usual and every kernel as DIR/triton/NAME.py."""
    if args.after or args.diff or args.explain_fusion or args.memory or args.memory_plot \
            or args.format != "text":
        raise UsageError("--kernels prints kernels: it takes --level and --all DIR, no "
                         "--after, --diff, --format dot or report flags")
    from backends.triton.dump import kernel_listing, write_kernels
    result = run_with_notes(graph, level, verify=args.verify or None, dump_dir=args.all_dir)
    write_text(kernel_listing(result.graph), args.output)
    if args.all_dir:
        _print_reports(args, result)
        kernel_dir = os.path.join(args.all_dir, "triton")
        paths = write_kernels(result.graph, kernel_dir)
        print(f"wrote {len(paths)} triton sources (kernels, helpers, module) to {kernel_dir}")
    return 0
