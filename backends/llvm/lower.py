"""Graph -> kernels: the lowering of every top-level node, and where each value lives.

The graph arrives decomposed (composite ops replaced by primitives). Every top-level node
is lowered by the rule for its op in `RULES` (filled by the lower_*.py modules): a
pointwise rule returns a View (the node's elements as expressions of its operands' views),
any other rule emits kernels itself. A node's value is materialized in a buffer, except
index maps (permute, reshape, broadcast_to, slice, flip) whose operands outlive them: those
stay views and their consumers read through them, with no copy.

Buffers live in the caller's arrays (user inputs, outputs), in the Executable's parameter
and state arrays, or in the arena: at the offsets of the memory plan when the graph carries
one for its nodes, else each at its own aligned slice. Temporaries of one node (partial
sums, the pieces of a fused body) and per-thread GEMM packing buffers follow the planned
part of the arena.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from dlc.errors import DlcError
from dlc.ir.graph import Graph, Input, Node, Value
from dlc.ir.groups import is_result, kernel_of, results_of
from dlc.ir.plan import ALIGNMENT, MemoryPlan, reads_in_place
from backends.llvm.codegen import Placement, ProgramSpec
from backends.llvm.loops import Buffer, Kernel
from backends.llvm.schedule import pointwise_kernel
from backends.llvm.views import View, buffer_view

SUPPORTED_DTYPES = ("float32", "float64", "int32", "int64", "bool")

# op name -> rule. A pointwise rule: (node, views) -> View. A kernel rule:
# (lowering, node, views, out Buffer) -> None, emitting kernels with lowering.emit.
POINTWISE: dict[str, Callable] = {}
KERNELS: dict[str, Callable] = {}
# index maps whose value can stay a view of their operand
VIEW_OPS = {"permute", "reshape", "broadcast_to", "slice", "flip", "full"}


def aligned(n: int, alignment: int = ALIGNMENT) -> int:
    return -(-n // alignment) * alignment


def rule_for(op: str):
    return POINTWISE.get(op) or KERNELS.get(op)


@dataclass
class Program:
    """The lowered graph: what the code generator compiles and the Executable binds."""
    spec: ProgramSpec
    arena_bytes: int
    n_inputs: int
    n_params: int
    param_names: list
    # output index -> ("node", None) computed in place, ("copy", j) copy of output j,
    # ("input", name) a graph input passed through
    output_sources: dict = field(default_factory=dict)
    inplace: dict = field(default_factory=dict)       # output index -> param name
    kernel_nodes: list = field(default_factory=list)  # kernel index -> Node (errors)
    # position in graph.nodes -> the buffer of a materialized top-level value
    node_buffers: dict = field(default_factory=dict)
    # weights packed once for the GEMMs that read them (prepacked_b): the arena's bytes
    # [start, stop) that must read zero again whenever one of these params changes
    prepack_bytes: tuple = (0, 0)
    prepacked_params: list = field(default_factory=list)


class Lowering:
    """State of lowering one graph: buffers, views, kernels, placements."""

    def __init__(self, graph: Graph, threads: int, plan: MemoryPlan | None,
                 prepack: bool = True):
        self.graph, self.threads, self.plan = graph, threads, plan
        # weights are packed once per Executable only where no step of the graph updates
        # them (inference) and the caller zeroes the arena first (the JIT; not a bundle)
        self.prepack = prepack and not graph.aliases
        self.prepacked: list = []       # (Buffer, bytes) regions after the thread scratch
        self.prepacked_params: set = set()
        self.param_of: dict = {}        # Buffer -> the param/state/const input's name
        self.kernels: list[Kernel] = []
        self.kernel_nodes: list = []
        self.placements: dict = {}
        self.views: dict = {}           # Value -> View
        self.buffers: dict = {}         # Value -> Buffer (materialized values)
        self.current: Node | None = None
        self.scratch_used = 0           # bytes of node temporaries, reset per node
        self.scratch_peak = 0
        self.thread_scratch = 0         # per-thread bytes (max over kernels)
        self.scratch_buffers: list = []  # (Buffer, offset in the scratch area)
        self.loss_kernel: int | None = None
        self.roots: dict = {}           # id(view node) -> the value its view reads
        self.node_buffers: dict = {}    # node position -> Buffer
        self.lifetimes: _Lifetimes | None = None

    def source_survives(self, root: Value, view: Node) -> bool:
        """Whether `root` keeps its value until every reader of `view` has run."""
        return self.lifetimes is not None and self.lifetimes.survives(root, view)

    # -- buffers -------------------------------------------------------------------------
    def buffer(self, name: str, dtype: str, shape) -> Buffer:
        return Buffer(_symbol(name), dtype, tuple(shape))

    def scratch(self, name: str, dtype: str, shape) -> Buffer:
        """A temporary for the current node, in the arena after the planned values."""
        buf = self.buffer(name, dtype, shape)
        nbytes = aligned(max(buf.size, 1) * _itemsize(dtype))
        self.scratch_buffers.append((buf, self.scratch_used))
        self.scratch_used += nbytes
        self.scratch_peak = max(self.scratch_peak, self.scratch_used)
        return buf

    def constant(self, name: str, data) -> Buffer:
        """A read-only table computed while lowering (a convolution's window offsets): a
        global of the module, so AOT bundles carry it too."""
        buf = self.buffer(name, data.dtype.name, data.shape)
        self.placements[buf] = Placement("const", len(self.placements), data)
        return buf

    def prepacked_b(self, name: str, nbytes: int, reads: list) -> Buffer | None:
        """A region of the arena that keeps a GEMM's packed B from call to call, when B
        reads only params (`reads`: the buffers it loads) and prepacking is on; else None.
        The region starts zeroed and is zeroed again when one of those params changes."""
        if not self.prepack or not reads or any(b not in self.param_of for b in reads):
            return None
        buf = self.buffer(name, "bool", (nbytes,))
        self.prepacked.append((buf, nbytes))
        self.prepacked_params.update(self.param_of[b] for b in reads)
        return buf

    def need_thread_scratch(self, nbytes: int) -> Buffer:
        """The per-thread scratch area (each thread uses its own `nbytes` slice)."""
        self.thread_scratch = max(self.thread_scratch, aligned(nbytes))
        return THREAD_SCRATCH

    def may_overlap(self, a: Buffer, b: Buffer) -> bool:
        """Whether two buffers can share memory (same caller array, or arena ranges that
        intersect; node temporaries never overlap anything)."""
        if a is b:
            return True
        pa, pb = self.placements.get(a), self.placements.get(b)
        if pa is None or pb is None:
            return False
        if pa.kind != pb.kind:
            return False
        if pa.kind != "arena":
            return pa.where == pb.where
        size_a = max(a.size * _itemsize(a.dtype), 1)
        size_b = max(b.size * _itemsize(b.dtype), 1)
        return pa.where < pb.where + size_b and pb.where < pa.where + size_a

    def view(self, v: Value) -> View:
        return self.views[v]

    # -- kernels -------------------------------------------------------------------------
    def emit(self, kernel: Kernel | None) -> None:
        if kernel is None:
            return
        node = self.current
        kernel.name = f"k{len(self.kernels)}.{kernel.name}"
        if node is not None and not kernel.origin:
            kernel.origin = origin(node)
        self.kernels.append(kernel)
        self.kernel_nodes.append(node)

    def kernel_name(self, node: Node) -> str:
        return _symbol(node.attrs.get("name") if node.body is not None else node.op.name)


THREAD_SCRATCH = Buffer("thread_scratch", "bool", (0,))


def origin(node: Node) -> str:
    name = node.attrs.get("name", node.op.name) if node.body is not None else node.op.name
    return f"{name} {node.where()}"


def _symbol(name: str) -> str:
    return "".join(c if c.isalnum() or c in "_." else "_" for c in str(name))


def _itemsize(dtype: str) -> int:
    return {"float32": 4, "float64": 8, "int32": 4, "int64": 8, "bool": 1}[dtype]


# -- the driver --------------------------------------------------------------------------------
def check_dtypes(graph: Graph) -> None:
    for v in list(graph.inputs) + [n for n in graph.walk()]:
        if v.type.dtype not in SUPPORTED_DTYPES:
            where = v.where() if isinstance(v, Node) else f"input {v.name!r}"
            raise DlcError(f"the llvm backend does not support dtype {v.type.dtype} "
                           f"({where}); supported: {', '.join(SUPPORTED_DTYPES)}")


def lower_graph(graph: Graph, threads: int, plan: MemoryPlan | None,
                prepack: bool = True) -> Program:
    """Lower a decomposed graph; `plan` (when given) was made for exactly this graph.
    `prepack`: GEMMs may keep weights packed in the arena between calls (the caller zeroes
    Program.prepack_bytes first and whenever those params change)."""
    check_dtypes(graph)
    lw = Lowering(graph, threads, plan, prepack)
    inputs = [v for v in graph.inputs if v.role == "input"]
    params = [v for v in graph.inputs if v.role != "input"]
    for k, v in enumerate(inputs):
        _bind_input(lw, v, Placement("input", k))
    for k, v in enumerate(params):
        _bind_input(lw, v, Placement("param", k))
        lw.param_of[lw.buffers[v]] = v.name
    outputs = _output_slots(graph)
    inplace = _inplace_outputs(graph, plan)
    order = plan.schedule if plan is not None and plan.schedule else range(len(graph.nodes))
    if plan is not None:
        lw.lifetimes = _Lifetimes(graph, plan, outputs)
    offsets = dict(plan.offsets) if plan is not None else {}
    own_offset = plan.arena_bytes if plan is not None else 0
    consumers = _consumers(graph)
    position = {id(n): i for i, n in enumerate(graph.nodes)}
    results = results_of(graph.nodes)

    def place(pos: int, node: Node) -> Buffer:
        """The buffer of a top-level value: an output array, a param updated in place, or
        its planned (else its own) slice of the arena."""
        nonlocal own_offset
        out = lw.buffer(f"v{pos}", node.type.dtype, node.type.shape)
        if id(node) in outputs:
            j = outputs[id(node)]
            if j in inplace and graph.meta.get("train_step") and lw.loss_kernel is None \
                    and node is not graph.outputs[0]:
                del inplace[j]  # written before the loss is known: copy after the call
            lw.placements[out] = (Placement("param", params.index(graph.input(inplace[j])))
                                  if j in inplace else Placement("output", j))
        else:
            if pos not in offsets:
                offsets[pos] = own_offset
                own_offset += aligned(node.type.nbytes)
            lw.placements[out] = Placement("arena", offsets[pos])
        lw.buffers[node] = out
        lw.node_buffers[pos] = out
        lw.views[node] = buffer_view(out)
        return out

    for pos in order:
        node = graph.nodes[pos]
        if is_result(node):
            continue  # placed and written with its fused node
        lw.current = node
        lw.scratch_used = 0
        if id(node) not in outputs and not consumers.get(id(node)):
            continue  # nothing reads it
        views = [lw.view(v) for v in node.inputs]
        if _stays_view(lw, node, outputs):
            lw.views[node] = POINTWISE[node.op.name](node, views)
            continue
        out = place(pos, node)
        extra = [place(position[id(r)], r) for r in
                 sorted(results.get(node, ()), key=lambda r: r.attrs["index"])]
        _lower_node(lw, node, views, out, extra)
        if graph.meta.get("train_step") and graph.outputs and node is graph.outputs[0]:
            lw.loss_kernel = len(lw.kernels) - 1
    arena = aligned(max([own_offset] + [o + aligned(graph.nodes[p].type.nbytes)
                                        for p, o in offsets.items()] + [0]))
    return _program(lw, graph, inputs, params, outputs, inplace, arena)


def _bind_input(lw: Lowering, v: Input, place: Placement) -> None:
    buf = lw.buffer(v.name, v.type.dtype, v.type.shape)
    lw.placements[buf] = place
    lw.buffers[v] = buf
    lw.views[v] = buffer_view(buf)


def _output_slots(graph: Graph) -> dict:
    """id(node) -> the first output index it is; later repeats are copied."""
    slots: dict = {}
    for j, v in enumerate(graph.outputs):
        if isinstance(v, Node) and id(v) not in slots:
            slots[id(v)] = j
    return slots


def _inplace_outputs(graph: Graph, plan: MemoryPlan | None) -> dict:
    """Aliased outputs the plan allows to be written straight into their param/state."""
    if plan is None:
        return {}
    out = {}
    for j, name in plan.inplace.items():
        v = graph.outputs[j]
        if isinstance(v, Node) and graph.aliases.get(j) == name:
            out[j] = name
    return out


def _consumers(graph: Graph) -> dict:
    users: dict = {}
    for n in graph.nodes:
        for v in n.inputs:
            users.setdefault(id(v), []).append(n)
    return users


def _stays_view(lw: Lowering, node: Node, outputs: dict) -> bool:
    """An index map whose source is not overwritten before its last reader runs: then its
    readers read through it and nothing is copied (a GEMM packs a transposed weight or
    activation straight from the source)."""
    if node.op.name not in VIEW_OPS or node.body is not None or id(node) in outputs:
        return False
    if not node.inputs:  # a source (full): recomputed where it is read
        return True
    src = node.inputs[0]
    root = lw.roots.get(id(src), src)
    if lw.plan is None or lw.source_survives(root, node):
        lw.roots[id(node)] = root
        return True
    return False


class _Lifetimes:
    """When each value is read and overwritten under the memory plan, for deciding whether
    a view may read its source later than the plan assumed (the source's last reader in
    the plan is the view node itself)."""

    def __init__(self, graph: Graph, plan: MemoryPlan, outputs: dict):
        order = plan.schedule if plan.schedule else range(len(graph.nodes))
        self.step = {id(graph.nodes[p]): k for k, p in enumerate(order)}
        self.readers: dict = {}
        for n in graph.nodes:
            for v in n.inputs:
                self.readers.setdefault(id(v), []).append(n)
        # arena writes: (step, start, end) of every planned value
        self.writes = sorted((self.step[id(kernel_of(graph.nodes[p]))], o,
                              o + graph.nodes[p].type.nbytes)
                             for p, o in plan.offsets.items())
        # param/state updated in place -> step of the node that writes it
        self.updated = {}
        for j, name in plan.inplace.items():
            v = graph.outputs[j]
            if isinstance(v, Node) and id(v) in outputs:
                self.updated[name] = min(self.updated.get(name, len(self.step)),
                                         self.step[id(kernel_of(v))])
        self.offsets = {id(graph.nodes[p]): o for p, o in plan.offsets.items()}

    def last_read(self, node: Node) -> int | None:
        """The last step that reads `node`, following readers that are index maps (they may
        become views themselves); None when a reader would read it with strides no vector
        load covers and is not a matmul operand (the GEMM's packing absorbs strides)."""
        last = self.step[id(node)]
        for r in self.readers.get(id(node), ()):
            if r.op.name in VIEW_OPS and r.body is None:
                step = self.last_read(r)
            else:
                step = self.step[id(r)] if reads_in_place(r, node) else None
            if step is None:
                return None
            last = max(last, step)
        return last

    def survives(self, root: Value, view: Node) -> bool:
        begin, end = self.step[id(view)], self.last_read(view)
        if end is None:
            return False
        if isinstance(root, Input):
            writer = self.updated.get(root.name)
            return writer is None or writer > end
        start = self.offsets.get(id(root))
        if start is None:  # an output array or a value of its own: never reused
            return True
        stop = start + root.type.nbytes
        return not any(begin < step <= end and lo < stop and start < hi
                       for step, lo, hi in self.writes)


def _lower_node(lw: Lowering, node: Node, views: list, out: Buffer,
                extra: list = ()) -> None:
    """Emit the kernels of `node` writing `out` (and `extra`, the buffers of a fused
    node's outputs 1.., when it has several)."""
    if node.body is not None:
        from backends.llvm.lower_fused import lower_fused
        lower_fused(lw, node, views, out, extra)
        return
    name = node.op.name
    if name in KERNELS:
        KERNELS[name](lw, node, views, out)
    elif name in POINTWISE:
        view = POINTWISE[name](node, views)
        lw.emit(pointwise_kernel(lw.kernel_name(node), out, view, lw.threads))
    else:
        raise DlcError(f"the llvm backend cannot lower op {name!r} ({node.where()})")


def _program(lw: Lowering, graph: Graph, inputs, params, outputs, inplace,
             arena: int) -> Program:
    scratch_base = aligned(arena)
    for buf, offset in lw.scratch_buffers:
        lw.placements[buf] = Placement("arena", scratch_base + offset)
    thread_base = aligned(scratch_base + lw.scratch_peak)
    lw.placements[THREAD_SCRATCH] = Placement("arena", thread_base)
    total = thread_base + lw.thread_scratch * lw.threads
    prepack_start = total = aligned(total)
    for buf, nbytes in lw.prepacked:
        lw.placements[buf] = Placement("arena", total)
        total += aligned(nbytes)
    sources = {}
    first: dict = {}
    for j, v in enumerate(graph.outputs):
        if isinstance(v, Input):
            sources[j] = ("input", v.name)
        elif outputs.get(id(v)) == j:
            sources[j] = ("node", None)
        else:
            sources[j] = ("copy", first.setdefault(id(v), outputs.get(id(v), j)))
    _mark_noalias(lw)
    loss_checks = {}
    if lw.loss_kernel is not None and inplace:
        loss_checks[lw.loss_kernel] = lw.buffers[graph.outputs[0]]
    spec = ProgramSpec(graph.name, lw.kernels, lw.placements, lw.threads, loss_checks,
                       thread_base, lw.thread_scratch)
    return Program(spec, total, len(inputs), len(params), [p.name for p in params], sources,
                   inplace, lw.kernel_nodes, lw.node_buffers, (prepack_start, total),
                   sorted(lw.prepacked_params))


def _mark_noalias(lw: Lowering) -> None:
    """Per kernel, the buffers whose memory no other buffer of the kernel overlaps (an
    in-place plan puts an output where one of its inputs was)."""
    from backends.llvm.codegen import kernel_buffers

    def extent(buf):
        p = lw.placements[buf]
        if p.kind == "arena":
            return ("arena", p.where, p.where + max(buf.size * _itemsize(buf.dtype), 1))
        return (p.kind, p.where, p.where + 1)

    for k in lw.kernels:
        bufs = kernel_buffers(k)
        spans = [extent(b) for b in bufs]
        distinct = set()
        for b, (kind, lo, hi) in zip(bufs, spans):
            if b is THREAD_SCRATCH:
                continue
            if not any(o is not b and okind == kind and olo < hi and lo < ohi
                       for o, (okind, olo, ohi) in zip(bufs, spans)):
                distinct.add(b)
        k.extra["noalias"] = distinct


# the rule tables are filled by these modules
from backends.llvm import lower_elementwise, lower_movement, lower_reduction  # noqa: E402,F401
from backends.llvm import lower_contraction  # noqa: E402,F401
