"""Cases for dlc/ops/nn.py against torch: softmax/log_softmax/logsumexp on several axes and
with large or infinite inputs, the norms (1 and 2 trailing axes, groups 1, 2 and C, given
batch stats), cross_entropy and nll_loss (2-D and 4-D, ignore_index hits, label smoothing,
every reduction) and the pointwise losses.

The random ops are checked against the same counter-based hash written with torch int64
tensors (a 32-bit multiply split in 16-bit halves so no product overflows), which is an
independent implementation of the documented stream; their statistics are in
test_nn_ops.py."""
import math

import numpy as np
import torch
import torch.nn.functional as F

from tests.ops.harness import case, fixed, positive, randn, uniform

NAN = float("nan")
REDUCTIONS = ("mean", "sum", "none")


def _dims(x, axes):
    return tuple(sorted({a % max(x.ndim, 1) for a in axes}))


def _trailing(x, axes):
    """torch's normalized_shape for trailing `axes` of x."""
    return tuple(x.shape[x.ndim - len(axes):])


def targets(n_classes: int, *shape: int, ignore: int = -100, dtype: str = "int64"):
    """Random class indices, with the ignore_index at position 1 and a valid class at
    position 0 (so "mean" never divides by zero) and at ~25% of the others."""
    def gen(rng, dt):
        t = rng.integers(0, n_classes, shape)
        t[rng.random(shape) < 0.25] = ignore
        flat = t.reshape(-1)
        flat[0] = rng.choice([c for c in range(n_classes) if c != ignore])
        flat[1] = ignore
        return t.astype(dtype)
    return gen


def seed():
    """A random int64 scalar seed over the whole range (negative ones included)."""
    return lambda rng, dt: np.asarray(rng.integers(-2 ** 63, 2 ** 63 - 1, dtype=np.int64,
                                                   endpoint=True))


# -- softmax, log_softmax, logsumexp -----------------------------------------------------------
def _softmax_ref(x, axis):
    return torch.softmax(x, axis)


def _log_softmax_ref(x, axis):
    return torch.log_softmax(x, axis)


def _logsumexp_ref(x, axes, keepdims=False):
    return torch.logsumexp(x, dim=_dims(x, axes), keepdim=keepdims)


for _axis in (0, 1, -1):
    case("softmax", [randn(3, 4, 5)], _softmax_ref, attrs={"axis": _axis})
    case("log_softmax", [randn(3, 4, 5)], _log_softmax_ref, attrs={"axis": _axis})
case("softmax", [randn(6)], _softmax_ref, attrs={"axis": 0}, id="softmax-1d")
case("log_softmax", [randn(2, 7)], _log_softmax_ref, attrs={"axis": -1}, id="log_softmax-2d")
# magnitudes far past exp's float32 range: only a max-shifted form stays finite
case("softmax", [randn(4, 6, scale=200.0)], _softmax_ref, attrs={"axis": 1},
     id="softmax-large")
case("log_softmax", [randn(4, 6, scale=200.0)], _log_softmax_ref, attrs={"axis": 1},
     id="log_softmax-large")
# -inf entries get probability 0; a row of only -inf is NaN, as in torch
for _op, _ref in (("softmax", _softmax_ref), ("log_softmax", _log_softmax_ref)):
    case(_op, [fixed([[-np.inf, 0.0, 1.0], [2.0, -np.inf, -np.inf], [-np.inf] * 3])], _ref,
         attrs={"axis": 1}, grad=False, id=f"{_op}-neg-inf")

for _attrs in ({"axes": (1,)}, {"axes": (0, 2), "keepdims": True},
               {"axes": (-1,), "keepdims": True}, {"axes": (0, 1, 2)}, {"axes": (2, -2)}):
    case("logsumexp", [randn(3, 4, 5)], _logsumexp_ref, attrs=_attrs)
case("logsumexp", [randn(3, 5, scale=300.0)], _logsumexp_ref, attrs={"axes": (1,)},
     id="logsumexp-large")
# a row of -inf gives -inf, +inf gives inf, NaN propagates (the shift must not make them NaN)
case("logsumexp", [fixed([[-np.inf, -np.inf], [np.inf, 1.0], [NAN, 0.0], [1000.0, 1000.0]])],
     _logsumexp_ref, attrs={"axes": (1,)}, grad=False, id="logsumexp-edges")


# -- norms -------------------------------------------------------------------------------------
def _layer_norm_ref(x, axes, eps=1e-5):
    return F.layer_norm(x, _trailing(x, axes), eps=eps)


def _rms_norm_ref(x, axes, eps=1e-6):
    return F.rms_norm(x, _trailing(x, axes), eps=eps)


def _group_norm_ref(x, groups, eps=1e-5):
    return F.group_norm(x, groups, eps=eps)


def _batch_norm_ref(x, mean, var, eps=1e-5):
    return F.batch_norm(x, mean, var, training=False, eps=eps)


for _attrs in ({"axes": (-1,)}, {"axes": (1, 2)}, {"axes": (2,), "eps": 1e-3}):
    case("layer_norm", [randn(3, 4, 5, scale=3.0)], _layer_norm_ref, attrs=_attrs)
    case("rms_norm", [randn(3, 4, 5, scale=3.0)], _rms_norm_ref, attrs=_attrs)
