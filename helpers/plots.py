"""Small plotting helpers shared by the notebooks."""

from __future__ import annotations

import textwrap
from typing import Sequence

from PIL import Image


def show_samples(images: Sequence[Image.Image], captions: Sequence[str], ncols: int = 4, width: int = 36):
    """Plot images in a grid with wrapped captions underneath; returns the figure."""
    import matplotlib.pyplot as plt

    nrows = -(-len(images) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 3.9 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, caption in zip(axes.flat, images, captions):
        ax.imshow(image)
        ax.set_title("\n".join(textwrap.wrap(caption, width)[:5]), fontsize=8, loc="left")
    fig.tight_layout()
    return fig


def plot_history(log_history: list[dict], keys: Sequence[str], ncols: int = 3):
    """One panel per logged metric of `trainer.state.log_history`, against the global step; returns the figure."""
    import matplotlib.pyplot as plt

    nrows = -(-len(keys) // ncols)
    fig, axes = plt.subplots(nrows, min(ncols, len(keys)), figsize=(4.2 * min(ncols, len(keys)), 3 * nrows),
                             squeeze=False)
    for ax in axes.flat[len(keys):]:
        ax.axis("off")
    for ax, key in zip(axes.flat, keys):
        points = [(row["step"], row[key]) for row in log_history if key in row]
        ax.plot(*zip(*points), marker="." if len(points) < 30 else None)
        ax.set_title(key, fontsize=10)
        ax.set_xlabel("step")
    fig.tight_layout()
    return fig
