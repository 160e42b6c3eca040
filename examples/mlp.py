"""An MLP 784-512-512-10 for 28x28 digit images flattened to 784 features.

The model file of `dlc demo`, and an example of the model-file convention of the CLI:

    dlc dump examples/mlp.py            # main_model(): the model and its input specs
    dlc dump examples/mlp.py:MLP        # the class: built with no arguments
    dlc run examples/mlp.py --input images.npy -o logits.npy

It runs as a script too: `python examples/mlp.py` traces, compiles and runs it once.
"""
from __future__ import annotations

import numpy as np

import dlc
from dlc import nn

BATCH = 64
IMAGE_PIXELS = 28 * 28
HIDDEN = 512
CLASSES = 10


class MLP(nn.Module):
    """Two hidden ReLU layers; returns the logits of the 10 digit classes."""

    def __init__(self, in_features: int = IMAGE_PIXELS, hidden: int = HIDDEN,
                 classes: int = CLASSES):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.fc3 = nn.Linear(hidden, classes)
        self.act = nn.ReLU()

    def forward(self, images):
        h = self.act(self.fc1(images))
        h = self.act(self.fc2(h))
        return self.fc3(h)

    @staticmethod
    def example_inputs() -> list[dlc.TensorSpec]:
        """One batch of flattened images with pixel values in [0, 1)."""
        return [dlc.TensorSpec((BATCH, IMAGE_PIXELS), "float32", name="images")]


def main_model() -> tuple[MLP, list[dlc.TensorSpec]]:
    """The model and its input specs: what `dlc dump examples/mlp.py` uses."""
    model = MLP()
    return model, model.example_inputs()


if __name__ == "__main__":
    model, specs = main_model()
    exe = dlc.compile(model, *specs)
    images = np.random.default_rng(0).random(specs[0].shape, dtype=np.float32)
    logits = exe(images)
    print(f"logits {logits.shape} {logits.dtype}; predicted digits {logits.argmax(1)[:10]}")
