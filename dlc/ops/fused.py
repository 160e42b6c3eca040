"""The `fused` op: a node whose body is a nested Graph (a fused group).

The body's inputs are bound to the node's inputs in order; the body's single output is the
node's value. Backends lower the body as one kernel; the eager interpreter runs it op by op.
"""
from __future__ import annotations

from dlc.errors import ShapeError
from dlc.ops.registry import OPAQUE, Attr, OpDef, register


def _infer(types, attrs):
    raise ShapeError("fused nodes take their type from their body; build them with "
                     "passes.fuse, not emit")


def _impl(*arrays, **attrs):
    raise ShapeError("fused nodes are run by interpreting their body")


FUSED = register(OpDef("fused", OPAQUE, _infer, _impl,
                       attrs=(Attr("name", "str", "kernel"), Attr("kind", "str", "opaque")),
                       arity=(0, None), doc=__doc__))
