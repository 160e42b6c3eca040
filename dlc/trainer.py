"""Training runs: the `Training` record a model file gives `dlc train`, and the loop.

    from dlc.trainer import Training, fit

    def training(steps=None) -> Training:
        model = Net()
        return Training(model, F.cross_entropy, dlc.optim.AdamW(1e-3), train=(x, y),
                        test=(x_test, y_test), batch_size=32, steps=steps or 2000)

    report = fit(training(), seed=0)       # what `dlc train FILE.py` runs
    print(report.summary())

`fit` compiles one training step (dlc.train_step) and one evaluation graph (the model in
eval mode), then loops: shuffled batches drawn from a generator seeded with `seed`, one
compiled call per step, the held-out metric evaluated once per epoch and at the end. The
same seed gives the same batches, the same dropout masks and so the same losses.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, TextIO

import numpy as np

from dlc.errors import DlcError

Metric = Callable[[np.ndarray, np.ndarray], float]
EVAL_CHUNK = 1024  # held-out examples per evaluation call (the last chunk is padded)


def accuracy(outputs: np.ndarray, targets: np.ndarray) -> float:
    """Fraction of rows whose largest output is at the target class."""
    return float(np.mean(np.argmax(outputs, axis=-1) == targets))


@dataclass
class Training:
    """Everything a training run needs; what a model file's `training()` returns.

    train and test are (inputs, targets) arrays whose first axis runs over examples; a
    batch is `batch_size` rows of train (the last incomplete batch of an epoch is dropped:
    a compiled step has one batch shape). `metric(outputs, targets)` scores the model's
    outputs on test (default: accuracy); it is evaluated every `eval_every` steps (default:
    once per epoch) and after the last step."""
    model: object
    loss_fn: Callable
    optimizer: object
    train: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray]
    batch_size: int
    steps: int
    metric: Metric = accuracy
    metric_name: str = "accuracy"
    eval_every: int | None = None

    def __post_init__(self):
        for name in ("train", "test"):
            pair = getattr(self, name)
            if not (isinstance(pair, tuple) and len(pair) == 2 and
                    all(isinstance(a, np.ndarray) for a in pair)):
                raise DlcError(f"Training.{name} must be a tuple (inputs, targets) of numpy "
                               f"arrays")
            if len(pair[0]) != len(pair[1]):
                raise DlcError(f"Training.{name}: {len(pair[0])} inputs but {len(pair[1])} "
                               f"targets (shapes {pair[0].shape} and {pair[1].shape})")
        if not 1 <= self.batch_size <= len(self.train[0]):
            raise DlcError(f"Training.batch_size must be in 1..{len(self.train[0])} (the "
                           f"training examples), got {self.batch_size}")
        if self.steps < 1:
            raise DlcError(f"Training.steps must be >= 1, got {self.steps}")

    @property
    def steps_per_epoch(self) -> int:
        return len(self.train[0]) // self.batch_size


@dataclass
class CustomRun:
    """A run with its own loop, for what one supervised step cannot express (a GAN's two
    alternating steps): `run(steps=, seed=, backend=, progress=)` trains and returns the
    final report as text. What `training()` may return instead of a Training."""
    run: Callable[..., str]
    steps: int
    description: str = ""


@dataclass
class TrainReport:
    """What a run did: per-step losses, held-out evaluations, timing and the weights."""
    steps: int
    losses: list[float]
    evaluations: list[tuple[int, float]]
    metric_name: str
    wall_s: float
    state_dict: dict[str, np.ndarray]
    test_examples: int
    compile_s: float = 0.0
    skipped_steps: list[int] = field(default_factory=list)

    @property
    def metric(self) -> float:
        """The held-out metric after the last step."""
        return self.evaluations[-1][1]

    def summary(self) -> str:
        rate = self.steps / self.wall_s if self.wall_s > 0 else float("inf")
        skipped = f", {len(self.skipped_steps)} skipped (non-finite)" \
            if self.skipped_steps else ""
        return (f"held-out {self.metric_name} {format_metric(self.metric_name, self.metric)} "
                f"on {self.test_examples} examples; {self.steps} steps{skipped} in "
                f"{self.wall_s:.1f} s ({rate:.1f} steps/s, compile {self.compile_s:.1f} s); "
                f"final loss {self.losses[-1]:.4f}")


def format_metric(name: str, value: float) -> str:
    return f"{value:.2%}" if name == "accuracy" else f"{value:.4g}"


# -- batches and evaluation ----------------------------------------------------------------------
def batch_indices(n: int, batch_size: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Endless full batches: a fresh permutation of range(n) each epoch, cut in order."""
    while True:
        order = rng.permutation(n)
        for start in range(0, n - batch_size + 1, batch_size):
            yield order[start:start + batch_size]


