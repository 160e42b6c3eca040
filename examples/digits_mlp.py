"""An MLP trained on scikit-learn's 1,797 real 8x8 handwritten digits (load_digits).

    python examples/digits_mlp.py                 # the same as the next line
    dlc train examples/digits_mlp.py              # --steps N, --seed N, --save weights.npz
    dlc dump examples/digits_mlp.py               # the inference graph (main_model)

64 pixels -> 256 -> 256 -> 10 with ReLU and dropout, cross entropy with label smoothing,
AdamW with a warmup + cosine learning rate, batches of 32, 40 epochs. `training()` is the
contract of `dlc train` (examples/README.md); `digits_data.py` loads and splits the digits.
"""
from __future__ import annotations

import sys

import dlc
from dlc import nn, optim
from dlc.trainer import Training
from dlc.nn import functional as F

import digits_data

BATCH = 32
EPOCHS = 40
HIDDEN = 256
LR, WARMUP, WEIGHT_DECAY = 2e-3, 100, 0.01
LABEL_SMOOTHING = 0.1  # soft targets: the largest single gain on this small data set


class DigitsMLP(nn.Module):
    """Two hidden ReLU layers with dropout; returns the logits of the 10 digits."""

    def __init__(self, hidden: int = HIDDEN, dropout: float = 0.2):
        super().__init__()
        self.fc1 = nn.Linear(digits_data.SIDE ** 2, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.fc3 = nn.Linear(hidden, digits_data.CLASSES)
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        h = self.drop(F.relu(self.fc1(x)))
        h = self.drop(F.relu(self.fc2(h)))
        return self.fc3(h)

    @staticmethod
    def example_inputs() -> list[dlc.TensorSpec]:
        return [dlc.TensorSpec((BATCH, digits_data.SIDE ** 2), "float32", name="x")]


def smoothed_cross_entropy(logits, target):
    return F.cross_entropy(logits, target, label_smoothing=LABEL_SMOOTHING)


def main_model():
    """The inference graph (eval mode: no dropout), for `dlc dump` and `dlc run`."""
    model = DigitsMLP().eval()
    return model, model.example_inputs()


def training(steps: int | None = None) -> Training:
    """What `dlc train` runs: the model, its loss and optimizer, the data and the length."""
    train, test = digits_data.load()
    steps = steps or EPOCHS * (len(train[0]) // BATCH)
    schedule = optim.warmup_cosine(LR, min(WARMUP, steps // 10), steps)
    return Training(DigitsMLP(), smoothed_cross_entropy,
                    optim.AdamW(schedule, weight_decay=WEIGHT_DECAY),
                    train=train, test=test, batch_size=BATCH, steps=steps)


if __name__ == "__main__":
    from dlc.cli import main
    sys.exit(main(["train", __file__, *sys.argv[1:]]))
