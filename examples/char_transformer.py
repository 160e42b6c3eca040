"""A small decoder-only Transformer language model on characters (a tiny GPT).

Same text, split, window length and validation windows as examples/char_rnn.py (Python's
help pages, `pydoc_data.topics`, see examples/text_data.py), so the two validation losses
compare directly. The model (d_model 128, 4 heads): token embeddings plus learned
positional embeddings, two pre-LN blocks (`nn.TransformerEncoderLayer` with
`norm_first=True`, a GELU MLP of width 512 and causal self-attention: position t sees
positions <= t only), a final LayerNorm and a linear read-out. It trains with AdamW, a
linear warmup then cosine decay of the learning rate (`dlc.optim.warmup_cosine`, computed
inside the compiled step from the step counter) and gradient clipping.

The figure is the validation loss in nats per character, next to the unigram baseline and
the untrained model; `--compare` also trains the LSTM of char_rnn.py and prints its loss.
After training, text is sampled through the compiled inference graph: the last SEQ_LEN
characters go in, and the logits at the last filled position give the next character
(causal attention makes the unfilled positions after it irrelevant).

    python examples/char_transformer.py                # the full run, with a sample
    python examples/char_transformer.py --compare      # and the LSTM on the same split
    python examples/char_transformer.py --backend llvm
    dlc train examples/char_transformer.py             # through `dlc train`
    dlc dump examples/char_transformer.py              # the inference graph
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import dlc
from dlc import nn
from dlc.trainer import Training
import char_rnn
import text_data
from char_rnn import (BATCH, CLIP, PROMPT, SAMPLE_CHARS, SEQ_LEN, Result, draw, print_result,
                      run, text_training)

D_MODEL = 128
HEADS = 4
LAYERS = 2
STEPS = 1200
LEARNING_RATE = 3e-3
WARMUP = 100
WEIGHT_DECAY = 0.01


class CharTransformer(nn.Module):
    """tokens (batch, seq) -> logits (batch, seq, vocab), causal: position t sees <= t."""

    def __init__(self, vocab: int = len(text_data.VOCAB), d_model: int = D_MODEL,
                 heads: int = HEADS, layers: int = LAYERS, seq_len: int = SEQ_LEN,
                 batch: int = BATCH):
        super().__init__()
        self.seq_len, self.batch = seq_len, batch
        self.tok = nn.Embedding(vocab, d_model)
        self.pos = nn.Embedding(seq_len, d_model)
        self.blocks = nn.ModuleList([
            nn.TransformerEncoderLayer(d_model, heads, dim_feedforward=4 * d_model,
                                       dropout=0.0, activation="gelu", batch_first=True,
                                       norm_first=True)
            for _ in range(layers)])
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab)
        # GPT-style small init of the embeddings (N(0, 1) would swamp the residual stream)
        for table in (self.tok, self.pos):
            table.weight[...] = 0.02 * table.weight

    def forward(self, tokens):
        seq = tokens.shape[1]
        if seq > self.seq_len:
            raise dlc.ShapeError(f"CharTransformer: {seq} tokens, but there are positional "
                                 f"embeddings for {self.seq_len} only")
        x = self.tok(tokens) + self.pos.weight[:seq]
        for block in self.blocks:
            x = block(x, is_causal=True)
        return self.head(self.norm(x))

    def example_inputs(self) -> list[dlc.TensorSpec]:
        return [dlc.TensorSpec((self.batch, self.seq_len), "int64", name="tokens")]


def main_model() -> tuple[CharTransformer, list[dlc.TensorSpec]]:
    """The untrained model and its input spec (`dlc dump examples/char_transformer.py`)."""
    model = CharTransformer()
    return model, model.example_inputs()


def sample(model: CharTransformer, weights: dict, prompt: str = PROMPT,
           chars: int = SAMPLE_CHARS, temperature: float = 0.7, seed: int = 0,
           backend: str = "eager") -> str:
    """`prompt` followed by `chars` sampled characters (greedy at temperature 0), each from
    one call of the compiled inference graph on the last seq_len characters."""
    model.load_state_dict(weights)
    model.eval()
    n = model.seq_len
    exe = dlc.compile(model, dlc.TensorSpec((1, n), "int64", name="tokens"), backend=backend)
    rng = np.random.default_rng(seed)
    ids = list(text_data.encode(prompt))
    for _ in range(chars):
        context = ids[-n:]
        window = np.zeros((1, n), np.int64)  # positions after the context do not matter
        window[0, :len(context)] = context
        logits = exe(window)
        ids.append(draw(logits[0, len(context) - 1], temperature, rng))
    return text_data.decode(ids)


def training(steps: int | None = None, d_model: int = D_MODEL, layers: int = LAYERS,
             lr: float = LEARNING_RATE, warmup: int = WARMUP, seq_len: int = SEQ_LEN,
             batch: int = BATCH, valid_windows: int | None = None) -> Training:
    """What `dlc train examples/char_transformer.py` runs: the model, AdamW with warmup and
    cosine decay over the run and gradient clipping, the windows of char_rnn.py."""
    steps = steps or STEPS
    model = CharTransformer(len(text_data.VOCAB), d_model, HEADS, layers, seq_len, batch)
    schedule = dlc.optim.warmup_cosine(lr, min(warmup, steps), steps, min_lr=lr / 10)
    optimizer = dlc.optim.AdamW(lr=schedule, betas=(0.9, 0.99), weight_decay=WEIGHT_DECAY,
                                clip_grad_norm=CLIP)
    return text_training(model, optimizer, steps, seq_len, batch, valid_windows)


def train(steps: int = STEPS, seed: int = 0, backend: str = "eager", progress: bool = True,
          valid_windows: int | None = None, sample_chars: int = 0, d_model: int = D_MODEL,
          layers: int = LAYERS, lr: float = LEARNING_RATE, warmup: int = WARMUP,
          seq_len: int = SEQ_LEN, batch: int = BATCH) -> Result:
    """Train CharTransformer for `steps` steps; `valid_windows` caps the held-out windows
    (None: the whole held-out text)."""
    def make() -> Training:
        return training(steps, d_model, layers, lr, warmup, seq_len, batch, valid_windows)
    return run("char-transformer", make, sample, seed, backend, progress, sample_chars)


def main(argv: list[str] | None = None) -> Result:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=STEPS)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backend", default="eager")
    p.add_argument("--sample", type=int, default=SAMPLE_CHARS, metavar="CHARS",
                   help="characters to sample after training (0: none)")
    p.add_argument("--compare", action="store_true",
                   help="also train the LSTM of char_rnn.py and print both losses")
    args = p.parse_args(argv)
    try:
        result = train(args.steps, args.seed, args.backend, sample_chars=args.sample)
    except text_data.MissingTextError as e:
        raise SystemExit(f"{Path(__file__).name}: {e}") from None
    print_result(result)
    if args.compare:
        lstm = char_rnn.train("lstm", seed=args.seed, backend=args.backend)
        print(char_rnn.report(lstm))
        verdict = "beats" if result.valid_loss < lstm.valid_loss else "does not beat"
        print(f"the Transformer ({result.valid_loss:.3f}) {verdict} the LSTM "
              f"({lstm.valid_loss:.3f}) on the same held-out text")
    return result


if __name__ == "__main__":
    main()