def _offset_grid(*shape: int):
    """1e4 + k 2^-20: the offset is 1e4 times the spread, yet sums, means and squared
    deviations of 8 such values are exact in float64; E[x^2] - E[x]^2 is not (it would
    lose ~7 digits to cancellation)."""
    return lambda rng, dt: (OFFSET + rng.integers(0, 2 ** 20, shape) * 2.0 ** -20).astype(dt)


def _layer_norm_centered_ref(x, axes, eps=1e-5):
    # layer_norm ignores a shift; removing the offset (exactly, on this grid) first keeps the
    # oracle itself well conditioned
    return _layer_norm_ref(x - OFFSET, axes, eps)


OFFSET = 1e4
# float64 only: in float32 the inputs themselves round at ~1e-3 of the spread
# (the rounding error of values near 1e4 is ~1e-12: a finite-difference step of 1e-6 would
# amplify it to ~1e-5 of the gradient, a step of 1e-4 keeps both errors near 1e-7)
case("layer_norm", [_offset_grid(4, 8)], _layer_norm_centered_ref, attrs={"axes": (1,)},
     dtypes=("float64",), extra={"fd_eps": 1e-4}, id="layer_norm-offset")

for _groups in (1, 2, 6):
    case("group_norm", [randn(2, 6, 3, 4)], _group_norm_ref, attrs={"groups": _groups})
case("group_norm", [randn(3, 4, 5)], _group_norm_ref, attrs={"groups": 2, "eps": 1e-3},
     id="group_norm-1d")

def _batch_norm_formula(x, mean, var, eps=1e-5):
    """torch's batch_norm does not differentiate its running statistics; the same formula
    written out does (in training mode they are functions of x)."""
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return (x - mean.reshape(shape)) / torch.sqrt(var.reshape(shape) + eps)


_BN = {"grad_ref": _batch_norm_formula}
case("batch_norm", [randn(4, 3, 5, 2), randn(3), positive(3)], _batch_norm_ref, extra=_BN)
case("batch_norm", [randn(5, 3), randn(3), positive(3)], _batch_norm_ref,
     attrs={"eps": 1e-3}, extra=_BN, id="batch_norm-2d")


# -- cross_entropy, nll_loss -------------------------------------------------------------------
def _cross_entropy_ref(x, t, ignore_index=-100, label_smoothing=0.0, reduction="mean"):
    return F.cross_entropy(x, t.long(), ignore_index=ignore_index,
                           label_smoothing=label_smoothing, reduction=reduction)


def _nll_loss_ref(x, t, ignore_index=-100, reduction="mean"):
    return F.nll_loss(x, t.long(), ignore_index=ignore_index, reduction=reduction)


for _red in REDUCTIONS:
    case("cross_entropy", [randn(8, 5, scale=2.0), targets(5, 8)], _cross_entropy_ref,
         attrs={"reduction": _red}, id=f"cross_entropy-2d-{_red}")
    case("cross_entropy", [randn(2, 4, 3, 3, scale=2.0), targets(4, 2, 3, 3)],
         _cross_entropy_ref, attrs={"reduction": _red}, id=f"cross_entropy-4d-{_red}")
    case("cross_entropy", [randn(8, 5, scale=2.0), targets(5, 8)], _cross_entropy_ref,
         attrs={"reduction": _red, "label_smoothing": 0.1}, id=f"cross_entropy-smooth-{_red}")
    case("cross_entropy", [randn(2, 4, 3, 3, scale=2.0), targets(4, 2, 3, 3)],
         _cross_entropy_ref, attrs={"reduction": _red, "label_smoothing": 0.3},
         id=f"cross_entropy-4d-smooth-{_red}")
    case("nll_loss", [randn(8, 5), targets(5, 8)], _nll_loss_ref, attrs={"reduction": _red},
         id=f"nll_loss-2d-{_red}")
    case("nll_loss", [randn(2, 4, 3, 3), targets(4, 2, 3, 3)], _nll_loss_ref,
         attrs={"reduction": _red}, id=f"nll_loss-4d-{_red}")
# an ignore_index that is a real class, int32 targets, logits far past exp's range
case("cross_entropy", [randn(8, 5), targets(5, 8, ignore=2, dtype="int32")],
     _cross_entropy_ref, attrs={"ignore_index": 2, "label_smoothing": 0.2},
     id="cross_entropy-ignore-class")
case("cross_entropy", [randn(6, 4, scale=300.0), targets(4, 6)], _cross_entropy_ref,
     attrs={"reduction": "none"}, id="cross_entropy-large")
case("nll_loss", [randn(8, 5), targets(5, 8, ignore=0, dtype="int32")], _nll_loss_ref,
     attrs={"ignore_index": 0, "reduction": "mean"}, id="nll_loss-ignore-class")


# -- pointwise losses --------------------------------------------------------------------------
def _mse_ref(a, b, reduction="mean"):
    return F.mse_loss(a, b, reduction=reduction)


