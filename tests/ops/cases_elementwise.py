"""Cases for dlc/ops/elementwise.py."""
import torch

from tests.ops.harness import case, randn

case("add", [randn(3, 4), randn(4)], lambda a, b: a + b)
case("mul", [randn(2, 1, 4), randn(3, 1)], lambda a, b: a * b)
case("relu", [randn(5, 6)], lambda x: torch.relu(x))
