"""Lowerings of movement ops (index arithmetic), of the source ops (full, arange, the random
stream) and of the index-reading ops (take, gather, one_hot, tril/triu).

A movement op computes nothing: asked for its value at an output index, it asks its input
at the corresponding input index. Padding and concat narrow the mask, so lanes that read
the fill value or another input never load out of bounds. Integer indices read from tensors
(take, gather) are checked: an out-of-range one sets a flag the launcher reports after the
run, and is clamped so the load stays inside the tensor.
"""
from __future__ import annotations

from dlc.ir.graph import Node
from backends.triton.codegen.builder import (TL, KernelBuilder, float_literal, is_float,
                                             reg_dtype)
from backends.triton.codegen.lower_elementwise import literal
from backends.triton.program import IndexSite


def _input(kb: KernelBuilder, node: Node, idx, mask, k: int = 0) -> str:
    return kb.value(node.inputs[k], idx, mask)


def _nonunit(shape) -> list[tuple[int, int]]:
    return [(d, s) for d, s in enumerate(shape) if s != 1]


def reshape_index(kb: KernelBuilder, idx, out_shape, in_shape) -> tuple[str, ...]:
    """Input index of a reshape: axes grouped into runs of equal element count; a run of
    one axis on each side maps directly, others go through the run's flat position."""
    result = ["0"] * len(in_shape)
    outs, ins = _nonunit(out_shape), _nonunit(in_shape)
    i = j = 0
    while i < len(outs) and j < len(ins):
        run_out, run_in = [outs[i]], [ins[j]]
        p_out, p_in = outs[i][1], ins[j][1]
        i, j = i + 1, j + 1
        while p_out != p_in:
            if p_out < p_in:
                run_out.append(outs[i])
                p_out *= outs[i][1]
                i += 1
            else:
                run_in.append(ins[j])
                p_in *= ins[j][1]
                j += 1
        if len(run_out) == 1 and len(run_in) == 1:
            result[run_in[0][0]] = idx[run_out[0][0]]
            continue
        flat = kb.linearize([idx[d] for d, _ in run_out], tuple(s for _, s in run_out))
        parts = kb.delinearize(flat, tuple(s for _, s in run_in))
        for (d, _), part in zip(run_in, parts):
            result[d] = part
    return tuple(result)


def _reshape(kb, node, idx, mask):
    return _input(kb, node, reshape_index(kb, idx, node.shape, node.inputs[0].shape), mask)


def _permute(kb, node, idx, mask):
    src = ["0"] * len(idx)
    for i, p in enumerate(node.attrs["perm"]):
        src[p] = idx[i]
    return _input(kb, node, src, mask)


def _broadcast_to(kb, node, idx, mask):
    from backends.triton.codegen.builder import broadcast_index
    return _input(kb, node, broadcast_index(idx, node.shape, node.inputs[0].shape), mask)


def _slice(kb, node, idx, mask):
    a = node.attrs
    src = [kb.add(str(start), kb.mul(i, step))
           for i, start, step in zip(idx, a["starts"], a["steps"])]
    return _input(kb, node, src, mask)


def _flip(kb, node, idx, mask):
    shape = node.shape
    src = [kb.sub(str(shape[d] - 1), i) if d in node.attrs["axes"] else i
           for d, i in enumerate(idx)]
    return _input(kb, node, src, mask)


def _upsample(kb, node, idx, mask):
    scale = node.attrs["scale"]
    src = list(idx[:2]) + [kb.div(i, s) for i, s in zip(idx[2:], scale)]
    return _input(kb, node, src, mask)


def _pad(kb, node, idx, mask):
    a, x = node.attrs, node.inputs[0]
    pairs = list(zip(a["pads"][0::2], a["pads"][1::2]))
    src, conds = [], []
    for i, size, (lo, hi) in zip(idx, x.shape, pairs):
        t = kb.sub(i, str(lo))
        if a["mode"] == "reflect" and (lo > 0 or hi > 0):
            mag = kb.let(f"tl.abs({t})", "i")
            t = kb.let(f"tl.where({mag} >= {size}, {2 * (size - 1)} - {mag}, {mag})", "i")
        elif a["mode"] == "replicate" and (lo > 0 or hi > 0):
            t = kb.let(f"tl.minimum(tl.maximum({t}, 0), {max(size - 1, 0)})", "i")
        elif a["mode"] == "constant":
            if lo > 0:
                conds.append(f"({t} >= 0)")
            if hi > 0:
                conds.append(f"({t} < {size})")
        src.append(t)
    if not conds:
        return _input(kb, node, src, mask)
    inside = kb.conj(conds)
    val = _input(kb, node, src, kb.both(mask, inside))
    return kb.let(f"tl.where({inside}, {val}, {literal(a['value'], x.dtype)})", "v")


def _concat(kb, node, idx, mask):
    axis = node.attrs["axis"]
    offsets, total = [], 0
    for v in node.inputs:
        offsets.append(total)
        total += v.shape[axis]
    pos = idx[axis]
    out = None
    for k in reversed(range(len(node.inputs))):
        v, start = node.inputs[k], offsets[k]
        if v.shape[axis] == 0:
            continue
        src = list(idx)
        src[axis] = kb.sub(pos, str(start))
        inside = kb.conj([f"({pos} >= {start})", f"({pos} < {start + v.shape[axis]})"])
        val = kb.value(v, src, kb.both(mask, inside))
        out = val if out is None else kb.let(f"tl.where({inside}, {val}, {out})", "v")
    return out


