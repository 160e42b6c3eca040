"""An autoencoder on the 8x8 digit images: 64 pixels squeezed through 8 numbers and back.

The images are scikit-learn's `load_digits` (1,797 real handwritten digits, 8x8, scaled to
[0, 1]), split as in examples/digits_data.py (359 held out). The encoder maps an image to
an 8-number code, the decoder maps the code back to 64 pixel logits, and the loss is the
binary cross entropy of the pixels (summed over an image, averaged over the batch). The
quality figure is the held-out reconstruction error (mean squared error per pixel of the
sigmoid of the logits), next to that of the untrained model and of always answering the
mean training digit.

    python examples/autoencoder.py                  # train, print the figures and time
    python examples/autoencoder.py --png ae.png     # and a grid of reconstructions
    dlc train examples/autoencoder.py               # the same run through `dlc train`
    dlc dump examples/autoencoder.py                # the inference graph

The input of each example is also its target (`Training(train=(x, x), ...)`).
examples/vae.py adds the variational version on the same data and shares the pieces here.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

import dlc
from dlc import nn
from dlc.nn import functional as F
from dlc.trainer import Training, fit
import digits_data
from plots import image_grid, require_matplotlib, run_script, script_arguments

PIXELS = digits_data.SIDE ** 2
HIDDEN = 128
LATENT = 8
BATCH = 64
STEPS = 3000
LEARNING_RATE = 2e-3
EVAL_EVERY = 250
SHOWN = 12   # images per row of the PNG


# -- data ------------------------------------------------------------------------------------
def digit_images() -> tuple[np.ndarray, np.ndarray]:
    """(train, test) float32 images (n, 64) in [0, 1]: the shared digits split."""
    (train, _), (test, _) = digits_data.load()
    return train, test


# -- model -----------------------------------------------------------------------------------
def decoder(latent: int = LATENT, hidden: int = HIDDEN, pixels: int = PIXELS) -> nn.Module:
    """Code -> pixel logits (apply sigmoid for intensities)."""
    return nn.Sequential(nn.Linear(latent, hidden), nn.ReLU(), nn.Linear(hidden, pixels))


class Autoencoder(nn.Module):
    """64 -> 128 -> 8 -> 128 -> 64; forward returns the pixel logits."""

    def __init__(self, pixels: int = PIXELS, hidden: int = HIDDEN, latent: int = LATENT):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(pixels, hidden), nn.ReLU(),
                                     nn.Linear(hidden, latent))
        self.decoder = decoder(latent, hidden, pixels)

    def forward(self, images):
        return self.decoder(self.encoder(images))

    @staticmethod
    def example_inputs() -> list[dlc.TensorSpec]:
        return [dlc.TensorSpec((BATCH, PIXELS), "float32", name="images")]


def main_model() -> tuple[Autoencoder, list[dlc.TensorSpec]]:
    """The untrained model and its input spec: what `dlc dump examples/autoencoder.py` uses."""
    model = Autoencoder()
    return model, model.example_inputs()


def reconstruction_loss(logits, images):
    """Binary cross entropy of the pixels, summed per image, averaged over the batch."""
    bce = F.binary_cross_entropy_with_logits(logits, images, reduction="sum")
    return bce / float(images.shape[0])


# -- the metric and the run, shared with vae.py ----------------------------------------------
def sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def reconstruction_mse(logits: np.ndarray, images: np.ndarray) -> float:
    """Mean squared error per pixel of the reconstructed intensities."""
    return float(np.mean((sigmoid(logits) - images) ** 2))


def reconstruction_training(model: nn.Module, loss_fn, steps: int | None) -> Training:
    """`model` learns to give back its input, scored by held-out reconstruction MSE."""
    train, test = digit_images()
    return Training(model, loss_fn, dlc.optim.Adam(lr=LEARNING_RATE), train=(train, train),
                    test=(test, test), batch_size=BATCH, steps=steps or STEPS,
                    metric=reconstruction_mse, metric_name="reconstruction MSE",
                    eval_every=EVAL_EVERY)


def training(steps: int | None = None) -> Training:
    """What `dlc train examples/autoencoder.py` runs."""
    return reconstruction_training(Autoencoder(), reconstruction_loss, steps)


def reconstruct(model: nn.Module, images: np.ndarray, backend: str = "eager") -> np.ndarray:
    """The model's logits for `images`, compiled in eval mode for their count."""
    model.eval()
    try:
        spec = dlc.TensorSpec(images.shape, "float32", name="images")
        return dlc.compile(model, spec, backend=backend)(images)
    finally:
        model.train()


@dataclass
class Result:
    test_mse: float            # held-out reconstruction error of the trained model
    initial_test_mse: float    # the same figure before training
    mean_image_mse: float      # always answering the mean training image
    losses: list[float]
    seconds: float
    extra: dict = field(default_factory=dict)


def run(run_training: Training, steps: int, seed: int, backend: str,
        progress: bool) -> tuple[Result, np.ndarray, np.ndarray]:
    """Fit `run_training` (its model holds the initial weights); (result, test images,
    their reconstructions by the trained model)."""
    start = time.perf_counter()
    model = run_training.model
    train, test = run_training.train[0], run_training.test[0]
    initial = reconstruction_mse(reconstruct(model, test, backend), test)
    report = fit(run_training, steps=steps, seed=seed, backend=backend, progress=progress)
    logits = reconstruct(model, test, backend)  # fit loaded the trained weights
    baseline = float(np.mean((train.mean(0) - test) ** 2))
    result = Result(reconstruction_mse(logits, test), initial, baseline, report.losses,
                    time.perf_counter() - start)
    return result, test, logits


def train(steps: int = STEPS, seed: int = 0, backend: str = "eager", progress: bool = True,
          png: str | None = None) -> Result:
    """Train the autoencoder; held-out reconstruction error before and after."""
    if png:
        require_matplotlib()
    dlc.nn.init.manual_seed(seed)
    result, test, logits = run(training(steps), steps, seed, backend, progress)
    if png:
        image_grid([("held out", test[:SHOWN]), ("decoded", sigmoid(logits[:SHOWN]))], png,
                   title="autoencoder: held-out digits and their reconstructions")
    return result


def summary(name: str, result: Result) -> str:
    return (f"{name}: held-out reconstruction MSE {result.test_mse:.4f} per pixel "
            f"(untrained {result.initial_test_mse:.4f}, mean digit "
            f"{result.mean_image_mse:.4f}); training loss {np.mean(result.losses[:50]):.2f}"
            f" -> {np.mean(result.losses[-50:]):.2f}; wall time {result.seconds:.1f}s")


def main(argv: list[str] | None = None) -> Result:
    args = script_arguments(__doc__.splitlines()[0], argv, STEPS, None)
    result = train(args.steps, args.seed, args.backend, png=args.png)
    print(summary("autoencoder", result))
    if args.png:
        print(f"wrote {args.png}")
    return result


if __name__ == "__main__":
    run_script(main)
