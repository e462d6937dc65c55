"""Augmentation ops (TensorFlow twin): Keras 3 preprocessing layers, random for training and with fixed
parameters (each layer's ``transform_images`` with a transformation it did not draw) for the op-parity study.
Twin of ``pytorch_impl/augmentation/ops.py`` (torchvision.transforms.v2)."""

from __future__ import annotations

from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from shared.specs.augmentation import AugmentSpec

from ..tensors import to_native, to_numpy

L = keras.layers


def build_pipeline(augment: AugmentSpec, image_size: int, seed: int = 0) -> Callable | None:
    """The random pipeline of ``augment.ops`` (None when there are none), on a batch [N, H, W, C]: Keras layers
    draw parameters per image, except RandomCrop, which draws one position per batch. Colour layers are told
    the images' range is [0, 1] (their default is 0-255); geometric ones fill with zeros, bilinearly."""
    geometric = {"fill_mode": "constant", "fill_value": 0.0, "interpolation": "bilinear", "seed": seed}
    ops = {
        "flip": lambda: [L.RandomFlip("horizontal", seed=seed)],
        "rotation": lambda: [L.RandomRotation(augment.rotation / 360.0, **geometric)],  # a fraction of a turn
        "scale_crop": lambda: [L.RandomCrop(augment.crop_size(image_size), augment.crop_size(image_size),
                                            seed=seed),
                               L.Resizing(image_size, image_size, interpolation="bilinear")],
        "translation": lambda: [L.RandomTranslation(augment.translation, augment.translation, **geometric)],
        "color": lambda: [L.RandomColorJitter(value_range=(0, 1), brightness_factor=augment.jitter,
                                              contrast_factor=augment.jitter,
                                              saturation_factor=augment.saturation_factor, seed=seed)],
        "noise": lambda: [L.GaussianNoise(augment.noise, seed=seed)],
        "erasing": lambda: [L.RandomErasing(augment.erasing, scale=(0.02, 0.2), fill_value=0.0, value_range=(0, 1),
                                            seed=seed)],
    }
    chosen = [layer for name in augment.ops for layer in ops[name]()]
    return keras.Sequential(chosen, name="augment") if chosen else None


def augment_batch(pipeline: Callable | None) -> Callable | None:
    """A batch function for the training loop: the layers in training mode (in inference they pass images
    through), traced into the compiled training step."""
    if pipeline is None:
        return None
    return lambda batch: pipeline(batch, training=True)


def apply_op(name: str, images: np.ndarray, params: dict) -> np.ndarray:
    """One op of PARITY_OPS with fixed parameters (shared.data.augmentation.parity_params) on NHWC images,
    through each Keras layer's ``transform_images`` and a transformation given to it; NHWC numpy out."""
    x = to_native(images)
    n, h, w = images.shape[:3]
    geometric = {"fill_mode": "constant", "fill_value": 0.0, "interpolation": "bilinear"}
    if name == "flip":
        out = L.RandomFlip("horizontal").transform_images(
            x, {"flips": tf.ones((n, 1, 1, 1), tf.bool), "input_shape": x.shape}, training=True)
    elif name == "rotation":  # the transformation's angle is in degrees, counter-clockwise positive
        layer = L.RandomRotation(0.0, **geometric)
        angle, zeros, ones = tf.fill([n], float(params["angle"])), tf.zeros([n]), tf.ones([n])
        matrix = layer._compute_affine_matrix(0.5, 0.5, angle, zeros, zeros, ones, zeros, zeros, h, w)
        out = layer.transform_images(x, {"angle": angle, "rotation_matrix": matrix, "image_height": h,
                                         "image_width": w, "batch_size": n}, training=True)
    elif name == "scale_crop":
        size = params["size"]
        out = L.RandomCrop(size, size).transform_images(x, (params["top"], params["left"]), training=True)
        out = L.Resizing(h, w, interpolation="bilinear")(out)
    elif name == "translation":  # pixels, right and down positive
        out = L.RandomTranslation(0.0, 0.0, **geometric).transform_images(
            x, {"translations": tf.constant([[params["dx"], params["dy"]]] * n, tf.float32), "input_shape": x.shape},
            training=True)
    elif name == "noise":  # what GaussianNoise computes, with the noise given: x + noise (no clipping)
        out = x + tf.constant(params["noise"][None])
    elif name == "brightness":  # Keras adds a delta: the one matching torchvision's factor on the image mean
        delta = (params["factor"] - 1.0) * tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
        out = L.RandomBrightness(0.0, value_range=(0, 1)).transform_images(x, {"rgb_delta": delta}, training=True)
    elif name == "contrast":
        out = L.RandomContrast(0.0, value_range=(0, 1)).transform_images(
            x, {"contrast_factor": tf.fill([n, 1, 1, 1], float(params["factor"]))}, training=True)
    elif name == "saturation":  # the transformation's factor is the multiplier of HSV saturation
        out = L.RandomSaturation((0.5, 0.5), value_range=(0, 1)).transform_images(
            x, {"factor": tf.fill([n], float(params["factor"]))}, training=True)
    elif name == "erasing":
        mask = np.zeros(images.shape, bool)
        mask[:, params["top"]:params["top"] + params["height"], params["left"]:params["left"] + params["width"]] = True
        out = L.RandomErasing(1.0, value_range=(0, 1)).transform_images(
            x, {"batch_masks": tf.constant(mask), "apply_erasing": tf.ones((n,), tf.bool),
                "fill_value": tf.constant(params["value"], tf.float32)}, training=True)
    else:
        raise ValueError(f"unknown augmentation op {name!r}")
    return to_numpy(out)
