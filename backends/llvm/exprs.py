"""Element expressions of the loop-nest IR, and index arithmetic.

An expression (`Expr`) computes one element: loop variables, constants, loads from buffers
at a flat element index, operations, and references to values bound by statements.
Expressions are hash-consed (two structurally equal expressions are the same object), so
code generation gets common-subexpression elimination by memoizing on identity. Index
arithmetic is kept in a canonical affine form where it is affine: vectorization reads the
stride of a load along the vector loop from it, loop collapsing reads the coefficients.
"""
from __future__ import annotations

import functools
import weakref
from typing import TYPE_CHECKING, Iterable, Iterator, Sequence

import numpy as np

if TYPE_CHECKING:
    from backends.llvm.loops import Buffer

INDEX = "int64"  # the dtype of loop variables and flat indices

_INTERN: "weakref.WeakValueDictionary[tuple, Expr]" = weakref.WeakValueDictionary()


class Expr:
    """A hash-consed expression node; build through the constructors below."""

    __slots__ = ("dtype", "_aff", "_vars", "__weakref__")

    def __new__(cls, *fields):
        key = (cls,) + tuple(id(f) if isinstance(f, Expr) else f for f in fields)
        found = _INTERN.get(key)
        if found is not None:
            return found
        obj = super().__new__(cls)
        obj._init(*fields)
        obj._aff = False  # not computed yet
        obj._vars = None
        # the key holds only the children's ids: the object itself keeps them alive
        _INTERN[key] = obj
        return obj

    def _init(self, *fields) -> None:
        raise NotImplementedError

    def children(self) -> tuple["Expr", ...]:
        return ()

    @property
    def vars(self) -> frozenset:
        """Names of the loop variables the expression depends on."""
        if self._vars is None:
            out = set()
            for c in self.children():
                out |= c.vars
            self._vars = frozenset(out)
        return self._vars


class Var(Expr):
    __slots__ = ("name",)

    def _init(self, name: str) -> None:
        self.name, self.dtype = name, INDEX

    @property
    def vars(self) -> frozenset:
        if self._vars is None:
            self._vars = frozenset((self.name,))
        return self._vars

    def __repr__(self) -> str:
        return self.name


class Const(Expr):
    __slots__ = ("value",)

    def _init(self, value, dtype: str) -> None:
        self.value, self.dtype = value, dtype

    def __new__(cls, value, dtype: str = INDEX):
        # 0.0 and -0.0 (and NaN payloads) must stay distinct constants
        if isinstance(value, float):
            import struct
            return Expr.__new__(cls, _FloatKey(struct.pack("<d", value), value), dtype)
        return Expr.__new__(cls, value, dtype)

    def __repr__(self) -> str:
        return f"{self.value}:{self.dtype}"


class _FloatKey:
    """A float constant keyed by its bits (so -0.0 != 0.0 and NaN == NaN as keys)."""
    __slots__ = ("bits", "value")

    def __init__(self, bits: bytes, value: float):
        self.bits, self.value = bits, value

    def __hash__(self) -> int:
        return hash(self.bits)

    def __eq__(self, other) -> bool:
        return isinstance(other, _FloatKey) and other.bits == self.bits


def _const_init(self, value, dtype):
    self.value = value.value if isinstance(value, _FloatKey) else value
    self.dtype = dtype


Const._init = _const_init


class Load(Expr):
    """buf[index]: index is a flat element index (int64)."""
    __slots__ = ("buf", "index")

    def _init(self, buf: "Buffer", index: Expr) -> None:
        self.buf, self.index, self.dtype = buf, index, buf.dtype

    def children(self) -> tuple[Expr, ...]:
        return (self.index,)

    def __repr__(self) -> str:
        return f"{self.buf.name}[{self.index!r}]"


