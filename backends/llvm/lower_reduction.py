"""Lowering rules of the reductions: sum, mean, prod, max, min, var, argmax, argmin.

`reduce_element(node, x, out_index)` gives the statements and the value of one output
element; the kernel loops over the output and the code generator vectorizes either the
output axis (each lane its own accumulator) or the reduced axis (lane partial results
combined at the end). A reduction to few outputs over many elements is split in two
kernels: chunks of the reduced axis reduced in parallel into a scratch buffer, then the
chunks combined.
"""
from __future__ import annotations

from dlc.ir.graph import Node
from backends.llvm.stmtgen import identity
from backends.llvm.loops import (INDEX, Const, Expr, Load, Reduce, Ref, Var, collapse_reduce,
                                 flat_index, fresh, iadd, imul, substitute)
from backends.llvm.lower import KERNELS, Lowering
from backends.llvm.schedule import reduction_kernel
from backends.llvm.views import View, cast, const, op

# Split the reduced axis across threads when each output element reduces at least this many
# elements and there are fewer outputs than threads to share.
SPLIT_MIN = 1 << 16
CHUNKS_PER_THREAD = 4


def input_index(shape, axes, keepdims: bool, out_index: list,
                names: dict | None = None) -> tuple[list, list]:
    """(index of x for an output index, the reduce loops [(var, extent)]); `names` gives
    the loop variable of each reduced axis (fresh ones by default)."""
    loops, full = [], []
    it = iter(out_index)
    for a, d in enumerate(shape):
        if a in axes:
            if keepdims:
                next(it)
            if d == 1:
                full.append(Const(0))
            else:
                v = names[a] if names else fresh("r")
                loops.append((v, d))
                full.append(Var(v))
        else:
            full.append(next(it))
    return full, loops


def _count(shape, axes) -> int:
    n = 1
    for a in axes:
        n *= shape[a]
    return n


def reduce_element(node: Node, x: View, out_index: list,
                   names: dict | None = None) -> tuple[list, Expr]:
    """Statements and value of one element of a reduction node's output (`names`: the
    loop variable of each reduced axis, see input_index)."""
    name = node.op.name
    dtype = node.type.dtype
    if name in ("argmax", "argmin"):
        axes = (node.attrs["axis"],) if x.ndim else ()
    else:
        axes = node.attrs["axes"]
    full, loops = input_index(x.shape, axes, node.attrs["keepdims"], out_index, names)
    value = x.at(full)
    if name in ("argmax", "argmin"):
        if not loops:
            return [], Const(0)
        r = fresh("acc")
        return [Reduce(r, name, loops, value, INDEX)], Ref(r, INDEX)
    if name == "var":
        return _var(node, value, loops, _count(x.shape, axes))
    op_name = {"mean": "sum"}.get(name, name)
    value = cast(value, dtype)
    if loops:
        r = fresh("acc")
        stmts, total = [Reduce(r, op_name, loops, value, dtype)], Ref(r, dtype)
    else:
        stmts, total = [], value
    if any(x.shape[a] == 0 for a in axes):  # the identity, even if a loop is missing
        total = const(identity(op_name, dtype), dtype)
    if name == "mean":
        total = op("div", total, const(_count(x.shape, axes), dtype))
    return stmts, total


def _var(node: Node, value: Expr, loops: list, n: int) -> tuple[list, Expr]:
    """Two passes: the mean, then the squared deviations (no cancellation)."""
    dtype = node.type.dtype
    first, second = fresh("acc"), fresh("acc")
    mean = op("div", Ref(first, dtype), const(n, dtype))
    dev = op("sub", value, mean)
    stmts = [Reduce(first, "sum", loops, value, dtype),
             Reduce(second, "sum", loops, op("mul", dev, dev), dtype)]
    if not loops:
        stmts = []
        dev = op("sub", value, op("div", value, const(n, dtype)))
        total = op("mul", dev, dev)
    else:
        total = Ref(second, dtype)
    denominator = const(max(n - node.attrs["correction"], 0), dtype)
    return stmts, op("div", total, denominator)


def _lower_reduction(lw: Lowering, node: Node, views: list, out) -> None:
    (x,) = views
    if _split(lw, node, x, out):
        return
    work = max(x.size, out.size)
    lw.emit(reduction_kernel(lw.kernel_name(node), out, node.type.shape,
                             lambda index: reduce_element(node, x, index), work, lw.threads))


for _name in ("sum", "mean", "prod", "max", "min", "var", "argmax", "argmin"):
    KERNELS[_name] = _lower_reduction


# -- splitting a long reduction across threads ---------------------------------------------------
def _split(lw: Lowering, node: Node, x: View, out) -> bool:
    name = node.op.name
    if lw.threads < 2 or name not in ("sum", "mean", "prod", "max", "min"):
        return False
    if out.size >= lw.threads or x.size // max(out.size, 1) < SPLIT_MIN:
        return False
    probe_index = [Var(fresh("o")) for _ in node.type.shape]
    stmts, _ = reduce_element(node, x, probe_index)
    if len(stmts) != 1 or not isinstance(stmts[0], Reduce):
        return False
    red = collapse_reduce(stmts[0])
    (v0, e0), rest = red.loops[0], red.loops[1:]
    chunks = min(lw.threads * CHUNKS_PER_THREAD, e0)
    size = e0 // chunks                      # chunk t covers [t*size, (t+1)*size)
    left = e0 - chunks * size                # the rest is reduced by the final kernel
    dtype, op_name = red.dtype, red.op
    partial = lw.scratch(f"{node.op.name}.partial", dtype, (chunks,) + node.type.shape)

    def at(o, pos):
        env = {p.name: q for p, q in zip(probe_index, o)}
        env[v0] = pos
        return substitute(red.value, env)

    def stage1(index):
        t, o = index[0], index[1:]
        j, acc = fresh("j"), fresh("acc")
        value = at(o, iadd(imul(t, size), Var(j)))
        return [Reduce(acc, op_name, [(j, size)] + rest, value, dtype)], Ref(acc, dtype)

    name1 = f"{lw.kernel_name(node)}.partial"
    lw.emit(reduction_kernel(name1, partial, partial.shape, stage1, x.size, lw.threads))

    def stage2(index):
        t, acc = fresh("t"), fresh("acc")
        value = Load(partial, flat_index([Var(t)] + list(index), partial.shape))
        stmts = [Reduce(acc, op_name, [(t, chunks)], value, dtype)]
        total = Ref(acc, dtype)
        if left:
            k, tail = fresh("k"), fresh("acc")
            stmts.append(Reduce(tail, op_name, [(k, left)] + rest,
                                at(index, iadd(Var(k), chunks * size)), dtype))
            total = op(COMBINE[op_name], total, Ref(tail, dtype))
        if name == "mean":
            total = op("div", total, const(x.size // max(out.size, 1), dtype))
        return stmts, total

    lw.emit(reduction_kernel(lw.kernel_name(node), out, node.type.shape, stage2, out.size,
                             1))
    return True


COMBINE = {"sum": "add", "prod": "mul", "max": "maximum", "min": "minimum"}


__all__ = ["reduce_element", "input_index"]
