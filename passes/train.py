"""train_step: one compiled graph for forward, backward and the optimizer update.

Inputs, in order: the batch (the model's inputs, then the target; role `input`), the model's
parameters (`param`), its buffers (`state`: BatchNorm running statistics), the optimizer's
per-parameter moments (`state`, named `optim.<moment>.<param>`) and the step counter
(`state`, `optim.step`, int64, the number of steps taken so far).

Outputs, in order: the loss (NaN when a gradient is not finite), the updated parameters,
the updated buffers, the updated moments and the incremented step counter. Every output
after the loss is an alias of the input it replaces, so an Executable (and the memory plan)
updates it in place and a call `exe(x, y)` returns only the loss.

The learning rate is a function of the step counter computed inside the graph, and the
seed of dropout masks is derived from it too: every step sees a new rate and new masks
without recompiling.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from dlc.errors import DlcError, ShapeError
from dlc.ir.builder import Builder
from dlc.ir.graph import Graph, Input, Value
from dlc.ir.types import TensorType, is_float
from dlc.tensor import Tensor
from passes.autodiff import grad
from passes.rewrite import inline

STEP = "optim.step"
SEED = "seed"
# Odd multiplier that spreads consecutive steps far apart in the dropout seed space.
_SEED_STRIDE = 1000003


def moment_name(moment: str, param: str) -> str:
    """Graph input name of an optimizer moment, e.g. optim.exp_avg.fc1.weight."""
    return f"optim.{moment}.{param}"


def _named_specs(specs) -> list:
    """The batch specs, named x (or x0, x1, ...) and target unless named already."""
    from frontend.tracer import TensorSpec, _as_spec
    if len(specs) < 2:
        raise DlcError(f"train_step needs a spec for each model input and one for the "
                       f"target; got {len(specs)} spec(s)")
    n = len(specs)
    named = []
    for i, s in enumerate(_as_spec(s, i) for i, s in enumerate(specs)):
        default = "target" if i == n - 1 else ("x" if n == 2 else f"x{i}")
        named.append(s if s.name else TensorSpec(s.shape, s.dtype, default))
    return named


def _describe_batch(specs) -> str:
    return ", ".join(f"{s.name}: {s.type}" for s in specs)


def _loss_graph(model, loss_fn: Callable, specs) -> Graph:
    """Trace loss_fn(model(*inputs), target) in training mode, the model's params as inputs."""
    from frontend.tracer import trace
    named = _named_specs(specs)

    def loss_step(*args):
        *inputs, target = args
        return loss_fn(model(*inputs), target)

    model.train()
    try:
        graph = trace(loss_step, *named, name=type(model).__name__ + "_train", module=model)
    except ShapeError as e:
        raise ShapeError(f"train_step (batch {_describe_batch(named)}): {e}") from None
    if len(graph.outputs) - len(graph.aliases) != 1:
        raise DlcError(f"train_step: loss_fn must return one tensor (the loss), it returned "
                       f"{len(graph.outputs) - len(graph.aliases)}")
    loss = graph.outputs[0]
    if loss.type.shape != () or not is_float(loss.dtype):
        raise DlcError(f"train_step: the loss must be a float scalar, but loss_fn(model(...), "
                       f"target) returned {loss.type} (shape {loss.type.shape}, dtype "
                       f"{loss.dtype}); reduce it, e.g. with .mean() or reduction='mean'")
    return graph


