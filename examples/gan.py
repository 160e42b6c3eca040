"""A GAN on a ring of 8 Gaussians: two compiled training steps that share only the data.

The data are 2-D points from 8 Gaussians (standard deviation 0.05) evenly spaced on a circle
of radius 2. The generator maps 8 normal numbers to a point; the discriminator maps a point
to a logit. Each network has its own compiled training step with its own Adam state:

- the discriminator's step takes a real batch, the noise z and the generator's current
  weights (graph inputs of role `input`, not parameters), computes the fakes inside the
  graph and learns to tell real (label 1) from fake (label 0);
- the generator's step takes z and the discriminator's current weights as inputs and
  learns to make the discriminator say "real" (the non-saturating loss).

Each step reads the other network's weights from the other executable's `state_dict()`
every iteration: the weights flow as arguments, so nothing recompiles, and since they are
inputs rather than parameters, no step ever updates the other network. The input names
are the other step's parameter names (`discriminator.layers.0.weight`, ...).

The quality figure is mode coverage: of 2,000 generated points, each is assigned to its
nearest mode; a point within 3 standard deviations of it is a good one, and a mode is
covered when at least 1% of the points are good points of that mode.

    python examples/gan.py                  # train, print modes covered and time; gan.png
    dlc dump examples/gan.py                # the generator's inference graph
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

import dlc
from dlc import nn
from dlc.nn import functional as F
from dlc.trainer import CustomRun
from plots import point_panels, require_matplotlib, run_script, script_arguments
from progress import Progress

MODES = 8
RADIUS = 2.0
STD = 0.05
NOISE = 8
HIDDEN = 128
BATCH = 256
STEPS = 4000
LEARNING_RATE = 1e-3   # decayed to 1% along a cosine over the run
BETAS = (0.5, 0.9)
SLOPE = 0.2
SAMPLES = 2000
PNG = "gan.png"


# -- data --------------------------------------------------------------------------------------
def mode_centers(modes: int = MODES, radius: float = RADIUS) -> np.ndarray:
    angles = 2 * np.pi * np.arange(modes) / modes
    return (radius * np.stack([np.cos(angles), np.sin(angles)], 1)).astype(np.float32)


def ring_of_gaussians(n: int, rng: np.random.Generator, std: float = STD) -> np.ndarray:
    """n points (n, 2) float32: a random mode each, plus Gaussian noise."""
    centers = mode_centers()
    picks = rng.integers(0, len(centers), n)
    return (centers[picks] + std * rng.standard_normal((n, 2))).astype(np.float32)


def noise(n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.standard_normal((n, NOISE)).astype(np.float32)


# -- networks ----------------------------------------------------------------------------------
def mlp(x, weights: list, slope: float = SLOPE):
    """Linear layers given as [(weight, bias), ...] with leaky ReLU between them: the
    same function whether the weights are a module's parameters or graph inputs."""
    for i, (w, b) in enumerate(weights):
        x = F.linear(x, w, b)
        if i < len(weights) - 1:
            x = F.leaky_relu(x, slope)
    return x


def pairs(flat: tuple) -> list[tuple]:
    return [(flat[i], flat[i + 1]) for i in range(0, len(flat), 2)]


class MLP(nn.Module):
    """Linear(sizes[0], sizes[1]) -> leaky ReLU -> ... -> Linear(.., sizes[-1])."""

    def __init__(self, *sizes: int):
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(a, b) for a, b in zip(sizes, sizes[1:])])

    def weights(self) -> list[tuple]:
        return [(layer.weight, layer.bias) for layer in self.layers]

    def forward(self, x):
        return mlp(x, self.weights())


def generator() -> MLP:
    return MLP(NOISE, HIDDEN, HIDDEN, 2)


def discriminator() -> MLP:
    return MLP(2, HIDDEN, HIDDEN, 1)


def weight_specs(net: MLP, prefix: str) -> list[dlc.TensorSpec]:
    """One input spec per parameter of `net`, named as in the other step's state dict."""
    return [dlc.TensorSpec(a.shape, str(a.dtype), name=f"{prefix}.{key}")
            for key, a in net.state_dict().items()]


class DiscriminatorStep(nn.Module):
    """Logits of [real; G(z)], G's weights given as inputs (no gradient reaches them)."""

    def __init__(self):
        super().__init__()
        self.discriminator = discriminator()

    def forward(self, real, z, *generator_weights):
        fake = mlp(z, pairs(generator_weights))
        return self.discriminator(F.cat([real, fake], 0))


class GeneratorStep(nn.Module):
    """Logits of D(G(z)), D's weights given as inputs."""

    def __init__(self):
        super().__init__()
        self.generator = generator()

    def forward(self, z, *discriminator_weights):
        return mlp(self.generator(z), pairs(discriminator_weights))


def main_model() -> tuple[MLP, list[dlc.TensorSpec]]:
    """The untrained generator and its noise spec: what `dlc dump examples/gan.py` uses."""
    return generator(), [dlc.TensorSpec((SAMPLES, NOISE), "float32", name="z")]


def gan_loss(logits, labels):
    return F.binary_cross_entropy_with_logits(logits, labels)


# -- training ----------------------------------------------------------------------------------
@dataclass
class Result:
    modes_covered: int
    good_fraction: float       # generated points within 3 std of their nearest mode
    initial_modes_covered: int
    d_losses: list[float]
    g_losses: list[float]
    seconds: float
    snapshots: list = field(default_factory=list)   # (step, generated points)


def coverage(points: np.ndarray, min_share: float = 0.01) -> tuple[int, float]:
    """(modes covered, fraction of good points) of generated `points`."""
    centers = mode_centers()
    dist = np.linalg.norm(points[:, None, :] - centers[None], axis=2)
    nearest, good = dist.argmin(1), dist.min(1) < 3 * STD
    per_mode = np.bincount(nearest[good], minlength=len(centers))
    return int((per_mode >= min_share * len(points)).sum()), float(good.mean())


