"""Graph-level transformations users call: grad, value_and_grad, call, stop_gradient."""
from __future__ import annotations

from dlc.errors import DlcError
from dlc.ir.builder import current, emit
from dlc.ir.graph import Graph
from dlc.tensor import Tensor, as_value


def grad(graph: Graph, wrt: list[str] | str | None = None, *, output: int = 0) -> Graph:
    """A Graph whose outputs are d(output)/d(input) for each input named in `wrt`.

    The differentiated output must be a float scalar. `wrt` defaults to every float user
    input and parameter. The result is an ordinary graph: compile it, or call it inside a
    traced function (`dlc.call`) and differentiate that for second derivatives."""
    from passes.autodiff import grad as _grad
    return _grad(graph, wrt, output=output)


def value_and_grad(graph: Graph, wrt: list[str] | str | None = None, *,
                   output: int = 0) -> Graph:
    """Like grad, with the output's value first."""
    from passes.autodiff import value_and_grad as _vg
    return _vg(graph, wrt, output=output)


def call(graph: Graph, *args):
    """Inline `graph` into the graph being traced, its user inputs bound to `args`.

    Its param/state inputs become inputs of the enclosing graph (an input of the same name
    and type is shared: the same model's weights); its constants become constants of the
    enclosing graph. Calling a gradient graph (`dlc.grad`) this way and differentiating the
    result gives second derivatives. Returns a Tensor, or a tuple of them."""
    from passes.rewrite import inline
    b = current()
    user = graph.user_inputs
    if len(args) != len(user):
        raise DlcError(f"call: @{graph.name} takes {len(user)} inputs "
                       f"({', '.join(v.name for v in user)}), got {len(args)}")
    bound = []
    user_args = iter(args)
    for v in graph.inputs:
        if v.role == "input":
            t = next(user_args)
            val = as_value(t)
            if val.type != v.type:
                raise DlcError(f"call: input {v.name!r} of @{graph.name} expects {v.type}, "
                               f"got {val.type}")
            bound.append(val)
            continue
        if v.role == "const" and v.data is not None:
            # constants are named by position (const0, ...): a name says nothing about data
            bound.append(b.const(v.data))
            continue
        existing = next((x for x in b.inputs if x.name == v.name), None)
        if existing is not None and existing.type != v.type:
            raise DlcError(f"call: input {v.name!r} of @{graph.name} ({v.type}) clashes with "
                           f"an input of the same name ({existing.type})")
        bound.append(existing or b.add_input(v.name, v.type, v.role, v.data))
    outs = [Tensor(v) for v in inline(b, graph, bound)]
    return outs[0] if len(outs) == 1 else tuple(outs)


def stop_gradient(x) -> Tensor:
    """x itself, through which autodiff passes no gradient (also `Tensor.detach()`)."""
    return emit("stop_gradient", x)


def train_step(model, loss_fn, optimizer, *specs, seed: int = 0) -> Graph:
    """The Graph of one training step: forward, backward and optimizer update.

    specs: the model's inputs, then the target. `exe = dlc.compile(step)`; `exe(x, y)` runs
    a step (params and optimizer state stay inside exe) and returns the loss;
    `exe.state_dict()` gives the trained parameters under PyTorch's names."""
    from passes.train import train_step as _train_step
    return _train_step(model, loss_fn, optimizer, *specs, seed=seed)
