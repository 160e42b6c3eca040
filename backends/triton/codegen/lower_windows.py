"""Lowerings of the window ops: the pools, max_pool_argmax, and the pools' gradients.

Each output element reduces its own window, so these are pointwise ops with an inner loop
over the window's taps (tap 0 before the loop gives the accumulators their shape):

- max_pool / avg_pool / adaptive_avg_pool: taps of the output's window in the input;
  positions outside the input are masked out of the loads (max_pool reads them as -inf,
  avg_pool as 0, with torch's divisor rules: the eager reference's formulas);
- max_pool_argmax: the first maximum's flat spatial index in tap order (a NaN takes over),
  -1 for a window with no element of x;
- avg_pool_grad / adaptive_avg_pool_grad: gathered instead of scattered. Input position i
  sums g / divisor over the windows that contain it: for avg_pool the taps t with
  (i + pad - t) a multiple of the stride, for adaptive pooling the windows o in
  [floor(i out / size), ceil((i + 1) out / size)).
"""
from __future__ import annotations

import math
from typing import Callable

from dlc.ir.graph import Node
from backends.triton.codegen.builder import KernelBuilder, is_literal


NEG_INF = 'float("-inf")'


def _cond(kb: KernelBuilder, terms: list[tuple[str, str, int]]) -> str | None:
    """The conjunction of `a op b` terms (b an int); terms on literals are decided now.
    None: always true."""
    parts = []
    for a, op, b in terms:
        if is_literal(a):
            if not {">=": int(a) >= b, "<": int(a) < b, "<=": int(a) <= b}[op]:
                return "tl.full((), 0, tl.int1)"
            continue
        parts.append(f"({a} {op} {b})")
    return kb.conj(parts)


def _taps(kb: KernelBuilder, extent: tuple[int, ...], first: Callable, step: Callable) -> None:
    """first(taps) for tap 0 (literal indices), then step(taps) for each further tap."""
    first(tuple("0" for _ in extent))
    total = math.prod(extent)
    if total > 1:
        t = kb.fresh("tap")
        with kb.loop(f"for {t} in range(1, {total}):"):
            step(kb.delinearize(t, extent))


def _masked(inside: str | None, v: str, fill: str) -> str:
    return v if inside is None else f"tl.where({inside}, {v}, {fill})"


def _int64(expr: str) -> str:
    return f"tl.full((), {expr}, tl.int64)" if is_literal(expr) else f"{expr}.to(tl.int64)"


# -- forward pools -------------------------------------------------------------------------------
def _pool_window(kb: KernelBuilder, node: Node, idx, mask, taps):
    """x at `taps` of output idx's (strided, dilated, padded) window: (value, inside, flat
    spatial position of the tap in x)."""
    a, sizes, out = node.attrs, node.inputs[0].shape[2:], node.shape[2:]
    dilation = a.get("dilation", (1,) * len(sizes))
    pos, terms = [], []
    for d, t in enumerate(taps):
        p = kb.add(kb.add(kb.mul(idx[2 + d], a["stride"][d]), str(-a["padding"][d])),
                   kb.mul(t, dilation[d]))
        pos.append(p)
        if a["padding"][d] > 0:
            terms.append((p, ">=", 0))
        last = ((out[d] - 1) * a["stride"][d] - a["padding"][d]
                + (a["kernel"][d] - 1) * dilation[d])
        if last >= sizes[d]:
            terms.append((p, "<", sizes[d]))
    inside = _cond(kb, terms)
    v = kb.value(node.inputs[0], tuple(idx[:2]) + tuple(pos), kb.both(mask, inside))
    return v, inside, kb.linearize(pos, sizes)


def _max_pool(kb, node, idx, mask):
    acc = kb.fresh("acc")

    def first(taps):
        v, inside, _ = _pool_window(kb, node, idx, mask, taps)
        kb.assign(acc, _masked(inside, v, NEG_INF))

    def step(taps):
        v, inside, _ = _pool_window(kb, node, idx, mask, taps)
        kb.assign(acc, f"dlc_max_nan({acc}, {_masked(inside, v, NEG_INF)})")
    _taps(kb, node.attrs["kernel"], first, step)
    return acc


