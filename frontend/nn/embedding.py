"""Embedding: a lookup table of rows, weight (num_embeddings, embedding_dim)."""
from __future__ import annotations

import numpy as np

from dlc.errors import DlcError
from frontend import functional as F
from frontend import init
from frontend.nn.linear import empty_param
from frontend.nn.module import Module, Parameter

__all__ = ["Embedding"]


class Embedding(Module):
    """Rows of `weight` picked by integer indices; weight ~ N(0, 1) as torch, with the
    padding_idx row zeroed (it reads as zeros and receives no gradient)."""

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int | None = None,
                 max_norm: float | None = None, norm_type: float = 2.0,
                 scale_grad_by_freq: bool = False, sparse: bool = False, _weight=None,
                 _freeze: bool = False, device=None, dtype=None):
        super().__init__()
        if padding_idx is not None:
            if not -num_embeddings <= padding_idx < num_embeddings:
                raise DlcError(f"Embedding: padding_idx {padding_idx} is out of range for "
                               f"{num_embeddings} embeddings")
            padding_idx %= num_embeddings
        if max_norm is not None or scale_grad_by_freq:
            raise DlcError("Embedding: max_norm and scale_grad_by_freq are not supported")
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.padding_idx, self.max_norm, self.norm_type = padding_idx, max_norm, norm_type
        self.scale_grad_by_freq, self.sparse = scale_grad_by_freq, sparse
        if _weight is None:
            self.weight = Parameter(empty_param((num_embeddings, embedding_dim), dtype))
            self.reset_parameters()
        else:
            weight = np.asarray(_weight)
            if weight.shape != (num_embeddings, embedding_dim):
                raise DlcError(f"Embedding: _weight has shape {weight.shape}, expected "
                               f"{(num_embeddings, embedding_dim)}")
            self.weight = Parameter(weight.astype(dtype or weight.dtype))

    def reset_parameters(self) -> None:
        init.normal_(self._parameters["weight"])
        if self.padding_idx is not None:
            self._parameters["weight"][self.padding_idx] = 0

    @classmethod
    def from_pretrained(cls, embeddings, freeze: bool = True, padding_idx: int | None = None,
                        max_norm=None, norm_type: float = 2.0, scale_grad_by_freq: bool = False,
                        sparse: bool = False) -> "Embedding":
        """An Embedding holding a copy of `embeddings` (num_embeddings, embedding_dim)."""
        weight = np.array(embeddings)
        if weight.ndim != 2:
            raise DlcError(f"Embedding.from_pretrained: embeddings must be 2-D, got shape "
                           f"{weight.shape}")
        return cls(weight.shape[0], weight.shape[1], padding_idx, max_norm, norm_type,
                   scale_grad_by_freq, sparse, _weight=weight, _freeze=freeze)

    def forward(self, input):
        return F.embedding(input, self.weight, self.padding_idx, self.max_norm,
                           self.norm_type, self.scale_grad_by_freq, self.sparse)

    def extra_repr(self) -> str:
        pad = "" if self.padding_idx is None else f", padding_idx={self.padding_idx}"
        return f"{self.num_embeddings}, {self.embedding_dim}{pad}"
