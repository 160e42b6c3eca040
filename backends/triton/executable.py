"""TritonExecutable: the Executable of backend="triton".

Parameters and state live on the device as torch tensors for the Executable's lifetime.
A call accepts numpy arrays or torch tensors (CPU, or CUDA ones that stay on the device):
numpy in gives numpy out, a torch tensor in gives torch tensors out. Under mixed precision
float32 values are stored in float16/bfloat16: torch callers may pass and get tensors of
that dtype (float32 ones are converted), numpy callers see float32. A training step updates its parameters and optimizer state
where they are: in place where the memory plan says so (the launcher checks the loss before
the first such write, so a non-finite loss leaves them untouched, as the Executable contract
says), else by replacing the stored tensors with the step's new ones.
"""
from __future__ import annotations

import numpy as np

from dlc.errors import ArgumentError
from dlc.ir.graph import Graph
from backends.executable import Executable
from backends.triton.codegen import generate_program
from backends.triton.launcher import Launcher, torch_dtype
from backends.triton.options import TritonOptions, enable_interpreter, require_compiler
from backends.triton.source import import_module, jit_mode, write_module


class TritonExecutable(Executable):
    backend = "triton"

    def __init__(self, graph: Graph, params: dict | None, on_nonfinite: str,
                 options: TritonOptions):
        super().__init__(graph, params, on_nonfinite)
        import torch
        self.torch = torch
        self.options = options
        if options.interpret:
            enable_interpreter()
        else:
            require_compiler()
        self.program = generate_program(graph, options)
        self.source_path = write_module(options.cache_dir, graph.name,
                                        self.program.module_source(), options.target)
        with jit_mode(options.interpret):
            module = import_module(self.source_path)
        self.launcher = Launcher(graph, self.program, module, self.source_path, options)
        self.device = self.launcher.device
        self.storage = {v.name: torch_dtype(d)
                        for v, d in zip(graph.inputs, self.program.input_storage)}
        self.device_state = {name: self._upload(arr, self.storage[name])
                             for name, arr in self.state.items()}
        self._host_stale = False

    # -- conversions -----------------------------------------------------------------------
    def _upload(self, array: np.ndarray, dtype=None):
        t = self.torch.from_numpy(np.ascontiguousarray(array).copy()).to(self.device)
        return t if dtype is None else t.to(dtype)

    def _user_tensor(self, v, arg, what: str):
        torch = self.torch
        store = self.storage[v.name]
        if isinstance(arg, torch.Tensor):
            if tuple(arg.shape) != v.type.shape or \
                    arg.dtype not in (torch_dtype(v.type.dtype), store):
                raise ArgumentError(f"{what}: expected {v.type} ({v.type.dtype}, shape "
                                    f"{v.type.shape}), got torch {str(arg.dtype)[6:]}, shape "
                                    f"{tuple(arg.shape)}")
            return arg.to(self.device, store).contiguous()
        array = self._check(v, arg, what)
        return torch.from_numpy(np.ascontiguousarray(array)).to(self.device, store)

    def _download(self, tensor, as_numpy: bool, dtype: str | None = None):
        if not as_numpy:
            return tensor
        if dtype is not None and tensor.dtype != torch_dtype(dtype):
            tensor = tensor.to(torch_dtype(dtype))
        return tensor.detach().cpu().numpy()

    # -- the contract ----------------------------------------------------------------------
    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """All graph inputs in order (numpy) -> all outputs (numpy); no state update."""
        tensors = [self.torch.from_numpy(np.ascontiguousarray(a)).to(self.device,
                                                                      self.storage[v.name])
                   for a, v in zip(inputs, self.graph.inputs)]
        return [self._download(t, True, v.dtype)
                for t, v in zip(self.launcher.run(tensors), self.graph.outputs)]

    def __call__(self, *args):
        if len(args) != len(self.user_inputs):
            names = ", ".join(f"{v.name}: {v.type}" for v in self.user_inputs)
            raise ArgumentError(f"expected {len(self.user_inputs)} input array(s) ({names}), "
                                f"got {len(args)}")
        as_numpy = not any(isinstance(a, self.torch.Tensor) for a in args)
        user = iter(args)
        tensors = []
        for pos, v in enumerate(self.graph.inputs):
            if v.role == "input":
                tensors.append(self._user_tensor(v, next(user), f"argument {pos} ({v.name!r})"))
            else:
                tensors.append(self.device_state[v.name])
        results = self.launcher.run(tensors)
        if self.graph.meta.get("train_step") and not bool(self.torch.isfinite(results[0]).all()):
            steps = self.device_state.get("optim.step")
            self.nonfinite_loss(float(results[0]), int(steps) if steps is not None else 0)
            return self._download(results[0], as_numpy, self.graph.outputs[0].dtype)
        for i, name in self.graph.aliases.items():
            self.device_state[name] = results[i]
            self._host_stale = True
        ret = [self._download(results[i], as_numpy, self.graph.outputs[i].dtype)
               for i in self.returned]
        return ret[0] if len(ret) == 1 else tuple(ret)

    def load_state_dict(self, state: dict[str, np.ndarray], strict: bool = True) -> None:
        self.state_dict()  # bring the host copy up to date first
        super().load_state_dict(state, strict)
        for name in state:
            if name in self.device_state:
                self.device_state[name] = self._upload(self.state[name], self.storage[name])

    def state_dict(self) -> dict[str, np.ndarray]:
        if self._host_stale:
            dtypes = {v.name: v.dtype for v in self.graph.inputs}
            self.state = {k: self._download(t, True, dtypes[k]).copy()
                          for k, t in self.device_state.items()}
            self._host_stale = False
        return super().state_dict()

    def kernel_sources(self) -> dict[str, str]:
        return self.program.sources()
