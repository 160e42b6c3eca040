"""passes/autodiff.py: bad input, stop_gradient, gradients through composites (direct VJPs
against their decompositions, batch_norm in training mode) and second derivatives through
dlc.call, each against torch.autograd or float64 finite differences."""
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import dlc
import dlc.nn.functional as F
from backends.eager import run_graph
from dlc import nn
from dlc.errors import DlcError
from dlc.ir.builder import Builder
from dlc.ir.types import TensorType
from passes.decompose import decompose
from tests.ops.harness import assert_allclose


def spec(*shape: int, dtype: str = "float64") -> dlc.TensorSpec:
    return dlc.TensorSpec(shape, dtype)


def run(graph, *arrays) -> list[np.ndarray]:
    """Run with `arrays` bound to the user inputs and the graph's own data to the rest."""
    given = iter(arrays)
    return run_graph(graph, [next(given) if v.role == "input" else v.data
                             for v in graph.inputs])


def value_of(graph, *arrays) -> float:
    return run(graph, *arrays)[0]


# -- bad input ---------------------------------------------------------------------------------
def test_a_loss_that_is_not_a_scalar_is_refused_naming_the_output_and_its_type():
    graph = dlc.trace(lambda x: x * 2.0, spec(3))
    with pytest.raises(DlcError, match=r"float scalar; output 0 of @\w+ \(the result of mul "
                                       r"at .*test_autodiff.py:\d+\) is f64\[3\]"):
        dlc.grad(graph)


def test_an_integer_loss_is_refused_naming_its_type():
    graph = dlc.trace(lambda x: (x > 0.0).sum(), spec(3))
    with pytest.raises(DlcError, match=r"output 0 of @\w+ \(the result of sum .*\) is i64\[\]"):
        dlc.grad(graph)


def test_an_unknown_wrt_name_lists_the_valid_names():
    graph = dlc.trace(lambda x, y, n: (x * y).sum(), spec(3), spec(3), spec(dtype="int64"))
    with pytest.raises(DlcError, match=r"wrt name 'z' is not an input of @\w+; "
                                       r"differentiable inputs: x, y$"):
        dlc.grad(graph, ["x", "z"])


def test_an_integer_input_in_wrt_is_refused_naming_it_and_its_dtype():
    graph = dlc.trace(lambda x, n: (x * n.cast("float64")).sum(), spec(3),
                      spec(3, dtype="int64"))
    with pytest.raises(DlcError, match=r"input 'n' of @\w+ has dtype int64 and is not "
                                       r"differentiable"):
        dlc.grad(graph, ["x", "n"])


def test_an_output_without_a_path_from_wrt_gets_zeros_and_a_warning(rng):
    graph = dlc.trace(lambda x, y: (y * y).sum(), spec(2, 3), spec(4))
    with pytest.warns(UserWarning, match="no differentiable path from x; the gradients are "
                                         "zero") as record:
        g = dlc.grad(graph, ["x"])
    assert record[0].filename == __file__  # the warning points at the caller
    x, y = rng.standard_normal((2, 3)), rng.standard_normal(4)
    (gx,) = run_graph(g, [x, y])
    assert gx.shape == (2, 3) and gx.dtype == np.float64 and not gx.any()


def test_stop_gradient_and_comparisons_cut_the_path(rng):
    def f(x):
        return (x.detach() * 2.0).sum() + (x > 0.0).cast("float64").sum()
    graph = dlc.trace(f, spec(3))
    with pytest.warns(UserWarning, match="no differentiable path"):
        g = dlc.grad(graph, "x")  # a single name is accepted too
    (gx,) = run_graph(g, [rng.standard_normal(3)])
    np.testing.assert_array_equal(gx, np.zeros(3))


