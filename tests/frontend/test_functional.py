"""dlc.nn.functional vs torch.nn.functional (and torch's tensor functions) on random inputs.

Most cases are one function `fn(ns, *tensors)` run twice: with ns = dlc.nn.functional on
traced tensors (compiled, eager backend) and with ns = torch.nn.functional / torch on torch
tensors, so the call itself checks that names, signatures and keywords agree. Cases whose
dlc call uses NumPy keywords (axis, keepdims) give a separate torch call.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import dlc
import dlc.nn.functional as F
from dlc.errors import ShapeError
from tests.ops.cases_contraction import F32_EPS
from tests.ops.harness import TOL, assert_allclose, boolean, positive, randint, randn, uniform


@dataclass
class FCase:
    id: str
    fn: Callable                       # fn(ns, *tensors)
    inputs: list
    ns: object = TF                    # torch namespace the same call runs in
    torch_fn: Callable | None = None   # torch_fn(*tensors) when the call differs
    atol: float | None = None          # None: harness.TOL


CASES: list[FCase] = []


def case(id: str, fn, *inputs, ns=TF, torch_fn=None, atol=None) -> None:
    CASES.append(FCase(id, fn, list(inputs), ns, torch_fn, atol))


def sum_atol(n: int) -> float:
    """float32 atol for outputs that sum n unit-normal products: dlc and torch add them in
    different orders, each within about n * eps32 of the exact sum (the rule and its
    measurement: tests/ops/cases_contraction.py conv_case)."""
    return max(TOL["float32"][1], n * F32_EPS)


def run_dlc(fn, arrays: list[np.ndarray]):
    """Trace fn on specs of the arrays, compile (eager) and run."""
    specs = [dlc.TensorSpec(a.shape, a.dtype.name) for a in arrays]
    return dlc.compile(fn, *specs)(*arrays)


def check(actual, expected, rtol=None, atol=None) -> None:
    """Shapes and dtypes equal, values within harness.TOL; NaN never passes."""
    if isinstance(expected, torch.Tensor):
        expected = expected.detach().numpy()
    expected = np.asarray(expected)
    actual = np.asarray(actual)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    assert actual.dtype == expected.dtype, (actual.dtype, expected.dtype)
    if actual.dtype.kind in "biu":
        np.testing.assert_array_equal(actual, expected)
        return
    assert not np.isnan(actual).any(), "NaN in the dlc output"
    r, a = TOL[actual.dtype.name]
    np.testing.assert_allclose(actual, expected, rtol=r if rtol is None else rtol,
                               atol=a if atol is None else atol, equal_nan=False)


# -- activations -------------------------------------------------------------------------------
X = randn(3, 4, 5, scale=3.0)
case("relu", lambda ns, x: ns.relu(x), X)
case("relu6", lambda ns, x: ns.relu6(x), randn(3, 4, 5, scale=5.0))
case("leaky_relu", lambda ns, x: ns.leaky_relu(x, 0.2), X)
case("leaky_relu-kw", lambda ns, x: ns.leaky_relu(x, negative_slope=0.05), X)
case("gelu", lambda ns, x: ns.gelu(x), X)
case("gelu-tanh", lambda ns, x: ns.gelu(x, approximate="tanh"), X)
case("silu", lambda ns, x: ns.silu(x), X)
case("sigmoid", lambda ns, x: ns.sigmoid(x), X)
case("tanh", lambda ns, x: ns.tanh(x), X)
case("softplus", lambda ns, x: ns.softplus(x), X)
case("softplus-beta", lambda ns, x: ns.softplus(x, beta=2.0, threshold=4.0), X)
case("elu", lambda ns, x: ns.elu(x, alpha=0.7), X)
case("hardtanh", lambda ns, x: ns.hardtanh(x, -0.5, 0.8), X)
case("logsigmoid", lambda ns, x: ns.logsigmoid(x), randn(3, 4, scale=10.0))
case("softmax", lambda ns, x: ns.softmax(x, dim=1), X)
case("softmax-neg", lambda ns, x: ns.softmax(x, -1), X)
case("softmax-axis", lambda ns, x: ns.softmax(x, axis=-1), X,
     torch_fn=lambda x: TF.softmax(x, dim=-1))
case("log_softmax", lambda ns, x: ns.log_softmax(x, dim=0), X)
case("log_softmax-axis", lambda ns, x: ns.log_softmax(x, axis=2), X,
     torch_fn=lambda x: TF.log_softmax(x, dim=2))
case("logsumexp", lambda ns, x: ns.logsumexp(x, dim=(0, 2), keepdim=True), X, ns=torch)
case("logsumexp-axis", lambda ns, x: ns.logsumexp(x, axis=1, keepdims=False), X,
     torch_fn=lambda x: torch.logsumexp(x, dim=1))

# -- linear --------------------------------------------------------------------------------------
case("linear", lambda ns, x, w, b: ns.linear(x, w, b), randn(2, 3, 6), randn(4, 6),
     randn(4))
case("linear-nobias", lambda ns, x, w: ns.linear(x, w), randn(5, 6), randn(4, 6))
case("linear-1d", lambda ns, x, w, b: ns.linear(x, w, bias=b), randn(6), randn(4, 6),
     randn(4))
case("bilinear", lambda ns, a, b, w, c: ns.bilinear(a, b, w, c), randn(5, 3), randn(5, 4),
     randn(2, 3, 4), randn(2))
case("bilinear-3d", lambda ns, a, b, w: ns.bilinear(a, b, w), randn(2, 5, 3), randn(2, 5, 4),
     randn(2, 3, 4))

# -- convolution ---------------------------------------------------------------------------------
case("conv1d", lambda ns, x, w, b: ns.conv1d(x, w, b, stride=2, padding=1, dilation=2),
     randn(2, 3, 11), randn(4, 3, 3), randn(4), atol=sum_atol(10))
case("conv1d-same-even", lambda ns, x, w: ns.conv1d(x, w, padding="same"),
     randn(2, 3, 9), randn(4, 3, 4), atol=sum_atol(12))
case("conv1d-unbatched", lambda ns, x, w: ns.conv1d(x, w), randn(3, 9), randn(2, 3, 3),
     atol=sum_atol(9))
case("conv2d", lambda ns, x, w, b: ns.conv2d(x, w, b, stride=(2, 1), padding=(1, 2)),
     randn(2, 3, 7, 8), randn(4, 3, 3, 3), randn(4), atol=sum_atol(28))
case("conv2d-groups", lambda ns, x, w, b: ns.conv2d(x, w, b, padding=1, groups=2),
     randn(2, 4, 6, 6), randn(6, 2, 3, 3), randn(6), atol=sum_atol(19))
case("conv2d-same-dil", lambda ns, x, w: ns.conv2d(x, w, padding="same", dilation=2),
     randn(1, 2, 7, 8), randn(3, 2, 2, 3), atol=sum_atol(12))
case("conv2d-valid", lambda ns, x, w: ns.conv2d(x, w, None, 1, "valid"),
     randn(1, 2, 6, 6), randn(3, 2, 3, 3), atol=sum_atol(18))
case("conv2d-unbatched", lambda ns, x, w: ns.conv2d(x, w, padding=1),
     randn(2, 5, 5), randn(3, 2, 3, 3), atol=sum_atol(18))
case("conv_transpose1d",
     lambda ns, x, w, b: ns.conv_transpose1d(x, w, b, stride=2, padding=1, output_padding=1),
     randn(2, 3, 6), randn(3, 4, 3), randn(4), atol=sum_atol(10))
case("conv_transpose2d",
     lambda ns, x, w, b: ns.conv_transpose2d(x, w, b, stride=2, padding=(0, 1),
                                             output_padding=(1, 0), groups=2, dilation=1),
     randn(2, 4, 5, 4), randn(4, 3, 3, 2), randn(6), atol=sum_atol(13))
case("conv_transpose2d-dil", lambda ns, x, w: ns.conv_transpose2d(x, w, dilation=2),
     randn(1, 2, 4, 4), randn(2, 3, 3, 3), atol=sum_atol(18))

# -- pooling and resampling ----------------------------------------------------------------------
case("max_pool1d", lambda ns, x: ns.max_pool1d(x, 3, stride=2, padding=1), randn(2, 3, 10))
case("max_pool2d", lambda ns, x: ns.max_pool2d(x, 2), randn(2, 3, 6, 8))
case("max_pool2d-opts",
     lambda ns, x: ns.max_pool2d(x, (3, 2), stride=(2, 1), padding=1, dilation=(1, 2),
                                 ceil_mode=True), randn(2, 3, 9, 8))
case("avg_pool1d", lambda ns, x: ns.avg_pool1d(x, 4, 2, padding=2, count_include_pad=False),
     randn(2, 3, 11))
case("avg_pool2d", lambda ns, x: ns.avg_pool2d(x, 3, stride=2, padding=1, ceil_mode=True),
     randn(2, 3, 8, 9))
case("avg_pool2d-divisor", lambda ns, x: ns.avg_pool2d(x, 2, divisor_override=3),
     randn(1, 2, 6, 6))
case("adaptive_avg_pool1d", lambda ns, x: ns.adaptive_avg_pool1d(x, 4), randn(2, 3, 10))
case("adaptive_avg_pool2d", lambda ns, x: ns.adaptive_avg_pool2d(x, (3, None)),
     randn(2, 3, 7, 5))
case("adaptive_avg_pool2d-int", lambda ns, x: ns.adaptive_avg_pool2d(x, 1), randn(2, 3, 7, 5))
case("interpolate-x2", lambda ns, x: ns.interpolate(x, scale_factor=2), randn(2, 3, 4, 5))
case("interpolate-x3-1d", lambda ns, x: ns.interpolate(x, scale_factor=3), randn(2, 3, 4))
case("interpolate-size", lambda ns, x: ns.interpolate(x, size=(7, 3)), randn(1, 2, 4, 5))
case("interpolate-frac", lambda ns, x: ns.interpolate(x, scale_factor=(1.5, 2.5)),
     randn(1, 2, 4, 3))
case("interpolate-exact", lambda ns, x: ns.interpolate(x, size=(7, 9), mode="nearest-exact"),
     randn(1, 2, 4, 5))
case("pad-constant", lambda ns, x: ns.pad(x, (1, 2, 0, 3), value=1.5), randn(2, 3, 4))
case("pad-crop", lambda ns, x: ns.pad(x, (-1, 2)), randn(2, 3, 4))
case("pad-reflect", lambda ns, x: ns.pad(x, (2, 1, 1, 2), mode="reflect"), randn(1, 2, 4, 5))
case("pad-replicate", lambda ns, x: ns.pad(x, (2, 1, 0, 3), mode="replicate"),
     randn(1, 2, 4, 5))
case("pad-circular", lambda ns, x: ns.pad(x, (2, 1, 1, 3), mode="circular"),
     randn(1, 2, 4, 5))

# -- normalization -------------------------------------------------------------------------------
case("layer_norm", lambda ns, x, w, b: ns.layer_norm(x, (4, 5), w, b), X, randn(4, 5),
     randn(4, 5))
case("layer_norm-plain", lambda ns, x: ns.layer_norm(x, [5], eps=1e-3), X)
case("rms_norm", lambda ns, x, w: ns.rms_norm(x, (5,), w), X, randn(5))
case("rms_norm-eps", lambda ns, x: ns.rms_norm(x, [4, 5], eps=1e-2), X)
case("group_norm", lambda ns, x, w, b: ns.group_norm(x, 2, w, b), randn(2, 6, 3, 4),
     randn(6), randn(6))
case("batch_norm-eval",
     lambda ns, x, m, v, w, b: ns.batch_norm(x, m, v, w, b, training=False, eps=1e-3),
     randn(4, 3, 5), randn(3), positive(3), randn(3), randn(3))
case("batch_norm-train", lambda ns, x, w, b: ns.batch_norm(x, None, None, w, b, True),
     randn(4, 3, 2, 5), randn(3), randn(3))
case("normalize", lambda ns, x: ns.normalize(x, dim=-1), X)
case("normalize-p1", lambda ns, x: ns.normalize(x, p=1.0, dim=0), X)

# -- dropout (identity cases), embedding ---------------------------------------------------------
case("dropout-eval", lambda ns, x: ns.dropout(x, 0.5, training=False), X)
case("dropout-p0", lambda ns, x: ns.dropout(x, p=0.0), X)
case("embedding", lambda ns, i, w: ns.embedding(i, w), randint(0, 7, 3, 4), randn(7, 5))
case("embedding-pad", lambda ns, i, w: ns.embedding(i, w, padding_idx=2),
     randint(0, 4, 3, 5), lambda rng, dt: _zero_row(randn(4, 3)(rng, dt), 2))
case("one_hot", lambda ns, i: ns.one_hot(i, 6), randint(0, 6, 3, 4))

# -- losses --------------------------------------------------------------------------------------
LOGITS, CLASSES = randn(6, 5, scale=2.0), randint(0, 5, 6)
case("cross_entropy", lambda ns, x, t: ns.cross_entropy(x, t), LOGITS, CLASSES)
case("cross_entropy-sum", lambda ns, x, t: ns.cross_entropy(x, t, reduction="sum"),
     LOGITS, CLASSES)
case("cross_entropy-ignore",
     lambda ns, x, t: ns.cross_entropy(x, t, ignore_index=1, reduction="none"),
     LOGITS, randint(0, 3, 6))
case("cross_entropy-smooth", lambda ns, x, t: ns.cross_entropy(x, t, label_smoothing=0.2),
     LOGITS, CLASSES)
case("cross_entropy-spatial", lambda ns, x, t: ns.cross_entropy(x, t), randn(2, 4, 3, 5),
     randint(0, 4, 2, 3, 5))
case("cross_entropy-probs", lambda ns, x, t: ns.cross_entropy(x, ns.softmax(t, 1)),
     LOGITS, randn(6, 5))
case("cross_entropy-probs-smooth",
     lambda ns, x, t: ns.cross_entropy(x, ns.softmax(t, 1), label_smoothing=0.1,
                                       reduction="none"), LOGITS, randn(6, 5))
case("cross_entropy-unbatched", lambda ns, x, t: ns.cross_entropy(x, t, reduction="none"),
     randn(5), randint(0, 5))
case("nll_loss", lambda ns, x, t: ns.nll_loss(ns.log_softmax(x, 1), t), LOGITS, CLASSES)
case("nll_loss-none", lambda ns, x, t: ns.nll_loss(x, t, reduction="none", ignore_index=0),
     LOGITS, randint(0, 3, 6))
case("mse_loss", lambda ns, x, y: ns.mse_loss(x, y), X, X)
case("mse_loss-none", lambda ns, x, y: ns.mse_loss(x, y, reduction="none"), X, X)
case("mse_loss-weight", lambda ns, x, y, w: ns.mse_loss(x, y, weight=w), X, X,
     positive(3, 4, 5))
case("l1_loss", lambda ns, x, y: ns.l1_loss(x, y, reduction="sum"), X, X)
case("bce_logits", lambda ns, x, y: ns.binary_cross_entropy_with_logits(x, y), X,
     uniform(0, 1, 3, 4, 5))
case("bce_logits-weights",
     lambda ns, x, y, w, p: ns.binary_cross_entropy_with_logits(x, y, w, pos_weight=p,
                                                                reduction="sum"),
     X, uniform(0, 1, 3, 4, 5), positive(3, 4, 5), positive(5))
case("bce", lambda ns, x, y: ns.binary_cross_entropy(x, y), uniform(0.05, 0.95, 4, 3),
     uniform(0, 1, 4, 3))

# -- attention -----------------------------------------------------------------------------------
Q, K, V = randn(2, 3, 4, 8), randn(2, 3, 6, 8), randn(2, 3, 6, 5)
case("sdpa", lambda ns, q, k, v: ns.scaled_dot_product_attention(q, k, v), Q, K, V)
case("sdpa-causal", lambda ns, q, k, v: ns.scaled_dot_product_attention(q, k, v,
                                                                        is_causal=True),
     Q, K, V)
case("sdpa-bool-mask",
     lambda ns, q, k, v, m: ns.scaled_dot_product_attention(q, k, v, attn_mask=m | _diag(m)),
     Q, K, V, boolean(4, 6))
case("sdpa-float-mask-scale",
     lambda ns, q, k, v, m: ns.scaled_dot_product_attention(q, k, v, m, scale=0.3),
     Q, K, V, randn(2, 1, 4, 6))
case("sdpa-gqa",
     lambda ns, q, k, v: ns.scaled_dot_product_attention(q, k, v, enable_gqa=True),
     randn(2, 4, 3, 8), randn(2, 2, 5, 8), randn(2, 2, 5, 6))
case("sdpa-3d", lambda ns, q, k, v: ns.scaled_dot_product_attention(q, k, v),
     randn(3, 4, 8), randn(3, 6, 8), randn(3, 6, 8))

# -- tensor functions (torch's module-level names) -----------------------------------------------
A, B = randn(2, 3, 4), randn(2, 5, 4)
case("cat", lambda ns, a, b: ns.cat([a, b], dim=1), A, B, ns=torch)
case("cat-axis", lambda ns, a, b: ns.concat((a, b), axis=-2), A, B,
     torch_fn=lambda a, b: torch.cat((a, b), dim=-2))
case("stack", lambda ns, a, b: ns.stack([a, b], dim=-1), A, A, ns=torch)
case("stack-axis", lambda ns, a, b: ns.stack([a, b], axis=1), A, A,
     torch_fn=lambda a, b: torch.stack([a, b], 1))
case("split", lambda ns, x: ns.split(x, 2, dim=1), randn(2, 5, 3), ns=torch)
case("split-sections", lambda ns, x: ns.split(x, [1, 3, 1], dim=1), randn(2, 5, 3), ns=torch)
case("chunk", lambda ns, x: ns.chunk(x, 3, dim=-1), randn(2, 3, 8), ns=torch)
case("chunk-axis", lambda ns, x: ns.chunk(x, 2, axis=0), randn(5, 3),
     torch_fn=lambda x: torch.chunk(x, 2, 0))
case("unbind", lambda ns, x: ns.unbind(x, 1), randn(2, 3, 4), ns=torch)
case("flatten", lambda ns, x: ns.flatten(x, 1), A, ns=torch)
case("reshape-transpose-permute",
     lambda ns, x: ns.permute(ns.transpose(ns.reshape(x, (4, 3, 2)), 0, 2), (1, 0, 2)),
     A, ns=torch)
case("squeeze-unsqueeze", lambda ns, x: ns.unsqueeze(ns.squeeze(x, 1), 0), randn(2, 1, 3),
     ns=torch)
case("where", lambda ns, c, a, b: ns.where(c, a, b), boolean(3, 4), randn(3, 4), randn(4),
     ns=torch)
case("where-scalar", lambda ns, x: ns.where(x > 0, x, 0.5), randn(3, 4), ns=torch)
case("zeros-ones-full-arange",
     lambda ns, x: x + ns.zeros(3, 4) + ns.ones((3, 4)) * 2 + ns.full((3, 4), 0.5)
     + ns.arange(4) + ns.arange(1.0, 2.0, 0.25), randn(3, 4), ns=torch)
case("zeros_like-ones_like", lambda ns, x: ns.zeros_like(x) + ns.ones_like(x) * x,
     randn(3, 4), ns=torch)
case("arange-int", lambda ns, x: ns.arange(2, 11, 3) + x, randint(0, 5, 3, dtype="int64"),
     ns=torch)
case("sum-mean", lambda ns, x: ns.sum(x, dim=1) + ns.mean(x, (0, 1), keepdim=True), X,
     ns=torch)
case("sum-axis", lambda ns, x: ns.sum(x, axis=(0, 2), keepdims=True), X,
     torch_fn=lambda x: torch.sum(x, (0, 2), keepdim=True))
case("max-min", lambda ns, x: ns.max(x) - ns.min(x), X, ns=torch)
case("max-min-elementwise", lambda ns, a, b: ns.max(a, b) + ns.min(a, b), X, X, ns=torch)
case("amax-axis", lambda ns, x: ns.max(x, axis=1) - ns.min(x, axis=-1, keepdims=True),
     randn(3, 3, 3), torch_fn=lambda x: torch.amax(x, 1) - torch.amin(x, -1, keepdim=True))
case("var-std", lambda ns, x: ns.var(x, 1) + ns.std(x, dim=1, correction=0), X, ns=torch)
case("var-axis", lambda ns, x: ns.var(x, axis=0, ddof=0), X,
     torch_fn=lambda x: torch.var(x, 0, correction=0))
case("exp-log-sqrt-abs", lambda ns, x: ns.exp(x) + ns.log(ns.abs(x) + 1) + ns.sqrt(ns.abs(x)),
     X, ns=torch)
case("clamp", lambda ns, x: ns.clamp(x, -0.5, 0.7) + ns.clamp(x, min=0.1)
     + ns.clip(x, max=0.2), X, ns=torch)
case("maximum-minimum", lambda ns, a, b: ns.maximum(a, b) * ns.minimum(a, 0.3), X, X,
     torch_fn=lambda a, b: torch.maximum(a, b) * torch.clamp(a, max=0.3))
case("matmul", lambda ns, a, b: ns.matmul(a, b), randn(2, 3, 4), randn(4, 5), ns=torch)
case("matmul-1d", lambda ns, a, b: ns.matmul(a, b), randn(4), randn(2, 4, 3), ns=torch)


def _zero_row(w: np.ndarray, row: int) -> np.ndarray:
    w[row] = 0  # the padding row torch's Embedding keeps at zero
    return w


def _diag(m):
    """Let every query see its own position so no softmax row is fully masked."""
    eye = np.eye(m.shape[-2], m.shape[-1], dtype=bool)
    return torch.from_numpy(eye) if isinstance(m, torch.Tensor) else eye


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_functional_matches_torch(c: FCase, rng):
    arrays = [g(rng, "float32") for g in c.inputs]
    got = run_dlc(lambda *ts: c.fn(F, *ts), arrays)
    tensors = [torch.from_numpy(a.copy()) for a in arrays]
    expected = c.torch_fn(*tensors) if c.torch_fn else c.fn(c.ns, *tensors)
    if isinstance(expected, (tuple, list)):
        assert isinstance(got, tuple) and len(got) == len(expected)
        for g, e in zip(got, expected):
            check(g, e, atol=c.atol)
    else:
        check(got, expected, atol=c.atol)


# -- dropout in training mode --------------------------------------------------------------------
def test_dropout_mask_depends_only_on_the_seed(rng):
    x = rng.standard_normal((64, 32)).astype(np.float32) + 3.0  # no exact zeros
    exe = dlc.compile(lambda x: F.dropout(x, 0.25), dlc.TensorSpec(x.shape))
    seed = np.int64(rng.integers(1 << 40))
    a, b = exe(x, seed), exe(x, seed)
    np.testing.assert_array_equal(a, b)
    kept = a != 0
    assert_allclose(a[kept], x[kept] / 0.75, rtol=TOL["float32"][0])
    assert 0.65 < kept.mean() < 0.85  # 2048 draws: far outside 5 sigma otherwise
    x2 = rng.standard_normal((64, 32)).astype(np.float32) + 3.0
    np.testing.assert_array_equal(exe(x2, seed) != 0, kept)  # the mask ignores the data
    assert (exe(x, seed + 1) != 0).tolist() != kept.tolist()


def test_two_dropouts_in_one_graph_draw_different_masks(rng):
    x = np.ones((32, 32), np.float32)
    exe = dlc.compile(lambda x: (F.dropout(x, 0.5), F.dropout(x, 0.5)), dlc.TensorSpec(x.shape))
    a, b = exe(x, np.int64(7))
    assert (a != 0).tolist() != (b != 0).tolist()


# -- errors ------------------------------------------------------------------------------------
@pytest.mark.parametrize("fn,match", [
    (lambda x: F.cross_entropy(x, np.zeros(4, np.int64), weight=np.ones(3, np.float32)),
     "class weights"),
    (lambda x: F.softmax(x, dim=0, axis=1), "dim or axis"),
    (lambda x: F.conv1d(x.reshape(1, 4, 3), np.ones((2, 4, 3), np.float32), stride=2,
                        padding="same"), "stride 1"),
    (lambda x: F.linear(x, np.ones((2, 5), np.float32)), r"\(4, 3\)"),
    (lambda x: F.layer_norm(x, (4,)), "normalized_shape"),
    (lambda x: F.one_hot(x.long()), "num_classes"),
    (lambda x: F.interpolate(x.reshape(1, 1, 4, 3), scale_factor=2, mode="bilinear"),
     "bilinear"),
])
def test_bad_arguments_raise_shape_errors(fn, match):
    with pytest.raises(ShapeError, match=match):
        dlc.trace(fn, dlc.TensorSpec((4, 3)))