class Op(Expr):
    """An operation: `op` names an entry of codegen's operation table."""
    __slots__ = ("op", "args", "attr")

    def _init(self, op: str, args: tuple, dtype: str, attr=None) -> None:
        self.op, self.args, self.dtype, self.attr = op, args, dtype, attr

    def __new__(cls, op: str, args: Sequence[Expr], dtype: str, attr=None):
        args = tuple(args)
        obj = Expr.__new__(cls, op, _Args(args), dtype, attr)
        return obj

    def children(self) -> tuple[Expr, ...]:
        return self.args

    def __repr__(self) -> str:
        extra = f"[{self.attr}]" if self.attr is not None else ""
        return f"{self.op}{extra}({', '.join(map(repr, self.args))}):{self.dtype}"


class _Args:
    """A tuple of child expressions keyed by their identities."""
    __slots__ = ("items", "_hash")

    def __init__(self, items: tuple):
        self.items = items
        self._hash = hash(tuple(id(x) for x in items))

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other) -> bool:
        return isinstance(other, _Args) and len(other.items) == len(self.items) and all(
            a is b for a, b in zip(self.items, other.items))


def _op_init(self, op, args, dtype, attr=None):
    self.op, self.args, self.dtype, self.attr = op, args.items, dtype, attr


Op._init = _op_init


class Ref(Expr):
    """The value bound by a Let or Reduce statement of that name."""
    __slots__ = ("name",)

    def _init(self, name: str, dtype: str) -> None:
        self.name, self.dtype = name, dtype

    def __repr__(self) -> str:
        return f"${self.name}"


# -- index arithmetic in canonical affine form ----------------------------------------------------
Affine = tuple  # (const, ((var, coeff), ...)) with vars sorted


def affine(e: Expr) -> Affine | None:
    """(c, ((v, k), ...)) when e == c + sum k*v exactly, else None. Cached per node."""
    if e._aff is not False:
        return e._aff
    out = None
    if e.dtype == INDEX:
        if isinstance(e, Const):
            out = (int(e.value), ())
        elif isinstance(e, Var):
            out = (0, ((e.name, 1),))
        elif isinstance(e, Op) and e.op == "add":
            parts = [affine(a) for a in e.args]
            if all(p is not None for p in parts):
                out = _aff_sum(parts)
        elif isinstance(e, Op) and e.op == "mul":
            a, b = (affine(x) for x in e.args)
            if a is not None and b is not None:
                if not a[1]:
                    out = _aff_scale(b, a[0])
                elif not b[1]:
                    out = _aff_scale(a, b[0])
    e._aff = out
    return out


def _aff_sum(parts: Iterable[Affine]) -> Affine:
    const, coeffs = 0, {}
    for c, terms in parts:
        const += c
        for v, k in terms:
            coeffs[v] = coeffs.get(v, 0) + k
    return const, tuple(sorted((v, k) for v, k in coeffs.items() if k))


def _aff_scale(a: Affine, k: int) -> Affine:
    if k == 0:
        return 0, ()
    return a[0] * k, tuple((v, c * k) for v, c in a[1])


def from_affine(a: Affine) -> Expr:
    """The canonical expression of an affine form."""
    const, terms = a
    parts: list[Expr] = []
    for v, k in terms:
        parts.append(Var(v) if k == 1 else Op("mul", (Var(v), Const(k)), INDEX))
    if const or not parts:
        parts.append(Const(const))
    if len(parts) == 1:
        return parts[0]
    return Op("add", tuple(parts), INDEX)


def idx(value) -> Expr:
    """An index expression from an int or an Expr."""
    return value if isinstance(value, Expr) else Const(int(value))


def iadd(*xs) -> Expr:
    """Sum of index expressions, canonical when affine; (x // k) * k + x % k folds to x."""
    xs = [idx(x) for x in xs]
    parts = [affine(x) for x in xs]
    if all(p is not None for p in parts):
        return from_affine(_aff_sum(parts))
    terms: dict = {}  # id(atom) -> [coeff, atom]
    const = 0
    for x in xs:
        c, found = _terms(x)
        const += c
        for k, atom in found:
            slot = terms.setdefault(id(atom), [0, atom])
            slot[0] += k
    _fold_divmod(terms)
    parts = [(k, atom) for k, atom in terms.values() if k]
    affine_part = [(k, a) for k, a in parts if affine(a) is not None]
    other = [(k, a) for k, a in parts if affine(a) is None]
    base = from_affine(_aff_sum([_aff_scale(affine(a), k) for k, a in affine_part] +
                                [(const, ())]))
    rest = [a if k == 1 else Op("mul", (a, Const(k)), INDEX) for k, a in other]
    if not rest:
        return base
    items = rest + ([base] if not (isinstance(base, Const) and base.value == 0) else [])
    return items[0] if len(items) == 1 else Op("add", tuple(items), INDEX)


