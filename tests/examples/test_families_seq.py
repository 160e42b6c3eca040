"""Short runs of the model-family examples: the residual CNN on the digits
(examples/resnet_digits.py), the character RNN/LSTM/GRU (examples/char_rnn.py) and the
character Transformer (examples/char_transformer.py).

Each trains for a few dozen steps and checks that its figure moves the right way (held-out
accuracy far above chance, validation loss far below the untrained loss); the trained
models are checked against a PyTorch twin that loads the same state dict, and the sampling
paths against the full-sequence graph. The full runs and their figures are in the README.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import dlc
from dlc.trainer import Evaluator, fit

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
if str(EXAMPLES) not in sys.path:
    sys.path.insert(0, str(EXAMPLES))

import char_rnn  # noqa: E402
import char_transformer  # noqa: E402
import resnet_digits  # noqa: E402
import text_data  # noqa: E402

# small sizes: the tests check direction and agreement, the README has the full figures
SEQ, BATCH, HIDDEN = 16, 16, 64
RESNET_STEPS, RESNET_WIDTH = 40, 32
CHANCE_LOSS = np.log(len(text_data.VOCAB))


def torch_state(weights: dict) -> dict:
    return {k: torch.from_numpy(np.array(v)) for k, v in weights.items()}


def assert_finite_close(got: np.ndarray, want: np.ndarray, rtol: float, atol: float) -> None:
    assert np.isfinite(got).all() and np.isfinite(want).all()
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


# -- the text data -----------------------------------------------------------------------------
def test_corpus_split_and_baseline():
    corpus = text_data.load_corpus()
    total = len(corpus.train) + len(corpus.valid)
    assert 0.08 < len(corpus.valid) / total < 0.12
    assert corpus.train.min() >= 0 and corpus.train.max() < corpus.vocab_size
    h = text_data.unigram_entropy(corpus.train)
    # English text: a few nats per character, far below the uniform log(96)
    assert 2.5 < h < CHANCE_LOSS - 1.0
    assert text_data.unigram_cross_entropy(corpus.train, corpus.valid) >= h - 0.05
    assert text_data.decode(text_data.encode("if x:\n    pass")) == "if x:\n    pass"


def test_windows_are_shifted_text(rng):
    ids = rng.integers(0, 96, size=500)
    x, y = text_data.windows(ids, 10, stride=5)
    assert x.shape == y.shape == (98, 10)
    np.testing.assert_array_equal(x[:, 1:], y[:, :-1])
    np.testing.assert_array_equal(x[3], ids[15:25])
    x, y = text_data.windows(ids, 10, limit=7)
    assert x.shape == (7, 10)
    np.testing.assert_array_equal(y[6], ids[61:71])
    with pytest.raises(dlc.DlcError, match="too few"):
        text_data.windows(ids[:10], 10)


def test_mean_nll_against_torch(rng):
    logits = rng.standard_normal((3, 5, 96)).astype(np.float32) * 3
    targets = rng.integers(0, 96, size=(3, 5))
    want = torch.nn.functional.cross_entropy(torch.from_numpy(logits).reshape(-1, 96),
                                             torch.from_numpy(targets).reshape(-1))
    assert abs(text_data.mean_nll(logits, targets) - float(want)) < 1e-5


# -- residual CNN ------------------------------------------------------------------------------
def torch_resnet(width: int) -> torch.nn.Module:
    """The ResNetDigits layout in PyTorch, with the same state_dict keys."""
    tnn = torch.nn

    def conv_bn(c_in, c_out, k=3, s=1):
        return [tnn.Conv2d(c_in, c_out, k, s, k // 2, bias=False), tnn.BatchNorm2d(c_out)]

    class Block(tnn.Module):
        def __init__(self, c_in, c_out, s=1):
            super().__init__()
            self.body = tnn.Sequential(*conv_bn(c_in, c_out, 3, s), tnn.ReLU(),
                                       *conv_bn(c_out, c_out))
            self.shortcut = (tnn.Sequential(*conv_bn(c_in, c_out, 1, s))
                             if s != 1 or c_in != c_out else tnn.Identity())

        def forward(self, x):
            return torch.relu(self.body(x) + self.shortcut(x))

    class Net(tnn.Module):
        def __init__(self):
            super().__init__()
            self.stem = tnn.Sequential(*conv_bn(1, width), tnn.ReLU())
            self.block1, self.block2 = Block(width, width), Block(width, 2 * width, 2)
            self.pool, self.fc = tnn.AdaptiveAvgPool2d(1), tnn.Linear(2 * width, 10)

        def forward(self, x):
            return self.fc(self.pool(self.block2(self.block1(self.stem(x)))).flatten(1))

    return Net()


@pytest.fixture(scope="module")
def resnet_run():
    """(held-out accuracy of the untrained model, the TrainReport of a short run)."""
    dlc.nn.init.manual_seed(0)
    run = resnet_digits.training(steps=RESNET_STEPS, width=RESNET_WIDTH)
    untrained = Evaluator(run, "eager")(run.model.state_dict())
    return untrained, fit(run, seed=0)


def test_resnet_learns_the_digits(resnet_run):
    untrained, report = resnet_run
    assert untrained < 0.3
    assert report.metric > 0.8  # chance is 0.10
    assert np.isfinite(report.losses).all()
    assert np.mean(report.losses[-5:]) < 0.5 * np.mean(report.losses[:5])


def test_resnet_batchnorm_state_and_eval_graph(resnet_run, rng):
    """Running statistics are training state (updated every step); the eval-mode graph
    normalizes with them, as PyTorch's eval mode does."""
    weights = resnet_run[1].state_dict
    assert int(weights["stem.1.num_batches_tracked"]) == RESNET_STEPS
    assert np.abs(weights["block2.body.1.running_mean"]).max() > 1e-3
    assert not np.allclose(weights["stem.1.running_var"], 1.0)

    model = resnet_digits.ResNetDigits(width=RESNET_WIDTH)
    model.load_state_dict(weights)
    model.eval()
    images = rng.random((12, 1, 8, 8)).astype(np.float32)
    exe = dlc.compile(model, dlc.TensorSpec(images.shape, "float32"))
    got = exe(images)
    twin = torch_resnet(RESNET_WIDTH)
    twin.load_state_dict(torch_state(weights))
    twin.eval()
    with torch.no_grad():
        want = twin(torch.from_numpy(images)).numpy()
    assert_finite_close(got, want, rtol=1e-4, atol=1e-4)
    # eval mode: each image's logits are independent of the rest of the batch
    np.testing.assert_allclose(exe(images[::-1].copy())[::-1], got, rtol=1e-5, atol=1e-5)


