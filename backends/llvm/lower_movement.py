"""Lowering rules of the movement ops: index maps as views (reshape, permute, broadcast_to,
slice, pad, flip, upsample_nearest, take, gather), concat as one copy per operand, and
scatter_add as a copy followed by a serial accumulation. Integer indices are checked at run
time against NumPy's range [-n, n), with the eager backend's error message."""
from __future__ import annotations

from dlc.ir.graph import Node
from backends.llvm.loops import (INDEX, Const, Expr, Kernel, Load, Store, Var, flat_index,
                                 fresh, iadd, ifloordiv, imul, isub, nest, unflatten)
from backends.llvm.lower import KERNELS, POINTWISE
from backends.llvm.schedule import finish_nest, pointwise_kernel
from backends.llvm.views import (View, broadcast_view, cast, checks, cmp, const, imax, imin,
                                 op, require, select)

INDEX_OUT_OF_RANGE = 1


def _view(node: Node, at) -> View:
    return View(node.type.shape, node.type.dtype, at)


def _non_unit(shape) -> list[int]:
    return [a for a, d in enumerate(shape) if d != 1]


def reshape_groups(src: tuple, dst: tuple) -> list[tuple[list[int], list[int]]] | None:
    """The axes of a reshape in groups (source axes, destination axes) of equal size,
    each as small as possible: (128, 8, 256) -> (128, 8, 4, 64) is [0]-[0], [1]-[1],
    [2]-[2, 3]. None when a size is 0 (every index is out of range anyway)."""
    if 0 in src or 0 in dst:
        return None
    groups, i, j = [], 0, 0
    while i < len(src) or j < len(dst):
        sa, da, ps, pd = [], [], 1, 1
        while True:
            if ps <= pd and i < len(src) and (not sa or ps < pd or src[i] == 1):
                ps *= src[i]
                sa.append(i)
                i += 1
            elif j < len(dst) and (not da or pd < ps or dst[j] == 1):
                pd *= dst[j]
                da.append(j)
                j += 1
            else:
                break
        groups.append((sa, da))
    return groups


def reshape_view(x: View, shape: tuple) -> View:
    """x read under a reshape. Each group of axes of equal size maps on its own, so a
    split or merge of axes keeps the other axes' indices as they are (a head split of a
    sliced projection stays affine: no division appears where none is needed)."""
    shape = tuple(shape)
    if x.buf is not None:  # contiguous: the same flat index
        buf = x.buf
        return View(shape, x.dtype, lambda index: Load(buf, flat_index(index, shape)), buf)
    groups = reshape_groups(x.shape, shape)
    if groups is None:
        return View(shape, x.dtype, lambda index: x.at(unflatten(flat_index(index, shape),
                                                                 x.shape)))

    def at(index):
        full: list[Expr] = [Const(0)] * x.ndim
        for sa, da in groups:
            flat = flat_index([index[b] for b in da], [shape[b] for b in da])
            wide = [a for a in sa if x.shape[a] != 1]  # size-1 axes read index 0
            for a, part in zip(wide, unflatten(flat, [x.shape[a] for a in wide])):
                full[a] = part
        return x.at(full)
    return View(shape, x.dtype, at)


def _register(name):
    def deco(fn):
        POINTWISE[name] = fn
        return fn
    return deco


@_register("reshape")
def _reshape(node, views):
    return reshape_view(views[0], node.type.shape)


@_register("permute")
def _permute(node, views):
    (x,), perm = views, node.attrs["perm"]

    def at(index):
        src = [None] * x.ndim
        for out_axis, in_axis in enumerate(perm):
            src[in_axis] = index[out_axis]
        return x.at(src)
    return _view(node, at)


@_register("broadcast_to")
def _broadcast_to(node, views):
    return broadcast_view(views[0], node.type.shape)


@_register("slice")
def _slice(node, views):
    (x,), starts, steps = views, node.attrs["starts"], node.attrs["steps"]
    return _view(node, lambda index: x.at([iadd(s, imul(i, k))
                                           for i, s, k in zip(index, starts, steps)]))


@_register("flip")
def _flip(node, views):
    (x,), axes = views, set(node.attrs["axes"])
    return _view(node, lambda index: x.at([isub(x.shape[a] - 1, i) if a in axes else i
                                           for a, i in enumerate(index)]))


@_register("upsample_nearest")
def _upsample(node, views):
    (x,), scale = views, node.attrs["scale"]
    return _view(node, lambda index: x.at(index[:2] + [ifloordiv(i, s) for i, s in
                                                       zip(index[2:], scale)]))


