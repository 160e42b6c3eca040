"""The C interface of an ahead-of-time bundle: its layout and the LLVM IR of its functions.

A bundle's code is the graph's module (one internal entry `dlc_main`, see codegen.py) plus
these exported functions, each prefixed with the bundle's name:

    int32_t NAME_run(const void *const *inputs, void *const *outputs, void *weights,
                     void *arena);
    const char *NAME_error_string(int32_t status);
    const char *NAME_error_origin(const void *arena);
    void *NAME_embedded_weights(void);
    int32_t NAME_abi_version(void);

`NAME_run` checks its pointers, lays the parameters out of the one weights block, calls
`dlc_main`, and after a successful call moves the updated parameters and optimizer state
of a training step into the weights block. The arena holds, after the memory plan's bytes,
the error slots (`err` of dlc_main) and one slot per updated parameter that the code
cannot write in place (it must not touch a parameter before the loss is known finite).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import llvmlite.ir as ir
import numpy as np

from dlc.errors import DlcError
from dlc.ir.graph import Graph
from dlc.ir.plan import aligned
from backends.llvm.codegen import ENTRY, ERR_SLOTS, NONFINITE
from backends.llvm.irutil import I1, I8, I32, I64, IR, PTR, VOID
from backends.llvm.lower import Program, origin

ABI_VERSION = 1
ALIGNMENT = 64
MAX_RANK = 8
# status codes: kernels report 1..15 (codegen), the C interface its own from 16 on
INDEX_ERROR = 1
ERR_NULL = 16
ERR_ALIGNMENT = 17
ERR_WEIGHTS_FILE = 18  # reported by NAME_load_weights, in the header
STATUS = {
    0: ("OK", "ok"),
    INDEX_ERROR: ("ERR_INDEX", "an index is out of range (see NAME_error_origin for the "
                               "kernel)"),
    NONFINITE: ("ERR_NONFINITE", "the loss is NaN or Inf: the parameters were not updated"),
    ERR_NULL: ("ERR_NULL", "a NULL pointer was passed for an input, output, the weights or "
                           "the arena"),
    ERR_ALIGNMENT: ("ERR_ALIGNMENT", "the arena or the weights are not 64-byte aligned"),
    ERR_WEIGHTS_FILE: ("ERR_WEIGHTS_FILE", "the weights file cannot be read or is not "
                                           "exactly the size of the weights block"),
}
DTYPE_CODES = {"float32": 0, "float64": 1, "int32": 2, "int64": 3, "bool": 4}
ITEMSIZE = {"float32": 4, "float64": 8, "int32": 4, "int64": 8, "bool": 1}


class BundleError(DlcError):
    """A graph that cannot become a bundle, or a bundle that cannot be loaded."""


@dataclass
class TensorDesc:
    """One array of the C interface. `offset`: where a parameter sits in the weights."""
    name: str
    dtype: str
    shape: tuple
    offset: int = 0
    role: str = "input"

    @property
    def nbytes(self) -> int:
        n = ITEMSIZE[self.dtype]
        for d in self.shape:
            n *= d
        return n

    def to_json(self) -> dict:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape),
                "bytes": self.nbytes, "offset": self.offset, "role": self.role}

    @classmethod
    def from_json(cls, d: dict) -> "TensorDesc":
        return cls(d["name"], d["dtype"], tuple(d["shape"]), d["offset"], d["role"])


@dataclass
class Layout:
    """Everything the C interface, the header and the loader agree on."""
    name: str
    inputs: list            # TensorDesc per user input, in order
    outputs: list           # TensorDesc per returned (not aliased) output
    params: list            # TensorDesc per param/state/const input, offsets in weights
    weights_bytes: int
    plan_bytes: int         # the program's own arena
    err_offset: int         # arena offset of the ERR_SLOTS int64 error slots
    arena_bytes: int
    origins: list           # kernel index -> "op or group, layer, file:line"
    train_step: bool = False
    # graph output index -> how NAME_run produces it:
    #   ("inplace", ("param", k)): dlc_main writes parameter k itself;
    #   (kind, src, (target, k), staging): kind "node" (dlc_main computes it), "copy" (of
    #   graph output src) or "input" (graph input src passed through); target "output"
    #   (the caller's returned output k) or "param" (parameter k, updated after a
    #   successful call from `staging`, an arena offset)
    moves: dict = field(default_factory=dict)

    @property
    def updates_weights(self) -> bool:
        """Whether a call writes parameters or state (a training step does)."""
        return any(m[0] == "inplace" or m[2][0] == "param" for m in self.moves.values())


def layout_of(graph: Graph, program: Program, name: str) -> Layout:
    """The C interface of a lowered graph."""
    for v in list(graph.inputs) + list(graph.outputs):
        if len(v.type.shape) > MAX_RANK:
            raise BundleError(f"a bundle's arrays have at most {MAX_RANK} dimensions; "
                              f"{getattr(v, 'name', 'an output')} has {len(v.type.shape)}")
    inputs = [TensorDesc(v.name, v.type.dtype, v.type.shape)
              for v in graph.inputs if v.role == "input"]
    params, offset = [], 0
    for v in graph.inputs:
        if v.role != "input":
            params.append(TensorDesc(v.name, v.type.dtype, v.type.shape, offset, v.role))
            offset += aligned(params[-1].nbytes, ALIGNMENT)
    returned = [j for j in range(len(graph.outputs)) if j not in graph.aliases]
    outputs = [TensorDesc(f"output{r}", graph.outputs[j].type.dtype,
                          graph.outputs[j].type.shape, role="output")
               for r, j in enumerate(returned)]
    plan_bytes = aligned(program.arena_bytes, ALIGNMENT)
    err_offset = plan_bytes
    scratch = aligned(err_offset + 8 * ERR_SLOTS, ALIGNMENT)
    moves = {}
    index = {p.name: k for k, p in enumerate(params)}
    for j, (kind, src) in program.output_sources.items():
        if j in graph.aliases:
            target = ("param", index[graph.aliases[j]])
            if kind == "node" and j in program.inplace:
                moves[j] = ("inplace", target)
                continue
            moves[j] = (kind, src, target, scratch)
            scratch = aligned(scratch + graph.outputs[j].type.nbytes, ALIGNMENT)
        else:
            moves[j] = (kind, src, ("output", returned.index(j)), None)
    origins = [origin(node) if node is not None else "kernel"
               for node in program.kernel_nodes]
    return Layout(name, inputs, outputs, params, offset, plan_bytes, err_offset,
                  max(scratch, ALIGNMENT), origins, bool(graph.meta.get("train_step")),
                  moves)


# -- LLVM IR of the exported functions ---------------------------------------------------------
def add_c_interface(module: ir.Module, layout: Layout, embedded: bool) -> None:
    """Make `dlc_main` internal and add the exported functions of the C interface."""
    main = module.globals[ENTRY]
    main.linkage = "internal"
    weights = _weights_symbol(module, layout) if embedded else None
    if weights is not None:
        weights.global_constant = not layout.updates_weights
    _run_function(module, layout, main, weights)
    _error_string_function(module, layout)
    _error_origin_function(module, layout)
    _embedded_function(module, layout, weights)
    fn = _function(module, f"{layout.name}_abi_version", I32, [])
    ir.IRBuilder(fn.append_basic_block("entry")).ret(I32(ABI_VERSION))


def weights_symbol(name: str) -> str:
    return f"{name}_weights_data"


def _weights_symbol(module: ir.Module, layout: Layout) -> ir.GlobalVariable:
    """The embedded weights: declared here, defined by a module linked in after the
    optimizer ran (so that it never looks into megabytes of constants)."""
    gv = ir.GlobalVariable(module, ir.ArrayType(I8, max(layout.weights_bytes, 1)),
                           weights_symbol(layout.name))
    gv.align = ALIGNMENT
    return gv


def _function(module: ir.Module, name: str, ret, args) -> ir.Function:
    fn = ir.Function(module, ir.FunctionType(ret, args), name)
    fn.linkage = "external"
    return fn


class _Emitter:
    """Helpers for the body of NAME_run."""

    def __init__(self, module: ir.Module, fn: ir.Function):
        self.module, self.fn = module, fn
        self.b = ir.IRBuilder(fn.append_basic_block("entry"))
        self.m = IR(module, self.b)
        self.fail = {}

    def fail_with(self, status: int) -> ir.Block:
        """A block that returns `status` (one per status)."""
        if status not in self.fail:
            block = self.fn.append_basic_block(f"fail{status}")
            ir.IRBuilder(block).ret(I32(status))
            self.fail[status] = block
        return self.fail[status]

    def require(self, ok: ir.Value, status: int) -> None:
        cont = self.fn.append_basic_block("ok")
        self.b.cbranch(ok, cont, self.fail_with(status))
        self.b.position_at_end(cont)

    def not_null(self, p: ir.Value) -> ir.Value:
        return self.b.icmp_unsigned("!=", self.b.ptrtoint(p, I64), I64(0))

    def aligned(self, p: ir.Value) -> ir.Value:
        low = self.b.and_(self.b.ptrtoint(p, I64), I64(ALIGNMENT - 1))
        return self.b.icmp_unsigned("==", low, I64(0))

    def at(self, base: ir.Value, offset: int) -> ir.Value:
        return self.b.gep(base, [I64(offset)], source_etype=I8)

    def slot(self, table: ir.Value, k: int) -> ir.Value:
        return self.b.gep(table, [I64(k)], source_etype=PTR)

    def load_slot(self, table: ir.Value, k: int) -> ir.Value:
        return self.b.load(self.slot(table, k), typ=PTR)

    def memcpy(self, dst: ir.Value, src: ir.Value, nbytes: int) -> None:
        name = "llvm.memcpy.p0.p0.i64"
        fn = self.module.globals.get(name) or ir.Function(
            self.module, ir.FunctionType(VOID, [PTR, PTR, I64, I1]), name)
        self.b.call(fn, [dst, src, I64(nbytes), I1(0)])


def _run_function(module: ir.Module, layout: Layout, main: ir.Function,
                  embedded: ir.GlobalVariable | None) -> None:
    fn = _function(module, f"{layout.name}_run", I32, [PTR] * 4)
    inputs, outputs, weights, arena = fn.args
    for a, n in zip(fn.args, ("inputs", "outputs", "weights", "arena")):
        a.name = n
    e = _Emitter(module, fn)
    b = e.b
    # the pointer tables first: static allocas of the entry block, not dynamic ones
    params = e.m.stack_array(PTR, max(len(layout.params), 1), name="params")
    outs = e.m.stack_array(PTR, max(len(layout.moves), 1), name="outs")
    if embedded is not None:  # NULL weights: the ones inside the library
        weights = b.select(e.not_null(weights), weights, b.bitcast(embedded, PTR))
    for ptr, count in ((inputs, len(layout.inputs)), (outputs, len(layout.outputs)),
                       (weights, len(layout.params))):
        if count:
            e.require(e.not_null(ptr), ERR_NULL)
    e.require(e.not_null(arena), ERR_NULL)
    e.require(e.aligned(arena), ERR_ALIGNMENT)
    if layout.params:
        e.require(e.aligned(weights), ERR_ALIGNMENT)
    for table, count in ((inputs, len(layout.inputs)), (outputs, len(layout.outputs))):
        for k in range(count):
            e.require(e.not_null(e.load_slot(table, k)), ERR_NULL)
    err = e.at(arena, layout.err_offset)
    for i in range(ERR_SLOTS):
        b.store(I64(0), b.gep(err, [I64(i)], source_etype=I64))
    for k, p in enumerate(layout.params):
        b.store(e.at(weights, p.offset), e.slot(params, k))
    where = {}  # graph output -> pointer to its data once dlc_main has run
    for j in sorted(layout.moves):
        where[j] = _output_pointer(e, layout, layout.moves[j], outputs, params, arena)
        b.store(where[j], e.slot(outs, j))
    status = b.call(main, [inputs, outs, params, arena, err])
    done = fn.append_basic_block("done")
    after = fn.append_basic_block("after")
    b.cbranch(b.icmp_signed("==", status, I32(0)), after, done)
    b.position_at_end(after)
    _move_outputs(e, layout, where, inputs, params)
    b.branch(done)
    b.position_at_end(done)
    b.ret(status)


def _output_pointer(e: _Emitter, layout: Layout, move: tuple, outputs, params, arena):
    """Where dlc_main writes a graph output (or where it is copied to afterwards)."""
    if move[0] == "inplace":
        return e.load_slot(params, move[1][1])
    _, _, (kind, k), scratch = move
    if scratch is not None:
        return e.at(arena, scratch)
    return e.load_slot(outputs, k)


def _source_pointer(e: _Emitter, layout: Layout, move: tuple, where: dict, inputs, params):
    kind, src = move[0], move[1]
    if kind == "copy":
        return where[src]
    names = [p.name for p in layout.params]
    if src in names:
        return e.load_slot(params, names.index(src))
    return e.load_slot(inputs, [d.name for d in layout.inputs].index(src))


def _move_outputs(e: _Emitter, layout: Layout, where: dict, inputs, params) -> None:
    """After a successful call: fill copies and pass-through outputs (reading the values
    before any parameter changes), then move updated parameters into the weights."""
    graph_outputs = sorted(layout.moves)
    for j in graph_outputs:
        move = layout.moves[j]
        if move[0] in ("copy", "input"):
            nbytes = _nbytes_of(layout, move)
            e.memcpy(where[j], _source_pointer(e, layout, move, where, inputs, params), nbytes)
    for j in graph_outputs:
        move = layout.moves[j]
        if move[0] != "inplace" and move[2][0] == "param":
            p = layout.params[move[2][1]]
            e.memcpy(e.load_slot(params, move[2][1]), where[j], p.nbytes)


def _nbytes_of(layout: Layout, move: tuple) -> int:
    kind, k = move[2]
    return (layout.params[k] if kind == "param" else layout.outputs[k]).nbytes


def _strings(module: ir.Module, prefix: str, texts: list[str]) -> list[ir.GlobalVariable]:
    out = []
    for i, text in enumerate(texts):
        data = bytearray(text.encode()) + b"\0"
        t = ir.ArrayType(I8, len(data))
        gv = ir.GlobalVariable(module, t, f"{prefix}.{i}")
        gv.initializer = ir.Constant(t, data)
        gv.global_constant = True
        gv.linkage = "private"
        gv.unnamed_addr = True
        out.append(gv)
    return out


def _error_string_function(module: ir.Module, layout: Layout) -> None:
    fn = _function(module, f"{layout.name}_error_string", PTR, [I32])
    codes = sorted(STATUS)
    texts = [STATUS[c][1].replace("NAME", layout.name) for c in codes]
    strings = _strings(module, f"{layout.name}.status", texts + ["unknown status code"])
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    unknown = fn.append_basic_block("unknown")
    switch = b.switch(fn.args[0], unknown)
    for code, gv in zip(codes, strings):
        block = fn.append_basic_block(f"status{code}")
        switch.add_case(I32(code), block)
        ir.IRBuilder(block).ret(b.bitcast(gv, PTR))
    ir.IRBuilder(unknown).ret(b.bitcast(strings[-1], PTR))


def _error_origin_function(module: ir.Module, layout: Layout) -> None:
    """The kernel that failed (err[ERR_SLOTS-1]), '' when the last call did not fail."""
    fn = _function(module, f"{layout.name}_error_origin", PTR, [PTR])
    strings = _strings(module, f"{layout.name}.origin", layout.origins + [""])
    table_t = ir.ArrayType(PTR, len(strings))
    table = ir.GlobalVariable(module, table_t, f"{layout.name}.origins")
    table.initializer = ir.Constant(table_t, [gv.bitcast(PTR) for gv in strings])
    table.global_constant = True
    table.linkage = "private"
    e = _Emitter(module, fn)
    b = e.b
    empty = len(strings) - 1
    arena = fn.args[0]
    result = b.alloca(I64)
    b.store(I64(empty), result)
    with b.if_then(e.not_null(arena)):
        err = e.at(arena, layout.err_offset)
        code = b.load(b.gep(err, [I64(0)], source_etype=I64), typ=I64)
        k = b.load(b.gep(err, [I64(ERR_SLOTS - 1)], source_etype=I64), typ=I64)
        valid = b.and_(b.icmp_signed("!=", code, I64(0)),
                       b.icmp_unsigned("<", k, I64(len(layout.origins))))
        b.store(b.select(valid, k, I64(empty)), result)
    index = b.load(result, typ=I64)
    b.ret(b.load(b.gep(table, [I64(0), index], source_etype=table_t), typ=PTR))


def _embedded_function(module: ir.Module, layout: Layout, weights) -> None:
    fn = _function(module, f"{layout.name}_embedded_weights", PTR, [])
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    b.ret(b.bitcast(weights, PTR) if weights is not None else ir.Constant(PTR, None))


def weights_module_text(name: str, data: bytes, writable: bool) -> str:
    """LLVM IR of a module that defines the embedded weights (raw little-endian bytes),
    every byte written as a \\XX escape."""
    kind = "global" if writable else "constant"
    raw = np.frombuffer(data or b"\0", dtype=np.uint8)
    digits = np.frombuffer(b"0123456789ABCDEF", dtype=np.uint8)
    text = np.empty((raw.size, 3), dtype=np.uint8)
    text[:, 0] = ord("\\")
    text[:, 1] = digits[raw >> 4]
    text[:, 2] = digits[raw & 15]
    return (f'@{weights_symbol(name)} = {kind} [{raw.size} x i8] c"'
            + text.tobytes().decode("ascii") + f'", align {ALIGNMENT}\n')