def _terms(x: Expr) -> tuple[int, list]:
    """x as const + sum coeff * atom (atoms: variables and non-affine expressions)."""
    a = affine(x)
    if a is not None:
        return a[0], [(k, Var(v)) for v, k in a[1]]
    if isinstance(x, Op) and x.op == "add":
        const, out = 0, []
        for y in x.args:
            c, t = _terms(y)
            const += c
            out += t
        return const, out
    if isinstance(x, Op) and x.op == "mul" and isinstance(x.args[1], Const):
        c, t = _terms(x.args[0])
        k = int(x.args[1].value)
        return c * k, [(k * coeff, atom) for coeff, atom in t]
    return 0, [(1, x)]


def _fold_divmod(terms: dict) -> None:
    """c*(x % k) + c*k*(x // k) -> c*x, repeatedly (undoes a row-major unflatten)."""
    changed = True
    while changed:
        changed = False
        for key, (c1, atom) in list(terms.items()):
            if c1 == 0 or not (isinstance(atom, Op) and atom.op == "imod"):
                continue
            x, k = atom.args
            partner = Op("ifloordiv", (x, k), INDEX)
            slot = terms.get(id(partner))
            if slot is None or slot[0] != c1 * int(k.value):
                continue
            terms[key][0] = 0
            slot[0] = 0
            target = terms.setdefault(id(x), [0, x])
            target[0] += c1
            changed = True


def imul(x, k) -> Expr:
    """x * k for an index expression x and an int (or index expression) k."""
    x, k = idx(x), idx(k)
    a, b = affine(x), affine(k)
    if a is not None and b is not None and (not a[1] or not b[1]):
        return from_affine(_aff_scale(b, a[0]) if not a[1] else _aff_scale(a, b[0]))
    if isinstance(k, Const) and k.value == 1:
        return x
    if isinstance(x, Const) and x.value == 1:
        return k
    return Op("mul", (x, k), INDEX)


def isub(a, b) -> Expr:
    return iadd(a, imul(b, -1))


