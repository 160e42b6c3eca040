"""A variational autoencoder on the 8x8 digit images, sampled through the compiled decoder.

The same data and layer sizes as examples/autoencoder.py, but the encoder gives a Gaussian
q(z | x) = N(mu, exp(logvar)) over an 8-number code. Training draws the code with the
reparameterization trick, z = mu + exp(logvar / 2) * eps, where eps comes from
`F.randn_like`: dlc's counter-based RNG, seeded from the training step's counter, so every
step draws fresh noise inside the compiled graph and a rerun draws the same. The loss is
the negative ELBO: pixel binary cross entropy plus KL(q(z | x) || N(0, I)), both summed per
image and averaged over the batch.

In training mode forward returns (logits, mu, logvar); in eval mode it reconstructs from
the mean code and returns the logits alone, which is what `dlc train` scores.

    python examples/vae.py                   # train, print the figures, write vae.png
    dlc train examples/vae.py                # the same training through `dlc train`
    dlc dump examples/vae.py                 # the training-mode graph (random_normal)

The PNG shows held-out digits, their reconstructions and new digits decoded from codes
drawn from N(0, I).
"""
from __future__ import annotations

import numpy as np

import dlc
from dlc import nn
from dlc.nn import functional as F
from dlc.trainer import Training
from autoencoder import (BATCH, HIDDEN, LATENT, PIXELS, SHOWN, STEPS, Result,
                         decoder, reconstruction_loss, reconstruction_training, run, sigmoid,
                         summary)
from plots import image_grid, require_matplotlib, run_script, script_arguments

PNG = "vae.png"


class VAE(nn.Module):
    """64 -> 128 -> (mu, logvar) of 8 -> 128 -> 64 pixel logits."""

    def __init__(self, pixels: int = PIXELS, hidden: int = HIDDEN, latent: int = LATENT):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(pixels, hidden), nn.ReLU())
        self.mu = nn.Linear(hidden, latent)
        self.logvar = nn.Linear(hidden, latent)
        self.decoder = decoder(latent, hidden, pixels)

    def encode(self, images):
        """The mean and log-variance of q(z | images)."""
        h = self.encoder(images)
        return self.mu(h), self.logvar(h)

    def forward(self, images):
        mu, logvar = self.encode(images)
        if not self.training:
            return self.decoder(mu)
        z = mu + (0.5 * logvar).exp() * F.randn_like(mu)
        return self.decoder(z), mu, logvar

    @staticmethod
    def example_inputs() -> list[dlc.TensorSpec]:
        return [dlc.TensorSpec((BATCH, PIXELS), "float32", name="images")]


def main_model() -> tuple[VAE, list[dlc.TensorSpec]]:
    """The untrained model in training mode (so the graph shows the sampling) and its spec;
    the traced graph takes the int64 `seed` of the noise as a second input."""
    model = VAE()
    return model, model.example_inputs()


def kl_divergence(mu, logvar):
    """KL(N(mu, exp(logvar)) || N(0, I)), summed over the code, averaged over the batch."""
    kl = -0.5 * (1.0 + logvar - mu * mu - logvar.exp()).sum()
    return kl / float(mu.shape[0])


def negative_elbo(outputs, images):
    logits, mu, logvar = outputs
    return reconstruction_loss(logits, images) + kl_divergence(mu, logvar)


def training(steps: int | None = None) -> Training:
    """What `dlc train examples/vae.py` runs."""
    return reconstruction_training(VAE(), negative_elbo, steps)


def held_out_kl(model: VAE, images: np.ndarray, backend: str = "eager") -> float:
    """Mean KL(q(z | x) || N(0, I)) over `images`, in nats, through the compiled encoder."""
    spec = dlc.TensorSpec(images.shape, "float32", name="images")
    mu, logvar = dlc.compile(model.encode, spec, module=model, backend=backend)(images)
    return float(np.mean(-0.5 * np.sum(1.0 + logvar - mu ** 2 - np.exp(logvar), axis=1)))


def sample(model: VAE, count: int, seed: int, backend: str = "eager") -> np.ndarray:
    """`count` new images (n, 64) in [0, 1]: the trained decoder on codes from N(0, I)."""
    codes = np.random.default_rng(seed).standard_normal((count, LATENT)).astype(np.float32)
    spec = dlc.TensorSpec((count, LATENT), "float32", name="code")
    return sigmoid(dlc.compile(model.decoder, spec, backend=backend)(codes))


def train(steps: int = STEPS, seed: int = 0, backend: str = "eager", progress: bool = True,
          png: str | None = PNG) -> Result:
    """Train the VAE; held-out reconstruction error and KL; samples; the PNG."""
    if png:
        require_matplotlib()
    dlc.nn.init.manual_seed(seed)
    setup = training(steps)
    result, test, logits = run(setup, steps, seed, backend, progress)
    model = setup.model
    samples = sample(model, SHOWN, seed, backend)
    result.extra.update(kl=held_out_kl(model, test, backend), samples=samples)
    if png:
        image_grid([("held out", test[:SHOWN]), ("decoded", sigmoid(logits[:SHOWN])),
                    ("sampled", samples)], png,
                   title="VAE: held-out digits, their reconstructions, and samples z ~ N(0, I)")
    return result


def main(argv: list[str] | None = None) -> Result:
    args = script_arguments(__doc__.splitlines()[0], argv, STEPS, PNG)
    result = train(args.steps, args.seed, args.backend, png=args.png)
    print(summary("VAE", result) + f"; held-out KL {result.extra['kl']:.2f} nats")
    if args.png:
        print(f"wrote {args.png}")
    return result


if __name__ == "__main__":
    run_script(main)
