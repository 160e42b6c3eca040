"""The triton backend's lowering table: op name -> how a kernel computes that op's value.

Every op of the op table has an entry (tests/backends/test_triton_ops.py checks it):
elementwise ops build an expression, movement ops remap the index, pools loop over their
window, reductions and contractions answer from the row or GEMM kernel that computes them,
and composite ops are decomposed into primitives before code generation. `result` is
structural: it names a buffer its fused node's kernel writes, so it launches nothing.
"""
from __future__ import annotations

from dlc.ir.graph import Node
from backends.triton.codegen.builder import Conflict, KernelBuilder
from backends.triton.codegen.lower_elementwise import LOWERING as ELEMENTWISE
from backends.triton.codegen.lower_movement import LOWERING as MOVEMENT
from backends.triton.codegen.lower_windows import LOWERING as WINDOWS


def _reduction(kb: KernelBuilder, node: Node, idx, mask) -> str:
    return kb.context.reduction(kb, node, idx, mask)


def _contraction(kb: KernelBuilder, node: Node, idx, mask) -> str:
    return kb.context.contraction(kb, node, idx, mask)


def _own_kernel(kb: KernelBuilder, node: Node, idx, mask) -> str:
    raise Conflict(node, f"{node.op.name} runs as a kernel of its own")


def _decomposed(kb: KernelBuilder, node: Node, idx, mask) -> str:
    raise AssertionError(f"{node.op.name} is decomposed into primitives before code "
                         f"generation (backends/triton/groups.py)")


def _structural(kb: KernelBuilder, node: Node, idx, mask) -> str:
    raise AssertionError(f"{node.op.name} launches nothing: its fused node's kernel writes its "
                         f"buffer, and a nested one reads the inlined yield "
                         f"(backends/triton/groups.py)")


REDUCTIONS = ("sum", "mean", "prod", "max", "min", "argmax", "argmin")
CONTRACTIONS = ("matmul", "conv", "conv_transpose")
# composite ops: their op-table decomposition is what gets generated; var and the nested
# fused node are rewritten by groups.py
DECOMPOSED = ("logsumexp", "softmax", "log_softmax", "layer_norm", "rms_norm", "group_norm",
              "batch_norm", "cross_entropy", "nll_loss", "mse_loss", "l1_loss",
              "bce_with_logits", "dropout", "random_normal", "conv_weight_grad", "var", "fused")

LOWERING = {**ELEMENTWISE, **MOVEMENT, **WINDOWS,
            **{op: _reduction for op in REDUCTIONS},
            **{op: _contraction for op in CONTRACTIONS},
            "scatter_add": _own_kernel,
            **{op: _decomposed for op in DECOMPOSED},
            "result": _structural}
