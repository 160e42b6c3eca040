"""Contraction kernels: matmul, conv and conv_transpose as tiled GEMMs on tl.dot, with the
group's elementwise epilogue applied to the accumulator before the one store.

Every contraction is C[m, n] = sum_k A[m, k] B[k, n] over a grid of BM x BN tiles (grouped
along M for L2 reuse) and a third grid axis (matmul batch, conv groups). A GemmShape says
what m, n, k mean for the op: for matmul they are the matrix axes; conv is an implicit GEMM
(m = (sample, output pixel), k = (input channel, kernel tap): the A tile is gathered from the
input with the window arithmetic and zero padding as a mask, no im2col buffer);
conv_transpose is the same with the window run backwards (an input pixel contributes where
(o + pad - tap * dilation) is a multiple of the stride). Operands are evaluated like any
value, so a transpose, cast or elementwise producer folds into the tile loads.
"""
from __future__ import annotations

from math import prod

from dlc.ir.graph import Node, Value
from dlc.ops.registry import CONTRACTION
from backends.triton.codegen.builder import (TL, Conflict, KernelBuilder, KernelContext,
                                             broadcast_index, is_float, next_pow2, reg_dtype)
from backends.triton.codegen.common import (GeneratedKernel, GeneratedLaunch, KernelRequest,
                                            cone, function, header, pointer_names)
from backends.triton.codegen.pointwise import autotune_decorator
from backends.triton.codegen.store import store


def is_contraction(node: Node) -> bool:
    return node.op.kind is CONTRACTION and node.body is None


class GemmShape:
    """m, n, k extents of one contraction and the index maps of its operands and output."""

    def __init__(self, node: Node):
        self.node = node
        self.zvar = "pid_z"   # the grid-z (batch or group) index variable

    def operands(self) -> tuple[Value, Value]:
        return self.node.inputs[0], self.node.inputs[1]


class MatmulShape(GemmShape):
    def __init__(self, node: Node):
        super().__init__(node)
        a, b = node.inputs
        self.batch = node.shape[:-2]
        self.m, self.n, self.k = node.shape[-2], node.shape[-1], a.shape[-1]
        self.z = prod(self.batch)

    def _batch(self, kb, v: Value) -> tuple[str, ...]:
        full = kb.delinearize(self.zvar, self.batch)
        return broadcast_index(full, self.batch, v.shape[:-2])

    def a_index(self, kb, rm, rk):
        a = self.node.inputs[0]
        return self._batch(kb, a) + (rm, rk), []

    def b_index(self, kb, rk, rn):
        b = self.node.inputs[1]
        return self._batch(kb, b) + (rk, rn), []

    def out_index(self, kb, rm, rn):
        return kb.delinearize(self.zvar, self.batch) + (rm, rn)


class ConvShape(GemmShape):
    """conv (transposed=False) and conv_transpose as implicit GEMMs, one group per grid z."""

    def __init__(self, node: Node, transposed: bool):
        super().__init__(node)
        x, w = node.inputs
        self.transposed = transposed
        self.groups = node.attrs["groups"]
        self.c_in_g = x.shape[1] // self.groups
        self.c_out_g = w.shape[1] if transposed else w.shape[0] // self.groups
        self.kernel = w.shape[2:]
        self.out_sp = node.shape[2:]
        self.m = node.shape[0] * prod(self.out_sp)
        self.n = self.c_out_g
        self.k = self.c_in_g * prod(self.kernel)
        self.z = self.groups

    def _rows(self, kb, rm):
        n, pix = kb.div(rm, prod(self.out_sp)), kb.mod(rm, prod(self.out_sp))
        return n, kb.delinearize(pix, self.out_sp)

    def _taps(self, kb, rk):
        ci, tap = kb.div(rk, prod(self.kernel)), kb.mod(rk, prod(self.kernel))
        return ci, kb.delinearize(tap, self.kernel)

    def a_index(self, kb, rm, rk):
        x = self.node.inputs[0]
        a = self.node.attrs
        n, outs = self._rows(kb, rm)
        ci, taps = self._taps(kb, rk)
        channel = kb.add(kb.mul("pid_z", self.c_in_g), ci)
        pos, conds = [], []
        for d, (o, t) in enumerate(zip(outs, taps)):
            size, s, p, dil = x.shape[2 + d], a["stride"][d], a["padding"][d], a["dilation"][d]
            if not self.transposed:
                q = kb.add(kb.add(kb.mul(o, s), str(-p)), kb.mul(t, dil))
                conds += [f"({q} >= 0)", f"({q} < {size})"]
                pos.append(q)
                continue
            q = kb.sub(kb.add(o, str(p)), kb.mul(t, dil))
            conds.append(f"({q} >= 0)")
            safe = kb.let(f"tl.where({q} >= 0, {q}, 0)", "i")
            if s > 1:
                conds.append(f"({safe} % {s} == 0)")
            i = kb.div(safe, s)
            conds.append(f"({i} < {size})")
            pos.append(i)
        return (n, channel, *pos), conds

    def b_index(self, kb, rk, rn):
        ci, taps = self._taps(kb, rk)
        if self.transposed:  # w: (C_in, C_out/groups, *kernel)
            return (kb.add(kb.mul("pid_z", self.c_in_g), ci), rn, *taps), []
        return (kb.add(kb.mul("pid_z", self.c_out_g), rn), ci, *taps), []

    def out_index(self, kb, rm, rn):
        n, outs = self._rows(kb, rm)
        return (n, kb.add(kb.mul("pid_z", self.c_out_g), rn), *outs)


