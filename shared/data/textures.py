"""Real photographs and textures that scikit-image ships, as backgrounds.

Only images that load offline are used (docs/DEPENDENCIES.md lists them). They are
decoded once per process, converted to float32 RGB in [0, 1] and shrunk so
that cropping a background is cheap.
"""

from __future__ import annotations

import functools

import numpy as np

# skimage.data names that load from the wheel with no download.
TEXTURE_NAMES = ("brick", "grass", "gravel", "camera", "coffee", "astronaut", "chelsea", "rocket")
_MAX_SIDE = 160


@functools.lru_cache(maxsize=None)
def texture_bank() -> tuple[np.ndarray, ...]:
    """The backgrounds as float32 [H, W, 3] arrays in [0, 1], longest side <= 160 px."""
    from skimage import data as skdata
    from skimage.transform import resize

    bank = []
    for name in TEXTURE_NAMES:
        img = np.asarray(getattr(skdata, name)(), dtype=np.float32)
        img = img / 255.0 if img.max() > 1.0 else img
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=-1)
        img = img[..., :3]
        scale = _MAX_SIDE / max(img.shape[:2])
        if scale < 1:
            shape = (round(img.shape[0] * scale), round(img.shape[1] * scale), 3)
            img = resize(img, shape, order=1, anti_aliasing=True).astype(np.float32)
        bank.append(np.ascontiguousarray(img))
    return tuple(bank)


def random_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A random crop of a random texture, resized to [size, size, 3], with a random tint."""
    from skimage.transform import resize

    bank = texture_bank()
    tex = bank[rng.integers(len(bank))]
    h, w = tex.shape[:2]
    side = int(rng.integers(min(size, h, w) // 2 + 1, min(h, w) + 1))
    y0 = int(rng.integers(0, h - side + 1))
    x0 = int(rng.integers(0, w - side + 1))
    crop = tex[y0:y0 + side, x0:x0 + side]
    out = resize(crop, (size, size, 3), order=1, anti_aliasing=side > size).astype(np.float32)
    tint = rng.uniform(0.7, 1.3, size=3).astype(np.float32)
    return np.clip(out * tint, 0.0, 1.0)


# ImageNet's per-channel mean and standard deviation: the input convention of torchvision's ResNets.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PHOTO_NAMES = ("astronaut", "coffee", "chelsea", "rocket")


def photo_batch(n: int, size: int = 224) -> np.ndarray:
    """``n`` real photographs (scikit-image's, cycled; every other one mirrored) resized to [size, size, 3] and
    ImageNet-normalised: NHWC float32 input for the torchvision-sized reference workloads."""
    from skimage import data as skdata
    from skimage.transform import resize

    if n < 1 or size < 8:
        raise ValueError(f"photo_batch: expected n >= 1 and size >= 8; received n={n}, size={size}")
    photos = [resize(np.asarray(getattr(skdata, name)(), dtype=np.float32)[..., :3] / 255.0, (size, size, 3),
                     anti_aliasing=True).astype(np.float32) for name in PHOTO_NAMES]
    images = np.stack([photos[i % len(photos)][:, ::-1] if (i // len(photos)) % 2 else photos[i % len(photos)]
                       for i in range(n)])
    return ((images - np.float32(IMAGENET_MEAN)) / np.float32(IMAGENET_STD)).astype(np.float32)
