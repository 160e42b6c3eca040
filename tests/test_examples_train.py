"""The digit-training examples and `dlc train`: short runs that learn, determinism given a
seed, the saved weights (PyTorch names, checked by loading them into torch), the progress
line and the command's errors.

The full runs (40 and 30 epochs) are measured in README.md; here each run is a few hundred
steps at most. The held-out accuracy that dlc reports is checked against the same weights
evaluated by an independent PyTorch twin of each model.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch

from dlc.cli import main
from dlc.errors import DlcError
from dlc.cli_train import load_training
from dlc.trainer import ProgressLine, Training, accuracy, fit
from tests.torch_training import one_blas_thread

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
MLP = str(EXAMPLES / "digits_mlp.py")
CNN = str(EXAMPLES / "digits_cnn.py")
CHANCE = 0.1


@pytest.fixture(autouse=True)
def _one_blas_thread():
    with one_blas_thread():
        yield


def torch_mlp() -> torch.nn.Module:
    class DigitsMLP(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2 = torch.nn.Linear(64, 256), torch.nn.Linear(256, 256)
            self.fc3 = torch.nn.Linear(256, 10)

        def forward(self, x):
            return self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(x)))))
    return DigitsMLP()


def torch_cnn() -> torch.nn.Module:
    class DigitsCNN(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = torch.nn.Conv2d(1, 16, 3, padding=1)
            self.conv2 = torch.nn.Conv2d(16, 32, 3, padding=1)
            self.fc1, self.fc2 = torch.nn.Linear(512, 64), torch.nn.Linear(64, 10)

        def forward(self, x):
            h = torch.relu(self.conv1(x))
            h = torch.nn.functional.max_pool2d(torch.relu(self.conv2(h)), 2)
            return self.fc2(torch.relu(self.fc1(h.flatten(1))))
    return DigitsCNN()


def torch_accuracy(twin: torch.nn.Module, state: dict, training: Training) -> float:
    """The held-out accuracy of `state` evaluated by PyTorch (eval mode: no dropout)."""
    twin.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in state.items()},
                         strict=True)
    twin.eval()
    x, y = training.test
    with torch.no_grad():
        logits = twin(torch.from_numpy(x)).numpy()
    return accuracy(logits, y)


@pytest.mark.parametrize("path, twin, steps, floor", [
    (MLP, torch_mlp, 150, 0.8),
    (CNN, torch_cnn, 120, 0.7),
], ids=["mlp", "cnn"])
def test_short_run_learns(path, twin, steps, floor, rng):
    seed = int(rng.integers(2**31))
    _, _, training = load_training(path, seed, steps)
    report = fit(training, seed=seed)
    losses = np.array(report.losses)
    assert np.all(np.isfinite(losses)) and len(losses) == steps
    assert losses[-20:].mean() < 0.5 * losses[:20].mean()
    assert report.metric >= floor > 5 * CHANCE
    # the evaluations rise, and the reported accuracy is what torch measures on the weights
    assert report.evaluations[-1][1] > report.evaluations[0][1]
    assert report.metric == torch_accuracy(twin(), report.state_dict, training)


def test_runs_are_deterministic_given_a_seed(rng):
    seed = int(rng.integers(2**31))

    def run(s: int):
        _, _, training = load_training(MLP, s, 25)
        return fit(training, seed=s)
    first, second, other = run(seed), run(seed), run(seed + 1)
    assert first.losses == second.losses
    for key, value in first.state_dict.items():
        np.testing.assert_array_equal(second.state_dict[key], value, err_msg=key)
    assert other.losses != first.losses


def test_dlc_train_command_reports_and_saves_torch_named_weights(tmp_path, capsys):
    out = tmp_path / "weights.npz"
    status = main(["train", MLP, "--steps", "30", "--seed", "3", "--save", str(out)])
    text = capsys.readouterr().out
    assert status == 0, text
    lines = text.splitlines()
    assert lines[0].startswith("training ") and "DigitsMLP" in lines[0]
    progress = [ln for ln in lines if ln.startswith("step ")]
    assert progress and progress[-1].startswith("step 30/30") and "steps/s" in progress[-1]
    assert "\r" not in text  # captured output is not a terminal: plain lines
    assert any(ln.startswith("held-out accuracy") and "30 steps" in ln for ln in lines)
    with np.load(out, allow_pickle=False) as saved:
        state = {k: saved[k] for k in saved.files}
    assert sorted(state) == sorted(torch_mlp().state_dict())
    _, _, training = load_training(MLP, 3, 30)
    reported = float(next(ln for ln in lines if ln.startswith("held-out")).split()[2][:-1])
    assert round(100 * torch_accuracy(torch_mlp(), state, training), 2) == reported


def test_progress_line_rewrites_in_place_on_a_terminal():
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True
    tty = Terminal()
    progress = ProgressLine(3, "accuracy", tty)
    for step in (1, 2, 3):
        progress.update(step, 0.5, 0.25 if step == 3 else None)
    progress.close()
    text = tty.getvalue()
    assert text.startswith("\rstep") and text.endswith("\n") and text.count("\n") == 1
    assert "step 3/3" in text and "accuracy 25.00%" in text

    log = io.StringIO()
    plain = ProgressLine(10, "accuracy", log, every=5)
    for step in range(1, 11):
        plain.update(step, 1.0)
    plain.close()
    assert [ln.split()[1] for ln in log.getvalue().splitlines()] == ["5/10", "10/10"]


def test_dlc_train_errors(tmp_path, capsys):
    empty = tmp_path / "empty.py"
    empty.write_text("x = 1\n")
    assert main(["train", str(empty)]) == 2
    assert "defines no function 'training'" in capsys.readouterr().err
    wrong = tmp_path / "wrong.py"
    wrong.write_text("def training():\n    return 42\n")
    assert main(["train", str(wrong)]) == 2
    assert "must return a dlc.trainer.Training or CustomRun, got int" in capsys.readouterr().err
    assert main(["train", MLP, "--steps", "0"]) == 2
    assert "--steps must be >= 1" in capsys.readouterr().err


def test_training_record_checks_its_data():
    from dlc import nn, optim
    x, y = np.zeros((10, 4), np.float32), np.zeros(9, np.int64)
    with pytest.raises(DlcError, match="10 inputs but 9 targets"):
        Training(nn.Linear(4, 2), None, optim.SGD(), (x, y), (x, y[:9]), 4, 10)
    with pytest.raises(DlcError, match="batch_size must be in 1..10"):
        Training(nn.Linear(4, 2), None, optim.SGD(), (x, y[:1].repeat(10)), (x, x), 11, 10)