SHAPES = {"matmul": MatmulShape, "conv": lambda n: ConvShape(n, False),
          "conv_transpose": lambda n: ConvShape(n, True)}


class GemmKernel(KernelContext):
    def __init__(self, node: Node):
        self.node = node
        self.acc: str | None = None
        self.out_idx: tuple[str, ...] = ()

    def contraction(self, kb: KernelBuilder, node: Node, idx, mask) -> str:
        if node is not self.node or self.acc is None or tuple(idx) != self.out_idx:
            raise Conflict(node, "a contraction this kernel does not compute")
        return self.acc


def choose_contraction(out: Value, nodes: list[Node]) -> Node:
    for n in reversed(nodes):
        if is_contraction(n) and n.shape == out.shape:
            return n
    raise AssertionError("choose_contraction on a cone without a matching contraction")


def _dot_dtype(node: Node, options) -> str:
    dtype = node.inputs[0].dtype
    if dtype == "float16":
        return "float16"
    if dtype == "float32" and options.mixed_precision:
        if options.mixed_precision == "bfloat16" and options.interpret:
            return "float32"  # the interpreter's bf16 dot is unreliable: float32 tiles
        return options.mixed_precision
    return reg_dtype(dtype)


def _tiles(shape: GemmShape, options, integer: bool) -> dict[str, int]:
    """Block sizes of the default config. The interpreter pays per operation, not per
    element, so it gets the largest tiles; BB > 1 packs several small matrices of a batched
    matmul (attention's heads) into one program as a 3-D tile."""
    interp = options.interpret

    def pick(extent: int, limit: int) -> int:
        return max(16, min(next_pow2(extent), limit))
    if integer:
        bm, bn, bk = pick(shape.m, 32), pick(shape.n, 32), 16
    else:
        bm = pick(shape.m, 256 if interp else 64)
        bn = pick(shape.n, 128 if interp else 64)
        bk = pick(shape.k, 64 if interp else 32)
    budget = options.max_tile
    bb = 1
    if isinstance(shape, MatmulShape) and shape.z > 1 and not integer and bm * bn <= 1024:
        bb = max(1, min(next_pow2(shape.z), budget // (bm * max(bn, bk))))
    return {"BB": bb, "BM": bm, "BN": bn, "BK": bk, "GROUP_M": 8}


def _configs(shape: GemmShape, dot: str, bb: int) -> list[dict]:
    """Autotune candidates (Triton's matmul tutorial's set; float32 tiles are smaller)."""
    if bb > 1:  # small batched matrices: the default tile, more or fewer of them per program
        return [{"BB": b, "BM": 16, "BN": 16, "BK": 16, "GROUP_M": 8, "num_stages": 2,
                 "num_warps": 4} for b in sorted({max(1, bb // 4), bb})]
    big = dot in ("float16", "bfloat16")
    rows = ([(128, 256, 64, 3, 8), (256, 128, 64, 3, 8), (128, 128, 64, 4, 4),
             (128, 64, 64, 4, 4), (64, 128, 64, 4, 4), (128, 128, 32, 4, 4),
             (64, 64, 32, 5, 4)] if big else
            [(128, 128, 32, 3, 8), (128, 64, 32, 4, 4), (64, 128, 32, 4, 4),
             (64, 64, 32, 4, 4), (64, 32, 32, 5, 2)])
    return [{"BB": 1, "BM": m, "BN": n, "BK": k, "GROUP_M": 8, "num_stages": s,
             "num_warps": w} for m, n, k, s, w in rows]


class Tile:
    """Names of the tile's index variables: 2-D (BM x BN), or 3-D with a batch block."""

    def __init__(self, batched: bool):
        self.batched = batched
        if batched:
            self.z, self.rm, self.rn, self.rka, self.rkb = "rz", "rm", "rn", "rka", "rkb"
            self.acc_shape = "[BB, BM, BN]"
        else:
            self.z, self.rm, self.rn, self.rka, self.rkb = "pid_z", "rm", "rn", "rka", "rkb"
            self.acc_shape = "[BM, BN]"

    def arange(self, block: str, axis: int) -> str:
        """tl.arange(0, block) laid along tile axis `axis`."""
        rank = 3 if self.batched else 2
        index = ", ".join(":" if a == axis else "None" for a in range(rank))
        return f"tl.arange(0, {block})[{index}]"

    def axis(self, name: str) -> int:
        """Tile axis of rm/rn/rka/rkb (the batch block is axis 0 of a 3-D tile)."""
        lead = 1 if self.batched else 0
        return lead + {"rm": 0, "rkb": 0, "rn": 1, "rka": 1}[name]


def _tile_grid(kb: KernelBuilder, shape: GemmShape, tile: Tile, wide: bool) -> None:
    """pid -> (pid_m, pid_n), grouped GROUP_M tiles at a time along M for L2 reuse; wide:
    int64 indices (a tensor of 2**31 elements or more)."""
    to64 = ".to(tl.int64)" if wide else ""
    kb.line("pid = tl.program_id(0)")
    kb.line(f"num_m = ({shape.m} + BM - 1) // BM")
    kb.line(f"num_n = ({shape.n} + BN - 1) // BN")
    kb.line("width = GROUP_M * num_n")
    kb.line("first_m = (pid // width) * GROUP_M")
    kb.line("size_m = tl.minimum(num_m - first_m, GROUP_M)")
    kb.line("pid_m = first_m + (pid % width) % size_m")
    kb.line("pid_n = (pid % width) // size_m")
    kb.line("pid_z = tl.program_id(1)")
    if tile.batched:
        kb.line(f"rz = pid_z{to64} * BB + {tile.arange('BB', 0)}")
        kb.declare("rz", {0})
    kb.line(f"rm = pid_m{to64} * BM + {tile.arange('BM', tile.axis('rm'))}")
    kb.line(f"rn = pid_n{to64} * BN + {tile.arange('BN', tile.axis('rn'))}")
    kb.declare("rm", {tile.axis("rm")})
    kb.declare("rn", {tile.axis("rn")})


def _bounds(shape: GemmShape, metas: list[dict], tile: Tile) -> dict[str, str | None]:
    """The tile-edge conditions on m, n, k (and the batch block), None where every block
    size tried divides the extent (no edge: unmasked, vectorized loads)."""
    def edge(extent: int, block: str, test: str) -> str | None:
        return None if all(extent % m[block] == 0 for m in metas) else test
    return {"m": edge(shape.m, "BM", f"(rm < {shape.m})"),
            "n": edge(shape.n, "BN", f"(rn < {shape.n})"),
            "k": edge(shape.k, "BK", f"({{k}} < {shape.k})"),
            "z": edge(shape.z, "BB", f"(rz < {shape.z})") if tile.batched else None}


def _operand(kb, v: Value, idx, conds: list[str], bounds: str | None, dot: str,
             integer: bool, full: str | None) -> str:
    """The A or B tile in dot's dtype; full: the 3-D tile shape an operand without the
    batch axis is broadcast to (tl.dot needs equal batch dims)."""
    mask = kb.conj([bounds] + conds)
    param = kb.args.get(v)
    if param is not None and param.dtype == dot:  # stored as dot takes it: load as is
        val = kb.load(param, idx, mask, raw=True)
    else:
        val = kb.value(v, idx, mask)
        if param is None and mask:  # a computed operand: masked lanes hold garbage
            val = kb.let(f"tl.where({mask}, {val}, {'0' if integer else '0.0'})", "a")
        if not integer and dot != reg_dtype(v.dtype):
            val = kb.let(f"{val}.to({TL[dot]})", "a")
    if full and 0 not in kb.axes_of(val):
        val = kb.let(f"tl.broadcast_to({val}, {full})", "a", axes={0, 1, 2})
    return val


def _accumulate(kb, a: str, b: str, dot: str, integer: bool, options) -> None:
    if integer:  # no integer tensor-core path for int32/int64: multiply and sum
        kb.assign("acc", f"acc + tl.sum({a}[:, :, None] * {b}[None, :, :], axis=1)")
    elif dot == "float64":
        kb.assign("acc", f"tl.dot({a}, {b}, acc)")
    else:
        precision = "tf32" if options.allow_tf32 and dot == "float32" else "ieee"
        extra = f', input_precision="{precision}"' if dot == "float32" else ""
        kb.assign("acc", f"tl.dot({a}, {b}, acc{extra})")


def generate_gemm(req: KernelRequest) -> GeneratedKernel:
    out = req.out
    nodes = cone(out, set(req.params))
    node = choose_contraction(out, nodes)
    shape = SHAPES[node.op.name](node)
    integer = not is_float(node.inputs[0].dtype)
    dot = _dot_dtype(node, req.options)
    acc_dtype = reg_dtype(node.dtype) if integer or node.dtype == "float64" else "float32"
    meta = _tiles(shape, req.options, integer)
    configs = _configs(shape, dot, meta["BB"]) if req.options.autotune and not integer \
        else None
    tile = Tile(meta["BB"] > 1)
    bounds = _bounds(shape, [meta] + (configs or []), tile)
    shape.zvar = tile.z
    ctx = GemmKernel(node)
    kb = req.builder(ctx)
    _tile_grid(kb, shape, tile, req.index64)
    kb.assign("acc", f"tl.zeros({tile.acc_shape}, {TL[acc_dtype]})",
              axes={0, 1, 2} if tile.batched else {0, 1})
    a_val, b_val = shape.operands()
    with kb.loop(f"for k0 in range(0, {shape.k}, BK):"):
        rka = kb.let(f"k0 + {tile.arange('BK', tile.axis('rka'))}", "rka",
                     axes={tile.axis("rka")})
        rkb = kb.let(f"k0 + {tile.arange('BK', tile.axis('rkb'))}", "rkb",
                     axes={tile.axis("rkb")})
        idx, conds = shape.a_index(kb, "rm", rka)
        kmask = (lambda r: bounds["k"].format(k=r)) if bounds["k"] else (lambda r: None)
        ma = kb.conj([bounds["m"], kmask(rka), bounds["z"]])
        a = _operand(kb, a_val, idx, conds, ma, dot, integer,
                     "(BB, BM, BK)" if tile.batched else None)
        idx, conds = shape.b_index(kb, rkb, "rn")
        mb = kb.conj([kmask(rkb), bounds["n"], bounds["z"]])
        b = _operand(kb, b_val, idx, conds, mb, dot, integer,
                     "(BB, BK, BN)" if tile.batched else None)
        _accumulate(kb, a, b, dot, integer, req.options)
    ctx.acc = kb.let(f"acc.to({TL[reg_dtype(node.dtype)]})", "c") \
        if acc_dtype != reg_dtype(node.dtype) else "acc"
    ctx.out_idx = shape.out_index(kb, "rm", "rn")
    mo = kb.conj([bounds["m"], bounds["n"], bounds["z"]])
    val = kb.value(out, ctx.out_idx, mo)
    store(kb, req.out_param, kb.linearize(ctx.out_idx, out.shape), val, out.dtype, mo)
    decorator = autotune_decorator(configs) if configs else ""
    source = function(req.name, kb, req, ["BB", "BM", "BN", "BK", "GROUP_M"],
                      header(req, "contraction", nodes), decorator=decorator)
    grid = ([(shape.m, "BM"), (shape.n, "BN")], [(shape.z, "BB")])
    launch = GeneratedLaunch(req.name, pointer_names(req, kb), grid, meta=meta,
                             num_warps=4, configs=configs)
    return GeneratedKernel("contraction", source, [launch])
