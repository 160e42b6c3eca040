"""A small CNN trained on scikit-learn's 1,797 real 8x8 handwritten digits (load_digits).

    python examples/digits_cnn.py                 # the same as the next line
    dlc train examples/digits_cnn.py              # --steps N, --seed N, --save weights.npz
    dlc dump examples/digits_cnn.py               # the inference graph (main_model)

conv 3x3 (1 -> 16) ReLU, conv 3x3 (16 -> 32) ReLU, max pool 2x2 (8x8 -> 4x4), dropout,
Linear 512 -> 64 ReLU, Linear 64 -> 10. Cross entropy with label smoothing, AdamW with a
warmup + cosine learning rate, batches of 32, 30 epochs. `training()` is the contract of
`dlc train` (examples/README.md); `digits_data.py` loads and splits the digits.
"""
from __future__ import annotations

import sys

import dlc
from dlc import nn, optim
from dlc.trainer import Training
from dlc.nn import functional as F

import digits_data

BATCH = 32
EPOCHS = 30
CHANNELS, HIDDEN = 16, 64
LR, WARMUP, WEIGHT_DECAY = 2e-3, 100, 0.01
LABEL_SMOOTHING = 0.1


class DigitsCNN(nn.Module):
    """Two 3x3 convolutions at full resolution, one pooling step, a two-layer head."""

    def __init__(self, channels: int = CHANNELS, hidden: int = HIDDEN, dropout: float = 0.2):
        super().__init__()
        side = digits_data.SIDE // 2
        self.conv1 = nn.Conv2d(1, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, 2 * channels, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.drop = nn.Dropout(dropout)
        self.fc1 = nn.Linear(2 * channels * side * side, hidden)
        self.fc2 = nn.Linear(hidden, digits_data.CLASSES)

    def forward(self, x):
        h = F.relu(self.conv1(x))
        h = self.pool(F.relu(self.conv2(h)))
        h = self.drop(h.flatten(1))
        return self.fc2(F.relu(self.fc1(h)))

    @staticmethod
    def example_inputs() -> list[dlc.TensorSpec]:
        side = digits_data.SIDE
        return [dlc.TensorSpec((BATCH, 1, side, side), "float32", name="x")]


def smoothed_cross_entropy(logits, target):
    return F.cross_entropy(logits, target, label_smoothing=LABEL_SMOOTHING)


def main_model():
    """The inference graph (eval mode: no dropout), for `dlc dump` and `dlc run`."""
    model = DigitsCNN().eval()
    return model, model.example_inputs()


def training(steps: int | None = None) -> Training:
    """What `dlc train` runs: the model, its loss and optimizer, the data and the length."""
    train, test = digits_data.load(images=True)
    steps = steps or EPOCHS * (len(train[0]) // BATCH)
    schedule = optim.warmup_cosine(LR, min(WARMUP, steps // 10), steps)
    return Training(DigitsCNN(), smoothed_cross_entropy,
                    optim.AdamW(schedule, weight_decay=WEIGHT_DECAY),
                    train=train, test=test, batch_size=BATCH, steps=steps)


if __name__ == "__main__":
    from dlc.cli import main
    sys.exit(main(["train", __file__, *sys.argv[1:]]))