class GanTrainer:
    """The two compiled steps and the loop that alternates them."""

    def __init__(self, steps: int = STEPS, seed: int = 0, backend: str = "eager"):
        dlc.nn.init.manual_seed(seed)
        self.backend = backend
        self.d_model, self.g_model = DiscriminatorStep(), GeneratorStep()
        # the decay settles the generator on the modes it has found rather than letting
        # it wander off some of them late in training
        schedule = dlc.optim.warmup_cosine(LEARNING_RATE, 0, steps, LEARNING_RATE / 100)
        adam = dict(lr=schedule, betas=BETAS)
        z = dlc.TensorSpec((BATCH, NOISE), "float32", name="z")
        d_step = dlc.train_step(
            self.d_model, gan_loss, dlc.optim.Adam(**adam),
            dlc.TensorSpec((BATCH, 2), "float32", name="real"), z,
            *weight_specs(self.g_model.generator, "generator"),
            dlc.TensorSpec((2 * BATCH, 1), "float32", name="labels"), seed=seed)
        g_step = dlc.train_step(
            self.g_model, gan_loss, dlc.optim.Adam(**adam), z,
            *weight_specs(self.d_model.discriminator, "discriminator"),
            dlc.TensorSpec((BATCH, 1), "float32", name="labels"), seed=seed + 1)
        self.d_exe = dlc.compile(d_step, backend=backend)
        self.g_exe = dlc.compile(g_step, backend=backend)
        self.d_labels = np.concatenate([np.ones((BATCH, 1)), np.zeros((BATCH, 1))]) \
            .astype(np.float32)
        self.g_labels = np.ones((BATCH, 1), np.float32)
        self.rng = np.random.default_rng(seed)
        self.sampler = None

    @staticmethod
    def _weights(exe) -> list[np.ndarray]:
        return list(exe.state_dict().values())  # in parameter order, as the specs

    def step(self) -> tuple[float, float]:
        """One discriminator step, then one generator step: their losses."""
        real = ring_of_gaussians(BATCH, self.rng)
        d_loss = self.d_exe(real, noise(BATCH, self.rng), *self._weights(self.g_exe),
                            self.d_labels)
        g_loss = self.g_exe(noise(BATCH, self.rng), *self._weights(self.d_exe),
                            self.g_labels)
        return float(d_loss), float(g_loss)

    def sample(self, n: int = SAMPLES, seed: int = 1234) -> np.ndarray:
        """n generated points through the compiled generator with the current weights
        (compiled once; each call loads the generator step's weights into it)."""
        if self.sampler is None or self.sampler.user_inputs[0].type.shape[0] != n:
            net = self.g_model.generator
            net.eval()
            self.sampler = dlc.compile(net, dlc.TensorSpec((n, NOISE), "float32", name="z"),
                                       backend=self.backend)
            net.train()
        prefix = "generator."
        self.sampler.load_state_dict({k[len(prefix):]: v for k, v in
                                      self.g_exe.state_dict().items()})
        return self.sampler(noise(n, np.random.default_rng(seed)))


def train(steps: int = STEPS, seed: int = 0, backend: str = "eager", progress: bool = True,
          png: str | None = PNG, snapshots: int = 3) -> Result:
    """Alternate the two steps `steps` times; mode coverage before and after."""
    if png:
        require_matplotlib()
    start = time.perf_counter()
    trainer = GanTrainer(steps, seed, backend)
    shots = [(0, trainer.sample())]
    initial, _ = coverage(shots[0][1])
    bar = Progress(steps, "gan", enabled=progress)
    d_losses, g_losses = [], []
    shot_steps = {int(s) for s in np.linspace(0, steps, snapshots + 1)[1:-1]}
    for i in range(1, steps + 1):
        d, g = trainer.step()
        d_losses.append(d)
        g_losses.append(g)
        bar.update(i, d_loss=float(np.mean(d_losses[-50:])),
                   g_loss=float(np.mean(g_losses[-50:])))
        if i in shot_steps:
            shots.append((i, trainer.sample()))
    bar.close()
    final = trainer.sample()
    shots.append((steps, final))
    covered, good = coverage(final)
    result = Result(covered, good, initial, d_losses, g_losses, time.perf_counter() - start,
                    shots)
    if png:
        real = ring_of_gaussians(SAMPLES, np.random.default_rng(seed + 7))
        panels = [("data", real)] + [(f"generated, step {s}", p) for s, p in shots]
        point_panels(panels, png, centers=mode_centers(), limit=3.0)
    return result


def summary(result: Result) -> str:
    return (f"GAN: {result.modes_covered} of {MODES} modes covered (untrained "
            f"{result.initial_modes_covered}); {result.good_fraction:.1%} of the generated "
            f"points within 3 std of a mode; wall time {result.seconds:.1f}s")


def training(steps: int | None = None) -> CustomRun:
    """`dlc train examples/gan.py`: the alternating loop, without the figure."""
    def run(steps: int, seed: int, backend: str, progress: bool) -> str:
        return summary(train(steps, seed, backend, progress=progress, png=None))
    return CustomRun(run, steps or STEPS, "generator and discriminator, two compiled steps "
                     "sharing only the data")


def main(argv: list[str] | None = None) -> Result:
    args = script_arguments(__doc__.splitlines()[0], argv, STEPS, PNG)
    result = train(args.steps, args.seed, args.backend, png=args.png)
    print(summary(result))
    print(f"wrote {args.png}")
    return result


if __name__ == "__main__":
    run_script(main)
