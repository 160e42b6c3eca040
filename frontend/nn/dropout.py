"""Dropout: random zeroing in training mode, identity in eval mode."""
from __future__ import annotations

from dlc.errors import DlcError
from frontend import functional as F
from frontend.nn.module import Module

__all__ = ["Dropout"]


class Dropout(Module):
    """Zero each element with probability p and scale the rest by 1/(1-p) while training.

    The mask is drawn from the graph's `seed` input (an int64 scalar the Executable takes
    as its last user argument), so the same seed gives the same mask."""

    def __init__(self, p: float = 0.5, inplace: bool = False):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise DlcError(f"Dropout: p must be in [0, 1], got {p}")
        self.p, self.inplace = p, inplace

    def forward(self, input):
        return F.dropout(input, self.p, self.training, self.inplace)

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace={self.inplace}"
