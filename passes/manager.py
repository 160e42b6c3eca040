"""The pass manager: named Graph -> Graph passes, pipelines per optimization level, and the
verify / time / dump step after each pass.

    result = run_pipeline(graph, "O2", dump_dir="dumps")
    result.graph                        # the optimized graph
    result.stage("fuse").graph          # the graph after one pass

Levels: O0 runs nothing; O1 simplifies (decompose where free, fold constants, algebraic
identities, CSE, DCE); O2 (the default) adds fusion, scheduling and memory planning.

A pass is registered by name with its function or a "module:function" path imported on
first use, so the pipeline can name passes whose modules come later. A pass whose module
is missing is skipped with a warning, and the result lists it in `skipped`.

After each pass the manager
- verifies the graph (`dlc.verify` plus an unchanged signature) when asked, and always
  under pytest; an invariant the pass broke raises PassError naming the pass;
- times the pass;
- with `dump_dir`, writes `NN-name.dlc` (the text form), `index` (one line per stage:
  node, kernel and byte counts and the time) and `weights.npz` (the data of every
  param/state/const input of any stage, by name) so a stage can be edited and resumed
  with `dlc compile --from-stage`.
"""
from __future__ import annotations

import importlib
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from dlc.errors import ArgumentError, DlcError, VerifyError
from dlc.fileio import atomic_write_text, save_npz
from dlc.ir.graph import Graph
from dlc.ir.groups import kernel_count as count_kernels
from dlc.ir.verify import verify as verify_graph

PassFn = Callable[[Graph], Graph]
INPUT_STAGE = "traced"  # the name of stage 00, the pipeline's input
INDEX_FILE = "index"
WEIGHTS_FILE = "weights.npz"


class PassError(VerifyError):
    """A pass broke an IR invariant, or failed; the message names the pass."""


class PassUnavailable(DlcError):
    """A registered pass whose module cannot be found."""


# -- the registry --------------------------------------------------------------------------
@dataclass(frozen=True)
class Pass:
    """A named pass: `target` is the function or a "module:function" path."""
    name: str
    target: str | PassFn
    doc: str = ""

    def load(self) -> PassFn:
        if callable(self.target):
            return self.target
        module, _, function = self.target.partition(":")
        try:
            loaded = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name is None or not module.startswith(e.name):
                raise  # the module exists but needs something missing: a real error
            raise PassUnavailable(f"pass {self.name} is not available: its module {module} "
                                  f"is missing") from None
        if not hasattr(loaded, function):
            raise PassUnavailable(f"pass {self.name} is not available: {module} defines no "
                                  f"{function}()")
        return getattr(loaded, function)


PASSES: dict[str, Pass] = {}


def register_pass(name: str, target: str | PassFn, doc: str = "") -> Pass:
    """Add a pass to the registry under `name` (also its dump file name)."""
    if name in PASSES:
        raise ValueError(f"pass {name!r} registered twice")
    PASSES[name] = Pass(name, target, doc)
    return PASSES[name]


register_pass("decompose", "passes.simplify:decompose_free",
              "expand composite ops whose primitives fuse into one kernel")
register_pass("fold", "passes.simplify:fold", "compute nodes whose inputs are all constants")
register_pass("algebra", "passes.simplify:algebra",
              "identities true for every input: x*1, x+(-0.0), neg(neg(x)), ...")
register_pass("cse", "passes.simplify:cse", "one node per (op, inputs, attributes)")
register_pass("dce", "passes.simplify:dce", "drop what no output needs")
register_pass("fuse", "passes.fuse:fuse", "group nodes into fused kernels")
register_pass("schedule", "passes.schedule:schedule", "order nodes for a lower memory peak")
register_pass("plan_memory", "passes.memory:plan_memory",
              "place intermediate values in one arena")

SIMPLIFY = ("decompose", "fold", "algebra", "cse", "dce")
PIPELINES: dict[str, tuple[str, ...]] = {
    "O0": (),
    "O1": SIMPLIFY,
    "O2": SIMPLIFY + ("fuse", "schedule", "plan_memory"),
}
DEFAULT_LEVEL = "O2"


