"""Pointwise kernels: one program per BLOCK of output elements, in flat row-major order.

    offs = pid * BLOCK + arange(BLOCK);  idx = unravel(offs, out.shape)
    out[offs] = <value of the group's output at idx>

A multi-output group is one such kernel over the shape its yields share: every value is
computed (sharing what they have in common) before any is stored, so an output may take the
buffer of an input it reads elementwise (an in-place update) without a later output reading
the new value.

Everything elementwise, movement, index-reading and window-shaped (pools) fuses here: each
lowering turns the output index into its inputs' indices, so broadcasting and transposes
are index arithmetic and no intermediate is stored.
"""
from __future__ import annotations

from math import prod

from backends.triton.codegen.builder import KernelContext, next_pow2
from backends.triton.codegen.common import (GeneratedKernel, GeneratedLaunch, KernelRequest,
                                            function, header, joint_cone, pointer_names)
from backends.triton.codegen.store import store


def block_size(numel: int, options) -> int:
    return max(16, min(next_pow2(numel), options.max_tile if options.interpret else 1024))


def autotune_configs(numel: int) -> list[dict]:
    sizes = [b for b in (512, 1024, 2048, 4096) if b <= max(512, next_pow2(numel))]
    return [{"BLOCK": b, "num_warps": w} for b in sizes for w in (4, 8) if b // w >= 64]


def generate_pointwise(req: KernelRequest) -> GeneratedKernel:
    out = req.out
    numel = prod(out.shape)
    block = block_size(numel, req.options)
    configs = autotune_configs(numel) if req.options.autotune else None
    # when every block size tried divides the element count, no lane is ever out of range:
    # no mask, so loads and stores vectorize
    even = all(numel % b == 0 for b in [block] + [c["BLOCK"] for c in configs or []])
    mask = None if even else "mask"
    kb = req.builder(KernelContext())
    pid = "tl.program_id(0).to(tl.int64)" if req.index64 else "tl.program_id(0)"
    kb.line(f"offs = {pid} * BLOCK + tl.arange(0, BLOCK)")
    if mask:
        kb.line(f"mask = offs < {numel}")
        kb.declare("mask", {0})
    kb.declare("offs", {0})
    idx = kb.delinearize("offs", out.shape)
    vals = [kb.value(v, idx, mask) for v, _ in req.outs]
    for (v, param), val in zip(req.outs, vals):
        store(kb, param, "offs", val, v.dtype, mask)
    nodes = joint_cone([v for v, _ in req.outs], set(req.params))
    decorator = autotune_decorator(configs) if configs else ""
    source = function(req.name, kb, req, ["BLOCK"], header(req, "pointwise", nodes),
                      decorator=decorator)
    launch = GeneratedLaunch(req.name, pointer_names(req, kb), ([(numel, "BLOCK")],),
                             meta={"BLOCK": block}, num_warps=4 if block <= 1024 else 8,
                             configs=configs)
    return GeneratedKernel("pointwise", source, [launch])


def autotune_decorator(configs: list[dict], key: str = "") -> str:
    """`@triton.autotune(...)` over meta-parameter dicts (num_warps/num_stages split off)."""
    items = []
    for c in configs:
        meta = {k: v for k, v in c.items() if k not in ("num_warps", "num_stages")}
        extra = "".join(f", {k}={c[k]}" for k in ("num_warps", "num_stages") if k in c)
        items.append(f"triton.Config({meta!r}{extra})")
    body = ",\n        ".join(items)
    return f"@triton.autotune(\n    configs=[\n        {body},\n    ],\n    key=[{key}],\n)\n"
