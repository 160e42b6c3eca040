"""Lowering of fused groups (a `fused` node whose body is a graph of primitives).

- pointwise: the body composed into one view, one loop over the output; every
  intermediate value stays in registers.
- contraction: the matmul/conv on the GEMM micro-kernel, the pointwise tail of the body
  as its epilogue, applied to the accumulators before the one store.
- reduction: one row kernel when every reduction of the body reduces the same axes of the
  same domain (softmax, layer_norm, ...): a loop over the kept axes; inside, each reduction
  in turn (later ones may use earlier results, held in registers), then the output row.
- anything else (and opaque groups): the body op by op, intermediates in scratch memory.
"""
from __future__ import annotations

from dlc.ir.graph import Node
from dlc.ops.registry import CONTRACTION, REDUCTION
from backends.llvm.exprgen import MATH_OPS
from backends.llvm.loops import (Const, Kernel, Let, Load, Loop, Op, Reduce, Ref, Store, Var,
                                 contains, flat_index, fresh, has_op, nest, replace,
                                 stmt_exprs, walk_exprs, walk_stmts)
from backends.llvm.lower import KERNELS, POINTWISE, Lowering
from backends.llvm.lower_reduction import reduce_element
from backends.llvm.schedule import finish_nest, index_vars, pointwise_kernel
from backends.llvm.views import View, buffer_view, checks


class NotARowKernel(Exception):
    """The body does not have the shape of a row kernel; lower it op by op."""


def lower_fused(lw: Lowering, node: Node, views: list, out, extra: list = ()) -> None:
    """`extra`: the buffers of outputs 1.. of a multi-output group (its result nodes')."""
    kind = node.attrs.get("kind", "opaque")
    body = node.body
    name = lw.kernel_name(node)
    if extra:
        outs = [out] + list(extra)
        if kind == "pointwise" and _all_pointwise(body):
            lw.emit(_multi_pointwise_kernel(name, outs, _compose_all(body, views), lw.threads))
        else:
            _op_by_op(lw, node, views, outs)
        return
    if kind == "pointwise" and _all_pointwise(body):
        view = _compose(body, views)
        lw.emit(pointwise_kernel(name, out, view, lw.threads))
        return
    if kind == "contraction" and _contraction_shape(body):
        _contraction(lw, node, views, out, name)
        return
    if kind == "reduction":
        try:
            lw.emit(_row_kernel(lw, node, views, out, name))
            return
        except NotARowKernel:
            pass
    _op_by_op(lw, node, views, out)


def _all_pointwise(body) -> bool:
    return all(n.body is None and n.op.name in POINTWISE for n in body.nodes)


def _compose(body, views: list, env: dict | None = None) -> View:
    """The view of the body's output, every node a view of its operands."""
    return _compose_all(body, views, env)[0]


def _compose_all(body, views: list, env: dict | None = None) -> list[View]:
    """The views of every output of the body."""
    env = dict(env or {})
    env.update(zip(body.inputs, views))
    for n in body.nodes:
        if n not in env:
            env[n] = POINTWISE[n.op.name](n, [env[v] for v in n.inputs])
    return [env[v] for v in body.outputs]


def _multi_pointwise_kernel(name: str, outs: list, views: list, threads: int) -> Kernel:
    """One loop over the shared domain storing every output. Each element's values are all
    computed before any is stored: an output planned over an input (an in-place update)
    must not change what the other outputs read at that element."""
    shape = outs[0].shape
    index, loops = index_vars(shape)
    flat = flat_index(index, shape)
    with checks() as found:
        values = [v.at(index) for v in views]
    names = [fresh("out") for _ in outs]
    body = found + [Let(n, v) for n, v in zip(names, values)] + \
        [Store(buf, flat, Ref(n, v.dtype)) for buf, n, v in zip(outs, names, values)]
    size = max(outs[0].size, 1)
    return Kernel(name, finish_nest(nest(loops, body), size, threads), "",
                  can_fail=bool(found))


# -- contraction + epilogue ----------------------------------------------------------------------
def _contraction_shape(body) -> bool:
    if not body.nodes or body.nodes[0].op.kind is not CONTRACTION:
        return False
    head = body.nodes[0]
    return all(n.op.name in POINTWISE for n in body.nodes[1:]) and \
        body.outputs[0].type.shape == head.type.shape and head.op.name in KERNELS and \
        all(v in body.inputs for v in head.inputs)


