"""Rasterised shapes: the objects of the generated classification and detection sets."""

from __future__ import annotations

import numpy as np
from skimage.draw import polygon2mask

from ..specs.classification import SHAPE_CLASSES
from .textures import random_background


def shape_mask(kind: str, center: tuple[float, float], radius: float, angle: float,
               hw: tuple[int, int]) -> np.ndarray:
    """Boolean [H, W] mask of one shape.

    center: (x, y) in pixels; radius: half the shape's extent in pixels;
    angle: rotation in radians. Pixel centres are sampled at +0.5.
    """
    if kind not in SHAPE_CLASSES:
        raise ValueError(f"unknown shape {kind!r}; expected one of {list(SHAPE_CLASSES)}")
    h, w = hw
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32) + 0.5
    cx, cy = center
    dx, dy = xs - cx, ys - cy
    c, s = np.cos(angle), np.sin(angle)
    u, v = c * dx + s * dy, -s * dx + c * dy            # shape-local coordinates
    r2 = dx * dx + dy * dy
    if kind == "circle":
        return r2 <= radius**2
    if kind == "ring":
        return (r2 <= radius**2) & (r2 >= (0.55 * radius) ** 2)
    if kind == "square":
        half = radius / np.sqrt(2) * 1.15
        return (np.abs(u) <= half) & (np.abs(v) <= half)
    if kind == "cross":
        arm = 0.3 * radius
        return ((np.abs(u) <= radius) & (np.abs(v) <= arm)) | ((np.abs(v) <= radius) & (np.abs(u) <= arm))
    if kind == "triangle":
        t = angle + np.pi / 2 + np.arange(3) * 2 * np.pi / 3
        radii = np.full(3, radius)
    else:  # star: five outer points alternating with five inner ones
        t = angle + np.pi / 2 + np.arange(10) * np.pi / 5
        radii = np.where(np.arange(10) % 2 == 0, radius, 0.45 * radius)
    # polygon2mask samples integer (row, col) positions; our pixel centres sit at +0.5.
    rows = cy - radii * np.sin(t) - 0.5
    cols = cx + radii * np.cos(t) - 0.5
    return polygon2mask((h, w), np.stack([rows, cols], axis=1))


def render_shape_image(rng: np.random.Generator, size: int, label: int) -> np.ndarray:
    """One [size, size, 3] float32 image: a shape of class ``label`` on a real texture."""
    img = random_background(rng, size)
    radius = rng.uniform(0.22, 0.42) * size
    margin = radius * 0.9
    center = (rng.uniform(margin, size - margin), rng.uniform(margin, size - margin))
    mask = shape_mask(SHAPE_CLASSES[label], center, radius, rng.uniform(0, 2 * np.pi), (size, size))
    # A colour that stands out from the local background, with a little noise.
    colour = rng.uniform(0, 1, size=3).astype(np.float32)
    bg_mean = img[mask].mean(axis=0) if mask.any() else img.mean(axis=(0, 1))
    if np.abs(colour - bg_mean).sum() < 0.6:
        colour = np.where(bg_mean > 0.5, bg_mean - 0.5, bg_mean + 0.5).astype(np.float32)
    fill = colour + rng.normal(0, 0.04, size=(size, size, 3)).astype(np.float32)
    img = np.where(mask[..., None], fill, img)
    return np.clip(img, 0.0, 1.0).astype(np.float32)