def train_step(model, loss_fn: Callable, optimizer, *specs, seed: int = 0) -> Graph:
    """The training-step Graph of `model` under `loss_fn(model(*inputs), target)`.

    `specs` describe the batch: the model's inputs, then the target. Compile the result with
    dlc.compile(graph, backend=...); `exe(*batch)` runs one step and returns the loss.
    `seed` offsets the dropout seeds (which also change with the step counter)."""
    loss = _loss_graph(model, loss_fn, specs)
    params = loss.inputs_with_role("param")
    if not params:
        raise DlcError(f"train_step: {type(model).__name__} has no parameters to train")
    g = grad(loss, [p.name for p in params], with_value=True, keep_outputs=True)
    n = len(params)

    with Builder(loss.name) as b:
        bound = {v.name: b.add_input(v.name, v.type, v.role, v.data)
                 for v in g.inputs if not _is_seed(v)}
        moments = _add_moments(b, optimizer, params)
        step_in = b.add_input(STEP, TensorType((), "int64"), "state", np.zeros((), np.int64))
        step = Tensor(step_in) + 1  # 1 on the first step, as torch counts
        if any(_is_seed(v) for v in g.inputs):
            bound[SEED] = (step * _SEED_STRIDE + int(seed)).value
        outs = inline(b, g, [bound[v.name] for v in g.inputs])
        loss_v, grads, buffer_outs = outs[0], outs[1:1 + n], outs[1 + n:]

        new_params, new_moments = _apply_optimizer(
            optimizer, [bound[p.name] for p in params], [Tensor(x) for x in grads],
            moments, step)

        results, aliases = [_guard_loss(Tensor(loss_v), grads).value], {}

        def alias(value: Value, name: str) -> None:
            aliases[len(results)] = name
            results.append(value)

        for p, v in zip(params, new_params):
            alias(v, p.name)
        updated = {g.aliases[1 + n + i]: v for i, v in enumerate(buffer_outs)}
        for v in loss.inputs_with_role("state"):  # BatchNorm running statistics
            if v.name in updated:
                alias(updated[v.name], v.name)
        for name, v in new_moments:
            alias(v, name)
        alias(step.value, STEP)
        graph = b.finish(results, aliases)
    graph.meta["train_step"] = True
    graph.meta["model_keys"] = list(model.state_dict().keys())
    return graph


def _guard_loss(loss: Tensor, grads: list[Value]) -> Tensor:
    """loss + 0 * (sum of every gradient): the loss itself while all gradients are finite,
    NaN when one is not. A non-finite gradient can come with a finite loss (an Inf input
    behind a saturating activation), and the Executable's check of the returned loss is
    what keeps parameters from being overwritten, so the loss carries the gradients' state."""
    total = None
    for g in grads:
        s = Tensor(g).sum().cast(loss.dtype)
        total = s if total is None else total + s
    return loss + total * 0.0


def _is_seed(v: Input) -> bool:
    return v.name == SEED and v.role == "input"


def _add_moments(b: Builder, optimizer, params: list[Input]) -> dict[str, dict[str, Input]]:
    """One zero-initialized `state` input per parameter and optimizer moment."""
    moments: dict[str, dict[str, Input]] = {}
    for p in params:
        moments[p.name] = {
            sname: b.add_input(moment_name(sname, p.name), p.type, "state", arr)
            for sname, arr in optimizer.init_state(p.data).items()}
    return moments


def _apply_optimizer(optimizer, params: list[Input], grads: list[Tensor],
                     moments: dict[str, dict[str, Input]], step: Tensor
                     ) -> tuple[list[Value], list[tuple[str, Value]]]:
    """New parameter values, then (input name, new value) for every moment."""
    step_f = step.cast("float32")
    lr = optimizer.lr(step_f)
    if optimizer.clip_grad_norm is not None:
        grads = clip_by_global_norm(grads, optimizer.clip_grad_norm)
    new_params, new_moments = [], []
    for p, gt in zip(params, grads):
        state_in = moments[p.name]
        state = {s: Tensor(v) for s, v in state_in.items()}
        step_t = step_f.cast(p.dtype) if p.dtype != "float32" else step_f
        lr_t = lr.cast(p.dtype) if isinstance(lr, Tensor) else lr
        new_p, new_state = optimizer.update(Tensor(p), gt, state, step_t, lr_t)
        new_params.append(new_p.cast(p.dtype).value)
        for s, t in new_state.items():
            new_moments.append((state_in[s].name, t.cast(p.dtype).value))
    return new_params, new_moments


def clip_by_global_norm(grads: list[Tensor], max_norm: float) -> list[Tensor]:
    """Scale all gradients by min(1, max_norm / (global L2 norm + 1e-6)), as
    torch.nn.utils.clip_grad_norm_ does; the norm is accumulated in float32 at least."""
    total = None
    for g in grads:
        g32 = g if g.dtype == "float64" else g.cast("float32")
        s = (g32 * g32).sum()
        total = s if total is None else total + s.cast(total.dtype)
    scale = (float(max_norm) / (total.sqrt() + 1e-6)).minimum(1.0)
    return [g * scale.cast(g.dtype) for g in grads]
