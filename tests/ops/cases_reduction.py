"""Cases for dlc/ops/reduction.py: several axes (negative ones as a user writes them; the op
canonicalizes them), keepdims both ways, integer and bool inputs, NaN, and ties in argmax."""
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
case("max", [fixed(_NAN_ROWS)], _max_ref, attrs={"axes": (1,)}, id="max-nan")
case("min", [fixed(_NAN_ROWS)], _min_ref, attrs={"axes": (0,)}, id="min-nan")
case("sum", [fixed(_NAN_ROWS)], _sum_ref, attrs={"axes": (1,)}, id="sum-nan")

for _c in (0, 1, 2):
    case("var", [randn(4, 6)], _var_ref, attrs={"axes": (1,), "correction": _c})
case("var", [randn(2, 3, 4, scale=100.0)], _var_ref, attrs={"axes": (0, 2), "correction": 0},
     id="var-scaled")

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
