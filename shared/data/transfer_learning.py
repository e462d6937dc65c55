"""Transfer-learning targets: real images from other domains than the source task's shapes on textures.

Every target is split per class into test and training images once (seeded); ``samples_per_class`` then draws
the training subset, so a run with 10 images per class and one with all of them are scored on the same test
images. Images are float32 NHWC in [0, 1], 3 channels (grey images repeated), at the spec's size.
"""

from __future__ import annotations

import functools

import numpy as np

from ..specs.transfer_learning import TARGET_CLASSES, TEXTURE_SOURCES, TransferDataSpec
from .classification import ClassificationData, Split
from .digits import digit_images
from .validate import InputError


@functools.lru_cache(maxsize=4)
def face_images(size: int) -> tuple[np.ndarray, np.ndarray]:
    """scikit-image's lfw_subset: 200 grey 25x25 crops, the first 100 faces (label 1), the rest not (0)."""
    from skimage import data as skdata
    from skimage.transform import resize

    crops = skdata.lfw_subset().astype(np.float32)
    images = resize(crops, (len(crops), size, size), order=1, anti_aliasing=True).astype(np.float32)
    labels = (np.arange(len(crops)) < 100).astype(np.int64)
    return _rgb(images), labels


@functools.lru_cache(maxsize=4)
def texture_images(size: int, per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``per_class`` random crops (side 48 to 96 px of the photograph, resized to ``size``) of each of
    TEXTURE_SOURCES; the label is the source photograph."""
    from skimage import data as skdata
    from skimage.transform import resize

    images, labels = [], []
    for label, name in enumerate(TEXTURE_SOURCES):
        photo = np.asarray(getattr(skdata, name)(), dtype=np.float32)
        photo = photo / 255.0 if photo.max() > 1.0 else photo
        photo = photo.mean(axis=-1) if photo.ndim == 3 else photo
        rng = np.random.default_rng((seed, label))
        for _ in range(per_class):
            side = int(rng.integers(48, 97))
            y = int(rng.integers(0, photo.shape[0] - side + 1))
            x = int(rng.integers(0, photo.shape[1] - side + 1))
            images.append(resize(photo[y:y + side, x:x + side], (size, size), order=1, anti_aliasing=True))
            labels.append(label)
    return _rgb(np.asarray(images, np.float32)), np.asarray(labels, np.int64)


def _rgb(grey: np.ndarray) -> np.ndarray:
    rgb = np.repeat(np.clip(grey, 0.0, 1.0)[..., None], 3, axis=-1).astype(np.float32)
    rgb.setflags(write=False)
    return rgb


def target_images(spec: TransferDataSpec) -> tuple[np.ndarray, np.ndarray]:
    """Every image of the target and its labels."""
    if spec.target == "digits":
        return digit_images(spec.image_size)
    if spec.target == "faces":
        return face_images(spec.image_size)
    return texture_images(spec.image_size, spec.textures_per_class, spec.seed)


def load_target(spec: TransferDataSpec) -> ClassificationData:
    """Train and test splits of the target: a seeded per-class hold-out of ``test_fraction``, then
    ``samples_per_class`` training images per class (all with 0)."""
    images, labels = target_images(spec)
    rng = np.random.default_rng((spec.seed, 7))
    train, test = [], []
    for c in range(TARGET_CLASSES[spec.target]):
        members = rng.permutation(np.flatnonzero(labels == c))
        held = max(1, round(spec.test_fraction * len(members)))
        available = members[held:]
        if spec.samples_per_class > len(available):
            raise InputError(f"data.samples_per_class: class {c} of the {spec.target!r} target has "
                             f"{len(available)} training images; received {spec.samples_per_class}")
        test.append(members[:held])
        train.append(available[:spec.samples_per_class or len(available)])
    tr, te = np.sort(np.concatenate(train)), np.sort(np.concatenate(test))
    names = {"digits": tuple(str(i) for i in range(10)), "faces": ("not a face", "face"),
             "textures": TEXTURE_SOURCES}[spec.target]
    return ClassificationData(Split(images[tr].copy(), labels[tr]), Split(images[te].copy(), labels[te]), names)


def load(spec) -> ClassificationData:
    """The task's data hook (``shared.data.load``): the target ``spec.data`` names."""
    return load_target(spec.data)


def training_targets(split: Split, spec) -> np.ndarray:
    """The task's targets hook (``shared.data.training_targets``): the labels."""
    return np.asarray(split.targets)


__all__ = ["face_images", "load", "load_target", "target_images", "texture_images", "training_targets"]