# -- pad -----------------------------------------------------------------------------------------
def _clamp(i: Expr, size: int) -> Expr:
    return imax(imin(i, size - 1), 0)


@_register("pad")
def _pad(node, views):
    (x,), pads, mode = views, node.attrs["pads"], node.attrs["mode"]
    pairs = list(zip(pads[0::2], pads[1::2]))
    if mode == "constant":
        fill = const(node.attrs["value"], x.dtype)

        def at(index):
            src = [isub(i, lo) for i, (lo, _) in zip(index, pairs)]
            inside = None
            for s, size in zip(src, x.shape):
                ok = op("and", cmp("ge", s, Const(0)), cmp("lt", s, Const(size)))
                inside = ok if inside is None else op("and", inside, ok)
            value = x.at([_clamp(s, size) for s, size in zip(src, x.shape)])
            return value if inside is None else select(inside, value, fill)
        return _view(node, at)
    if mode == "reflect":
        def at(index):
            src = []
            for i, (lo, _), size in zip(index, pairs, x.shape):
                s = op("abs", isub(i, lo))
                s = select(cmp("ge", s, Const(size)), isub(2 * (size - 1), s), s)
                src.append(s)
            return x.at(src)
        return _view(node, at)
    if mode == "replicate":
        return _view(node, lambda index: x.at([_clamp(isub(i, lo), size) for i, (lo, _), size
                                               in zip(index, pairs, x.shape)]))
    raise NotImplementedError(f"pad mode {mode}")


# -- take, gather: checked integer indices -------------------------------------------------------
def checked_index(i: Expr, size: int, axis: int) -> Expr:
    """An index in [-size, size) made non-negative; anything else stops the run."""
    i = cast(i, INDEX)
    ok = op("and", cmp("ge", i, Const(-size)), cmp("lt", i, Const(size)))
    require(ok, INDEX_OUT_OF_RANGE, Const(axis), i, Const(size))
    return select(cmp("lt", i, Const(0)), iadd(i, size), i)


@_register("take")
def _take(node, views):
    (x, ind), axis = views, node.attrs["axis"]
    k = ind.ndim

    def at(index):
        i = checked_index(ind.at(index[axis:axis + k]), x.shape[axis], axis)
        return x.at(index[:axis] + [i] + index[axis + k:])
    return _view(node, at)


@_register("gather")
def _gather(node, views):
    (x, ind), axis = views, node.attrs["axis"]

    def at(index):
        i = checked_index(ind.at(index), x.shape[axis], axis)
        return x.at(index[:axis] + [i] + index[axis + 1:])
    return _view(node, at)


# -- concat and scatter_add: kernels -------------------------------------------------------------
def _kernel(name):
    def deco(fn):
        KERNELS[name] = fn
        return fn
    return deco


@_kernel("concat")
def _concat(lw, node, views, out):
    axis, start = node.attrs["axis"], 0
    for k, v in enumerate(views):
        lw.emit(region_kernel(f"{lw.kernel_name(node)}.{k}", out, node.type.shape, v,
                              axis, start, lw.threads))
        start += v.shape[axis]


def region_kernel(name: str, out, out_shape, v: View, axis: int, start: int,
                  threads: int) -> Kernel | None:
    """out[..., start + j, ...] = v[..., j, ...] over v's shape."""
    if v.size == 0:
        return None
    loops = [(fresh("i"), d) for d in v.shape]
    index = [Var(n) if d > 1 else Const(0) for n, d in loops]
    with checks() as found:
        value = v.at(index)
    place = index[:axis] + [iadd(index[axis], start)] + index[axis + 1:]
    body = found + [Store(out, flat_index(place, out_shape), value)]
    body = finish_nest(nest([(n, d) for n, d in loops if d > 1], body), v.size, threads)
    return Kernel(name, body, can_fail=bool(found))


@_kernel("scatter_add")
def _scatter_add(lw, node, views, out):
    x, ind, src = views
    axis = node.attrs["axis"]
    lw.emit(pointwise_kernel(f"{lw.kernel_name(node)}.copy", out, x, lw.threads))
    if ind.size == 0:
        return
    loops = [(fresh("s"), d) for d in ind.shape]
    index = [Var(v) for v, _ in loops]
    with checks() as found:
        i = checked_index(ind.at(index), x.shape[axis], axis)
        where = index[:axis] + [i] + index[axis + 1:]
        target = flat_index(where, x.shape)
        value = op("add", Load(out, target), src.at(index))
    # serial: repeated indices accumulate into the same element
    body = nest(loops, found + [Store(out, target, value)])
    lw.emit(Kernel(f"{lw.kernel_name(node)}.add", body, can_fail=True))