def pipeline(level: str) -> tuple[str, ...]:
    """The pass names of an optimization level."""
    if level not in PIPELINES:
        raise ArgumentError(f"unknown optimization level {level!r}; levels: "
                            f"{', '.join(PIPELINES)}")
    return PIPELINES[level]


def get_pass(name: str | Pass) -> Pass:
    if isinstance(name, Pass):
        return name
    if name not in PASSES:
        raise ArgumentError(f"unknown pass {name!r}; passes: {', '.join(PASSES)}")
    return PASSES[name]


def verify_by_default() -> bool:
    """Verification is on under pytest (the one place this is decided) and off otherwise."""
    return "PYTEST_CURRENT_TEST" in os.environ


# -- stage statistics ----------------------------------------------------------------------
def node_count(graph: Graph) -> int:
    """Every node, those inside fused bodies included."""
    return sum(1 for _ in graph.walk())


def kernel_count(graph: Graph) -> int:
    """Top-level nodes: what a backend launches (a fused group is one; the `result` nodes
    of a multi-output group compute nothing)."""
    return count_kernels(graph.nodes)


def graph_bytes(graph: Graph) -> int:
    """The planned arena once a memory plan exists, else the sum of the sizes of the
    top-level node values (every intermediate in its own buffer)."""
    plan = graph.meta.get("memory_plan")
    if plan is not None:
        return int(plan.arena_bytes)
    return sum(n.type.nbytes for n in graph.nodes)


@dataclass
class Stage:
    """The graph after one pass (stage 0: the pipeline's input)."""
    index: int
    name: str
    graph: Graph
    seconds: float | None  # None for the input stage
    nodes: int = 0
    kernels: int = 0
    bytes: int = 0
    text: str | None = None  # the text form, kept for dumps and diffs

    @property
    def file_name(self) -> str:
        return f"{self.index:02d}-{self.name}.dlc"

    @classmethod
    def of(cls, index: int, name: str, graph: Graph, seconds: float | None,
           keep_text: bool) -> "Stage":
        return cls(index, name, graph, seconds, node_count(graph), kernel_count(graph),
                   graph_bytes(graph), str(graph) if keep_text else None)


@dataclass
class PipelineResult:
    level: str | None
    stages: list[Stage]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (pass, why)

    @property
    def graph(self) -> Graph:
        return self.stages[-1].graph

    def stage(self, name: str) -> Stage:
        """The stage after pass `name` (or INPUT_STAGE); a clear error if it did not run."""
        for s in self.stages:
            if s.name == name:
                return s
        why = dict(self.skipped).get(name)
        if why is not None:
            raise DlcError(f"pass {name} did not run: {why}")
        ran = ", ".join(s.name for s in self.stages)
        raise ArgumentError(f"no stage {name!r} in this pipeline; stages: {ran}")

    def index_text(self) -> str:
        return format_index(self)


# -- running -------------------------------------------------------------------------------
def check_signature(before: Graph, after: Graph) -> None:
    """A pass may not change what callers see: inputs (but consts), outputs, aliases."""
    def interface(g: Graph) -> list[tuple]:
        return [(v.name, v.type, v.role) for v in g.inputs if v.role != "const"]

    if interface(before) != interface(after):
        raise VerifyError(f"the inputs changed from {interface(before)} to {interface(after)}")
    old, new = [v.type for v in before.outputs], [v.type for v in after.outputs]
    if old != new:
        raise VerifyError(f"the outputs changed from {_types(old)} to {_types(new)}")
    if before.aliases != after.aliases:
        raise VerifyError(f"the aliases changed from {before.aliases} to {after.aliases}")


def _types(types) -> str:
    return "(" + ", ".join(str(t) for t in types) + ")"


def run_pass(p: Pass, fn: PassFn, graph: Graph, verify: bool) -> Graph:
    """Run one pass; errors and broken invariants name it."""
    try:
        result = fn(graph)
    except DlcError as e:
        e.args = (f"pass {p.name}: {e}",) + e.args[1:]
        raise
    if not isinstance(result, Graph):
        raise PassError(f"pass {p.name} returned {type(result).__name__}, not a Graph")
    if verify:
        try:
            verify_graph(result)
            check_signature(graph, result)
        except VerifyError as e:
            raise PassError(f"pass {p.name} broke the graph: {e}") from e
    return result