def _l1_ref(a, b, reduction="mean"):
    return F.l1_loss(a, b, reduction=reduction)


def _bce_ref(x, y, reduction="mean"):
    # in float64, rounded once: torch's float32 form (1 - y) x + log(1 + exp(-x)) cancels
    # for large negative x and is off by about |x| eps32 (4e-6 at x = -84, y = 1e-3), more
    # than the float32 tolerance, while dlc's form keeps full precision there
    out = F.binary_cross_entropy_with_logits(x.double(), y.double(), reduction=reduction)
    return out.to(x.dtype)


for _red in REDUCTIONS:
    case("mse_loss", [randn(3, 4, 5), randn(3, 4, 5)], _mse_ref, attrs={"reduction": _red},
         id=f"mse_loss-{_red}")
    case("l1_loss", [randn(3, 4, 5), randn(3, 4, 5)], _l1_ref, attrs={"reduction": _red},
         id=f"l1_loss-{_red}")
    # logits up to |x| ~ 100: exp(-x) overflows float32 unless the form is the stable one
    case("bce_with_logits", [randn(4, 6, scale=40.0), uniform(0.0, 1.0, 4, 6)], _bce_ref,
         attrs={"reduction": _red}, id=f"bce_with_logits-{_red}")
case("bce_with_logits", [fixed([-1000.0, -100.0, -20.0, 0.0, 20.0, 100.0, 1000.0]),
                         fixed([0.0, 1.0, 0.3, 0.5, 1.0, 0.0, 0.7])],
     _bce_ref, attrs={"reduction": "none"}, id="bce_with_logits-extreme")


# -- random ops: the hash re-implemented in torch int64 ----------------------------------------
_MASK = 0xFFFFFFFF


def _mul32(h: torch.Tensor, m: int) -> torch.Tensor:
    """h * m mod 2**32 for h < 2**32, without any product past 2**49."""
    lo = h * (m & 0xFFFF)
    hi = ((h * (m >> 16)) & 0xFFFF) << 16
    return (lo + hi) & _MASK


def _mix(h: torch.Tensor) -> torch.Tensor:
    h = h ^ (h >> 16)
    h = _mul32(h, 0x7FEB352D)
    h = h ^ (h >> 15)
    h = _mul32(h, 0x846CA68B)
    return h ^ (h >> 16)


def torch_uniform24(seed: int, salt: int, count: int) -> torch.Tensor:
    """(hash(i) >> 8) for i < count, as int64."""
    s0 = torch.tensor(seed & _MASK)
    s1 = torch.tensor((seed >> 32) & _MASK)
    salt = torch.tensor(salt)
    a = _mix(_mix(_mix(s0 ^ 0x243F6A88) ^ s1) ^ salt)
    b = _mix(_mix(_mix(s1 ^ 0x85A308D3) ^ salt) ^ s0)
    i = torch.arange(count, dtype=torch.int64)
    return _mix(_mix(i ^ a) ^ b) >> 8


def _random_uniform_ref(s, shape, dtype="float32", salt=0):
    n = math.prod(shape)
    u = torch_uniform24(int(s), salt, n).double() * 2.0 ** -24
    return u.to(getattr(torch, dtype)).reshape(shape)


def _random_normal_ref(s, shape, dtype="float32", salt=0):
    n = math.prod(shape)
    cd = torch.float64 if dtype == "float64" else torch.float32
    u = (torch_uniform24(int(s), salt, 2 * n).double() * 2.0 ** -24).to(cd)
    u1, u2 = u[0::2], u[1::2]
    z = torch.sqrt(torch.log(1.0 - u1) * -2.0) * torch.cos(u2 * (2 * math.pi))
    return z.to(getattr(torch, dtype)).reshape(shape)


def _dropout_ref(x, s, p, salt=0):
    if p == 0.0:
        return x
    if p == 1.0:  # x / 0 on the dropped branch would make torch's gradient NaN
        return x * 0.0
    keep = torch_uniform24(int(s), salt, x.numel()).reshape(x.shape) >= math.ceil(p * 2 ** 24)
    return torch.where(keep, x / (1.0 - p), torch.zeros((), dtype=x.dtype))


for _p, _salt in ((0.1, 0), (0.5, 7), (0.9, 2 ** 32 - 1), (0.0, 3), (1.0, 4)):
    case("dropout", [randn(4, 5, 6), seed()], _dropout_ref, attrs={"p": _p, "salt": _salt},
         id=f"dropout-p{_p}")
for _dt in ("float32", "float64"):
    case("random_uniform", [seed()], _random_uniform_ref,
         attrs={"shape": (3, 7, 5), "dtype": _dt, "salt": 11}, dtypes=(_dt,),
         id=f"random_uniform-{_dt}")
    case("random_normal", [seed()], _random_normal_ref,
         attrs={"shape": (6, 9), "dtype": _dt, "salt": 5}, dtypes=(_dt,),
         id=f"random_normal-{_dt}")
case("random_uniform", [seed()], _random_uniform_ref, attrs={"shape": ()}, dtypes=("float32",),
     id="random_uniform-0d")
