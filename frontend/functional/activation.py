"""Activations, softmax, log_softmax and logsumexp."""
from __future__ import annotations


from dlc.ir.builder import emit
from dlc.tensor import Tensor
from dlc.tensor import where as _where
from frontend.functional._common import _canon_axis, _dim, _fail, _t
from frontend.functional.tensors import _as_tuple


# -- activations -------------------------------------------------------------------------------
def relu(input, inplace: bool = False) -> Tensor:
    """max(x, 0). `inplace` is accepted for torch compatibility; graphs are functional."""
    return emit("relu", _t(input))


def hardtanh(input, min_val: float = -1.0, max_val: float = 1.0,
             inplace: bool = False) -> Tensor:
    """Clamp to [min_val, max_val]."""
    return _t(input).clamp(min_val, max_val)


def relu6(input, inplace: bool = False) -> Tensor:
    """min(max(x, 0), 6)."""
    return hardtanh(input, 0.0, 6.0)


def leaky_relu(input, negative_slope: float = 0.01, inplace: bool = False) -> Tensor:
    return emit("leaky_relu", _t(input), negative_slope=negative_slope)


def gelu(input, approximate: str = "none") -> Tensor:
    """GELU: the exact erf form ("none") or the tanh approximation ("tanh")."""
    if approximate not in ("none", "tanh"):
        raise _fail("gelu", f"approximate must be 'none' or 'tanh', got {approximate!r}")
    return emit("gelu", _t(input), approximate=approximate)


def silu(input, inplace: bool = False) -> Tensor:
    return emit("silu", _t(input))


def sigmoid(input) -> Tensor:
    return emit("sigmoid", _t(input))


def tanh(input) -> Tensor:
    return emit("tanh", _t(input))


def softplus(input, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
    """log(1 + exp(beta x)) / beta, linear where beta x > threshold (as torch)."""
    return emit("softplus", _t(input), beta=beta, threshold=threshold)


def logsigmoid(input) -> Tensor:
    """log(sigmoid(x)) = -softplus(-x), stable for large |x|."""
    return -softplus(-_t(input))


def elu(input, alpha: float = 1.0, inplace: bool = False) -> Tensor:
    """x for x > 0, alpha (exp(x) - 1) otherwise."""
    x = _t(input)
    # expm1 sees min(x, 0) so the unused branch cannot overflow (inf * 0 in the VJP)
    negative = emit("expm1", x.minimum(0.0)) * alpha
    return _where(x > 0.0, x, negative)


def _softmax_dim(fn: str, dim, axis, ndim: int) -> int:
    d = _dim(dim, axis, fn)
    if d is None:  # torch's legacy implicit choice
        d = 0 if ndim in (0, 1, 3) else 1
    return _canon_axis(d, ndim, fn)


def softmax(input, dim: int | None = None, _stacklevel: int = 3, dtype=None, *,
            axis: int | None = None) -> Tensor:
    """exp(x) / sum(exp(x)) along `dim` (computed in `dtype` if given)."""
    x = _t(input) if dtype is None else _t(input).cast(dtype)
    return emit("softmax", x, axis=_softmax_dim("softmax", dim, axis, x.ndim))


def log_softmax(input, dim: int | None = None, _stacklevel: int = 3, dtype=None, *,
                axis: int | None = None) -> Tensor:
    x = _t(input) if dtype is None else _t(input).cast(dtype)
    return emit("log_softmax", x, axis=_softmax_dim("log_softmax", dim, axis, x.ndim))


def logsumexp(input, dim=None, keepdim: bool = False, *, axis=None,
              keepdims: bool = False) -> Tensor:
    """log(sum(exp(x))) over `dim` (all axes if None), stable for large inputs."""
    x = _t(input)
    d = _dim(dim, axis, "logsumexp")
    axes = tuple(range(x.ndim)) if d is None else \
        tuple(sorted({_canon_axis(a, x.ndim, "logsumexp") for a in _as_tuple(d)}))
    return emit("logsumexp", x, axes=axes, keepdims=bool(keepdim or keepdims))