def run_pipeline(graph: Graph, level: str | None = DEFAULT_LEVEL, *,
                 passes: Sequence[str | Pass] | None = None, verify: bool | None = None,
                 dump_dir: str | os.PathLike | None = None, stop_after: str | None = None,
                 keep_text: bool = False, input_name: str = INPUT_STAGE) -> PipelineResult:
    """Run the passes of `level` (or the explicit list `passes`) on `graph`.

    verify: None = on under pytest only. stop_after: the last pass to run. keep_text: keep
    each stage's text (always kept with dump_dir)."""
    names = list(passes) if passes is not None else list(pipeline(level or DEFAULT_LEVEL))
    todo = [get_pass(n) for n in names]
    if stop_after is not None:
        ran = [p.name for p in todo]
        if stop_after not in ran:
            which = f"the {level}" if passes is None else "this"
            raise ArgumentError(f"pass {stop_after!r} is not in {which} pipeline: "
                                f"{', '.join(ran) or 'no passes'}")
        todo = todo[:ran.index(stop_after) + 1]
    verify = verify_by_default() if verify is None else verify
    keep_text = keep_text or dump_dir is not None
    if verify:
        try:
            verify_graph(graph)
        except VerifyError as e:
            raise VerifyError(f"the input of the pass pipeline is invalid: {e}") from e
    result = PipelineResult(level if passes is None else None,
                            [Stage.of(0, input_name, graph, None, keep_text)])
    for p in todo:
        try:
            fn = p.load()
        except PassUnavailable as e:
            if p.name == stop_after:
                raise
            warnings.warn(f"{e}; skipped", RuntimeWarning, stacklevel=2)
            result.skipped.append((p.name, str(e)))
            continue
        start = time.perf_counter()
        graph = run_pass(p, fn, graph, verify)
        seconds = time.perf_counter() - start
        result.stages.append(Stage.of(len(result.stages), p.name, graph, seconds, keep_text))
    if dump_dir is not None:
        write_dump(result, Path(dump_dir))
    return result


def optimize(graph: Graph, level: str = DEFAULT_LEVEL, **options) -> Graph:
    """The graph after the passes of `level` (options as for run_pipeline)."""
    return run_pipeline(graph, level, **options).graph


# -- dumps -----------------------------------------------------------------------------------
INDEX_COLUMNS = ("stage", "pass", "nodes", "kernels", "bytes", "time_ms")


def format_index(result: PipelineResult) -> str:
    """The `index` file: one line per stage, whitespace-separated columns, # comments."""
    rows = [INDEX_COLUMNS]
    for s in result.stages:
        ms = "-" if s.seconds is None else f"{s.seconds * 1e3:.3f}"
        rows.append((f"{s.index:02d}", s.name, str(s.nodes), str(s.kernels), str(s.bytes),
                     ms))
    widths = [max(len(r[i]) for r in rows) for i in range(len(INDEX_COLUMNS))]
    lines = [f"# dlc pass pipeline {result.level or '(custom)'} of "
             f"@{result.stages[0].graph.name}: nodes counts fused bodies' nodes too, "
             f"kernels the top-level nodes, bytes the intermediate values (the arena once "
             f"memory is planned)"]
    for r in rows:
        cells = [c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))]
        lines.append("  ".join(cells).rstrip())
    lines += [f"# skipped {name}: {why}" for name, why in result.skipped]
    return "\n".join(lines) + "\n"


def collect_weights(result: PipelineResult) -> dict[str, np.ndarray]:
    """The data of every param/state/const input of any stage, by name."""
    weights: dict[str, np.ndarray] = {}
    for s in result.stages:
        for v in s.graph.inputs:
            if v.role != "input" and v.data is not None:
                weights.setdefault(v.name, np.asarray(v.data))
    return weights


def write_dump(result: PipelineResult, directory: Path) -> None:
    """NN-name.dlc per stage, the index and the weights, into `directory`."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for s in result.stages:
            atomic_write_text(directory / s.file_name, (s.text or str(s.graph)) + "\n")
        atomic_write_text(directory / INDEX_FILE, format_index(result))
        save_npz(directory / WEIGHTS_FILE, collect_weights(result))
    except OSError as e:
        raise ArgumentError(f"cannot write the dump to {directory}: {e.strerror or e}") \
            from None
