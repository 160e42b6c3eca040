"""A tiny DDPM on two moons: an MLP denoiser, a cosine noise schedule, compiled sampling.

The data are 2-D points on two interleaved half circles ("two moons", Gaussian noise 0.05),
standardized to zero mean and unit variance per axis: 10,000 points to train on, 2,000
held out. The forward process noises a point x0 to x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t)
eps over T = 100 steps, with the cosine schedule of Nichol & Dhariwal (abar_t =
cos^2(pi/2 (t/T + s)/(1 + s)), s = 0.008). The denoiser is an MLP that reads sinusoidal
embeddings of t and of the coordinates of x_t and predicts eps; the loss is the mean
squared error of that prediction (DDPM's simple loss).

The noising happens inside the compiled training step: `DenoisingObjective` draws t with
`F.rand` and eps with `F.randn_like` (dlc's counter-based RNG, seeded from the step
counter), so each step sees fresh noise and `dlc train` needs only the clean points. In
eval mode it uses one fixed draw instead, so the held-out figure of `dlc train` (the noise
prediction MSE on the held-out points) compares like with like.

Sampling runs the reverse process with the compiled denoiser, one call per step: from
x_T ~ N(0, I), each step estimates x0 from eps(x_t, t), clips it to the data's range and
draws x_{t-1} from the Gaussian posterior q(x_{t-1} | x_t, x0). The quality figure is the
energy distance between 2,000 sampled and 2,000 real points (numpy), next to that of the
untrained model's samples and that of two independent real sets (the floor set by
sampling noise).

    python examples/diffusion.py        # train, sample, print the distances; diffusion.png
    dlc train examples/diffusion.py     # the training alone (held-out noise MSE)
    dlc dump examples/diffusion.py      # the denoiser's inference graph
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

import dlc
from dlc import nn
from dlc.nn import functional as F
from dlc.trainer import Training, fit
from plots import point_panels, require_matplotlib, run_script, script_arguments

TIMESTEPS = 100
COSINE_OFFSET = 0.008
MAX_BETA = 0.999
EMBED = 32
COORDINATE_SCALE = 5.0  # coordinates times 5: periods from 1.3 to about 7,000 data units
HIDDEN = 128
BATCH = 256
STEPS = 4000
EVAL_EVERY = 500
TRAIN_POINTS, HELD_OUT = 10_000, 2000
DATA_SEED = 0          # the data set is fixed; --seed varies the weights and the noise
EVAL_NOISE_SEED = 1
LEARNING_RATE = 2e-3   # after 100 warmup steps, cosine decay to 0
MOON_NOISE = 0.05
DATA_LIMIT = 3.0    # standardized moons lie within +-2.2
SAMPLES = 2000
PNG = "diffusion.png"


# -- data --------------------------------------------------------------------------------------
def two_moons(n: int, rng: np.random.Generator, noise: float = MOON_NOISE) -> np.ndarray:
    """n points (n, 2) float32 on two interleaved half circles, standardized."""
    angle = rng.uniform(0.0, np.pi, n)
    upper = rng.random(n) < 0.5
    x = np.where(upper, np.cos(angle), 1.0 - np.cos(angle))
    y = np.where(upper, np.sin(angle), 0.5 - np.sin(angle))
    points = np.stack([x, y], 1) + noise * rng.standard_normal((n, 2))
    # the moons' mean and (noise-free) standard deviations, so every draw shares them
    return ((points - [0.5, 0.25]) / [0.87, 0.50]).astype(np.float32)


# -- the noise schedule ------------------------------------------------------------------------
@dataclass
class Schedule:
    betas: np.ndarray        # (T,) float64
    alphas: np.ndarray       # 1 - betas
    alpha_bars: np.ndarray   # cumulative products

    @classmethod
    def cosine(cls, steps: int = TIMESTEPS, s: float = COSINE_OFFSET) -> "Schedule":
        t = np.arange(steps + 1) / steps
        f = np.cos((t + s) / (1 + s) * math.pi / 2) ** 2
        betas = np.clip(1.0 - f[1:] / f[:-1], 0.0, MAX_BETA)
        alphas = 1.0 - betas
        return cls(betas, alphas, np.cumprod(alphas))

    def noised(self, x0: np.ndarray, t: np.ndarray, eps: np.ndarray) -> np.ndarray:
        """x_t of the forward process, float32."""
        abar = self.alpha_bars[t][:, None]
        return (np.sqrt(abar) * x0 + np.sqrt(1.0 - abar) * eps).astype(np.float32)

    def reverse_step(self, x: np.ndarray, eps: np.ndarray, t: int,
                     rng: np.random.Generator) -> np.ndarray:
        """x_{t-1} ~ q(x_{t-1} | x_t, x0 = the clipped estimate of x0 from eps).

        Clipping x0 to the data's range (DDPM's clip_denoised) keeps the largest-noise
        steps, whose 1/sqrt(alpha_t) reaches 30, from throwing points far away."""
        abar = self.alpha_bars[t]
        x0 = np.clip((x - math.sqrt(1.0 - abar) * eps) / math.sqrt(abar), -DATA_LIMIT,
                     DATA_LIMIT)
        if t == 0:
            return x0
        abar_prev, beta = self.alpha_bars[t - 1], self.betas[t]
        mean = (math.sqrt(abar_prev) * beta * x0
                + math.sqrt(self.alphas[t]) * (1.0 - abar_prev) * x) / (1.0 - abar)
        variance = beta * (1.0 - abar_prev) / (1.0 - abar)
        return mean + math.sqrt(variance) * rng.standard_normal(x.shape)


# -- the denoiser ------------------------------------------------------------------------------
def sinusoidal_embedding(values, dim: int = EMBED, max_period: float = 10000.0):
    """[sin(v f_k), cos(v f_k)] with f_k = max_period^(-k / (dim/2)), k < dim/2: (B, dim)
    for values (B,): the transformer's position encoding, used for timesteps here."""
    half = dim // 2
    freqs = np.exp(-math.log(max_period) * np.arange(half) / half).astype(np.float32)
    angles = F.unsqueeze(values, 1) * freqs[None, :]
    return F.cat([angles.sin(), angles.cos()], 1)