def test_an_input_the_output_does_not_use_gets_zeros_without_a_warning(rng):
    graph = dlc.trace(lambda x, y: (x * x).sum(), spec(3), spec(2, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        g = dlc.grad(graph, ["x", "y"])
    x = rng.standard_normal(3)
    gx, gy = run_graph(g, [x, rng.standard_normal((2, 2))])
    assert_allclose(gx, 2 * x, rtol=1e-15)
    np.testing.assert_array_equal(gy, np.zeros((2, 2)))


# -- stop_gradient ---------------------------------------------------------------------------
def test_stop_gradient_passes_values_and_no_gradient(rng):
    def f(x):
        return (x * x.detach()).sum() + (dlc.stop_gradient(x).exp() * x).sum()
    graph = dlc.trace(f, spec(2, 3))
    x = rng.standard_normal((2, 3))
    value, gx = run_graph(dlc.value_and_grad(graph), [x])
    t = torch.tensor(x, requires_grad=True)
    expected = (t * t.detach()).sum() + (t.detach().exp() * t).sum()
    expected.backward()
    assert_allclose(value, expected.item(), rtol=1e-14)
    assert_allclose(gx, t.grad.numpy(), rtol=1e-14)
    # after autodiff it means nothing: decomposition removes it before a backend sees it
    lowered = decompose(graph)
    assert "stop_gradient" not in {n.op.name for n in lowered.nodes}
    assert value_of(lowered, x) == value_of(graph, x)


# -- ties --------------------------------------------------------------------------------------
def test_max_splits_the_gradient_evenly_among_three_tied_maxima(rng):
    x = np.array([[2.0, 5.0, 5.0, 5.0], [1.0, 0.0, 1.0, -3.0]])
    w = rng.standard_normal(2)
    graph = dlc.trace(lambda x, w: (x.max(1) * w).sum(), spec(2, 4), spec(2))
    (gx,) = run_graph(dlc.grad(graph, ["x"]), [x, w])
    t = torch.tensor(x, requires_grad=True)
    (t.amax(1) * torch.from_numpy(w)).sum().backward()
    assert_allclose(gx, t.grad.numpy(), rtol=1e-15)
    assert_allclose(gx[0], [0.0] + [w[0] / 3] * 3, rtol=1e-15)


# -- direct VJPs of composites -------------------------------------------------------------------
def _int_target(n_classes, *shape):
    def gen(rng):
        t = rng.integers(0, n_classes, shape)
        t.reshape(-1)[1] = -100  # an ignored position
        return t
    return gen


DIRECT = {  # op: (input generators, attrs)
    "softmax": ([lambda rng: rng.standard_normal((3, 5))], {"axis": 1}),
    "log_softmax": ([lambda rng: rng.standard_normal((3, 5))], {"axis": 0}),
    "logsumexp": ([lambda rng: rng.standard_normal((3, 4, 5))], {"axes": (0, 2)}),
    "cross_entropy": ([lambda rng: rng.standard_normal((6, 4, 2)), _int_target(4, 6, 2)],
                      {"label_smoothing": 0.2}),
    "bce_with_logits": ([lambda rng: rng.standard_normal((3, 4)),
                         lambda rng: rng.uniform(0.0, 1.0, (3, 4))], {"reduction": "sum"}),
}


def _op_loss(op: str, arrays, attrs, w):
    with Builder(op) as b:
        ins = [b.add_input(f"a{i}", TensorType(a.shape, a.dtype.name))
               for i, a in enumerate(arrays)]
        wv = b.add_input("w", TensorType(w.shape, w.dtype.name))
        out = b.emit(op, tuple(ins), attrs)
        total = b.emit("sum", (b.emit("mul", (out, wv), {}),),
                       {"axes": tuple(range(w.ndim)), "keepdims": False})
    return b.finish([total])


@pytest.mark.parametrize("op", DIRECT)
def test_direct_vjps_agree_with_the_decomposition_and_are_smaller(op, rng):
    gens, attrs = DIRECT[op]
    arrays = [gen(rng) for gen in gens]
    graph = _op_loss(op, arrays, attrs, np.zeros(()))
    w = rng.standard_normal(graph.nodes[0].type.shape)
    graph = _op_loss(op, arrays, attrs, w)
    direct = dlc.grad(graph, ["a0"])
    through_primitives = dlc.grad(decompose(graph), ["a0"])
    (g_direct,) = run_graph(direct, arrays + [w])
    (g_prims,) = run_graph(through_primitives, arrays + [w])
    assert_allclose(g_direct, g_prims, rtol=1e-12, atol=1e-14)
    assert 2 * len(direct.nodes) < len(through_primitives.nodes)


# -- batch_norm in training mode ---------------------------------------------------------------
def _bn_loss(x, weight, bias, w):
    return (F.batch_norm(x, None, None, weight, bias, training=True) * w).sum()


def test_batch_norm_in_training_mode_matches_torch_and_finite_differences(rng):
    """The batch statistics are functions of x: its gradient flows through them too."""
    shape = (4, 3, 2)
    names = ["x", "weight", "bias"]
    for dtype in ("float32", "float64"):
        graph = dlc.trace(_bn_loss, spec(*shape, dtype=dtype), spec(3, dtype=dtype),
                          spec(3, dtype=dtype), spec(*shape, dtype=dtype))
        arrays = [rng.standard_normal(s).astype(dtype) for s in (shape, (3,), (3,), shape)]
        grads = run_graph(dlc.grad(graph, names), arrays)
        ts = [torch.tensor(a, requires_grad=i < 3) for i, a in enumerate(arrays)]
        (TF.batch_norm(ts[0], None, None, ts[1], ts[2], training=True) * ts[3]).sum().backward()
        tol = {"float32": (1e-4, 1e-5), "float64": (1e-10, 1e-12)}[dtype]
        for i, g in enumerate(grads):
            assert_allclose(g, ts[i].grad.numpy(), rtol=tol[0], atol=tol[1],
                            err_msg=f"{dtype} d/d {names[i]}")
    # float64: central differences on x
    x = arrays[0]
    eps, fd = 1e-6, np.zeros_like(x)
    for j in range(x.size):
        plus, minus = x.copy(), x.copy()
        plus.reshape(-1)[j] += eps
        minus.reshape(-1)[j] -= eps
        fd.reshape(-1)[j] = (value_of(graph, plus, *arrays[1:]) -
                             value_of(graph, minus, *arrays[1:])) / (2 * eps)
    assert_allclose(grads[0], fd, rtol=1e-5, atol=1e-6)


# -- second order through dlc.call -------------------------------------------------------------
def _mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(5, 6, dtype="float64"), nn.Tanh(),
                         nn.Linear(6, 4, dtype="float64"), nn.Softplus(),
                         nn.Linear(4, 3, dtype="float64"))


def test_hessian_vector_product_of_an_mlp_loss_matches_torch_double_backward(rng):
    model = _mlp()
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    for _, p in model.named_parameters():
        p[...] = rng.standard_normal(p.shape) * 0.7
    loss = dlc.trace(lambda x, y: F.cross_entropy(model(x), y), spec(8, 5),
                     spec(8, dtype="int64"), module=model)
    grad_graph = dlc.grad(loss, names)

    def directional(x, y, *vs):
        """<grad L, v>: its gradient is the Hessian-vector product H v."""
        grads = dlc.call(grad_graph, x, y)
        return sum((g * v).sum() for g, v in zip(grads, vs))

    hvp_graph = dlc.grad(dlc.trace(directional, spec(8, 5), spec(8, dtype="int64"),
                                   *[spec(*s) for s in shapes]), names)
    x, y = rng.standard_normal((8, 5)), rng.integers(0, 3, 8)
    vs = [rng.standard_normal(s) for s in shapes]
    hv = run(hvp_graph, x, y, *vs)

    tmodel = torch.nn.Sequential(torch.nn.Linear(5, 6), torch.nn.Tanh(), torch.nn.Linear(6, 4),
                                 torch.nn.Softplus(), torch.nn.Linear(4, 3)).double()
    tmodel.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})
    params = list(tmodel.parameters())
    tloss = TF.cross_entropy(tmodel(torch.from_numpy(x)), torch.from_numpy(y))
    tgrads = torch.autograd.grad(tloss, params, create_graph=True)
    dot = sum((g * torch.from_numpy(v)).sum() for g, v in zip(tgrads, vs))
    expected = torch.autograd.grad(dot, params)
    for name, got, want in zip(names, hv, expected):
        assert not np.isnan(got).any()
        assert_allclose(got, want.numpy(), rtol=1e-9, atol=1e-12, err_msg=name)