def _contraction(lw: Lowering, node: Node, views: list, out, name: str) -> None:
    body = node.body
    head = body.nodes[0]
    bound = dict(zip(body.inputs, views))

    def epilogue(index, acc):
        env = dict(bound)
        env[head] = View(head.type.shape, head.type.dtype, lambda idx: acc)
        return _compose(body, views, env).at(index)

    rule = KERNELS[head.op.name]
    rule(lw, head, [bound[v] for v in head.inputs], out, epilogue=epilogue, name=name)


# -- row kernels -------------------------------------------------------------------------------
def _reduced_axes(n: Node) -> tuple:
    if n.op.name in ("argmax", "argmin"):
        return (n.attrs["axis"],) if n.inputs[0].type.ndim else ()
    return tuple(n.attrs["axes"])


def _row_kernel(lw: Lowering, node: Node, views: list, out, name: str) -> Kernel | None:
    body = node.body
    reductions = [n for n in body.nodes if n.op.kind is REDUCTION]
    if not reductions or any(n.body is not None for n in body.nodes):
        raise NotARowKernel
    domain = reductions[0].inputs[0].type.shape
    axes = _reduced_axes(reductions[0])
    if any(n.inputs[0].type.shape != domain or _reduced_axes(n) != axes for n in reductions):
        raise NotARowKernel
    if any(n.op.kind is not REDUCTION and n.op.name not in POINTWISE for n in body.nodes):
        raise NotARowKernel
    out_shape = node.type.shape
    kept = [a for a in range(len(domain)) if a not in axes]
    full_output = out_shape == domain
    if not full_output and out_shape not in (_reduced(domain, axes, True),
                                             _reduced(domain, axes, False)):
        raise NotARowKernel
    if out.size == 0:
        return None
    kvars = {a: (fresh("k"), domain[a]) for a in kept if domain[a] > 1}
    kidx = {a: Var(kvars[a][0]) if a in kvars else Const(0) for a in kept}
    # one variable per reduced axis, shared by every reduction and the output loop: the
    # same element reads the same expression in each pass
    rnames = {a: fresh("r") for a in axes if domain[a] > 1}
    env = dict(zip(body.inputs, views))
    stmts: list = []
    with checks() as found:
        for n in body.nodes:
            if n.op.kind is REDUCTION:
                env[n] = _reduction_row(n, env[n.inputs[0]], kidx, axes, rnames, stmts)
            else:
                env[n] = POINTWISE[n.op.name](n, [env[v] for v in n.inputs])
        result = env[body.outputs[0]]
        tail = _row_output(result, out, out_shape, domain, axes, kidx, rnames, full_output)
    _relax_softmax_max(stmts, tail)
    if full_output:
        _stash(lw, stmts, tail, out, views)
    inner_kept = bool(kept) and kept[-1] == len(domain) - 1 and domain[-1] > 1
    loops = [kvars[a] for a in kept if a in kvars]
    body_stmts = found + stmts + tail
    work = 1
    for d in domain:
        work *= d
    nested = finish_nest(nest(loops, body_stmts), work, lw.threads,
                         vector_inner=inner_kept) if loops else body_stmts
    if not inner_kept:
        _vectorize_row_stores(nested)
    return Kernel(name, nested, can_fail=bool(found))


def _relax_softmax_max(stmts: list, tail: list) -> None:
    """A row max read only as the shift of exp(x - max) inside a row sum the output reads
    (softmax, log_softmax): a NaN in x makes that sum, hence every output of the row, NaN
    whatever the max is, so the max needs no NaN bookkeeping (one vmaxps per vector, not
    four instructions)."""
    lets = {s.name: s for s in stmts if isinstance(s, Let)}
    sums = [s for s in stmts if isinstance(s, Reduce) and s.op == "sum"]
    out_exprs = [e for st in walk_stmts(tail) if isinstance(st, Store)
                 for e in walk_exprs(st.value)]
    for red in [s for s in stmts if isinstance(s, Reduce) and s.op == "max"
                and s.dtype.startswith("float") and s.stash is None]:
        row = next((let for let in lets.values() if let.value is Ref(red.name, red.dtype)),
                   None)
        if row is None:
            continue
        ref = Ref(row.name, red.dtype)
        shift = Op("sub", (red.value, ref), red.dtype)
        uses = [e for st in stmts + tail for e in _stmt_exprs_deep(st)
                if isinstance(e, Op) and ref in e.args]
        if not uses or any(e is not shift for e in uses):
            continue
        exp_shift = Op("exp", (shift,), red.dtype)
        feeding = [s for s in sums if contains(s.value, exp_shift)]
        if any(Ref(s.name, s.dtype) in out_exprs or any(
                isinstance(e, Ref) and e.name in lets and contains(lets[e.name].value,
                                                                   Ref(s.name, s.dtype))
                for e in out_exprs) for s in feeding):
            red.op = "max_nan_free"


