"""The structural ops of fused groups: `fused` and `result`.

`fused`: a node whose body is a nested Graph (a fused group). The body's inputs are bound
to the node's inputs in order; the body yields one or more values. The first is the node's
own value; backends lower the body as one kernel, the eager interpreter runs it op by op.

`result`: the extra output `index` (1 <= index < k) of the fused node it reads, a kernel
that yields k values. It computes nothing: it names the buffer the fused kernel wrote, so
its type is that of the body's yielded value `index`. Each extra output has exactly one
result node (dlc/ir/groups.py). Fusion creates them, so autodiff never sees one.
"""
from __future__ import annotations

from dlc.errors import ShapeError
from dlc.ir.graph import Node, Value
from dlc.ir.types import TensorType
from dlc.ops.registry import OPAQUE, Attr, OpDef, register


def _infer(types, attrs):
    raise ShapeError("fused nodes take their type from their body; build them with "
                     "passes.fuse, not emit")


def _impl(*arrays, **attrs):
    raise ShapeError("fused nodes are run by interpreting their body")


FUSED = register(OpDef("fused", OPAQUE, _infer, _impl,
                       attrs=(Attr("name", "str", "kernel"), Attr("kind", "str", "opaque")),
                       arity=(0, None), doc=__doc__))


def _result_infer(types, attrs):
    raise ShapeError("result: the type is that of an output of the fused node it reads, "
                     "which its operand's type alone does not tell")


def result_type(inputs: tuple[Value, ...], attrs: dict) -> TensorType:
    """The type of `result(fused) {index}`: the fused body's yielded value `index`."""
    (source,) = inputs
    if not isinstance(source, Node) or source.body is None or source.op is not FUSED:
        what = f"a {source.op.name} node" if isinstance(source, Node) else "a graph input"
        raise ShapeError(f"result: its operand must be a fused node (a kernel with several "
                         f"outputs), got {what}")
    count, index = len(source.body.outputs), attrs["index"]
    if not 1 <= index < count:
        extra = f"1..{count - 1}" if count > 1 else "none"
        raise ShapeError(f"result: index {index} is out of range: the fused node "
                         f"{source.attrs.get('name')!r} yields {count} value(s), so its extra "
                         f"outputs are {extra}")
    return source.body.outputs[index].type


def _result_impl(*arrays, **attrs):
    raise ShapeError("result nodes are bound to the outputs of their fused node's kernel")


RESULT = register(OpDef("result", OPAQUE, _result_infer, _result_impl,
                        attrs=(Attr("index", "int"),), arity=1, nondiff=(0,),
                        infer_values=result_type, doc=__doc__))
