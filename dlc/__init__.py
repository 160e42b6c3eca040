"""dlc: a graph-compiling deep learning compiler.

    import dlc
    graph = dlc.trace(model, dlc.TensorSpec((8, 784)))
    print(graph)                          # the IR text
    exe = dlc.compile(model, dlc.TensorSpec((8, 784)), backend="eager")
    y = exe(x)
"""
from typing import TYPE_CHECKING

from dlc.errors import (ArgumentError, DlcError, ParseError, ShapeError,  # noqa: F401
                        TraceError, VerifyError)
from dlc.ir import Graph, TensorType, parse, verify  # noqa: F401
from dlc import ops  # noqa: F401  (registers the op table)
from dlc.tensor import Tensor, matmul, where  # noqa: F401
from frontend.tracer import TensorSpec, trace  # noqa: F401
from dlc.compiler import compile  # noqa: F401
from dlc.api import call, grad, stop_gradient, train_step, value_and_grad  # noqa: F401
from dlc import optim  # noqa: F401,E402
from dlc import nn  # noqa: F401,E402

__version__ = "0.1.0"


if TYPE_CHECKING:
    import os

    from backends.executable import Executable


def load(directory: "str | os.PathLike[str]") -> "Executable":
    """Load an ahead-of-time bundle written by `dlc compile MODEL -o DIR` as an Executable,
    after checking its manifest, version and the SHA-256 of every file
    (backends/llvm/bundle.py)."""
    from backends.llvm.bundle import load as load_bundle
    return load_bundle(directory)