# -- indices read from tensors -----------------------------------------------------------------
def checked_index(kb: KernelBuilder, node: Node, j: str, size: int, axis: int,
                  mask: str | None) -> str:
    """Index j normalized to [0, size); out-of-range lanes flag the error buffer and read 0."""
    neg = kb.let(f"tl.where({j} < 0, {j} + {size}, {j})", "j")
    bad = kb.let(f"({j} < {-size}) | ({j} >= {size})", "bad")
    bad = kb.conj([bad, mask])
    if kb.check_indices:
        site = kb.new_site(IndexSite(node.op.name, axis, size, node.where()))
        # every bad lane writes the flag and its index (any one of them is reported)
        flag, value = 1 + 2 * site, 2 + 2 * site
        if kb.axes_of(bad):
            kb.store(f"err_ptr + {flag}", "tl.full((), 1, tl.int64)", bad)
            kb.store(f"err_ptr + {value}", f"{j}.to(tl.int64)", bad)
        else:  # a 0-d condition (no masked store of it in the interpreter): write slot 0,
            # which nothing reads, when the index is good
            kb.line(f"tl.store(err_ptr + tl.where({bad}, {flag}, 0), tl.full((), 1, tl.int64))")
            kb.line(f"tl.store(err_ptr + tl.where({bad}, {value}, 0), {j}.to(tl.int64))")
    return kb.let(f"tl.where({bad}, 0, {neg})", "j")


def _take(kb, node, idx, mask):
    x, ind = node.inputs
    axis, r = node.attrs["axis"], len(ind.shape)
    j = kb.value(ind, idx[axis:axis + r], mask)
    j = checked_index(kb, node, j, x.shape[axis], axis, mask)
    return kb.value(x, tuple(idx[:axis]) + (j,) + tuple(idx[axis + r:]), mask)


def _gather(kb, node, idx, mask):
    x, ind = node.inputs
    axis = node.attrs["axis"]
    j = checked_index(kb, node, kb.value(ind, idx, mask), x.shape[axis], axis, mask)
    src = list(idx)
    src[axis] = j
    return kb.value(x, src, mask)


def _one_hot(kb, node, idx, mask):
    v = kb.value(node.inputs[0], idx[:-1], mask)
    hit = f"({v} == {idx[-1]})"
    dtype = node.attrs["dtype"]
    return kb.let(hit if dtype == "bool" else f"{hit}.to({TL[reg_dtype(dtype)]})", "v")


def _triangle(keep: str):
    def lower(kb, node, idx, mask):
        x = _input(kb, node, idx, mask)
        cond = f"{idx[-1]} - {idx[-2]} {keep} {node.attrs['k']}"
        return kb.let(f"tl.where({cond}, {x}, tl.zeros_like({x}))", "v")
    return lower


# -- sources -----------------------------------------------------------------------------------
def _full(kb, node, idx, mask):
    return kb.let(literal(node.attrs["value"], node.attrs["dtype"]), "c")


def _rounded(expr: str, dtype: str) -> str:
    """expr converted to dtype, kept in registers as reg_dtype(dtype)."""
    out = f"({expr}).to({TL[dtype]})"
    if dtype != reg_dtype(dtype):
        out += f".to({TL[reg_dtype(dtype)]})"
    return out


def _arange(kb, node, idx, mask):
    a, dtype = node.attrs, node.attrs["dtype"]
    (i,) = idx
    if is_float(dtype):  # start + i * step in float64, rounded once (the reference's rule)
        expr = f"{float_literal(a['start'])} + {float_literal(a['step'])} * {i}.to(tl.float64)"
    else:
        expr = f"{int(a['start'])} + {int(a['step'])} * {i}.to(tl.int64)"
    return kb.let(_rounded(expr, dtype), "v")


def _random_uniform(kb, node, idx, mask):
    seed = kb.value(node.inputs[0], (), None)
    salt = node.attrs["salt"]
    key = ("keys", seed, salt)
    keys = kb.lookup(key)
    if keys is None:
        keys = (kb.fresh("ka"), kb.fresh("kb"))
        kb.line(f"{keys[0]}, {keys[1]} = dlc_stream_keys({seed}, {salt})")
        kb.remember(key, keys)
    flat = kb.linearize(idx, node.shape)
    counter = f"tl.full((), {flat}, tl.uint32)" if flat.isdigit() else f"{flat}.to(tl.uint32)"
    bits = kb.let(f"dlc_random_bits({counter}, {keys[0]}, {keys[1]})", "h")
    return kb.let(f"{bits}.to({TL[node.attrs['dtype']]}) * {2.0 ** -24!r}", "u")


LOWERING = {
    "reshape": _reshape, "permute": _permute, "broadcast_to": _broadcast_to, "slice": _slice,
    "flip": _flip, "upsample_nearest": _upsample, "pad": _pad, "concat": _concat,
    "take": _take, "gather": _gather, "one_hot": _one_hot,
    "tril": _triangle("<="), "triu": _triangle(">="),
    "full": _full, "arange": _arange, "random_uniform": _random_uniform,
}
