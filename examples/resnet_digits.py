"""A small residual CNN with BatchNorm and global average pooling on the 8x8 digit images.

The images are scikit-learn's `load_digits` (1,797 real handwritten digits, 8x8), with the
split of examples/digits_cnn.py (examples/digits_data.py: 359 stratified held-out digits).
The network is a ResNet in miniature:

    stem     conv3x3(1 -> 32) BN ReLU                              8x8
    block 1  [conv3x3 BN ReLU conv3x3 BN] + identity, ReLU         8x8, 32 channels
    block 2  [conv3x3/2 BN ReLU conv3x3 BN] + conv1x1/2 BN, ReLU   4x4, 64 channels
    head     global average pooling -> Linear(64, 10)

Training runs through one compiled step (forward, backward, SGD with Nesterov momentum and
weight decay, cosine learning-rate decay over the run). BatchNorm normalizes with the
batch's statistics, and its running mean and variance are state of that step, updated in
place on every call; the held-out accuracy comes from the eval-mode graph, which
normalizes with those running statistics (and the passes fold them into the convolutions).

    python examples/resnet_digits.py               # the full run: the same as the next line
    dlc train examples/resnet_digits.py            # --steps N, --seed N, --backend llvm
    dlc dump examples/resnet_digits.py             # the inference graph (eval mode)
"""
from __future__ import annotations

import sys

import dlc
from dlc import nn
from dlc.nn import functional as F
from dlc.trainer import Training

import digits_data

BATCH = 64
WIDTH = 32
STEPS = 800           # 36 epochs of the 1,438 training digits
LEARNING_RATE = 0.1
MOMENTUM = 0.9
WEIGHT_DECAY = 5e-4


def conv_bn(c_in: int, c_out: int, kernel: int = 3, stride: int = 1) -> list[nn.Module]:
    """A convolution without bias (BatchNorm's shift takes its place) and its BatchNorm."""
    return [nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(c_out)]


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers and a shortcut (identity, or a strided 1x1 conv-BN when the
    shape changes), ReLU after the sum: the block of ResNet-18."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.body = nn.Sequential(*conv_bn(c_in, c_out, 3, stride), nn.ReLU(),
                                  *conv_bn(c_out, c_out, 3))
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(*conv_bn(c_in, c_out, 1, stride))
        else:
            self.shortcut = nn.Identity()

    def forward(self, x):
        return F.relu(self.body(x) + self.shortcut(x))


class ResNetDigits(nn.Module):
    """Images (batch, 1, 8, 8) -> class logits (batch, 10)."""

    def __init__(self, width: int = WIDTH, classes: int = digits_data.CLASSES,
                 batch: int = BATCH):
        super().__init__()
        self.batch = batch
        self.stem = nn.Sequential(*conv_bn(1, width), nn.ReLU())
        self.block1 = BasicBlock(width, width)
        self.block2 = BasicBlock(width, 2 * width, stride=2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * width, classes)

    def forward(self, images):
        x = self.block2(self.block1(self.stem(images)))
        return self.fc(self.pool(x).flatten(1))

    def example_inputs(self) -> list[dlc.TensorSpec]:
        side = digits_data.SIDE
        return [dlc.TensorSpec((self.batch, 1, side, side), "float32", name="images")]


def main_model() -> tuple[ResNetDigits, list[dlc.TensorSpec]]:
    """The untrained model in eval mode and its input spec: `dlc dump` shows the inference
    graph, BatchNorm reading its running statistics."""
    model = ResNetDigits()
    model.eval()
    return model, model.example_inputs()


def training(steps: int | None = None, width: int = WIDTH,
             lr: float = LEARNING_RATE) -> Training:
    """What `dlc train examples/resnet_digits.py` runs."""
    train, test = digits_data.load(images=True)
    steps = steps or STEPS
    schedule = dlc.optim.warmup_cosine(lr, 0, steps)
    optimizer = dlc.optim.SGD(schedule, momentum=MOMENTUM, nesterov=True,
                              weight_decay=WEIGHT_DECAY)
    return Training(ResNetDigits(width), F.cross_entropy, optimizer, train=train, test=test,
                    batch_size=BATCH, steps=steps)


if __name__ == "__main__":
    from dlc.cli import main
    sys.exit(main(["train", __file__, *sys.argv[1:]]))
