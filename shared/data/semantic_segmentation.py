"""The semantic-segmentation sets: a class per pixel, NHWC float32 images and [N, H, W] int64 class maps.

* ``scenes``: the detection set's images (``shared.data.detection``: shapes on real textures, later objects
  painted over earlier ones). Each pixel takes the class of the object visible there (1 + its index in
  ``DETECTION_CLASSES``), 0 where no object is: an occluded part belongs to its occluder, so the maps carry the
  occlusions the detection set has. The same image streams as the detection set of the same settings.
* ``horses``: scikit-image's horse silhouette (``skimage.data.horse``, a real binary segmentation mask), scaled,
  mirrored and placed at random, filled with one texture crop over another of contrasting brightness: class 1
  is the horse.

Image ``i`` of a split comes from its own generator, so a split's first images do not depend on its size.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from ..specs.semantic_segmentation import SEGMENTATION_CLASSES, SegmentationDataSpec
from .detection import detection_split
from .textures import random_background

_SPLIT_CODES = {"train": 0, "test": 1, "val": 2}
_HORSE_STREAM = 11  # this set's key in the per-image seed (the detection streams use 5)


@dataclass(frozen=True)
class SegmentationSplit:
    """images: [N, H, W, 3] float32 in [0, 1]; masks: [N, H, W] int64 class ids (0 background)."""

    images: np.ndarray
    masks: np.ndarray

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def targets(self) -> np.ndarray:
        """The training targets: the class maps."""
        return self.masks

    def head(self, n: int) -> "SegmentationSplit":
        return SegmentationSplit(self.images[:n], self.masks[:n])


@dataclass(frozen=True)
class SegmentationData:
    train: SegmentationSplit
    val: SegmentationSplit
    test: SegmentationSplit
    class_names: tuple[str, ...]


def load(spec) -> SegmentationData:
    """The splits of a task spec's data (``SegmentationSpec.data``), identical on every call."""
    return load_segmentation(spec.data)


def load_segmentation(spec: SegmentationDataSpec) -> SegmentationData:
    names = SEGMENTATION_CLASSES if spec.dataset == "scenes" else ("background", "horse")
    return SegmentationData(*(segmentation_split(spec, split) for split in ("train", "val", "test")), names)


def segmentation_split(spec: SegmentationDataSpec, split: str) -> SegmentationSplit:
    """One split (``train``, ``val`` or ``test``)."""
    if split not in _SPLIT_CODES:
        raise ValueError(f"split: expected one of {sorted(_SPLIT_CODES)}; received {split!r}")
    if spec.dataset == "scenes":
        scenes = detection_split(spec.scene, split)
        masks = np.stack([class_map(labels, visible, (spec.image_size,) * 2)
                          for labels, visible in zip(scenes.labels, scenes.visible_masks)])
        return SegmentationSplit(scenes.images, masks)
    n = {"train": spec.n_train, "val": spec.n_val, "test": spec.n_test}[split]
    samples = [render_horse(np.random.default_rng((spec.seed, _SPLIT_CODES[split], _HORSE_STREAM, i)),
                            spec.image_size) for i in range(n)]
    images, masks = zip(*samples)
    return SegmentationSplit(np.stack(images), np.stack(masks))


def class_map(labels: np.ndarray, visible_masks: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """[H, W] int64: 1 + label of the object visible at each pixel, 0 where none is.

    visible_masks: bool [N, H, W], disjoint (each pixel shows at most one object); overlapping masks are an error,
    since a pixel would have two classes."""
    visible_masks = np.asarray(visible_masks, dtype=bool)
    if visible_masks.ndim != 3 or visible_masks.shape[1:] != tuple(size) or len(visible_masks) != len(labels):
        raise ValueError(f"visible_masks: expected shape [{len(labels)}, {size[0]}, {size[1]}] (one per label); "
                         f"received {visible_masks.shape}")
    if (visible_masks.sum(axis=0) > 1).any():
        raise ValueError("visible_masks: expected disjoint masks (one visible object per pixel); some overlap")
    out = np.zeros(size, dtype=np.int64)
    for label, mask in zip(np.asarray(labels, dtype=np.int64), visible_masks):
        out[mask] = label + 1
    return out


def horse_mask() -> np.ndarray:
    """scikit-image's horse silhouette as a bool mask, True on the horse, cropped to its box."""
    from skimage import data

    mask = ~data.horse()  # the image is True on the background
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


@functools.cache
def _silhouette() -> np.ndarray:
    return horse_mask()


def render_horse(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """One image of the horses set and its [size, size] int64 class map."""
    silhouette = _silhouette()
    scale = rng.uniform(0.45, 0.9) * size / max(silhouette.shape)
    h, w = (max(4, int(round(d * scale))) for d in silhouette.shape)
    # Nearest-neighbour sampling at pixel centres: the mask stays binary, and the 300 px silhouette has detail
    # to spare at 64 px.
    rows = ((np.arange(h) + 0.5) * silhouette.shape[0] / h).astype(int)
    cols = ((np.arange(w) + 0.5) * silhouette.shape[1] / w).astype(int)
    mask = silhouette[np.ix_(rows, cols)]
    if rng.random() < 0.5:
        mask = mask[:, ::-1]
    top, left = int(rng.integers(-h // 5, size - h + h // 5 + 1)), int(rng.integers(-w // 5, size - w + w // 5 + 1))
    canvas = np.zeros((size, size), dtype=bool)
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + h, size), min(left + w, size)
    canvas[y0:y1, x0:x1] = mask[y0 - top:y1 - top, x0 - left:x1 - left]
    background, fill = random_background(rng, size), random_background(rng, size)
    shift = 0.3 if background.mean() < 0.5 else -0.3  # the horse stands out in brightness, not in outline alone
    image = np.where(canvas[..., None], np.clip(fill + shift, 0.0, 1.0), background)
    return image.astype(np.float32), canvas.astype(np.int64)


def training_targets(split: SegmentationSplit, spec) -> np.ndarray:
    """[N, H, W] int64 class maps, checked against the spec's classes."""
    return check_class_maps(split.masks, spec.model.num_classes, len(split), spec.input_shape[:2])


def check_class_maps(masks, num_classes: int, n: int, size: tuple[int, int], name: str = "masks") -> np.ndarray:
    """``masks`` as [n, H, W] int64 class ids in [0, num_classes); a clear error naming what is wrong."""
    masks = np.asarray(masks)
    if masks.shape != (n, *size):
        raise ValueError(f"{name}: expected shape [{n}, {size[0]}, {size[1]}] (one class map per image); received "
                         f"{list(masks.shape)}")
    if not np.issubdtype(masks.dtype, np.integer):
        raise ValueError(f"{name}: expected integer class ids; received dtype {masks.dtype}")
    if masks.size and (masks.min() < 0 or masks.max() >= num_classes):
        raise ValueError(f"{name}: expected class ids in [0, {num_classes - 1}]; received values from "
                         f"{int(masks.min())} to {int(masks.max())}")
    return masks.astype(np.int64)


__all__ = ["SegmentationData", "SegmentationSplit", "check_class_maps", "class_map", "horse_mask", "load",
           "load_segmentation", "render_horse", "segmentation_split", "training_targets"]