LABELS = np.array([0, 3, 1])
TARGETS = np.array([[0.0, 1.0, 0.5, 0.2], [1.0, 0.0, 0.3, 0.9], [0.5, 0.5, 0.1, 1.0]])
SCALAR_FUNCTIONS = {
    "sin-exp": lambda x: (x.sin() * x.exp()).sum(),
    "tanh-softplus": lambda x: F.softplus(x.tanh() * 3.0).sum(),
    "rational-pow": lambda x: (x / (x * x + 1.0)).sum() + (x ** 3.0).sum() +
    ((x.abs() + 1.0) ** x).sum(),
    "sqrt-log-rsqrt": lambda x: ((x * x + 1.0).sqrt().log() * x).sum() +
    (x * x + 0.5).rsqrt().sum(),
    "gelu": lambda x: (F.gelu(x) + F.gelu(x, approximate="tanh") * x).sum(),
    "sigmoid-erf-silu": lambda x: (x.sigmoid() * x.erf() + F.silu(x)).sum(),
    "softmax": lambda x: (F.softmax(x, 1) * x).sum(),
    "log_softmax": lambda x: (F.log_softmax(x, 0) ** 2.0).sum(),
    "logsumexp": lambda x: (F.logsumexp(x, 1) ** 2.0).sum(),
    "layer_norm": lambda x: (F.layer_norm(x, (4,)) * x).sum(),
    "cross_entropy": lambda x: F.cross_entropy(x, LABELS, label_smoothing=0.1) * 3.0,
    "bce_with_logits": lambda x: F.binary_cross_entropy_with_logits(x, TARGETS),
    "prod-var-mean": lambda x: x.prod(1).sum() + (x.var(0) * x.mean(0)).sum(),
    "max-min-maximum": lambda x: (x.max(1) ** 2.0).sum() + (x.min(0) * x.max(0)).sum() +
    (x.maximum(x * 0.5) * x).sum(),
    "broadcast-where": lambda x: (x * x.sum(0)).sum() +
    dlc.where(x > 0.0, x * x, x.exp()).sum() + (F.relu(x) ** 3.0).sum(),
    "div-sub-log1p-expm1": lambda x: ((x - 2.0) / (x.exp() + 1.0)).sum() +
    (x * x).log1p().sum() + (x * 0.3).expm1().sum(),
}


@pytest.mark.parametrize("name", SCALAR_FUNCTIONS)
def test_second_derivatives_match_finite_differences_of_the_first(name, rng):
    """H v from differentiating <grad f, v> against central differences of grad f along v."""
    f = SCALAR_FUNCTIONS[name]
    first = dlc.grad(dlc.trace(f, spec(3, 4)))

    def directional(x, v):
        return (dlc.call(first, x) * v).sum()

    second = dlc.grad(dlc.trace(directional, spec(3, 4), spec(3, 4)), ["x"])
    x, v = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    (hv,) = run(second, x, v)
    eps = 1e-5
    fd = (value_of(first, x + eps * v) - value_of(first, x - eps * v)) / (2 * eps)
    assert not np.isnan(hv).any()
    assert_allclose(hv, fd, rtol=1e-6, atol=1e-7)
