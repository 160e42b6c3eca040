"""A character-level language model with an LSTM, a GRU or a plain RNN.

The text is Python's own help pages (`pydoc_data.topics`, see examples/text_data.py): it
ships with Python, so the example runs offline with nothing to install. The model reads
windows of SEQ_LEN = 32 characters and predicts each next character: an embedding (32),
one recurrent layer of 128 units (`--cell lstm|gru|rnn`), and a linear read-out to the 96
characters. It trains with Adam and gradient clipping (global norm CLIP, inside the
compiled step) on batches of windows of the training text, reshuffled every epoch.

The figure is the validation loss in nats per character on the held-out blocks, next to
the unigram baseline (the entropy of the character frequencies, what a model that ignores
context can reach at best) and the loss of the untrained model. After training, text is
sampled one character at a time through a compiled one-step graph that carries the
recurrent state (h, and c for the LSTM) from call to call.

    python examples/char_rnn.py                   # LSTM, the full run, with a sample
    python examples/char_rnn.py --cell gru        # or --cell rnn; --backend llvm
    dlc train examples/char_rnn.py                # the LSTM through `dlc train`
    dlc train examples/char_rnn.py:training_gru   # the GRU (training_rnn: the plain RNN)
    dlc dump examples/char_rnn.py                 # the inference graph (LSTM)
    dlc dump examples/char_rnn.py:gru_model

`training()` is the contract of `dlc train` (dlc/trainer.py): the training windows start
every SEQ_LEN / 2 characters, the held-out windows are consecutive, and the held-out
metric is the validation loss in nats/char (evaluated once per epoch and at the end).
"""
from __future__ import annotations

import argparse
from pathlib import Path
import sys
import time
from dataclasses import dataclass, field

import numpy as np

import dlc
from dlc import nn
from dlc.nn import functional as F
from dlc.trainer import Evaluator, ProgressLine, Training, fit
import text_data

CELLS = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}
SEQ_LEN = 32
BATCH = 32
EMBED = 32
HIDDEN = 128
STEPS = 1200
LEARNING_RATE = 3e-3
CLIP = 1.0
METRIC = "validation nats/char"
SAMPLE_CHARS = 240
PROMPT = "The \"while\" statement"


class CharRNN(nn.Module):
    """Embedding -> one recurrent layer -> Linear: logits (batch, seq, vocab) for tokens
    (batch, seq)."""

    def __init__(self, cell: str = "lstm", vocab: int = len(text_data.VOCAB),
                 embed: int = EMBED, hidden: int = HIDDEN, seq_len: int = SEQ_LEN,
                 batch: int = BATCH):
        super().__init__()
        if cell not in CELLS:
            raise dlc.DlcError(f"CharRNN: cell must be one of {', '.join(CELLS)}, "
                               f"got {cell!r}")
        self.cell, self.vocab, self.hidden = cell, vocab, hidden
        self.seq_len, self.batch = seq_len, batch
        self.embed = nn.Embedding(vocab, embed)
        self.rnn = CELLS[cell](embed, hidden, batch_first=True)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, tokens):
        out, _ = self.rnn(self.embed(tokens))
        return self.head(out)

    def step(self, tokens, *state):
        """Run on `tokens` from the given state: (h,) or, for the LSTM, (h, c), each
        (1, batch, hidden). Returns (logits, *new state)."""
        hx = tuple(state) if self.cell == "lstm" else state[0]
        out, new = self.rnn(self.embed(tokens), hx)
        return (self.head(out), *(new if self.cell == "lstm" else (new,)))

    def state_specs(self, batch: int = 1) -> list[dlc.TensorSpec]:
        names = ("h", "c") if self.cell == "lstm" else ("h",)
        return [dlc.TensorSpec((1, batch, self.hidden), "float32", name=n) for n in names]

    def example_inputs(self) -> list[dlc.TensorSpec]:
        return [dlc.TensorSpec((self.batch, self.seq_len), "int64", name="tokens")]