def _max_pool_argmax(kb, node, idx, mask):
    best, arg = kb.fresh("acc"), kb.fresh("arg")

    def first(taps):
        v, inside, flat = _pool_window(kb, node, idx, mask, taps)
        kb.assign(best, _masked(inside, v, NEG_INF))
        kb.assign(arg, _masked(inside, _int64(flat), "-1"))

    def step(taps):  # the eager reference's rule: greater, or NaN, or nothing taken yet
        v, inside, flat = _pool_window(kb, node, idx, mask, taps)
        take = f"({v} > {best}) | ({v} != {v}) | ({arg} < 0)"
        take = kb.let(f"({take}) & {inside}" if inside else take, "b")
        kb.assign(best, f"tl.where({take}, {v}, {best})")
        kb.assign(arg, f"tl.where({take}, {_int64(flat)}, {arg})")
    _taps(kb, node.attrs["kernel"], first, step)
    return arg


def _avg_divisor(kb: KernelBuilder, attrs: dict, sizes, outs) -> str:
    """torch's element count of window `outs` (an output index), a product over axes."""
    total = "1"
    for d, (size, o) in enumerate(zip(sizes, outs)):
        k, s, p = attrs["kernel"][d], attrs["stride"][d], attrs["padding"][d]
        start = kb.add(kb.mul(o, s), str(-p))
        end = kb.let(f"tl.minimum({start} + {k}, {size + p})", "i") \
            if not is_literal(start) else str(min(int(start) + k, size + p))
        if not attrs["count_include_pad"]:
            start = str(max(int(start), 0)) if is_literal(start) else \
                kb.let(f"tl.maximum({start}, 0)", "i")
            end = str(min(int(end), size)) if is_literal(end) else \
                kb.let(f"tl.minimum({end}, {size})", "i")
        count = kb.let(f"tl.maximum({end} - {start}, 1)", "i") \
            if not (is_literal(start) and is_literal(end)) else str(max(int(end) - int(start), 1))
        total = kb.let(f"{total} * {count}", "i") if total != "1" else count
    return total


def _divide(kb: KernelBuilder, acc: str, count: str) -> str:
    if is_literal(count):
        return kb.let(f"{acc} / {float(count)!r}", "v")
    return kb.let(f"{acc} / {count}.to({acc}.dtype)", "v")


def _avg_pool(kb, node, idx, mask):
    acc = kb.fresh("acc")

    def first(taps):
        v, inside, _ = _pool_window(kb, node, idx, mask, taps)
        kb.assign(acc, _masked(inside, v, "0.0"))

    def step(taps):
        v, inside, _ = _pool_window(kb, node, idx, mask, taps)
        kb.assign(acc, f"{acc} + {_masked(inside, v, '0.0')}")
    _taps(kb, node.attrs["kernel"], first, step)
    return _divide(kb, acc, _avg_divisor(kb, node.attrs, node.inputs[0].shape[2:], idx[2:]))


# -- adaptive windows ----------------------------------------------------------------------------
def _ceil_div(kb: KernelBuilder, a: str, b: int) -> str:
    return kb.div(kb.add(a, str(b - 1)), b)


