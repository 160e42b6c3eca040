"""Functional forms under torch.nn.functional's names and signatures."""
from __future__ import annotations

from dlc.ir.builder import emit
from dlc.tensor import Tensor

__all__ = ["relu"]


def relu(x: Tensor) -> Tensor:
    return emit("relu", x)