def main_model() -> tuple[CharRNN, list[dlc.TensorSpec]]:
    """The untrained LSTM model and its input spec (`dlc dump examples/char_rnn.py`)."""
    model = CharRNN("lstm")
    return model, model.example_inputs()


def gru_model() -> tuple[CharRNN, list[dlc.TensorSpec]]:
    model = CharRNN("gru")
    return model, model.example_inputs()


def rnn_model() -> tuple[CharRNN, list[dlc.TensorSpec]]:
    model = CharRNN("rnn")
    return model, model.example_inputs()


def sequence_loss(logits, targets):
    """Mean cross entropy over every position of every window (nats per character)."""
    vocab = logits.shape[-1]
    return F.cross_entropy(logits.reshape(-1, vocab), targets.reshape(-1))


# -- evaluation and sampling -------------------------------------------------------------------
def sample(model: CharRNN, weights: dict, prompt: str = PROMPT, chars: int = SAMPLE_CHARS,
           temperature: float = 0.7, seed: int = 0, backend: str = "eager") -> str:
    """`prompt` followed by `chars` characters drawn one at a time (temperature sampling,
    greedy when temperature is 0) through a compiled one-step graph."""
    model.load_state_dict(weights)
    model.eval()
    token = dlc.TensorSpec((1, 1), "int64", name="token")
    specs = [token] + model.state_specs()
    exe = dlc.compile(model.step, *specs, module=model, backend=backend)
    state = [np.zeros(s.shape, np.float32) for s in specs[1:]]
    rng = np.random.default_rng(seed)
    ids = list(text_data.encode(prompt))
    logits = None
    for i in ids:  # read the prompt
        logits, *state = exe(np.array([[i]], np.int64), *state)
    for _ in range(chars):
        nxt = draw(logits[0, -1], temperature, rng)
        ids.append(nxt)
        logits, *state = exe(np.array([[nxt]], np.int64), *state)
    return text_data.decode(ids)


def draw(logits: np.ndarray, temperature: float, rng: np.random.Generator) -> int:
    """One token from logits: argmax at temperature 0, else softmax(logits / temperature)."""
    if temperature <= 0:
        return int(np.argmax(logits))
    z = logits.astype(np.float64) / temperature
    p = np.exp(z - z.max())
    return int(rng.choice(len(p), p=p / p.sum()))


