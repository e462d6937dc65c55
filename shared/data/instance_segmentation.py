"""The instance-segmentation set: the detection set's scenes, with a visible mask per object, and crowded scenes.

The task (seed answers 7, 21 and 24) trains on the detection task's generated set (``shared.data.detection``)
as it is: the same images, the same amodal boxes (tight boxes of each object's FULL mask) and labels. What the
masks of this task are is ``DetectionSplit.visible_masks``: the pixels of each object still visible in the final
image (COCO's convention: a segmentation can only see what is in the image). Later objects paint over earlier
ones, so the visible masks of one image never overlap, and one image's masks fit in a single instance-id map:
0 where no object is visible, ``k + 1`` where object ``k`` (row ``k`` of the image's boxes and labels) is.

Training targets (``training_targets``) are one float32 row per image, ``spec.target_width`` wide, so that both
twins' trainers slice them batch by batch like every other task's targets:

- ``max_objects * 5`` columns: ``pack_targets``' rows ``x1, y1, x2, y2, label`` flattened object after object,
  rows after an image's objects padding (label -1, box zeros);
- ``H * W`` columns: the instance-id map, flattened row-major (ids are small integers, exact in float32).

``unpack_targets`` is the numpy inverse; the framework twins slice the same layout themselves.

Crowded scenes (``crowded_split``) are a held-out study set (seed answers 21 and 24): every image holds 2-5
objects of ONE class, each placed to touch or overlap an earlier one. A semantic class map merges touching
objects of one class into one region, so counting its connected components under-counts them; an instance
segmentation keeps them apart. ``touching_pairs`` counts how many pairs of objects of an image touch.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..specs.detection import DETECTION_CLASSES
from .detection import (DetectionData, DetectionSplit, _paint, load_detection, masks_to_boxes, pack_targets)
from .shapes import shape_mask
from .textures import random_background

_CROWDED_STREAM = 21       # crowded scenes' key in the per-image seed (detection uses 5, the horse set 11)
_MIN_PIXELS = 6            # an object with fewer visible pixels has no usable mask (detection's minimum)
_TRIES_PER_OBJECT = 30     # re-draws of one object before the image settles for fewer objects
_TRIES_FOR_MINIMUM = 300   # re-draws allowed while the image still has fewer than min_objects
_SPACING = (0.6, 1.0)      # centre distance to the touched object, as a multiple of the sum of the two radii


class InstanceSplit(DetectionSplit):
    """A detection split whose ``targets`` carry each object's visible mask too (torchvision's Mask R-CNN target
    format), which is what the harness hands the twins' losses and training steps."""

    @property
    def targets(self) -> list[dict[str, np.ndarray]]:
        """Per image ``{"boxes": [N, 4] float32, "labels": [N] int64, "masks": [N, H, W] bool}`` (visible masks)."""
        return [{"boxes": b, "labels": y, "masks": m} for b, y, m in zip(self.boxes, self.labels, self.visible_masks)]

    def head(self, n: int) -> "InstanceSplit":
        return InstanceSplit(*(getattr(self, f.name)[:n] for f in dataclasses.fields(self)))


def load(spec) -> DetectionData:
    """The task's data hook (``shared.data.load``): the seeded detection set ``spec.data`` describes.

    The detection task's images, boxes and labels: the masks of this task are each split's ``visible_masks``
    (not ``masks``, the amodal full masks the boxes are taken from), which its ``targets`` add (``InstanceSplit``).
    """
    data = load_detection(spec.data)
    return dataclasses.replace(data, **{name: as_instances(getattr(data, name)) for name in ("train", "val", "test")})


def as_instances(split: DetectionSplit) -> InstanceSplit:
    """The same split, with the visible masks in its ``targets``."""
    return InstanceSplit(*(getattr(split, f.name) for f in dataclasses.fields(split)))


def pack_instance_targets(targets, spec) -> np.ndarray:
    """Per-image ``{"boxes", "labels", "masks"}`` (``InstanceSplit.targets``) or an already packed array ->
    float32 [N, spec.target_width] (``training_targets``' layout), checked."""
    if isinstance(targets, np.ndarray):
        unpack_targets(targets, spec)  # validates the width and the ids
        return targets.astype(np.float32)
    h, w = spec.input_shape[:2]
    rows = []
    for i, t in enumerate(targets):
        if not isinstance(t, dict) or "masks" not in t:
            got = sorted(t) if isinstance(t, dict) else type(t).__name__
            raise ValueError(f"targets[{i}]: expected a dict with 'boxes', 'labels' and 'masks' (one visible mask "
                             f"per object); received {got}")
        masks = np.asarray(t["masks"])
        if masks.ndim != 3 or masks.shape[0] != len(np.asarray(t["labels"])):
            raise ValueError(f"targets[{i}]['masks']: expected shape [{len(np.asarray(t['labels']))}, {h}, {w}] "
                             f"(one mask per label); received {list(masks.shape)}")
        rows.append(instance_map(masks, (h, w)).reshape(-1))
    packed = pack_targets([{"boxes": t["boxes"], "labels": t["labels"]} for t in targets], spec.data.num_classes,
                          max_objects=spec.data.max_objects)
    maps = np.stack(rows) if rows else np.zeros((0, h * w), np.int64)
    return np.concatenate([packed.reshape(len(rows), -1), maps.astype(np.float32)], axis=1)


