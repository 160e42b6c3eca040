"""A one-line progress display for the training loops of the examples.

    progress = Progress(total=2000, label="gan")
    for step in range(1, 2001):
        ...
        progress.update(step, d_loss=d, g_loss=g)
    progress.close()

On a terminal the line is rewritten in place; in a log (not a TTY) a line is printed every
`every` steps, so captured output stays short.
"""
from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """step/total, a bar, named figures, steps/s and elapsed seconds on one line."""

    def __init__(self, total: int, label: str, enabled: bool = True, every: int | None = None,
                 stream: TextIO | None = None):
        self.total, self.label, self.enabled = total, label, enabled
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty()
        self.every = every or (max(1, total // 50) if self.live else max(1, total // 10))
        self.start = time.perf_counter()
        self.last = ""

    def line(self, step: int, figures: dict[str, float]) -> str:
        elapsed = time.perf_counter() - self.start
        width = 20
        done = int(width * step / max(self.total, 1))
        shown = "  ".join(f"{k} {v:.4g}" for k, v in figures.items())
        return (f"{self.label} [{'#' * done}{'.' * (width - done)}] {step}/{self.total}  "
                f"{shown}  {step / max(elapsed, 1e-9):.1f} steps/s  {elapsed:.1f}s")

    def update(self, step: int, **figures: float) -> None:
        if not self.enabled or (step % self.every and step != self.total):
            return
        self.last = self.line(step, figures)
        end = "" if self.live else "\n"
        print(("\r" if self.live else "") + self.last, end=end, file=self.stream, flush=True)

    def close(self) -> None:
        if self.enabled and self.live and self.last:
            print(file=self.stream, flush=True)