# -- training ----------------------------------------------------------------------------------
def text_training(model: nn.Module, optimizer, steps: int, seq_len: int, batch: int,
                  valid_windows: int | None = None) -> Training:
    """The Training of a character model (shared with char_transformer.py): windows of the
    training text starting every seq_len / 2 characters, consecutive windows of the
    held-out text (the first `valid_windows` of them, or all), the loss in nats/char."""
    corpus = text_data.load_corpus()
    train = text_data.windows(corpus.train, seq_len, max(1, seq_len // 2))
    test = text_data.windows(corpus.valid, seq_len, limit=valid_windows)
    return Training(model, sequence_loss, optimizer, train=train, test=test, batch_size=batch,
                    steps=steps, metric=text_data.mean_nll, metric_name=METRIC)


def training(steps: int | None = None, cell: str = "lstm", hidden: int = HIDDEN,
             seq_len: int = SEQ_LEN, batch: int = BATCH, lr: float = LEARNING_RATE,
             valid_windows: int | None = None) -> Training:
    """What `dlc train examples/char_rnn.py` runs: the LSTM, Adam with gradient clipping."""
    model = CharRNN(cell, hidden=hidden, seq_len=seq_len, batch=batch)
    optimizer = dlc.optim.Adam(lr=lr, clip_grad_norm=CLIP)
    return text_training(model, optimizer, steps or STEPS, seq_len, batch, valid_windows)


def training_gru(steps: int | None = None) -> Training:
    return training(steps, "gru")


def training_rnn(steps: int | None = None) -> Training:
    return training(steps, "rnn")


@dataclass
class Result:
    name: str
    valid_loss: float           # nats/char on the held-out text, trained
    untrained_loss: float       # the same, before training
    unigram_entropy: float      # entropy of the training text's character frequencies
    unigram_valid_loss: float   # the unigram model's loss on the held-out text
    losses: list[float] = field(default_factory=list)
    weights: dict = field(default_factory=dict)  # the trained state dict
    seconds: float = 0.0        # wall time of the whole run
    cpu_seconds: float = 0.0    # CPU time of the process: near the wall time when idle
    text: str = ""              # the sampled text


def run(name: str, make_training, sampler, seed: int = 0, backend: str = "eager",
        progress: bool = True, sample_chars: int = 0) -> Result:
    """Seed, build the Training, score the untrained model, train with dlc.trainer.fit (what
    `dlc train` runs), and sample: the run of both character models."""
    start, cpu_start = time.perf_counter(), time.process_time()
    dlc.nn.init.manual_seed(seed)
    run_training = make_training()
    untrained = Evaluator(run_training, backend)(run_training.model.state_dict())
    line = ProgressLine(run_training.steps, METRIC, sys.stderr) if progress else None
    report = fit(run_training, seed=seed, backend=backend, progress=line)
    corpus = text_data.load_corpus()
    result = Result(name, report.metric, untrained, text_data.unigram_entropy(corpus.train),
                    text_data.unigram_cross_entropy(corpus.train, corpus.valid),
                    report.losses, report.state_dict)
    if sample_chars:
        result.text = sampler(run_training.model, report.state_dict, chars=sample_chars,
                              seed=seed, backend=backend)
    result.seconds = time.perf_counter() - start
    result.cpu_seconds = time.process_time() - cpu_start
    return result


def train(cell: str = "lstm", steps: int = STEPS, seed: int = 0, backend: str = "eager",
          progress: bool = True, valid_windows: int | None = None, sample_chars: int = 0,
          hidden: int = HIDDEN, seq_len: int = SEQ_LEN, batch: int = BATCH,
          lr: float = LEARNING_RATE) -> Result:
    """Train CharRNN(cell) for `steps` steps; `valid_windows` caps the held-out windows
    (None: the whole held-out text)."""
    def make() -> Training:
        return training(steps, cell, hidden, seq_len, batch, lr, valid_windows)
    return run(f"char-{cell}", make, sample, seed, backend, progress, sample_chars)


def report(r: Result) -> str:
    return (f"{r.name}: validation loss {r.valid_loss:.3f} nats/char "
            f"({text_data.nats_to_bits(r.valid_loss):.2f} bits); unigram baseline "
            f"{r.unigram_entropy:.3f} (entropy of the character frequencies; "
            f"{r.unigram_valid_loss:.3f} on the held-out text); untrained "
            f"{r.untrained_loss:.3f}; wall time {r.seconds:.1f}s (CPU {r.cpu_seconds:.1f}s)")


def print_result(r: Result) -> None:
    if r.text:
        print(f"--- sample (temperature 0.7) ---\n{r.text}\n---")
    print(report(r))


def main(argv: list[str] | None = None) -> Result:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cell", choices=sorted(CELLS), default="lstm")
    p.add_argument("--steps", type=int, default=STEPS)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backend", default="eager")
    p.add_argument("--sample", type=int, default=SAMPLE_CHARS, metavar="CHARS",
                   help="characters to sample after training (0: none)")
    args = p.parse_args(argv)
    try:
        result = train(args.cell, args.steps, args.seed, args.backend,
                       sample_chars=args.sample)
    except text_data.MissingTextError as e:
        raise SystemExit(f"{Path(__file__).name}: {e}") from None
    print_result(result)
    return result


if __name__ == "__main__":
    main()
