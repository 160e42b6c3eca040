"""scatter_add: two launches of one generated source.

    <name>_init:  out = x                        (pointwise over out; x's producers fused)
    <name>:       out[.., idx[i], ..] += src[i]  (over idx's elements, tl.atomic_add)

Repeated indices accumulate through the atomics (their order, and so float rounding, may
differ from the eager reference's sequential np.add.at). Indices are checked like take's.
"""
from __future__ import annotations

from math import prod

from backends.triton.codegen.builder import TL, KernelContext, reg_dtype
from backends.triton.codegen.common import (GeneratedKernel, GeneratedLaunch, KernelRequest,
                                            cone, function, header, pointer_names)
from backends.triton.codegen.lower_movement import checked_index
from backends.triton.codegen.pointwise import block_size
from backends.triton.codegen.store import store


def generate_scatter(req: KernelRequest) -> GeneratedKernel:
    node = req.out
    x, ind, src = node.inputs
    axis = node.attrs["axis"]
    nodes = cone(node, set(req.params))

    pid = "tl.program_id(0).to(tl.int64)" if req.index64 else "tl.program_id(0)"
    init = req.builder(KernelContext())
    init.line(f"offs = {pid} * BLOCK + tl.arange(0, BLOCK)")
    init.line(f"mask = offs < {prod(node.shape)}")
    init.declare("offs", {0})
    init.declare("mask", {0})
    val = init.value(x, init.delinearize("offs", node.shape), "mask")
    store(init, req.out_param, "offs", val, node.dtype, "mask")

    add = req.builder(KernelContext())
    add.line(f"offs = {pid} * BLOCK + tl.arange(0, BLOCK)")
    add.line(f"mask = offs < {prod(ind.shape)}")
    add.declare("offs", {0})
    add.declare("mask", {0})
    idx = add.delinearize("offs", ind.shape)
    j = checked_index(add, node, add.value(ind, idx, "mask"), x.shape[axis], axis, "mask")
    dst = list(idx)
    dst[axis] = j
    val = add.value(src, idx, "mask")
    if req.out_param.dtype != reg_dtype(node.dtype):
        val = f"{val}.to({TL[req.out_param.dtype]})"
    ptr, mask = add.pointer(f"{req.out_param.name} + {add.linearize(dst, node.shape)}", "mask")
    add.line(f"tl.atomic_add({ptr}, {val}, mask={mask})")

    pointers = pointer_names(req, [init, add])
    head = header(req, "scatter", nodes)
    source = (function(f"{req.name}_init", init, req, ["BLOCK"], head, pointers=pointers)
              + "\n\n" + function(req.name, add, req, ["BLOCK"], head, pointers=pointers))
    launches = []
    for fn, numel in ((f"{req.name}_init", prod(node.shape)), (req.name, prod(ind.shape))):
        if numel:
            block = block_size(numel, req.options)
            launches.append(GeneratedLaunch(fn, pointers, ([(numel, "BLOCK")],),
                                            meta={"BLOCK": block}))
    return GeneratedKernel("scatter", source, launches)
