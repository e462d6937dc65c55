"""Augmentation data: the classification data set the spec names, and shifted copies of its test split.

The shifts are applied here, with scikit-image and numpy, so that both frameworks' models are scored on the
same shifted images, and none of them is one of the augmentation ops' own code paths.
"""

from __future__ import annotations

import numpy as np

from .classification import ClassificationData, Split, load_classification

SHIFTS = ("rotated", "darker", "noisier")


def shifted(split: Split, kind: str, seed: int = 0) -> Split:
    """``split`` moved away from the training distribution:

    rotated: each image turned by 20 to 30 degrees either way (bilinear, the border filled with the image's
        own edge pixels, so no black corners give it away);
    darker: every pixel times 0.5 (under-exposure);
    noisier: Gaussian noise of standard deviation 0.1, clipped to [0, 1].
    """
    if kind not in SHIFTS:
        raise ValueError(f"unknown shift {kind!r}; expected one of {list(SHIFTS)}")
    rng = np.random.default_rng((seed, SHIFTS.index(kind)))
    if kind == "rotated":
        from skimage.transform import rotate

        angles = rng.uniform(20.0, 30.0, len(split)) * rng.choice([-1.0, 1.0], len(split))
        images = np.stack([rotate(img, a, order=1, mode="edge", preserve_range=True)
                           for img, a in zip(split.images, angles)]).astype(np.float32)
    elif kind == "darker":
        images = (split.images * 0.5).astype(np.float32)
    else:  # noisier
        noise = rng.normal(0.0, 0.1, split.images.shape)
        images = np.clip(split.images + noise, 0.0, 1.0).astype(np.float32)
    return Split(images, split.labels)


def load(spec) -> ClassificationData:
    """The task's data hook (``shared.data.load``): the classification data set ``spec.data`` names."""
    return load_classification(spec.data)


def training_targets(split: Split, spec) -> np.ndarray:
    """The task's targets hook (``shared.data.training_targets``): the labels."""
    return np.asarray(split.targets)




def colour_images(size: int, n: int, seed: int = 0) -> np.ndarray:
    """``n`` generated shapes on real colour photographs and textures (shared.data.shapes), [n, size, size, 3]:
    what the op-parity study and the gallery show, whatever the task's own data (grey digits would leave the
    colour ops nothing to change)."""
    from .shapes import render_shape_image

    return np.stack([render_shape_image(np.random.default_rng((seed, 5, i)), size, i % 6) for i in range(n)])


def parity_params(image_size: int, crop_size: int, seed: int = 0) -> dict[str, dict]:
    """One fixed parameter set per op of PARITY_OPS (shared.specs.augmentation), for both twins' ``apply_op``:
    angles in degrees (counter-clockwise positive), shifts in pixels (right and down positive), boxes as
    top / left / height / width in pixels, factors as torchvision's multipliers, the noise as the array itself."""
    rng = np.random.default_rng((seed, 4))
    side = image_size
    return {
        "flip": {},
        "rotation": {"angle": float(rng.uniform(10.0, 30.0))},
        "scale_crop": {"top": int(rng.integers(0, side - crop_size + 1)),
                       "left": int(rng.integers(0, side - crop_size + 1)), "size": crop_size},
        "translation": {"dx": float(rng.uniform(1.0, 3.0)), "dy": float(-rng.uniform(1.0, 3.0))},
        "noise": {"noise": rng.normal(0.0, 0.05, (side, side, 3)).astype(np.float32)},
        "brightness": {"factor": 1.3},
        "contrast": {"factor": 0.7},
        "saturation": {"factor": 1.3},
        "erasing": {"top": side // 8, "left": side // 4, "height": side // 3, "width": side // 4, "value": 0.0},
    }


__all__ = ["SHIFTS", "colour_images", "load", "parity_params", "shifted", "training_targets"]
