"""PNG figures for the examples: grids of small images and panels of 2-D points.

matplotlib is imported only when a figure is drawn, through its object-oriented API (no
pyplot, no global backend switch), so the examples train without it; a missing matplotlib
is one line naming the extra to install.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from dlc.errors import DlcError

PLOT_EXTRA = "pip install 'dlc[plot]'"


class MissingExtraError(DlcError):
    """An optional dependency an example needs is not installed."""


def require_matplotlib() -> None:
    """Fail now, in one line, if a PNG could not be written later (call it before a long
    run that ends with a figure)."""
    _matplotlib()


def _matplotlib():
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise MissingExtraError(f"writing a PNG needs matplotlib: {PLOT_EXTRA}") from None
    return Figure, FigureCanvasAgg


def script_arguments(description: str, argv: list[str] | None, steps: int,
                     png: str | None) -> argparse.Namespace:
    """The command line every example script shares: --steps, --seed, --backend, --png."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--steps", type=int, default=steps)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backend", default="eager")
    p.add_argument("--png", default=png, help=f"write the figure here (default "
                                              f"{png or 'none'})")
    return p.parse_args(argv)


def run_script(main: Callable[[], object]) -> None:
    """Run an example's main(); a missing extra ends it with one line on stderr (exit
    status 1) instead of a traceback."""
    try:
        main()
    except MissingExtraError as e:
        sys.exit(f"error: {e}")


def _figure(width: float, height: float):
    Figure, FigureCanvasAgg = _matplotlib()
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def image_grid(rows: Sequence[tuple[str, np.ndarray]], path: str | Path,
               image_shape: tuple[int, int] = (8, 8), title: str = "") -> Path:
    """One row of grey images per (label, images (n, h*w) in [0, 1]); returns the path."""
    cols = max(len(images) for _, images in rows)
    fig = _figure(1.0 + 0.6 * cols, 0.3 + 0.7 * len(rows))
    if title:
        fig.suptitle(title, fontsize=9)
    for r, (label, images) in enumerate(rows):
        for c, image in enumerate(images):
            ax = fig.add_subplot(len(rows), cols, r * cols + c + 1)
            ax.imshow(np.clip(image.reshape(image_shape), 0.0, 1.0), cmap="gray_r",
                      vmin=0.0, vmax=1.0, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(label, fontsize=7)
    return _save(fig, path)


def point_panels(panels: Sequence[tuple[str, np.ndarray]], path: str | Path,
                 reference: np.ndarray | None = None, centers: np.ndarray | None = None,
                 limit: float | None = None) -> Path:
    """Side-by-side scatter plots of (title, points (n, 2)); `reference` points are drawn
    faintly behind each panel and `centers` as crosses. Returns the path."""
    fig = _figure(3.2 * len(panels), 3.4)
    for i, (title, points) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        if reference is not None:
            ax.scatter(reference[:, 0], reference[:, 1], s=2, c="0.8", linewidths=0)
        ax.scatter(points[:, 0], points[:, 1], s=2, c="tab:blue", linewidths=0)
        if centers is not None:
            ax.scatter(centers[:, 0], centers[:, 1], s=40, c="tab:red", marker="x")
        if limit is not None:
            ax.set_xlim(-limit, limit)
            ax.set_ylim(-limit, limit)
        ax.set_aspect("equal")
        ax.set_title(title, fontsize=8)
        ax.tick_params(labelsize=6)
    fig.tight_layout()
    return _save(fig, path)
