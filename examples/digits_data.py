"""The handwritten digits of scikit-learn (`sklearn.datasets.load_digits`), split for training.

1,797 real 8x8 grayscale digits (pixel values 0..16) from the UCI "Optical Recognition of
Handwritten Digits" set. They ship inside the scikit-learn wheel, so loading them needs no
network. The split is stratified and fixed (its own seed, not the training seed): 20% of
each class is held out, so every run and every model is scored on the same 359 digits.
"""
from __future__ import annotations

import numpy as np

TEST_FRACTION = 0.2
SPLIT_SEED = 0
CLASSES = 10
SIDE = 8


def load(images: bool = False) -> tuple[tuple[np.ndarray, np.ndarray],
                                         tuple[np.ndarray, np.ndarray]]:
    """((x_train, y_train), (x_test, y_test)): float32 pixels scaled to [0, 1], int64 labels.

    x has shape (n, 64), or (n, 1, 8, 8) with images=True (NCHW, one channel)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise SystemExit("the digits examples need scikit-learn: pip install -e '.[examples]'")
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    if images:
        x = x.reshape(-1, 1, SIDE, SIDE)
    train, test = split(y)
    return (x[train], y[train]), (x[test], y[test])


def split(labels: np.ndarray, fraction: float = TEST_FRACTION,
          seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (train, test) indices: `fraction` of each class, drawn with a fixed seed."""
    rng = np.random.default_rng(seed)
    test = []
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        test.extend(members[:round(len(members) * fraction)])
    test = np.sort(np.array(test))
    return np.setdiff1d(np.arange(len(labels)), test), test

