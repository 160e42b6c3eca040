"""The op table. Importing this package registers every op.

OPS maps op name -> OpDef (see registry.py). The op modules are grouped by kind; each op is
still defined exactly once.
"""
from dlc.ops.registry import (CONTRACTION, ELEMENTWISE, MOVEMENT, OPAQUE, OPS, REDUCTION,
                              Attr, Kind, OpDef, get_op, register)
from dlc.ops import elementwise, reduction, movement, gather, contraction, nn, losses, random, fused  # noqa

__all__ = ["OPS", "OpDef", "Attr", "Kind", "get_op", "register", "ELEMENTWISE", "REDUCTION",
           "MOVEMENT", "CONTRACTION", "OPAQUE"]
