"""Cases for dlc/ops/reduction.py: several axes (negative ones as a user writes them; the op
canonicalizes them), keepdims both ways, integer and bool inputs, NaN, ties in max/min and
argmax, and zeros in prod (whose gradient has to avoid dividing by them)."""
import torch

from tests.ops.cases_elementwise import INT, NAN, small_ints
from tests.ops.harness import boolean, case, fixed, positive, randint, randn, uniform


def _dims(x, axes):
    """torch refuses a repeated dim; dlc counts a repeated axis once."""
    return tuple(sorted({a % x.ndim for a in axes}))


def _sum_ref(x, axes, keepdims=False):
    return torch.sum(x, dim=_dims(x, axes), keepdim=keepdims)


def _mean_ref(x, axes, keepdims=False):
    return torch.mean(x, dim=_dims(x, axes), keepdim=keepdims)


def _prod_ref(x, axes, keepdims=False):
    # torch.prod takes one dim: reduce the canonical axes one by one, last first
    for a in reversed(_dims(x, axes)):
        x = torch.prod(x, dim=a, keepdim=keepdims)
    return x


def _max_ref(x, axes, keepdims=False):
    return torch.amax(x, dim=_dims(x, axes), keepdim=keepdims)


def _min_ref(x, axes, keepdims=False):
    return torch.amin(x, dim=_dims(x, axes), keepdim=keepdims)


def _var_ref(x, axes, keepdims=False, correction=1):
    return torch.var(x, dim=_dims(x, axes), correction=correction, keepdim=keepdims)


def _argmax_ref(x, axis, keepdims=False):
    return torch.argmax(x, dim=axis, keepdim=keepdims)


def _argmin_ref(x, axis, keepdims=False):
    return torch.argmin(x, dim=axis, keepdim=keepdims)


# Sums run over at most a few dozen terms: positive inputs keep float32 sums well
# conditioned (no cancellation), so the default tolerance holds for any summation order.
AXES = [{"axes": (1,)}, {"axes": (-1,), "keepdims": True}, {"axes": (0, 2)},
        {"axes": (2, -3), "keepdims": True}, {"axes": (0, 1, 2)}, {"axes": (-2, 1, 1)}]
for _attrs in AXES:
    case("sum", [positive(3, 4, 5)], _sum_ref, attrs=_attrs)
    case("mean", [positive(3, 4, 5)], _mean_ref, attrs=_attrs)
    case("max", [randn(3, 4, 5)], _max_ref, attrs=_attrs)
    case("min", [randn(3, 4, 5)], _min_ref, attrs=_attrs)
    case("var", [randn(3, 4, 5)], _var_ref, attrs=_attrs)
    case("prod", [uniform(0.5, 1.5, 3, 4, 5)], _prod_ref, attrs=_attrs)

case("sum", [randn(4, 3)], _sum_ref, attrs={"axes": (0,)}, id="sum-signed")
case("mean", [randn(2, 3)], _mean_ref, attrs={"axes": (-1,)}, id="mean-signed")
case("prod", [randn(2, 3)], _prod_ref, attrs={"axes": (0, 1)}, id="prod-signed")
case("sum", [randint(-50, 50, 3, 4, dtype="int64")], _sum_ref, attrs={"axes": (1,)},
     dtypes=INT)
case("sum", [randint(-50, 50, 3, 4, dtype="int32")], _sum_ref,
     attrs={"axes": (0, 1), "keepdims": True}, dtypes=INT)
case("sum", [boolean(3, 4)], _sum_ref, attrs={"axes": (-1,)}, dtypes=INT, id="sum-bool")
case("prod", [randint(-3, 4, 3, 4, dtype="int64")], _prod_ref, attrs={"axes": (1,)},
     dtypes=INT)
case("prod", [randint(-3, 4, 2, 3, dtype="int32")], _prod_ref, attrs={"axes": (0,)},
     dtypes=INT)
case("max", [randint(-50, 50, 3, 4, dtype="int32")], _max_ref, attrs={"axes": (0,)},
     dtypes=INT)
case("min", [randint(-50, 50, 3, 4, dtype="int64")], _min_ref,
     attrs={"axes": (-1,), "keepdims": True}, dtypes=INT)
