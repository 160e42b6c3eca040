"""`dlc train FILE.py[:NAME]`: run a model file's training with compiled training steps.

The file defines `training()` (or NAME), a function returning a dlc.trainer.Training: the
model, the loss, the optimizer, the train and held-out data, the batch size and the number
of steps (see TRAIN_HELP). The command compiles one training step, runs it with a progress
line, evaluates the held-out metric once per epoch, prints a final report and with
`--save` writes the trained weights under PyTorch's names to an .npz file.
"""
from __future__ import annotations

import argparse
import inspect
import sys
from pathlib import Path

import numpy as np

from dlc.cli import (UsageError, add_backend_argument, display_path, import_file, register,
                     split_model_ref, user_code)
from dlc.fileio import save_npz

DEFAULT_TRAINING = "training"

TRAIN_HELP = f"""\
training files:
  MODEL is FILE.py or FILE.py:NAME; without :NAME the file's `{DEFAULT_TRAINING}()` is used.
  The file is imported as Python (it is your code and runs as such). NAME is a function
  returning a dlc.trainer.Training(model, loss_fn, optimizer, train=(x, y), test=(x, y),
  batch_size, steps, metric=accuracy, eval_every=None). If it takes a
  `steps` argument, --steps is passed to it (so a learning-rate schedule can span the
  run); otherwise --steps only replaces Training.steps.

  --seed reseeds dlc.nn.init before the function runs (the initial weights), and seeds the
  batch order and the dropout masks: the same seed gives the same run.

example:
  def {DEFAULT_TRAINING}(steps=None):
      (x, y), test = load_my_data()
      model = MyNet()
      steps = steps or 2000
      optimizer = dlc.optim.AdamW(dlc.optim.warmup_cosine(2e-3, 100, steps))
      return Training(model, F.cross_entropy, optimizer, train=(x, y), test=test,
                      batch_size=32, steps=steps)
"""


def _configure_train(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL", help="FILE.py or FILE.py:NAME (see below)")
    p.add_argument("--steps", type=int, metavar="N",
                   help="number of training steps (default: the file's)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the initial weights, batch order and dropout (default 0)")
    add_backend_argument(p)
    p.add_argument("--save", metavar="WEIGHTS.npz",
                   help="write the trained weights (numpy arrays under PyTorch's "
                        "state_dict names, no pickles) to this .npz file")
    p.add_argument("--skip-nonfinite", action="store_true",
                   help="skip steps whose loss or gradients are NaN/Inf instead of stopping")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress line")


def load_training(ref: str, seed: int, steps: int | None):
    """Import FILE.py, call its training function, check it returned a Training."""
    from dlc.trainer import CustomRun, Training
    from frontend import init
    path, name = split_model_ref(ref)
    path = path.resolve() if path.exists() else path
    init.manual_seed(seed)  # layers built at import time draw from the seeded generator too
    module = import_file(path)
    attr = name or DEFAULT_TRAINING
    label = f"{display_path(path)}:{attr}"
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise UsageError(f"{display_path(path)} defines no function {attr!r} returning a "
                         f"dlc.trainer.Training (see 'dlc train --help')")
    init.manual_seed(seed)
    with user_code(path, f"calling {label}()"):
        training = factory(steps=steps) if _takes_steps(factory) and steps else factory()
    if not isinstance(training, (Training, CustomRun)):
        raise UsageError(f"{label}() must return a dlc.trainer.Training or CustomRun, got "
                         f"{type(training).__name__}")
    return label, path, training


def _takes_steps(fn) -> bool:
    try:
        return "steps" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def describe(label: str, training, steps: int, args: argparse.Namespace) -> str:
    model = training.model
    n_params = sum(int(np.prod(a.shape)) for _, a in model.named_parameters())
    n_train, n_test = len(training.train[0]), len(training.test[0])
    epochs = steps / training.steps_per_epoch
    return (f"training {label}: {type(model).__name__}, {n_params:,} parameters, "
            f"{type(training.optimizer).__name__}; {steps:,} steps of batch "
            f"{training.batch_size} over {n_train:,} examples ({epochs:.3g} epochs), "
            f"{n_test:,} held out; backend {args.backend}, seed {args.seed}")


def save_weights(state: dict[str, np.ndarray], out: str) -> str:
    """An .npz of plain numeric arrays (never pickled), written atomically; returns the path
    written."""
    path = Path(out) if out.endswith(".npz") else Path(out + ".npz")
    try:
        save_npz(path, state)
    except OSError as e:
        raise UsageError(f"cannot write {out}: {e.strerror or e}") from None
    return str(path)


@register("train", "train a model file with compiled training steps", _configure_train,
          description="Import MODEL, call its training function, compile one training step "
                      "(forward, backward and optimizer update in one graph) and run it: a "
                      "progress line (step, loss, held-out metric, steps/s), then a final "
                      "report (held-out metric, wall time, steps).",
          epilog=TRAIN_HELP)
def cmd_train(args: argparse.Namespace) -> int:
    from dlc.trainer import ProgressLine, fit
    if args.steps is not None and args.steps < 1:
        raise UsageError(f"--steps must be >= 1, got {args.steps}")
    from dlc.trainer import CustomRun
    label, path, training = load_training(args.model, args.seed, args.steps)
    steps = args.steps or training.steps
    if isinstance(training, CustomRun):
        if args.save:
            raise UsageError(f"{label}() runs its own loop: --save is not available")
        print(f"training {label}: {training.description}; {steps:,} steps; backend "
              f"{args.backend}, seed {args.seed}", flush=True)
        with user_code(path, f"training {label}"):
            print(training.run(steps=steps, seed=args.seed, backend=args.backend,
                               progress=not args.quiet))
        return 0
    print(describe(label, training, steps, args), flush=True)
    progress = None if args.quiet else ProgressLine(steps, training.metric_name, sys.stdout)
    with user_code(path, f"training {label}"):
        report = fit(training, steps=steps, seed=args.seed, backend=args.backend,
                     progress=progress,
                     on_nonfinite="skip" if args.skip_nonfinite else "raise")
    print(report.summary())
    if args.save:
        print(f"wrote {save_weights(report.state_dict, args.save)}")
    return 0
