"""Augmentation ops (PyTorch twin): torchvision.transforms.v2, random for training and with fixed parameters
for the op-parity study. Twin of ``tensorflow_impl/augmentation/ops.py`` (Keras preprocessing layers)."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torchvision.transforms import InterpolationMode, v2
from torchvision.transforms.v2 import functional as F

from shared.specs.augmentation import AugmentSpec

from ..tensors import to_native, to_numpy

BILINEAR = InterpolationMode.BILINEAR


def build_pipeline(augment: AugmentSpec, image_size: int, seed: int = 0) -> Callable | None:
    """The random pipeline of ``augment.ops`` (None when there are none), on one [C, H, W] image: a v2
    transform draws one set of parameters per call. Geometric ops fill with zeros through ``fill=None``
    (``fill=0`` multiplies the edge by a second bilinear mask, darker than Keras' zero fill). ``seed`` is unused:
    v2 draws from torch's global generator, which the training loop seeds."""
    ops = {
        "flip": lambda: v2.RandomHorizontalFlip(0.5),
        "rotation": lambda: v2.RandomRotation(augment.rotation, interpolation=BILINEAR, fill=None),
        "scale_crop": lambda: v2.RandomResizedCrop(image_size, scale=(augment.crop_fraction ** 2,) * 2,
                                                   ratio=(1.0, 1.0), interpolation=BILINEAR, antialias=True),
        "translation": lambda: v2.RandomAffine(0.0, translate=(augment.translation,) * 2, interpolation=BILINEAR,
                                               fill=None),
        "color": lambda: v2.ColorJitter(brightness=augment.jitter, contrast=augment.jitter,
                                        saturation=augment.jitter),
        "noise": lambda: v2.GaussianNoise(sigma=augment.noise),
        "erasing": lambda: v2.RandomErasing(p=augment.erasing, scale=(0.02, 0.2), value=0.0),
    }
    chosen = [ops[name]() for name in augment.ops]
    return v2.Compose(chosen) if chosen else None


def augment_batch(pipeline: Callable | None) -> Callable | None:
    """A batch function for the training loop: the pipeline image by image, since v2 transforms draw their
    parameters once per call (a DataLoader's workers apply them per sample the same way)."""
    if pipeline is None:
        return None
    return lambda batch: torch.stack([pipeline(image) for image in batch])


def apply_op(name: str, images: np.ndarray, params: dict) -> np.ndarray:
    """One op of PARITY_OPS with fixed parameters (shared.data.augmentation.parity_params) on NHWC images, through
    torchvision's functional API; NHWC numpy out."""
    x = to_native(images)
    size = list(x.shape[-2:])
    if name == "flip":
        out = F.horizontal_flip(x)
    elif name == "rotation":  # counter-clockwise for a positive angle, about the image centre
        out = F.rotate(x, params["angle"], interpolation=BILINEAR)
    elif name == "scale_crop":
        out = F.resized_crop(x, params["top"], params["left"], params["size"], params["size"], size,
                             interpolation=BILINEAR, antialias=True)
    elif name == "translation":
        out = F.affine(x, angle=0.0, translate=[params["dx"], params["dy"]], scale=1.0, shear=[0.0, 0.0],
                       interpolation=BILINEAR)
    elif name == "noise":  # what v2.GaussianNoise computes, with the noise given: x + noise, clipped to [0, 1]
        out = (x + to_native(params["noise"][None])).clamp(0.0, 1.0)
    elif name == "brightness":
        out = F.adjust_brightness(x, params["factor"])
    elif name == "contrast":
        out = F.adjust_contrast(x, params["factor"])
    elif name == "saturation":
        out = F.adjust_saturation(x, params["factor"])
    elif name == "erasing":
        out = F.erase(x, params["top"], params["left"], params["height"], params["width"],
                      torch.tensor(params["value"]))
    else:
        raise ValueError(f"unknown augmentation op {name!r}")
    return to_numpy(out)