def instance_map(visible_masks: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """int64 [H, W] instance-id map of one image: 0 background, ``k + 1`` where object ``k`` is visible.

    visible_masks: bool [N, H, W], disjoint (each pixel shows at most one object); overlapping masks are an
    error, since a pixel would belong to two instances.
    """
    visible_masks = np.asarray(visible_masks)
    h, w = (int(v) for v in size)
    if visible_masks.ndim != 3 or visible_masks.shape[1:] != (h, w):
        raise ValueError(f"visible_masks: expected a bool array of shape [N, {h}, {w}] (one mask per object); "
                         f"received shape {list(visible_masks.shape)}")
    visible_masks = visible_masks.astype(bool)
    overlap = visible_masks.sum(axis=0) > 1
    if overlap.any():
        rows, cols = np.nonzero(overlap)
        objects = np.flatnonzero(visible_masks[:, rows[0], cols[0]]).tolist()
        raise ValueError(f"visible_masks: expected disjoint masks (one visible object per pixel); {int(overlap.sum())} "
                         f"pixels overlap, e.g. pixel (row {rows[0]}, col {cols[0]}) is in objects {objects}")
    out = np.zeros((h, w), dtype=np.int64)
    for k, mask in enumerate(visible_masks):
        out[mask] = k + 1
    return out


def training_targets(split: DetectionSplit, spec) -> np.ndarray:
    """The task's targets hook (``shared.data.training_targets``): float32 [N, spec.target_width].

    Per image: the ``max_objects`` (``spec.data.max_objects``) packed rows of ``pack_targets`` flattened, then
    the image's instance-id map flattened row-major (module docstring).
    """
    h, w = spec.input_shape[:2]
    if tuple(split.images.shape[1:3]) != (h, w):
        raise ValueError(f"split: expected {h} x {w} images (the spec's input_shape); received "
                         f"{split.images.shape[1]} x {split.images.shape[2]}")
    return pack_instance_targets(as_instances(split).targets, spec)


def unpack_targets(targets: np.ndarray, spec) -> tuple[np.ndarray, np.ndarray]:
    """The numpy inverse of ``training_targets``: (packed float32 [N, M, 5], instance-id maps int64 [N, H, W]).

    M is ``spec.data.max_objects``; the rows are ``pack_targets``' (x1, y1, x2, y2, label; label -1 padding).
    """
    targets = np.asarray(targets)
    width = spec.target_width
    if targets.ndim != 2 or targets.shape[1] != width:
        raise ValueError(f"targets: expected shape [N, {width}] (spec.target_width: {spec.data.max_objects} x 5 "
                         f"box columns, then the {spec.input_shape[0]} x {spec.input_shape[1]} instance map); "
                         f"received shape {list(targets.shape)}")
    m = spec.data.max_objects
    h, w = spec.input_shape[:2]
    packed = targets[:, :m * 5].reshape(-1, m, 5).astype(np.float32)
    ids = targets[:, m * 5:]
    if ids.size and (not np.array_equal(ids, np.round(ids)) or ids.min() < 0 or ids.max() > m):
        raise ValueError(f"targets: expected instance ids that are integers in [0, {m}] after the {m * 5} box "
                         f"columns; received values from {float(ids.min())} to {float(ids.max())}")
    return packed, ids.astype(np.int64).reshape(-1, h, w)


def touching_pairs(visible_masks: np.ndarray) -> int:
    """How many pairs of an image's objects touch: their visible masks are 4-adjacent (share a pixel edge).

    visible_masks: bool [N, H, W], disjoint (as ``instance_map`` requires).
    """
    visible_masks = np.asarray(visible_masks)
    if visible_masks.ndim != 3:
        raise ValueError(f"visible_masks: expected a bool array of shape [N, H, W]; received shape "
                         f"{list(visible_masks.shape)}")
    ids = instance_map(visible_masks, visible_masks.shape[1:])
    pairs = set()
    for a, b in ((ids[:, :-1], ids[:, 1:]), (ids[:-1, :], ids[1:, :])):   # left-right, then up-down neighbours
        edge = (a != b) & (a > 0) & (b > 0)
        lo, hi = np.minimum(a[edge], b[edge]), np.maximum(a[edge], b[edge])
        pairs.update(zip(lo.tolist(), hi.tolist()))
    return len(pairs)


def crowded_split(spec, n: int, seed: int = 0, min_objects: int = 2, max_objects: int = 5) -> DetectionSplit:
    """A held-out split of ``n`` crowded scenes: per image ``min_objects``-``max_objects`` touching objects of one
    class (module docstring), the same ``DetectionSplit`` record as the detection set, ``spec.data``'s image size.

    Per image the class is drawn first; the first object is placed as the detection set places objects, each
    later one with its centre ``0.6-1.0 x`` the sum of the two radii away from a random earlier object's centre,
    in a random direction (clipped to the image), painted over the earlier ones; a draw that does not touch or
    overlap that object's visible pixels, leaves an object under ``spec.data.min_visible_fraction`` visible or
    with fewer than 6 visible pixels (or overlaps one, without ``spec.data.occlusion``) is re-drawn. Image ``i``
    comes from its own generator ``(spec.data.seed, seed, 21, i)``: other seeds give other held-out sets.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n: expected a positive number of images; received {n!r}")
    if not 1 <= min_objects <= max_objects:
        raise ValueError(f"min_objects, max_objects: expected 1 <= min_objects <= max_objects; received "
                         f"{min_objects}, {max_objects}")
    samples = [_render_crowded_image(np.random.default_rng((spec.data.seed, seed, _CROWDED_STREAM, i)), spec.data,
                                     min_objects, max_objects) for i in range(n)]
    images, boxes, labels, masks, visible, fraction = zip(*samples)
    return DetectionSplit(np.stack(images), boxes, labels, masks, visible, fraction)


def _render_crowded_image(rng: np.random.Generator, data, min_objects: int, max_objects: int):
    """One crowded image: (image [H, W, 3], boxes, labels, masks, visible_masks, visible_fraction)."""
    size = data.image_size
    image = random_background(rng, size)
    label = int(rng.integers(len(DETECTION_CLASSES)))
    target = int(rng.integers(min_objects, max_objects + 1))
    full: list[np.ndarray] = []        # full masks, in painting order
    visible: list[np.ndarray] = []     # what is still visible of each, given everything painted so far
    shapes: list[tuple[float, float, float]] = []   # (cx, cy, radius) of each placed object
    tries = 0
    while len(full) < target:
        tries += 1
        if tries > _TRIES_PER_OBJECT * target and len(full) >= min_objects:
            break                      # too crowded: settle for fewer objects than drawn, still >= min_objects
        if tries > _TRIES_PER_OBJECT * target + _TRIES_FOR_MINIMUM:
            raise RuntimeError(f"could not place {min_objects} touching objects (min_objects) in a {size} px "
                               f"image with at least {data.min_visible_fraction} of each visible; lower "
                               f"min_objects, data.max_object_size or data.min_visible_fraction")
        radius = np.exp(rng.uniform(np.log(data.min_object_size), np.log(data.max_object_size))) * size / 2
        if not shapes:
            margin = 0.7 * radius
            center = (rng.uniform(margin, size - margin), rng.uniform(margin, size - margin))
            anchor = None
        else:
            anchor = int(rng.integers(len(shapes)))
            ax, ay, ar = shapes[anchor]
            distance = rng.uniform(*_SPACING) * (ar + radius)
            direction = rng.uniform(0, 2 * np.pi)
            center = (float(np.clip(ax + distance * np.cos(direction), 0, size)),
                      float(np.clip(ay + distance * np.sin(direction), 0, size)))
        mask = shape_mask(DETECTION_CLASSES[label], center, radius, rng.uniform(0, 2 * np.pi), (size, size))
        if mask.sum() < _MIN_PIXELS:
            continue
        if not data.occlusion and any((mask & f).any() for f in full):
            continue
        # The new object goes on top: each earlier object loses the pixels it covers.
        covered = [v & ~mask for v in visible]
        if any(c.sum() <= data.min_visible_fraction * f.sum() or c.sum() < _MIN_PIXELS
               for c, f in zip(covered, full)):
            continue
        if anchor is not None and not (_grow4(mask) & covered[anchor]).any():
            continue                   # it must touch what is left of the object it was placed against
        image = _paint(rng, image, mask)
        full.append(mask)
        visible = covered + [mask.copy()]
        shapes.append((center[0], center[1], radius))
    masks = np.stack(full)
    visible_masks = np.stack(visible)
    fraction = (visible_masks.sum(axis=(1, 2)) / masks.sum(axis=(1, 2))).astype(np.float32)
    return (np.clip(image, 0.0, 1.0).astype(np.float32), masks_to_boxes(masks),
            np.full(len(full), label, dtype=np.int64), masks, visible_masks, fraction)


def _grow4(mask: np.ndarray) -> np.ndarray:
    """The mask and its 4-neighbours (one step of binary dilation with the cross)."""
    out = mask.copy()
    out[1:] |= mask[:-1]
    out[:-1] |= mask[1:]
    out[:, 1:] |= mask[:, :-1]
    out[:, :-1] |= mask[:, 1:]
    return out


__all__ = ["InstanceSplit", "as_instances", "crowded_split", "instance_map", "load", "pack_instance_targets",
           "touching_pairs", "training_targets", "unpack_targets"]
