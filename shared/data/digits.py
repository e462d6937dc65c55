"""scikit-learn's real handwritten digits (1797 images, 8x8), upscaled to RGB."""

from __future__ import annotations

import functools

import numpy as np


@functools.lru_cache(maxsize=4)
def digit_images(size: int) -> tuple[np.ndarray, np.ndarray]:
    """All 1797 digits as float32 [N, size, size, 3] in [0, 1] and int64 labels."""
    from sklearn.datasets import load_digits
    from skimage.transform import resize

    digits = load_digits()
    small = (digits.images / 16.0).astype(np.float32)                      # [N, 8, 8]
    big = resize(small, (small.shape[0], size, size), order=1, anti_aliasing=False).astype(np.float32)
    rgb = np.repeat(big[..., None], 3, axis=-1)
    rgb.setflags(write=False)
    return rgb, digits.target.astype(np.int64)