class Evaluator:
    """The model in eval mode, compiled once for chunks of the held-out inputs; called with
    a state dict of trained weights, it returns the metric on the whole held-out set."""

    def __init__(self, training: Training, backend: str):
        import dlc
        x, self.targets = training.test
        self.inputs = x
        self.chunk = min(len(x), EVAL_CHUNK)
        model = training.model
        model.eval()
        try:
            spec = dlc.TensorSpec((self.chunk,) + x.shape[1:], x.dtype.name, name="x")
            self.exe = dlc.compile(model, spec, backend=backend)
        finally:
            model.train()
        self.metric = training.metric

    def outputs(self, state: dict[str, np.ndarray]) -> np.ndarray:
        self.exe.load_state_dict(state, strict=False)
        parts = []
        for start in range(0, len(self.inputs), self.chunk):
            part = self.inputs[start:start + self.chunk]
            n = len(part)
            if n < self.chunk:  # pad to the compiled shape, keep the first n rows
                pad = np.zeros((self.chunk - n,) + part.shape[1:], part.dtype)
                part = np.concatenate([part, pad])
            parts.append(np.asarray(self.exe(part))[:n])
        return np.concatenate(parts)

    def __call__(self, state: dict[str, np.ndarray]) -> float:
        return float(self.metric(self.outputs(state), self.targets))


# -- the progress line ---------------------------------------------------------------------------
class ProgressLine:
    """step, loss (mean since the last line), the latest held-out metric and steps/s.

    On a terminal the line is rewritten in place (at most ~10 times a second); otherwise a
    plain line is printed every `every` steps, so a log stays short."""

    def __init__(self, total: int, metric_name: str, stream: TextIO | None = None,
                 every: int | None = None):
        self.total, self.metric_name = total, metric_name
        self.stream = stream if stream is not None else sys.stdout
        self.live = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every = every or max(1, total // 10)
        self.start = self.last_draw = time.perf_counter()
        self.pending: list[float] = []
        self.metric: float | None = None
        self.drawn = False

    def begin(self) -> None:
        """Start the clock (after compiling, so steps/s counts steps only)."""
        self.start = self.last_draw = time.perf_counter()

    def update(self, step: int, loss: float, metric: float | None = None) -> None:
        self.pending.append(loss)
        if metric is not None:
            self.metric = metric
        now = time.perf_counter()
        due = step == self.total or (now - self.last_draw >= 0.1 if self.live
                                     else step % self.every == 0)
        if due:
            self.last_draw = now
            self._draw(step, now)

    def line(self, step: int, now: float) -> str:
        loss = float(np.mean(self.pending)) if self.pending else float("nan")
        shown = "-" if self.metric is None else format_metric(self.metric_name, self.metric)
        rate = step / max(now - self.start, 1e-9)
        width = len(str(self.total))
        return (f"step {step:>{width}}/{self.total}  loss {loss:.4f}  "
                f"{self.metric_name} {shown}  {rate:.1f} steps/s")

    def _draw(self, step: int, now: float) -> None:
        text = self.line(step, now)
        self.pending = []
        if self.live:
            self.stream.write("\r" + text + "\x1b[K")
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
        self.drawn = True

    def close(self) -> None:
        if self.live and self.drawn:
            self.stream.write("\n")
            self.stream.flush()


# -- the loop ------------------------------------------------------------------------------------
def fit(training: Training, *, steps: int | None = None, seed: int = 0,
        backend: str = "eager", progress: ProgressLine | bool | None = None,
        on_nonfinite: str = "raise") -> TrainReport:
    """Train `training.model` for `steps` (default training.steps) compiled steps.

    `seed` drives the batch order and the dropout masks (the initial
    weights come from dlc.nn.init, seeded by the caller). progress: a ProgressLine, True for
    one on stdout, or None/False for none. Returns a TrainReport; the trained weights are
    in report.state_dict (PyTorch names) and are also loaded back into the model."""
    import dlc
    compile_start = time.perf_counter()
    total = training.steps if steps is None else int(steps)
    if total < 1:
        raise DlcError(f"fit: steps must be >= 1, got {total}")
    x, y = training.train
    specs = (dlc.TensorSpec((training.batch_size,) + x.shape[1:], x.dtype.name, name="x"),
             dlc.TensorSpec((training.batch_size,) + y.shape[1:], y.dtype.name,
                            name="target"))
    step_graph = dlc.train_step(training.model, training.loss_fn, training.optimizer, *specs,
                                seed=seed)
    exe = dlc.compile(step_graph, backend=backend, on_nonfinite=on_nonfinite)
    evaluate = Evaluator(training, backend)
    if progress is True:
        progress = ProgressLine(total, training.metric_name)
    every = training.eval_every or training.steps_per_epoch
    rng = np.random.default_rng(seed)
    losses, evaluations = [], []
    start = time.perf_counter()
    compile_s = start - compile_start
    if progress:
        progress.begin()
    try:
        for step, idx in zip(range(1, total + 1), batch_indices(len(x), training.batch_size,
                                                                rng)):
            losses.append(float(exe(x[idx], y[idx])))
            metric = None
            if step % every == 0 or step == total:
                metric = evaluate(exe.state_dict())
                evaluations.append((step, metric))
            if progress:
                progress.update(step, losses[-1], metric)
    finally:
        if progress:
            progress.close()
    wall = time.perf_counter() - start
    state = exe.state_dict()
    training.model.load_state_dict(state)
    return TrainReport(total, losses, evaluations, training.metric_name, wall, state,
                       len(training.test[0]), compile_s, list(exe.skipped_steps))