def ifloordiv(x, k: int) -> Expr:
    """floor(x / k) for a positive int k."""
    x = idx(x)
    if k == 1:
        return x
    if isinstance(x, Const):
        return Const(int(x.value) // k)
    return Op("ifloordiv", (x, Const(k)), INDEX)


def imod(x, k: int) -> Expr:
    """x mod k (result in [0, k)) for a positive int k."""
    x = idx(x)
    if k == 1:
        return Const(0)
    if isinstance(x, Const):
        return Const(int(x.value) % k)
    return Op("imod", (x, Const(k)), INDEX)


def flat_index(index: Sequence[Expr], shape: Sequence[int]) -> Expr:
    """Row-major flat index of a multi-index into `shape` (size-1 axes contribute 0)."""
    strides = row_major_strides(shape)
    return iadd(*[imul(i, s) for i, s, d in zip(index, strides, shape) if d != 1], 0)


def unflatten(flat: Expr, shape: Sequence[int]) -> list[Expr]:
    """The multi-index of a row-major flat index (nested floor divisions, so that
    flat_index(unflatten(x)) folds back to x)."""
    out: list[Expr] = [Const(0)] * len(shape)
    q = flat
    for d in range(len(shape) - 1, -1, -1):
        if d == 0:
            out[0] = q
        else:
            out[d] = imod(q, shape[d])
            q = ifloordiv(q, shape[d])
    return out


def row_major_strides(shape: Sequence[int]) -> list[int]:
    strides, acc = [], 1
    for d in reversed(shape):
        strides.append(acc)
        acc *= max(d, 1)
    return strides[::-1]


def stride_along(e: Expr, var: str) -> int | None:
    """k when e == k*var + (terms without var), else None (0 when var does not occur)."""
    if var not in e.vars:
        return 0
    a = affine(e)
    if a is not None:
        return dict(a[1]).get(var, 0)
    if isinstance(e, Op) and e.op == "add":
        total = 0
        for x in e.args:
            k = stride_along(x, var)
            if k is None:
                return None
            total += k
        return total
    return None


# -- evaluation over integer grids -------------------------------------------------------------
# numpy's integer ops round and wrap as the generated int64 code does (floor division and a
# non-negative remainder for the positive divisors of ifloordiv and imod)
_INDEX_OPS = {
    "add": lambda *xs: functools.reduce(np.add, xs),
    "mul": lambda *xs: functools.reduce(np.multiply, xs),
    "sub": np.subtract,
    "neg": np.negative,
    "ifloordiv": np.floor_divide,
    "imod": np.mod,
    "minimum": np.minimum,
    "maximum": np.maximum,
}


def eval_index(e: Expr, env: dict[str, np.ndarray],
               memo: dict | None = None) -> np.ndarray | None:
    """The values of the index expression e with its variables bound to int64 arrays that
    broadcast together; None when e holds anything but index arithmetic (a load, a cast,
    an unbound variable), so that a caller can give up rather than guess."""
    memo = {} if memo is None else memo
    key = id(e)
    if key in memo:
        return memo[key]
    out = None
    if e.dtype != INDEX:
        pass
    elif isinstance(e, Const):
        out = np.int64(e.value)
    elif isinstance(e, Var):
        out = env.get(e.name)
    elif isinstance(e, Op) and e.op in _INDEX_OPS:
        args = [eval_index(a, env, memo) for a in e.args]
        if all(a is not None for a in args):
            out = np.asarray(_INDEX_OPS[e.op](*args), dtype=np.int64)
    memo[key] = out
    return out


# -- substitution ------------------------------------------------------------------------------
def substitute(e: Expr, env: dict[str, Expr], memo: dict | None = None) -> Expr:
    """e with the variables named in env replaced (index arithmetic re-canonicalized)."""
    if memo is None:
        memo = {}
    if not (e.vars & env.keys()):
        return e
    key = id(e)
    if key in memo:
        return memo[key]
    if isinstance(e, Var):
        out = env[e.name]
    elif isinstance(e, Load):
        out = Load(e.buf, substitute(e.index, env, memo))
    elif isinstance(e, Op):
        args = [substitute(a, env, memo) for a in e.args]
        if e.op == "add" and e.dtype == INDEX:
            out = iadd(*args)
        elif e.op == "mul" and e.dtype == INDEX:
            out = imul(*args)
        else:
            out = Op(e.op, args, e.dtype, e.attr)
    else:
        out = e
    memo[key] = out
    return out


def replace(e: Expr, target: Expr, by: Expr, memo: dict | None = None) -> Expr:
    """e with every occurrence of the subexpression `target` (by identity) replaced."""
    if e is target:
        return by
    memo = {} if memo is None else memo
    if id(e) in memo:
        return memo[id(e)]
    if isinstance(e, Load):
        out = Load(e.buf, replace(e.index, target, by, memo))
    elif isinstance(e, Op):
        out = Op(e.op, [replace(a, target, by, memo) for a in e.args], e.dtype, e.attr)
    else:
        out = e
    memo[id(e)] = out
    return out


def contains(e: Expr, target: Expr) -> bool:
    return any(x is target for x in walk_exprs(e))


def walk_exprs(e: Expr, seen: set | None = None) -> Iterator[Expr]:
    seen = set() if seen is None else seen
    stack = [e]
    while stack:
        x = stack.pop()
        if id(x) in seen:
            continue
        seen.add(id(x))
        yield x
        stack.extend(x.children())