def _stmt_exprs_deep(st) -> list:
    found = []
    for s in walk_stmts([st]):
        for e in stmt_exprs(s):
            found.extend(walk_exprs(e))
    return found


def _stash(lw: Lowering, stmts: list, tail: list, out, views: list) -> None:
    """When the output pass recomputes the value a reduction pass summed (softmax's
    exp(x - max)), let that pass store it in the output and the output pass read it."""
    store = next(s for s in walk_stmts(tail) if isinstance(s, Store))
    if any(lw.may_overlap(out, v.buf) for v in views if v.buf is not None):
        return  # the output shares memory with an input the passes still read
    for s in reversed(stmts):
        if isinstance(s, Reduce) and s.op == "sum" and s.dtype == out.dtype and \
                has_op([Let("_", s.value)], MATH_OPS) and contains(store.value, s.value):
            s.stash = (out, store.index)
            store.value = replace(store.value, s.value, Load(out, store.index))
            return


def _reduced(shape, axes, keepdims: bool) -> tuple:
    if keepdims:
        return tuple(1 if a in axes else d for a, d in enumerate(shape))
    return tuple(d for a, d in enumerate(shape) if a not in axes)


def _reduction_row(n: Node, x: View, kidx: dict, axes, rnames: dict, stmts: list) -> View:
    """Emit the reduction for the current row; its view reads the result register."""
    keepdims = n.attrs["keepdims"]
    domain = x.shape
    out_index = [kidx[a] if a not in axes else Const(0) for a in range(len(domain))
                 if keepdims or a not in axes]
    red_stmts, value = reduce_element(n, x, out_index, rnames)
    stmts.extend(red_stmts)
    name = fresh("row")
    stmts.append(Let(name, value))
    ref = Ref(name, n.type.dtype)

    def at(index):
        if len(index) != len(out_index) or any(i is not o for i, o in zip(index, out_index)):
            raise NotARowKernel  # read at another row: not a row kernel
        return ref
    return View(n.type.shape, n.type.dtype, at)


def _row_output(result: View, out, out_shape, domain, axes, kidx, rnames: dict,
                full: bool) -> list:
    if not full:
        index = [kidx[a] if a not in axes else Const(0) for a in range(len(domain))
                 if len(out_shape) == len(domain) or a not in axes]
        return [Store(out, flat_index(index, out_shape), result.at(index))]
    index = [Var(rnames[a]) if a in rnames else Const(0) if a in axes else kidx[a]
             for a in range(len(domain))]
    store = Store(out, flat_index(index, domain), result.at(index))
    return nest([(rnames[a], domain[a]) for a in axes if a in rnames], [store])


def _vectorize_row_stores(body: list) -> None:
    """Mark the innermost loop of each row's output store as a vector loop."""
    for s in body:
        if isinstance(s, Loop):
            inner = [t for t in s.body if isinstance(t, Loop)]
            if not inner and any(isinstance(t, Store) for t in s.body):
                s.vector = s.extent > 1
            else:
                _vectorize_row_stores(s.body)


# -- op by op ------------------------------------------------------------------------------------
def _op_by_op(lw: Lowering, node: Node, views: list, out) -> None:
    """The body node by node; `out` is the output buffer, or one per output."""
    from backends.llvm.lower import _lower_node
    body = node.body
    outs = out if isinstance(out, list) else [out]
    env = dict(zip(body.inputs, views))
    target = {}  # body value -> the output buffer it is computed into (its first output)
    for v, buf in zip(body.outputs, outs):
        target.setdefault(v, buf)
    for n in body.nodes:
        ins = [env[v] for v in n.inputs]
        if n not in target and n.body is None and n.op.name in POINTWISE and \
                n.op.name in ("broadcast_to", "reshape", "permute", "slice", "flip"):
            env[n] = POINTWISE[n.op.name](n, ins)
            continue
        buf = target.get(n) or lw.scratch(f"{node.attrs.get('name', 'fused')}.t",
                                          n.type.dtype, n.type.shape)
        _lower_node(lw, n, ins, buf)
        env[n] = buffer_view(buf)
    for v, buf in zip(body.outputs, outs):
        if v in body.inputs or target[v] is not buf:  # an argument or a repeated value
            lw.emit(pointwise_kernel(lw.kernel_name(node), buf, env[v], lw.threads))