class Denoiser(nn.Module):
    """eps(x_t, t): an MLP with SiLU activations over the sinusoidal embeddings of t and of
    each coordinate of x_t.

    Embedding the coordinates too (Fourier features) matters: an MLP on the raw 2-D point
    is so smooth that its samples fill the gap between the moons."""

    def __init__(self, hidden: int = HIDDEN, embed: int = EMBED,
                 coordinate_scale: float = COORDINATE_SCALE):
        super().__init__()
        self.embed, self.coordinate_scale = embed, coordinate_scale
        self.net = nn.Sequential(nn.Linear(3 * embed, hidden), nn.SiLU(),
                                 nn.Linear(hidden, hidden), nn.SiLU(),
                                 nn.Linear(hidden, hidden), nn.SiLU(),
                                 nn.Linear(hidden, 2))

    def forward(self, x, t):
        features = [sinusoidal_embedding(x[:, i] * self.coordinate_scale, self.embed)
                    for i in range(2)]
        features.append(sinusoidal_embedding(t, self.embed))
        return self.net(F.cat(features, 1))

    @staticmethod
    def example_inputs(batch: int = BATCH) -> list[dlc.TensorSpec]:
        """Noisy points and their timesteps (as float32 step indices)."""
        return [dlc.TensorSpec((batch, 2), "float32", name="x"),
                dlc.TensorSpec((batch,), "float32", name="t")]


def main_model() -> tuple[Denoiser, list[dlc.TensorSpec]]:
    """The untrained denoiser and its specs: what `dlc dump examples/diffusion.py` uses."""
    model = Denoiser()
    return model, model.example_inputs()


class DenoisingObjective(nn.Module):
    """DDPM's training objective as a module: forward(x0) noises the clean points x0 at
    random timesteps and returns the denoiser's error eps_predicted - eps."""

    def __init__(self, denoiser: Denoiser, schedule: "Schedule"):
        super().__init__()
        self.denoiser = denoiser
        self.timesteps = len(schedule.betas)
        # (T, 1) tables, rows picked by timestep
        self.signal = np.sqrt(schedule.alpha_bars).astype(np.float32)[:, None]
        self.noise = np.sqrt(1.0 - schedule.alpha_bars).astype(np.float32)[:, None]

    def draw(self, x0):
        """(timesteps (n,) float32, eps (n, 2)): random in training, one fixed draw in eval."""
        n = x0.shape[0]
        if self.training:
            # u * T can round up to T in float32: clamp to the last step
            t = (F.rand(n) * float(self.timesteps)).floor().clamp(max=self.timesteps - 1.0)
            return t, F.randn_like(x0)
        rng = np.random.default_rng(EVAL_NOISE_SEED)
        t = rng.integers(0, self.timesteps, n).astype(np.float32)
        return t, rng.standard_normal((n, 2)).astype(np.float32)

    def forward(self, x0):
        t, eps = self.draw(x0)
        index = t.long() if self.training else t.astype(np.int64)
        x_t = F.embedding(index, self.signal) * x0 + F.embedding(index, self.noise) * eps
        return self.denoiser(x_t, t) - eps