def adaptive_span(size: int, out: int) -> int:
    """The longest adaptive window: [floor(i size / out), ceil((i+1) size / out))."""
    return max(-((-(i + 1) * size) // out) - (i * size) // out for i in range(out))


def _adaptive_bounds(kb, o: str, size: int, out: int) -> tuple[str, str]:
    return kb.div(kb.mul(o, size), out), _ceil_div(kb, kb.mul(kb.add(o, "1"), size), out)


def _adaptive_count(kb, outs, sizes, counts) -> str:
    total = "1"
    for o, size, out in zip(outs, sizes, counts):
        start, end = _adaptive_bounds(kb, o, size, out)
        c = kb.sub(end, start)
        total = c if total == "1" else kb.let(f"{total} * {c}", "i")
    return total


def _adaptive_avg_pool(kb, node, idx, mask):
    sizes, outs = node.inputs[0].shape[2:], node.attrs["output_size"]
    bounds = [_adaptive_bounds(kb, o, s, n) for o, s, n in zip(idx[2:], sizes, outs)]
    acc = kb.fresh("acc")

    def window(taps):
        pos = [kb.add(start, t) for (start, _), t in zip(bounds, taps)]
        inside = _cond(kb, [(kb.sub(p, end), "<", 0)
                            for p, (_, end), s, n in zip(pos, bounds, sizes, outs)
                            if adaptive_span(s, n) > 1])
        v = kb.value(node.inputs[0], tuple(idx[:2]) + tuple(pos), kb.both(mask, inside))
        return _masked(inside, v, "0.0")

    spans = tuple(adaptive_span(s, n) for s, n in zip(sizes, outs))
    _taps(kb, spans, lambda t: kb.assign(acc, window(t)),
          lambda t: kb.assign(acc, f"{acc} + {window(t)}"))
    return _divide(kb, acc, _adaptive_count(kb, idx[2:], sizes, outs))


# -- gradients of the pools ----------------------------------------------------------------------
def _avg_pool_grad(kb, node, idx, mask):
    a, g = node.attrs, node.inputs[0]
    outs, sizes = g.shape[2:], a["input_size"]
    acc = kb.fresh("acc")

    def share(taps):
        window, terms = [], []
        for d, t in enumerate(taps):  # the window o with o * stride - pad + t == i
            q = kb.sub(kb.add(idx[2 + d], str(a["padding"][d])), t)
            terms.append((q, ">=", 0))
            safe = kb.let(f"tl.maximum({q}, 0)", "i") if not is_literal(q) else \
                str(max(int(q), 0))
            s = a["stride"][d]
            if s > 1:
                terms.append((kb.mod(safe, s), "<=", 0))
            o = kb.div(safe, s)
            terms.append((o, "<", outs[d]))
            window.append(o)
        inside = _cond(kb, terms)
        v = kb.value(g, tuple(idx[:2]) + tuple(window), kb.both(mask, inside))
        part = _divide(kb, v, _avg_divisor(kb, a, sizes, window))
        return _masked(inside, part, "0.0")

    _taps(kb, a["kernel"], lambda t: kb.assign(acc, share(t)),
          lambda t: kb.assign(acc, f"{acc} + {share(t)}"))
    return acc


def _adaptive_avg_pool_grad(kb, node, idx, mask):
    g, sizes = node.inputs[0], node.attrs["input_size"]
    outs = g.shape[2:]
    first_o = [kb.div(kb.mul(i, n), s) for i, s, n in zip(idx[2:], sizes, outs)]
    last_o = [kb.sub(_ceil_div(kb, kb.mul(kb.add(i, "1"), n), s), "1")
              for i, s, n in zip(idx[2:], sizes, outs)]
    spans = tuple(max(-(-((i + 1) * n) // s) - (i * n) // s for i in range(s))
                  for s, n in zip(sizes, outs))
    acc = kb.fresh("acc")

    def share(taps):
        window = [kb.add(f, t) for f, t in zip(first_o, taps)]
        inside = _cond(kb, [(kb.sub(o, last), "<=", 0) for o, last, span
                            in zip(window, last_o, spans) if span > 1])
        v = kb.value(g, tuple(idx[:2]) + tuple(window), kb.both(mask, inside))
        part = _divide(kb, v, _adaptive_count(kb, window, sizes, outs))
        return _masked(inside, part, "0.0")

    _taps(kb, spans, lambda t: kb.assign(acc, share(t)),
          lambda t: kb.assign(acc, f"{acc} + {share(t)}"))
    return acc


LOWERING = {"max_pool": _max_pool, "avg_pool": _avg_pool,
            "adaptive_avg_pool": _adaptive_avg_pool, "max_pool_argmax": _max_pool_argmax,
            "avg_pool_grad": _avg_pool_grad, "adaptive_avg_pool_grad": _adaptive_avg_pool_grad}
