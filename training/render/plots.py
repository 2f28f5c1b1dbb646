"""Loss curves and sample grids as PNG (matplotlib is imported lazily, Agg backend)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from vlogger.engines.avatar.controls import from_model_image

__all__ = ["loss_png", "sample_grid"]


def loss_png(path: Path, losses: list[float], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    y = np.asarray(losses)
    ax.plot(y, alpha=0.3, lw=0.7)
    if len(y) >= 25:
        ax.plot(np.arange(24, len(y)), np.convolve(y, np.ones(25) / 25, mode="valid"), lw=1.5)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def sample_grid(path: Path, rows: list[np.ndarray], labels: list[str], scale: int = 3) -> None:
    """Rows of frames (n, 3, S, S) in [-1, 1] side by side; label text on the left."""
    tiles = []
    for row, label in zip(rows, labels, strict=True):
        img = np.concatenate([from_model_image(f) for f in row], axis=1)
        img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
        pad = np.full((img.shape[0], 150, 3), 255, np.uint8)
        cv2.putText(pad, label[:20], (4, img.shape[0] // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
        tiles.append(np.concatenate([pad, img], axis=1))
    cv2.imwrite(str(path), np.concatenate(tiles, axis=0)[:, :, ::-1])