def squared_error(error, target):
    """Mean squared denoising error (the target holds zeros)."""
    return F.mse_loss(error, target)


def mean_squared(outputs: np.ndarray, targets: np.ndarray) -> float:
    return float(np.mean((outputs - targets) ** 2))


def training(steps: int | None = None) -> Training:
    """What `dlc train examples/diffusion.py` runs: the objective on the clean points."""
    steps = steps or STEPS
    rng = np.random.default_rng(DATA_SEED)
    train, test = two_moons(TRAIN_POINTS, rng), two_moons(HELD_OUT, rng)
    lr = dlc.optim.warmup_cosine(LEARNING_RATE, min(100, steps // 10), steps)
    return Training(DenoisingObjective(Denoiser(), Schedule.cosine()), squared_error,
                    dlc.optim.Adam(lr=lr), train=(train, np.zeros_like(train)),
                    test=(test, np.zeros_like(test)), batch_size=BATCH, steps=steps,
                    metric=mean_squared, metric_name="held-out noise MSE",
                    eval_every=EVAL_EVERY)


# -- sampling and the distance -----------------------------------------------------------------
def sample(denoiser: Denoiser, n: int, schedule: Schedule, seed: int,
           backend: str = "eager") -> np.ndarray:
    """n points from the reverse process, the compiled denoiser called once per step."""
    denoise = dlc.compile(denoiser, *denoiser.example_inputs(n), backend=backend)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 2))
    for t in reversed(range(len(schedule.betas))):
        eps = denoise(x.astype(np.float32), np.full(n, t, np.float32)).astype(np.float64)
        x = schedule.reverse_step(x, eps, t, rng)
    return x.astype(np.float32)


def _mean_distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a[:, None, :] - b[None, :, :], axis=2).mean())


def energy_distance(x: np.ndarray, y: np.ndarray) -> float:
    """2 E|X - Y| - E|X - X'| - E|Y - Y'| (V-statistic, float64): 0 iff equal laws."""
    x, y = x.astype(np.float64), y.astype(np.float64)
    return 2 * _mean_distance(x, y) - _mean_distance(x, x) - _mean_distance(y, y)


# -- training ----------------------------------------------------------------------------------
@dataclass
class Result:
    distance: float            # energy distance, trained samples vs real points
    initial_distance: float    # the untrained model's samples vs the same real points
    floor: float               # two independent real sets
    losses: list[float]
    seconds: float
    samples: np.ndarray


def train(steps: int = STEPS, seed: int = 0, backend: str = "eager", progress: bool = True,
          png: str | None = PNG, samples: int = SAMPLES) -> Result:
    """Train the denoiser, sample before and after, measure the energy distances."""
    if png:
        require_matplotlib()
    start = time.perf_counter()
    dlc.nn.init.manual_seed(seed)
    setup = training(steps)
    denoiser, schedule = setup.model.denoiser, Schedule.cosine()
    real = setup.test[0][:samples]
    untrained = sample(denoiser, samples, schedule, seed + 1, backend)
    report = fit(setup, steps=steps, seed=seed, backend=backend, progress=progress)
    trained = sample(denoiser, samples, schedule, seed + 1, backend)  # fit loaded them
    other_real = two_moons(samples, np.random.default_rng(DATA_SEED + 1))
    result = Result(energy_distance(trained, real), energy_distance(untrained, real),
                    energy_distance(other_real, real), report.losses,
                    time.perf_counter() - start, trained)
    if png:
        point_panels([("held-out data", real), ("untrained model", untrained),
                      (f"after {steps} steps", trained)], png, limit=3.0)
    return result


def main(argv: list[str] | None = None) -> Result:
    args = script_arguments(__doc__.splitlines()[0], argv, STEPS, PNG)
    result = train(args.steps, args.seed, args.backend, png=args.png)
    print(f"DDPM: energy distance of {SAMPLES} samples to real points {result.distance:.4f} "
          f"(untrained {result.initial_distance:.4f}, two real sets {result.floor:.4f}); "
          f"loss {np.mean(result.losses[:100]):.3f} -> {np.mean(result.losses[-100:]):.3f}; "
          f"wall time {result.seconds:.1f}s")
    print(f"wrote {args.png}")
    return result


if __name__ == "__main__":
    run_script(main)
