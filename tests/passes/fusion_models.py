"""Graphs the fusion, memory-planning and text-form tests share: the example models, training
steps of an MLP and a small CNN, and random arrays for a graph's inputs."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np

import dlc
import dlc.nn.functional as F
from dlc import nn
from dlc.ir.graph import Graph

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def example_files() -> list[Path]:
    """examples/*.py that define main_model()."""
    return sorted(p for p in EXAMPLES.glob("*.py") if "def main_model" in p.read_text())


def example_graph(path: Path) -> Graph:
    """The traced main_model() of an example file (weights seeded, so runs agree)."""
    dlc.nn.init.manual_seed(0)
    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))  # examples import their sibling helpers
    name = f"example_{path.stem}_fusion"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses in an example look their module up
    spec.loader.exec_module(module)
    model, specs = module.main_model()
    return model if isinstance(model, Graph) else dlc.trace(model, *specs)


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(32, 24), nn.Linear(24, 16), nn.Linear(16, 5)

    def forward(self, x):
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


class CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 2 * 2, 5)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc(x.flatten(1))


def mlp_train_step(optimizer=None, batch: int = 8) -> Graph:
    dlc.nn.init.manual_seed(1)
    optimizer = optimizer or dlc.optim.SGD(lr=0.1, momentum=0.9)
    return dlc.train_step(MLP(), F.cross_entropy, optimizer,
                          dlc.TensorSpec((batch, 32)), dlc.TensorSpec((batch,), "int64"))


def cnn_train_step(optimizer=None, batch: int = 4) -> Graph:
    dlc.nn.init.manual_seed(2)
    optimizer = optimizer or dlc.optim.SGD(lr=0.1, momentum=0.9)
    return dlc.train_step(CNN(), F.cross_entropy, optimizer,
                          dlc.TensorSpec((batch, 1, 8, 8)), dlc.TensorSpec((batch,), "int64"))


def random_args(graph: Graph, rng: np.random.Generator, classes: int = 5) -> list[np.ndarray]:
    """One array per graph input: user inputs drawn fresh; params/state their own data
    (or fresh when a parsed graph carries none); integer inputs are class labels."""
    out = []
    for v in graph.inputs:
        if v.data is not None and v.role != "input":
            out.append(np.array(v.data, copy=True))
        elif v.type.dtype == "bool":
            out.append(rng.random(v.type.shape) < 0.5)
        elif v.type.dtype in ("int32", "int64"):
            out.append(rng.integers(0, classes, v.type.shape).astype(v.type.dtype))
        else:
            out.append(rng.standard_normal(v.type.shape).astype(v.type.dtype))
    return out
