"""The launcher: runs a Program's kernels in order on torch tensors that view one arena.

Built once per Executable: the arena (checked against the device's free memory) and a view
of it for every intermediate, the error flags of checked indices, and the kernels' launch
arguments. A call binds the graph inputs, allocates the outputs, launches every kernel in
schedule order, and raises if a kernel flagged an out-of-range index.
"""
from __future__ import annotations

import contextlib
import math

from dlc.errors import DlcError
from dlc.ir.graph import Graph
from dlc.ir.groups import kernel_of
from backends.triton import memory
from backends.triton.options import TritonOptions
from backends.triton.program import BufferRef, Kernel, Program

TORCH_DTYPES = ("float16", "bfloat16", "float32", "float64", "int32", "int64", "bool")


class KernelError(DlcError):
    """A generated kernel failed to compile or launch."""


def torch_dtype(name: str):
    import torch
    return getattr(torch, name)


def _ordered(program: Program, plan) -> list[Kernel]:
    """Kernels in the memory plan's schedule order when there is one, else graph order."""
    if plan is None or not plan.schedule:
        return list(program.kernels)
    rank = {pos: k for k, pos in enumerate(plan.schedule)}
    return sorted(program.kernels, key=lambda k: rank.get(k.node, len(rank)))


_BLAS: list = []


def _single_blas_thread():
    """The interpreter's tl.dot is a numpy matmul per tile; with torch's OpenMP threads
    alive, OpenBLAS's own threads thrash a small machine (a 64x64 tile then costs ~50 ms
    instead of 0.1 ms), so interpreted runs use one BLAS thread when threadpoolctl is there."""
    if not _BLAS:
        try:
            from threadpoolctl import ThreadpoolController
            _BLAS.append(ThreadpoolController())  # scanning the loaded libraries is slow
        except ImportError:
            _BLAS.append(None)
    if _BLAS[0] is None:
        return contextlib.nullcontext()
    return _BLAS[0].limit(limits=1, user_api="blas")


def _fn_line(path: str, fn: str) -> int:
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            if line.startswith(f"def {fn}("):
                return lineno
    return 1