case("max", [boolean(3, 4)], _max_ref, attrs={"axes": (1,)}, dtypes=INT, id="max-bool")
case("min", [boolean(3, 4)], _min_ref, attrs={"axes": (0,)}, dtypes=INT, id="min-bool")

_NAN_ROWS = [[1.0, NAN, 3.0], [NAN, NAN, 0.0], [-1.0, 2.0, -3.0]]
case("max", [fixed(_NAN_ROWS)], _max_ref, attrs={"axes": (1,)}, grad=False, id="max-nan")
case("min", [fixed(_NAN_ROWS)], _min_ref, attrs={"axes": (0,)}, grad=False, id="min-nan")
case("sum", [fixed(_NAN_ROWS)], _sum_ref, attrs={"axes": (1,)}, grad=False, id="sum-nan")

# ties split the gradient evenly; only two-way ties here: central differences see a slope of
# 1/2 at any tie (1 on one side, 0 on the other), an even split gives 1/k for k tied values
case("max", [fixed([[1.0, 3.0, 3.0, 0.0], [2.0, 2.0, -1.0, 0.0], [5.0, 1.0, 5.0, 4.0]])],
     _max_ref, attrs={"axes": (1,)}, id="max-ties")
case("min", [fixed([[0.0, 3.0, 0.0, 1.0], [-1.0, 2.0, -1.0, 5.0], [4.0, 2.0, 7.0, 2.0]])],
     _min_ref, attrs={"axes": (-1,), "keepdims": True}, id="min-ties")


def _with_zeros(*shape: int):
    """Values in [0.5, 1.5) with one zero in row 0 and two in row 1 of the last two axes:
    the product's gradient is the product of the others, which division cannot give."""
    def gen(rng, dt):
        x = rng.uniform(0.5, 1.5, shape)
        cols = rng.permutation(shape[-1])
        x[..., 0, cols[0]] = 0.0
        x[..., 1, cols[1:3]] = 0.0
        return x.astype(dt)
    return gen


case("prod", [_with_zeros(3, 4)], _prod_ref, attrs={"axes": (1,)}, id="prod-zeros")
case("prod", [_with_zeros(2, 3, 4)], _prod_ref, attrs={"axes": (-1,), "keepdims": True},
     id="prod-zeros-keepdims")
case("prod", [_with_zeros(3, 4)], _prod_ref, attrs={"axes": (0, 1)}, id="prod-zeros-all")

for _c in (0, 1, 2):
    case("var", [randn(4, 6)], _var_ref, attrs={"axes": (1,), "correction": _c})
# the loss is ~1e4 here, so a step of 1e-6 would leave ~1e-6 of rounding noise in each
# difference quotient; var is quadratic, so a large step has no truncation error at all
case("var", [randn(2, 3, 4, scale=100.0)], _var_ref, attrs={"axes": (0, 2), "correction": 0},
     extra={"fd_eps": 1e-3}, id="var-scaled")

# argmax/argmin: small integers as floats make ties common; the first index wins
for _op, _ref in {"argmax": _argmax_ref, "argmin": _argmin_ref}.items():
    case(_op, [randn(3, 4, 5)], _ref, attrs={"axis": 1})
    case(_op, [randn(3, 4, 5)], _ref, attrs={"axis": -1, "keepdims": True})
    case(_op, [small_ints(6, 7, lo=0, hi=3)], _ref, attrs={"axis": 0}, id=f"{_op}-ties")
    case(_op, [small_ints(6, 7, lo=0, hi=3)], _ref, attrs={"axis": -1, "keepdims": True},
         id=f"{_op}-ties-last")
    case(_op, [fixed([[3.0, 3.0, 1.0], [1.0, NAN, NAN], [NAN, 0.0, 5.0]])], _ref,
         attrs={"axis": 1}, id=f"{_op}-nan")
    case(_op, [randint(0, 3, 4, 6, dtype="int64")], _ref, attrs={"axis": 1}, dtypes=INT)
    case(_op, [randint(0, 3, 4, 6, dtype="int32")], _ref, attrs={"axis": -2}, dtypes=INT)