def test_resnet_missing_scikit_learn_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)  # import fails
    with pytest.raises(SystemExit) as e:
        resnet_digits.training(steps=1)
    assert "scikit-learn" in str(e.value.code) and "pip install" in str(e.value.code)
    assert "\n" not in str(e.value.code)


# -- character RNN / LSTM / GRU -----------------------------------------------------------------
TORCH_CELLS = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}


def torch_char_rnn(cell: str, hidden: int) -> torch.nn.Module:
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(len(text_data.VOCAB), char_rnn.EMBED)
            self.rnn = TORCH_CELLS[cell](char_rnn.EMBED, hidden, batch_first=True)
            self.head = torch.nn.Linear(hidden, len(text_data.VOCAB))

        def forward(self, tokens):
            return self.head(self.rnn(self.embed(tokens))[0])
    return Net()


@pytest.fixture(scope="module", params=["lstm", "gru", "rnn"])
def rnn_run(request):
    dlc.nn.init.manual_seed(0)
    result = char_rnn.train(request.param, steps=40, progress=False, valid_windows=64,
                            hidden=HIDDEN, seq_len=SEQ, batch=BATCH, lr=1e-2)
    return request.param, result


def test_char_rnn_loss_falls(rnn_run):
    cell, r = rnn_run
    assert r.name == f"char-{cell}"
    assert abs(r.untrained_loss - CHANCE_LOSS) < 0.5  # untrained: near uniform
    assert r.valid_loss < r.untrained_loss - 1.0
    assert r.valid_loss < r.unigram_valid_loss + 0.3  # at least close to the unigram model
    assert np.mean(r.losses[-5:]) < np.mean(r.losses[:5]) - 1.0


