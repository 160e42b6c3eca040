"""Peers: other ways to run the same computation, each behind one adapter that takes the
numpy arrays the dlc Executable takes and returns numpy arrays for the agreement check.

Inputs are converted to the peer's own array type once, before timing; a timed call runs
the peer's function and waits for its result (jax dispatches asynchronously)."""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

PEERS = ("numpy", "torch", "torch-compile", "jax", "onnxruntime")
_NEEDS = {"numpy": "numpy", "torch": "torch", "torch-compile": "torch", "jax": "jax",
          "onnxruntime": "onnxruntime"}
INSTALL_HINT = "pip install 'dlc[bench]'"


def missing(peer: str) -> str | None:
    """None when the peer can run here, else the one line that says how to get it."""
    if peer not in _NEEDS:
        return f"unknown peer {peer!r}; known: {', '.join(PEERS)}"
    module = _NEEDS[peer]
    if importlib.util.find_spec(module) is None:
        return f"peer {peer} skipped: {module} is not installed ({INSTALL_HINT})"
    return None


@dataclass
class PreparedPeer:
    call: Callable[[], Any]               # one timed call on the prepared inputs
    outputs: Callable[[Any], list]        # a call's result as numpy arrays


def _torch_inputs(arrays, threads: int):
    import torch
    torch.set_num_threads(threads)
    return [torch.from_numpy(np.ascontiguousarray(a)) for a in arrays]


def _as_list(result) -> list:
    return list(result) if isinstance(result, (tuple, list)) else [result]


def prepare(peer: str, factory, target, size: dict, arrays: list, threads: int,
            training: bool) -> PreparedPeer:
    """Build the peer's function for this workload and bind it to its inputs."""
    fn = factory(target, size)
    if peer == "numpy":
        return PreparedPeer(lambda: fn(*arrays), lambda r: [np.asarray(x) for x in _as_list(r)])
    if peer in ("torch", "torch-compile"):
        import torch
        ins = _torch_inputs(arrays, threads)
        if peer == "torch-compile":
            fn = torch.compile(fn)
        if training:
            call = lambda: fn(*ins)  # noqa: E731  (autograd is part of the work)
        else:
            def call():
                with torch.no_grad():
                    return fn(*ins)
        return PreparedPeer(call, lambda r: [x.detach().numpy() for x in _as_list(r)])
    if peer == "jax":
        import jax
        ins = [jax.device_put(a) for a in arrays]

        def call():
            return jax.block_until_ready(fn(*ins))
        return PreparedPeer(call, lambda r: [np.asarray(x) for x in _as_list(r)])
    if peer == "onnxruntime":
        return _prepare_onnxruntime(fn, arrays, threads)
    raise ValueError(missing(peer))


def _prepare_onnxruntime(torch_fn, arrays: list, threads: int) -> PreparedPeer:
    """Export the torch version to ONNX, then run it in an ONNX Runtime session."""
    import io

    import onnxruntime as ort
    import torch
    ins = _torch_inputs(arrays, threads)
    buf = io.BytesIO()
    module = torch_fn if isinstance(torch_fn, torch.nn.Module) else _Wrap(torch_fn)
    # the exporter knows the composite attention ops, not the fused inference fast path
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        torch.onnx.export(module, tuple(ins), buf, dynamo=False)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(buf.getvalue(), opts, providers=["CPUExecutionProvider"])
    feed = {i.name: a for i, a in zip(sess.get_inputs(), arrays)}
    return PreparedPeer(lambda: sess.run(None, feed), lambda r: [np.asarray(x) for x in r])


def _Wrap(fn):
    import torch

    class Wrapped(torch.nn.Module):
        def forward(self, *xs):
            return fn(*xs)
    return Wrapped()
