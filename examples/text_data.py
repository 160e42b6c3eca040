"""The character-level text of examples/char_rnn.py and examples/char_transformer.py.

The corpus is the English text of Python's own help pages, `pydoc_data.topics` (the topics
`help("if")`, `help("class")`, ... show): it ships with every CPython, so it is there
offline with nothing to install, and it is real prose (~465,000 characters in Python 3.11)
mixed with code and grammar snippets, a fair test for a character model. The topics are
joined in sorted order; the few non-ASCII characters (curly quotes, dashes, an ellipsis)
become their ASCII forms, so the vocabulary is fixed: newline and the 95 printable ASCII
characters. The text differs a little between Python versions, and so do the figures.

The split is by blocks: the text is cut into blocks of 4,096 characters and every tenth
block is held out, so the validation text is spread over all topics rather than being the
last few pages of the alphabet.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dlc.errors import DlcError

VOCAB = "\n" + "".join(chr(c) for c in range(32, 127))
BLOCK = 4096
HELD_OUT_EVERY = 10
# ASCII forms of the non-ASCII characters of the help text; anything else becomes "?"
ASCII_FORMS = {"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2013": "-",
               "\u2014": "--", "\u2026": "...", "\u00b0": " degrees", "\u00df": "ss",
               "\t": "    "}


@dataclass
class Corpus:
    """The text as token ids (int64 indices into VOCAB), split for training and validation."""
    train: np.ndarray
    valid: np.ndarray

    @property
    def vocab_size(self) -> int:
        return len(VOCAB)


class MissingTextError(DlcError):
    """This Python has no `pydoc_data` (some Linux distributions split it off)."""


def help_text() -> str:
    """The help topics of this Python (`pydoc_data.topics`), joined in sorted order."""
    try:
        from pydoc_data.topics import topics
    except ImportError:
        raise MissingTextError("the text of the character models is the standard library's "
                               "pydoc_data.topics, which this Python lacks: install your "
                               "distribution's full Python standard library") from None
    return "".join(topics[key] for key in sorted(topics))


def to_ascii(text: str) -> str:
    """Map the text onto VOCAB: known non-ASCII characters to their ASCII forms, the rest to
    '?' (the help text of CPython 3.11 has none of the rest)."""
    known = set(VOCAB)
    return "".join(c if c in known else ASCII_FORMS.get(c, "?") for c in text)


def encode(text: str) -> np.ndarray:
    """Token ids of `text` (characters outside VOCAB map to '?')."""
    index = {c: i for i, c in enumerate(VOCAB)}
    unknown = index["?"]
    return np.array([index.get(c, unknown) for c in text], dtype=np.int64)


def decode(ids) -> str:
    return "".join(VOCAB[int(i)] for i in ids)


def load_corpus(block: int = BLOCK, held_out_every: int = HELD_OUT_EVERY) -> Corpus:
    """The help text, encoded and split by blocks (every `held_out_every`-th block held out)."""
    ids = encode(to_ascii(help_text()))
    blocks = [ids[i:i + block] for i in range(0, len(ids), block)]
    valid = [b for k, b in enumerate(blocks) if k % held_out_every == held_out_every - 1]
    train = [b for k, b in enumerate(blocks) if k % held_out_every != held_out_every - 1]
    return Corpus(np.concatenate(train), np.concatenate(valid))


def unigram_entropy(ids: np.ndarray, vocab_size: int = len(VOCAB)) -> float:
    """Entropy of the character frequencies, in nats per character: the loss of the best
    model that ignores context, the baseline a language model must beat."""
    p = np.bincount(ids, minlength=vocab_size) / len(ids)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def unigram_cross_entropy(train: np.ndarray, valid: np.ndarray,
                          vocab_size: int = len(VOCAB)) -> float:
    """Validation loss (nats/char) of the unigram model fitted on `train` (add-one
    smoothing, so a character unseen in training costs a finite amount)."""
    counts = np.bincount(train, minlength=vocab_size) + 1.0
    logp = np.log(counts / counts.sum())
    return float(-logp[valid].mean())


def windows(ids: np.ndarray, length: int, stride: int | None = None,
            limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, targets), each (n, length) int64: windows of the text starting every
    `stride` characters (default `length`: consecutive, non-overlapping), the targets being
    the inputs shifted by one character. `limit` keeps the first `limit` windows."""
    stride = length if stride is None else stride
    if length < 1 or stride < 1:
        raise DlcError(f"windows: length and stride must be >= 1, got {length} and {stride}")
    if len(ids) < length + 1:
        raise DlcError(f"windows: the text has {len(ids)} characters, too few for one "
                       f"window of {length} + 1")
    starts = np.arange(0, len(ids) - length, stride)[:limit]
    window = ids[starts[:, None] + np.arange(length + 1)]
    return window[:, :-1], window[:, 1:]


def mean_nll(logits: np.ndarray, targets: np.ndarray) -> float:
    """Mean negative log-likelihood (nats) of `targets` under `logits` (..., vocab), in
    float64: the evaluation is numpy's, independent of the compiled graph's loss."""
    z = logits.astype(np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
    picked = np.take_along_axis(logp, targets[..., None], axis=-1)
    return float(-picked.mean())


def nats_to_bits(nats: float) -> float:
    return nats / math.log(2.0)