def test_char_rnn_matches_torch_and_steps_match_the_sequence(rnn_run, rng):
    """The trained model agrees with torch's layer on the same weights, and the one-step
    graph used for sampling, fed one token at a time, gives the sequence graph's logits."""
    cell, r = rnn_run
    model = char_rnn.CharRNN(cell, hidden=HIDDEN, seq_len=SEQ, batch=1)
    model.load_state_dict(r.weights)
    model.eval()
    tokens = rng.integers(0, len(text_data.VOCAB), size=(1, SEQ))
    full = dlc.compile(model, *model.example_inputs())(tokens)
    twin = torch_char_rnn(cell, HIDDEN)
    twin.load_state_dict(torch_state(model.state_dict()))
    with torch.no_grad():
        want = twin(torch.from_numpy(tokens)).numpy()
    assert_finite_close(full, want, rtol=1e-4, atol=1e-5)

    specs = [dlc.TensorSpec((1, 1), "int64")] + model.state_specs()
    step = dlc.compile(model.step, *specs, module=model)
    state = [np.zeros(s.shape, np.float32) for s in specs[1:]]
    for t in range(SEQ):
        logits, *state = step(tokens[:, t:t + 1], *state)
        assert_finite_close(logits[0, 0], full[0, t], rtol=1e-4, atol=1e-5)


def test_char_rnn_samples_from_the_vocabulary(rng):
    model = char_rnn.CharRNN("gru", hidden=HIDDEN)
    text = char_rnn.sample(model, model.state_dict(), prompt="def f", chars=20,
                           seed=int(rng.integers(1 << 30)))
    assert text.startswith("def f") and len(text) == 25
    assert set(text) <= set(text_data.VOCAB)
    greedy = [char_rnn.sample(model, model.state_dict(), "x", 10, temperature=0)
              for _ in range(2)]
    assert greedy[0] == greedy[1]


def test_char_rnn_rejects_an_unknown_cell():
    with pytest.raises(dlc.DlcError, match="cell must be one of"):
        char_rnn.CharRNN("transformer")


# -- character Transformer ---------------------------------------------------------------------
def torch_char_transformer(d_model: int, layers: int, seq: int) -> torch.nn.Module:
    tnn = torch.nn

    class Net(tnn.Module):
        def __init__(self):
            super().__init__()
            self.tok = tnn.Embedding(len(text_data.VOCAB), d_model)
            self.pos = tnn.Embedding(seq, d_model)
            self.blocks = tnn.ModuleList([
                tnn.TransformerEncoderLayer(d_model, char_transformer.HEADS, 4 * d_model, 0.0,
                                            "gelu", batch_first=True, norm_first=True)
                for _ in range(layers)])
            self.norm, self.head = tnn.LayerNorm(d_model), tnn.Linear(d_model,
                                                                     len(text_data.VOCAB))

        def forward(self, tokens):
            n = tokens.shape[1]
            x = self.tok(tokens) + self.pos.weight[:n]
            mask = tnn.Transformer.generate_square_subsequent_mask(n)
            for block in self.blocks:
                x = block(x, src_mask=mask, is_causal=True)
            return self.head(self.norm(x))
    return Net()


@pytest.fixture(scope="module")
def transformer_run():
    return char_transformer.train(steps=40, progress=False, valid_windows=64, d_model=32,
                                  layers=1, lr=1e-2, warmup=5, seq_len=SEQ,
                                  batch=BATCH)


