"""train_step: one compiled graph for forward, backward and the optimizer update.

Inputs: the batch inputs (role input), the model's parameters (param), its buffers and the
optimizer's moments and the step counter (state). Outputs: the loss, then the updated
params, buffers, moments and step, each an alias of its input so the Executable (and the
memory plan) updates them in place. Dropout seeds come from the step counter, so masks
change every step without recompiling.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from dlc.errors import DlcError
from dlc.ir.builder import Builder
from dlc.ir.graph import Graph
from dlc.ir.types import TensorType
from dlc.tensor import Tensor
from passes.autodiff import grad
from passes.rewrite import inline

STEP = "optim.step"


def _loss_graph(model, loss_fn: Callable, specs) -> Graph:
    """Trace loss_fn(model(*inputs), target) with the model's params as inputs."""
    from frontend.tracer import TensorSpec, _as_spec, trace
    if len(specs) < 2:
        raise DlcError("train_step needs specs for the model's input(s) and the target")
    n = len(specs)
    named = []
    for i, s in enumerate(_as_spec(s, i) for i, s in enumerate(specs)):
        default = "target" if i == n - 1 else ("x" if n == 2 else f"x{i}")
        named.append(s if s.name else TensorSpec(s.shape, s.dtype, default))

    def loss_step(*args):
        *inputs, target = args
        return loss_fn(model(*inputs), target)

    model.train()
    graph = trace(loss_step, *named, name=type(model).__name__ + "_train", module=model)
    if graph.outputs[0].type.shape != ():
        raise DlcError(f"train_step: the loss must be a scalar; loss_fn returned "
                       f"{graph.outputs[0].type}")
    return graph


def train_step(model, loss_fn: Callable, optimizer, *specs, seed: int = 0) -> Graph:
    """The training-step Graph of `model` under `loss_fn(model(*inputs), target)`.

    `specs` describe the batch: the model's inputs, then the target. Compile the result with
    dlc.compile(graph, backend=...); `exe(*batch)` runs one step and returns the loss."""
    loss = _loss_graph(model, loss_fn, specs)
    params = [v for v in loss.inputs if v.role == "param"]
    if not params:
        raise DlcError("train_step: the model has no parameters")
    g = grad(loss, [p.name for p in params], with_value=True, keep_outputs=True)

    with Builder(loss.name) as b:
        bound = {}
        for v in g.inputs:
            if v.name == "seed" and v.role == "input":
                continue
            bound[v.name] = b.add_input(v.name, v.type, v.role, v.data)
        step_in = b.add_input(STEP, TensorType((), "int64"), "state", np.zeros((), np.int64))
        moments = {}
        for p in params:
            for sname, arr in optimizer.init_state(p.data).items():
                moments[(p.name, sname)] = b.add_input(f"optim.{sname}.{p.name}", p.type,
                                                       "state", arr)
        step_i = Tensor(step_in) + 1
        if any(v.name == "seed" for v in g.inputs):
            bound["seed"] = (step_i * 1000003 + int(seed)).value
        outs = inline(b, g, [bound[v.name] for v in g.inputs])
        loss_v, grads, rest = outs[0], outs[1:1 + len(params)], outs[1 + len(params):]
        step_f = step_i.cast("float32")
        lr = optimizer.lr(step_f)
        gts = [Tensor(x) for x in grads]
        if optimizer.clip_grad_norm is not None:
            gts = _clip(gts, optimizer.clip_grad_norm)
        results, aliases = [loss_v], {}
        for p, gt in zip(params, gts):
            state = {s: Tensor(moments[(p.name, s)]) for (pn, s) in moments if pn == p.name}
            pt = Tensor(bound[p.name])
            step_t = step_f.cast(p.dtype) if p.dtype != "float32" else step_f
            lr_t = lr if not isinstance(lr, Tensor) else lr.cast(p.dtype)
            new_p, new_state = optimizer.update(pt, gt, state, step_t, lr_t)
            aliases[len(results)] = p.name
            results.append(new_p.cast(p.dtype).value)
            for s, t in new_state.items():
                aliases[len(results)] = moments[(p.name, s)].name
                results.append(t.cast(p.dtype).value)
        for i, name in g.aliases.items():  # BatchNorm running stats
            aliases[len(results)] = name
            results.append(outs[i])
        aliases[len(results)] = STEP
        results.append(step_i.value)
        graph = b.finish(results, aliases)
    graph.meta["train_step"] = True
    graph.meta["model_keys"] = list(model.state_dict().keys())
    return graph


def _clip(grads: list[Tensor], max_norm: float) -> list[Tensor]:
    total = None
    for g in grads:
        s = (g.cast("float32") * g.cast("float32")).sum()
        total = s if total is None else total + s
    scale = (max_norm / (total.sqrt() + 1e-6)).minimum(1.0)
    return [g * scale.cast(g.dtype) for g in grads]
