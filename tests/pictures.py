"""Checks on pictures the commands write: a real PNG of a useful size whose
pixels vary, so an empty or blank figure fails."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def read_png(path: Path, min_width: int = 200, min_height: int = 150) -> np.ndarray:
    path = Path(path)
    assert path.exists(), f"{path} was not written"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    pixels = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64)
    height, width, _ = pixels.shape
    assert width >= min_width and height >= min_height, f"{path} is only {width}x{height}"
    assert pixels.std() > 5, f"{path} is nearly constant (std {pixels.std():.2f})"
    return pixels