def test_char_transformer_loss_falls(transformer_run):
    r = transformer_run
    assert abs(r.untrained_loss - CHANCE_LOSS) < 0.5
    assert r.valid_loss < r.untrained_loss - 1.0
    assert np.mean(r.losses[-5:]) < np.mean(r.losses[:5]) - 1.0


def test_char_transformer_matches_torch_and_is_causal(transformer_run, rng):
    """The trained model agrees with torch's pre-LN layers on the same weights."""
    model = char_transformer.CharTransformer(d_model=32, layers=1, seq_len=SEQ, batch=2)
    model.load_state_dict(transformer_run.weights)
    model.eval()
    tokens = rng.integers(0, len(text_data.VOCAB), size=(2, model.seq_len))
    exe = dlc.compile(model, *model.example_inputs())
    got = exe(tokens)
    twin = torch_char_transformer(32, 1, SEQ)
    twin.load_state_dict(torch_state(model.state_dict()))
    twin.eval()
    with torch.no_grad():
        want = twin(torch.from_numpy(tokens)).numpy()
    assert_finite_close(got, want, rtol=1e-4, atol=1e-5)
    # a change at position k leaves the logits of positions < k as they were
    k = int(rng.integers(1, model.seq_len))
    changed = tokens.copy()
    changed[:, k:] = (changed[:, k:] + 1) % len(text_data.VOCAB)
    np.testing.assert_allclose(exe(changed)[:, :k], got[:, :k], rtol=1e-6, atol=1e-6)
    assert not np.allclose(exe(changed)[:, k], got[:, k])


def test_char_transformer_samples_through_the_compiled_graph(rng):
    model = char_transformer.CharTransformer(d_model=32, layers=1, seq_len=SEQ)
    text = char_transformer.sample(model, model.state_dict(), prompt="while", chars=2 * SEQ,
                                   seed=int(rng.integers(1 << 30)))
    assert text.startswith("while") and len(text) == 5 + 2 * SEQ
    assert set(text) <= set(text_data.VOCAB)


def test_char_transformer_rejects_too_long_input():
    model = char_transformer.CharTransformer(d_model=32, layers=1, seq_len=8)
    with pytest.raises(dlc.ShapeError, match="positional embeddings for 8"):
        dlc.trace(model, dlc.TensorSpec((1, 9), "int64"))


# -- the `dlc train` entries -------------------------------------------------------------------
ENTRIES = ["resnet_digits.py", "char_rnn.py", "char_rnn.py:training_gru",
           "char_rnn.py:training_rnn", "char_transformer.py"]


@pytest.mark.parametrize("entry", ENTRIES)
def test_dlc_train_entries_follow_the_contract(entry):
    from dlc.cli_train import load_training
    from dlc.trainer import Training
    _, _, run = load_training(str(EXAMPLES / entry), seed=0, steps=7)
    assert isinstance(run, Training) and run.steps == 7
    spec = run.model.example_inputs()[0]
    assert run.train[0].shape[1:] == spec.shape[1:] and run.train[0].dtype.name == spec.dtype
    assert len(run.test[0]) > 100


def test_dlc_train_runs_an_example(capsys):
    from dlc.cli import main
    status = main(["train", f"{EXAMPLES / 'char_rnn.py'}:training_rnn", "--steps", "3", "-q"])
    out = capsys.readouterr().out
    assert status == 0, out
    assert "held-out validation nats/char" in out and "3 steps" in out
    loss = float(out.split("held-out validation nats/char ")[1].split()[0])
    assert np.isfinite(loss) and loss < CHANCE_LOSS + 0.5


def test_missing_help_text_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "pydoc_data.topics", None)  # import fails
    with pytest.raises(text_data.MissingTextError, match="pydoc_data"):
        text_data.load_corpus()
    for example in (char_rnn, char_transformer):
        with pytest.raises(SystemExit) as e:
            example.main(["--steps", "1"])
        assert "pydoc_data" in str(e.value.code) and "\n" not in str(e.value.code)