class Launcher:
    def __init__(self, graph: Graph, program: Program, module, path: str,
                 options: TritonOptions):
        import torch
        self.torch = torch
        self.graph, self.program, self.module, self.path = graph, program, module, path
        self.device = torch.device(options.device)
        plan = graph.meta.get("memory_plan")
        self.kernels = _ordered(program, plan)
        self.layout = memory.layout(graph, program, self.kernels, plan)
        memory.check_fits(self.layout.total_bytes, options.device,
                          f"the arena of @{graph.name} ({len(self.kernels)} kernels)")
        self.arena = torch.empty(self.layout.total_bytes, dtype=torch.uint8, device=self.device)
        # slot 0 is where lanes with a good index write; site k has slots 1 + 2k, 2 + 2k
        self.errors = torch.zeros(1 + 2 * len(program.sites), dtype=torch.int64,
                                  device=self.device)
        self.output_nodes = {k for k, n in enumerate(graph.nodes)
                             if any(n is o for o in graph.outputs)}
        self.views: dict[tuple, object] = {}
        self.launched: set[str] = set()
        self.interpret = options.interpret
        self.positions = {id(n): k for k, n in enumerate(graph.nodes)}
        self.inplace, self.guard = self._inplace_writes(plan)

    def _inplace_writes(self, plan) -> tuple[dict[int, int], int | None]:
        """The memory plan's in-place updates: node position -> graph input index whose
        tensor that node's value is written into, and the kernel step before which the loss
        is checked.

        A training step must leave its parameters intact when the loss is NaN, so only the
        updates scheduled after the loss is computed are written in place (the run stops
        before the first of them if the loss is not finite); the others are computed into
        new tensors that replace the stored ones. A result node's value is written by its
        fused node's kernel, so that kernel's step is what counts."""
        if plan is None or not plan.inplace:
            return {}, None
        graph, writes = self.graph, {}
        for i, name in plan.inplace.items():
            pos = self.positions.get(id(graph.outputs[i]))
            k = graph.inputs.index(graph.input(name))
            if pos is not None and self.program.output_storage[i] == \
                    self.program.input_storage[k]:
                writes[pos] = k
        if not writes or not graph.meta.get("train_step"):
            return writes, None
        first = {}
        for s, kern in enumerate(self.kernels):
            first.setdefault(kern.node, s)
        loss = self._writer(graph.outputs[0])
        done = max((s for s, kern in enumerate(self.kernels) if kern.node == loss), default=None)
        if done is None:
            return {}, None
        step = {pos: first.get(self._writer(graph.nodes[pos])) for pos in writes}
        writes = {pos: k for pos, k in writes.items() if step[pos] is not None and
                  step[pos] > done}
        return writes, (min(step[pos] for pos in writes) if writes else None)

    def _writer(self, value) -> int | None:
        """Position of the node whose kernels write `value` (None for a graph input)."""
        if id(value) not in self.positions:
            return None
        return self.positions[id(kernel_of(value))]

    # -- buffers ---------------------------------------------------------------------------
    def _view(self, offset: int, ref: BufferRef):
        flat = self.arena[offset:offset + ref.nbytes].view(torch_dtype(ref.dtype))
        return flat.view(ref.shape)

    def _static(self, ref: BufferRef):
        """The arena view (or error buffer) a non-input, non-output ref resolves to."""
        key = (ref.kind, ref.key)
        if key not in self.views:
            if ref.kind == "error":
                self.views[key] = self.errors
            elif ref.kind == "scratch":
                offset = self.layout.scratch_base + self.program.scratch_offsets[ref.key]
                self.views[key] = self._view(offset, ref)
            else:
                self.views[key] = self._view(self.layout.offsets[ref.key], ref)
        return self.views[key]

    def _resolve(self, ref: BufferRef, inputs: list, outputs: dict):
        if ref.kind == "input":
            return inputs[ref.key]
        if ref.kind == "node" and ref.key in outputs:
            return outputs[ref.key]
        return self._static(ref)

    # -- running ---------------------------------------------------------------------------
    def run(self, inputs: list) -> list:
        """inputs: one device tensor per graph input. Returns one tensor per graph output."""
        torch = self.torch
        outputs = {pos: inputs[k] for pos, k in self.inplace.items()}
        for v, dtype in zip(self.graph.outputs, self.program.output_storage):
            pos = self.positions.get(id(v))
            if pos is not None and pos not in outputs:
                outputs[pos] = torch.empty(v.shape, dtype=torch_dtype(dtype),
                                           device=self.device)
        loss = outputs.get(self.positions.get(id(self.graph.outputs[0])))
        with self._interpreter_context():
            for step, kernel in enumerate(self.kernels):
                if step == self.guard and not bool(torch.isfinite(loss).all()):
                    break  # a NaN loss: stop before the first in-place parameter update
                for launch in kernel.launches:
                    args = [self._resolve(ref, inputs, outputs) for ref in launch.args]
                    self._launch(kernel, launch, args)
        if self.program.sites:
            self._check_indices()
        result = []
        for v in self.graph.outputs:
            if id(v) in self.positions:
                result.append(outputs[self.positions[id(v)]])
            else:
                result.append(inputs[self.graph.inputs.index(v)])
        return result

    def _interpreter_context(self):
        """Under the interpreter: one BLAS thread, and no numpy warnings (inf and NaN in
        lanes a tl.where discards are IEEE arithmetic on a GPU, warnings to numpy)."""
        if not self.interpret:
            return contextlib.nullcontext()
        import numpy as np
        stack = contextlib.ExitStack()
        stack.enter_context(_single_blas_thread())
        stack.enter_context(np.errstate(all="ignore"))
        return stack

    def _grid(self, launch):
        def extent(dim, meta):
            if isinstance(dim, int):
                return dim
            return math.prod(-(-e // meta[name]) for e, name in dim)
        if launch.configs:
            return lambda meta: tuple(extent(d, meta) for d in launch.grid)
        return tuple(extent(d, launch.meta) for d in launch.grid)

    def _launch(self, kernel: Kernel, launch, args) -> None:
        fn = getattr(self.module, launch.fn)
        try:
            if launch.configs:
                fn[self._grid(launch)](*args)
            else:
                fn[self._grid(launch)](*args, **launch.meta, num_warps=launch.num_warps)
        except DlcError:
            raise
        except Exception as e:  # a Triton compile error, or a launch the driver refused
            if launch.fn in self.launched:
                raise
            line = _fn_line(self.path, launch.fn)
            raise KernelError(
                f"triton kernel {launch.fn} of group {kernel.group} (ops: "
                f"{', '.join(kernel.ops) or 'copy'}) failed: {type(e).__name__}: {e}\n"
                f"  generated source: {self.path}:{line}") from e
        self.launched.add(launch.fn)

    def _check_indices(self) -> None:
        flags = self.errors.cpu()
        for k, site in enumerate(self.program.sites):
            if int(flags[1 + 2 * k]):
                bad, size = int(flags[2 + 2 * k]), site.size
                self.errors.zero_()
                valid = f"{-size}..{size - 1}" if size else "none: the axis is empty"
                raise DlcError(f"{site.op} {site.where}: index {bad} is out of range for "
                               f"axis {site.axis} of size {size} (valid: {valid})")
