"""The generated object-detection set: 1-6 shapes per image on real textures, overlapping.

Each image is a random crop of a scikit-image photo or texture
(``textures.random_background``) with shapes of the six ``SHAPE_CLASSES``
painted on it one after another, in random colours and fill patterns that
stand out from what lies beneath them. Later objects paint over earlier ones,
so objects occlude each other; a placement that would leave an earlier object
less than ``min_visible_fraction`` visible is re-drawn, so every labelled
object can actually be seen.

Per object the set records:

- ``boxes``: float32 ``[N, 4]`` as ``x1, y1, x2, y2`` in pixels, pixel ``(i, j)``
  covering ``[j, j + 1] x [i, i + 1]``. A box is the tight box of the object's
  FULL mask: the whole shape as drawn, including the parts that later objects
  hide (amodal), but clipped to the image, since objects may run off its edge.
- ``labels``: int64 ``[N]``, 0-based indices into ``DETECTION_CLASSES``.
- ``masks``: bool ``[N, H, W]``, the full (amodal, clipped to the image) masks.
- ``visible_masks``: bool ``[N, H, W]``, the pixels of each object still
  visible in the final image.
- ``visible_fraction``: float32 ``[N]``, visible pixels / full pixels, in
  ``[min_visible_fraction, 1]``.

Image ``i`` of a split is drawn from its own generator ``(seed, split, 5, i)``,
so it is the same whatever the split's size; train, val and test have distinct
streams (and classification's streams use other keys).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..specs.detection import DETECTION_CLASSES, DetectionDataSpec
from .shapes import shape_mask
from .textures import random_background

_SPLIT_CODES = {"train": 0, "test": 1, "val": 2}
_STREAM = 5                # this task's key in the per-image seed (issue 5); classification uses 0 and 1
_MIN_PIXELS = 6            # an object smaller than this has no usable box
_TRIES_PER_OBJECT = 30     # re-draws of one object before the image settles for fewer objects
_TRIES_FOR_MINIMUM = 300   # re-draws allowed while the image still has fewer than min_objects
_FILLS = ("flat", "stripes", "gradient")


@dataclass(frozen=True)
class DetectionSplit:
    """One split. images: [N, H, W, 3] float32 in [0, 1]; the rest are per-image lists (see the module docstring)."""

    images: np.ndarray
    boxes: tuple[np.ndarray, ...]
    labels: tuple[np.ndarray, ...]
    masks: tuple[np.ndarray, ...]
    visible_masks: tuple[np.ndarray, ...]
    visible_fraction: tuple[np.ndarray, ...]

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def targets(self) -> list[dict[str, np.ndarray]]:
        """Per image ``{"boxes": [N, 4] float32, "labels": [N] int64}``: torchvision's detection target format."""
        return [{"boxes": b, "labels": y} for b, y in zip(self.boxes, self.labels)]

    def head(self, n: int) -> "DetectionSplit":
        """The first ``n`` images of the split, with their objects."""
        return DetectionSplit(self.images[:n], self.boxes[:n], self.labels[:n], self.masks[:n],
                              self.visible_masks[:n], self.visible_fraction[:n])

    @property
    def num_objects(self) -> np.ndarray:
        """[N] int64: objects per image."""
        return np.array([len(y) for y in self.labels], dtype=np.int64)


@dataclass(frozen=True)
class DetectionData:
    train: DetectionSplit
    val: DetectionSplit
    test: DetectionSplit
    class_names: tuple[str, ...]


def load_detection(spec: DetectionDataSpec) -> DetectionData:
    """The train, val and held-out test splits that ``spec`` describes, identical on every call."""
    return DetectionData(train=detection_split(spec, "train"), val=detection_split(spec, "val"),
                         test=detection_split(spec, "test"), class_names=DETECTION_CLASSES)


def detection_split(spec: DetectionDataSpec, split: str) -> DetectionSplit:
    """One split (``train``, ``val`` or ``test``) of the set ``spec`` describes."""
    if split not in _SPLIT_CODES:
        raise ValueError(f"split: expected one of {sorted(_SPLIT_CODES)}; received {split!r}")
    n = {"train": spec.n_train, "val": spec.n_val, "test": spec.n_test}[split]
    samples = [render_detection_image(np.random.default_rng((spec.seed, _SPLIT_CODES[split], _STREAM, i)), spec)
               for i in range(n)]
    images, boxes, labels, masks, visible, fraction = zip(*samples)
    return DetectionSplit(np.stack(images), boxes, labels, masks, visible, fraction)


def render_detection_image(rng: np.random.Generator, spec: DetectionDataSpec):
    """One image and its objects: (image [H, W, 3], boxes, labels, masks, visible_masks, visible_fraction)."""
    size = spec.image_size
    image = random_background(rng, size)
    target = int(rng.integers(spec.min_objects, spec.max_objects + 1))
    full: list[np.ndarray] = []        # full masks, in painting order
    visible: list[np.ndarray] = []     # what is still visible of each, given everything painted so far
    labels: list[int] = []
    tries = 0
    while len(full) < target:
        tries += 1
        if tries > _TRIES_PER_OBJECT * target and len(full) >= spec.min_objects:
            break                      # crowded: settle for fewer objects than drawn, still >= min_objects
        if tries > _TRIES_PER_OBJECT * target + _TRIES_FOR_MINIMUM:
            raise RuntimeError(f"could not place {spec.min_objects} objects (data.min_objects) in a "
                               f"{size} px image with at least {spec.min_visible_fraction} of each visible; "
                               f"lower data.min_objects, data.max_object_size or data.min_visible_fraction")
        label = int(rng.integers(len(DETECTION_CLASSES)))
        mask = _draw_object_mask(rng, spec, label)
        if mask.sum() < _MIN_PIXELS:
            continue
        if not spec.occlusion and any((mask & f).any() for f in full):
            continue
        # The new object goes on top: each earlier object loses the pixels it covers.
        covered = [v & ~mask for v in visible]
        if any(c.sum() <= spec.min_visible_fraction * f.sum() for c, f in zip(covered, full)):
            continue
        image = _paint(rng, image, mask)
        full.append(mask)
        visible = covered + [mask.copy()]
        labels.append(label)
    masks = np.stack(full)
    visible_masks = np.stack(visible)
    fraction = (visible_masks.sum(axis=(1, 2)) / masks.sum(axis=(1, 2))).astype(np.float32)
    return (np.clip(image, 0.0, 1.0).astype(np.float32), masks_to_boxes(masks), np.array(labels, dtype=np.int64),
            masks, visible_masks, fraction)


def _draw_object_mask(rng: np.random.Generator, spec: DetectionDataSpec, label: int) -> np.ndarray:
    size = spec.image_size
    # Log-uniform diameters: as many small objects per octave as large ones.
    diameter = np.exp(rng.uniform(np.log(spec.min_object_size), np.log(spec.max_object_size))) * size
    radius = diameter / 2
    # Centres may sit a little closer to the edge than the radius, so some objects run off the image.
    margin = 0.7 * radius
    center = (rng.uniform(margin, size - margin), rng.uniform(margin, size - margin))
    return shape_mask(DETECTION_CLASSES[label], center, radius, rng.uniform(0, 2 * np.pi), (size, size))


def _paint(rng: np.random.Generator, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Paint one object: a colour far from what lies beneath it, filled flat, striped or with a gradient."""
    # Work in the object's bounding window only: most objects are a small part of the image.
    x1, y1, x2, y2 = (int(v) for v in masks_to_boxes(mask[None])[0])
    window = mask[y1:y2, x1:x2]
    beneath = image[y1:y2, x1:x2][window].mean(axis=0)
    colour = rng.uniform(0, 1, size=3).astype(np.float32)
    if np.abs(colour - beneath).sum() < 0.6:
        colour = np.where(beneath > 0.5, beneath - 0.5, beneath + 0.5).astype(np.float32)
    ys, xs = np.mgrid[y1:y2, x1:x2].astype(np.float32)
    theta = rng.uniform(0, np.pi)
    along = xs * np.cos(theta) + ys * np.sin(theta)
    fill = _FILLS[int(rng.integers(len(_FILLS)))]
    if fill == "stripes":
        pattern = 0.15 * np.sin(2 * np.pi * along / rng.uniform(3.0, 8.0))
    elif fill == "gradient":
        lo, hi = along[window].min(), along[window].max()
        pattern = 0.3 * ((along - lo) / max(hi - lo, 1.0) - 0.5)
    else:
        pattern = np.zeros_like(along)
    noise = rng.normal(0, 0.03, size=(*window.shape, 3)).astype(np.float32)
    painted = colour + pattern[..., None].astype(np.float32) + noise
    image = image.copy()
    image[y1:y2, x1:x2] = np.where(window[..., None], painted, image[y1:y2, x1:x2])
    return image


def masks_to_boxes(masks: np.ndarray) -> np.ndarray:
    """float32 [N, 4] x1y1x2y2 tight boxes of bool [N, H, W] masks, in pixel-edge coordinates.

    A mask whose pixels span columns j0..j1 and rows i0..i1 gets the box
    ``(j0, i0, j1 + 1, i1 + 1)``. (torchvision.ops.masks_to_boxes returns
    ``(j0, i0, j1, i1)``, pixel indices rather than edges.)
    """
    masks = np.asarray(masks, dtype=bool)
    if masks.ndim != 3:
        raise ValueError(f"masks: expected a bool array of shape [N, H, W]; received shape {masks.shape}")
    if masks.shape[0] and not masks.any(axis=(1, 2)).all():
        empty = np.flatnonzero(~masks.any(axis=(1, 2))).tolist()
        raise ValueError(f"masks: expected every mask to have a pixel; masks {empty} are empty")
    rows, cols = masks.any(axis=2), masks.any(axis=1)                 # [N, H], [N, W]
    h, w = masks.shape[1:]
    y1 = rows.argmax(axis=1)
    y2 = h - rows[:, ::-1].argmax(axis=1)
    x1 = cols.argmax(axis=1)
    x2 = w - cols[:, ::-1].argmax(axis=1)
    return np.stack([x1, y1, x2, y2], axis=1).astype(np.float32)


def to_coco(split: DetectionSplit, segmentation: str | None = None, ignore=None) -> dict:
    """The split's ground truth as the COCO dict that ``pycocotools.coco.COCO`` loads.

    images: ``id`` is the image's index in the split. annotations: ``id``
    counts from 1 (COCOeval treats id 0 as "no match"); ``category_id`` is the
    0-based label itself, so predictions need no id mapping; ``bbox`` is
    ``[x, y, width, height]`` of the (amodal) box; ``area`` is the full mask's
    pixel count, the object's true size for COCO's small / medium / large
    ranges; ``iscrowd`` is 0. segmentation: None (boxes only), ``"visible"``
    or ``"full"``: which mask to add, as uncompressed RLE, for segm evaluation.
    ignore: per image, a bool array over its objects; True marks the object
    ``iscrowd`` 1, which COCOeval neither counts as a miss nor lets make a
    false positive of the detection it absorbs (to score a subset of objects).
    """
    if segmentation not in (None, "visible", "full"):
        raise ValueError(f"segmentation: expected None, 'visible' or 'full'; received {segmentation!r}")
    if ignore is not None and len(ignore) != len(split):
        raise ValueError(f"ignore: expected one bool array per image ({len(split)}); received {len(ignore)}")
    h, w = split.images.shape[1:3]
    images = [{"id": i, "width": int(w), "height": int(h), "file_name": f"{i:06d}.png"} for i in range(len(split))]
    annotations = []
    for i in range(len(split)):
        for k, (box, label) in enumerate(zip(split.boxes[i], split.labels[i])):
            x1, y1, x2, y2 = (float(v) for v in box)
            ann = {"id": len(annotations) + 1, "image_id": i, "category_id": int(label),
                   "bbox": [x1, y1, x2 - x1, y2 - y1], "area": float(split.masks[i][k].sum()),
                   "iscrowd": int(bool(ignore[i][k])) if ignore is not None else 0}
            if segmentation is not None:
                mask = (split.visible_masks if segmentation == "visible" else split.masks)[i][k]
                ann["segmentation"] = mask_to_rle(mask)
            annotations.append(ann)
    categories = [{"id": c, "name": name, "supercategory": "shape"} for c, name in enumerate(DETECTION_CLASSES)]
    return {"info": {"description": "TwinVision generated shapes-on-textures detection set"},
            "images": images, "annotations": annotations, "categories": categories}


def pack_targets(targets, num_classes: int, max_objects: int | None = None) -> np.ndarray:
    """Per-image targets as one float32 array [B, M, 5]: rows ``x1, y1, x2, y2, label``.

    targets: a sequence of ``{"boxes": [N_i, 4], "labels": [N_i]}`` (``DetectionSplit.targets``).
    Rows after an image's N_i objects are padding: label -1, box zeros. M is
    ``max_objects``, or the largest N_i (at least 1). A fixed-size array is
    what both twins' trainers index batch by batch (Keras ``fit`` carries no
    ragged lists); the detection losses take it as well as the per-image list.
    Raises ValueError on boxes that are not [N, 4], empty or non-finite boxes,
    labels that are not [N] integers in ``[0, num_classes)``.
    """
    if isinstance(targets, dict) or not hasattr(targets, "__len__"):
        raise ValueError(f"targets: expected a sequence of per-image dicts with 'boxes' and 'labels'; "
                         f"received {type(targets).__name__}")
    checked = [check_target(t, num_classes, f"targets[{i}]") for i, t in enumerate(targets)]
    longest = max([len(labels) for _, labels in checked] + [1])
    m = longest if max_objects is None else int(max_objects)
    if m < longest:
        raise ValueError(f"max_objects: an image has {longest} objects; received max_objects={max_objects}")
    packed = np.zeros((len(checked), m, 5), np.float32)
    packed[:, :, 4] = -1.0
    for i, (boxes, labels) in enumerate(checked):
        packed[i, :len(labels), :4] = boxes
        packed[i, :len(labels), 4] = labels
    return packed


def check_target(target, num_classes: int, name: str = "target") -> tuple[np.ndarray, np.ndarray]:
    """One image's ``{"boxes": [N, 4], "labels": [N]}`` as (float32 boxes, int64 labels), validated."""
    if not isinstance(target, dict) or not {"boxes", "labels"} <= set(target):
        keys = sorted(target) if isinstance(target, dict) else type(target).__name__
        raise ValueError(f"{name}: expected a dict with 'boxes' [N, 4] and 'labels' [N]; received {keys}")
    boxes, labels = np.asarray(target["boxes"]), np.asarray(target["labels"])
    if boxes.ndim != 2 or boxes.shape[-1] != 4:
        raise ValueError(f"{name}['boxes']: expected shape [N, 4] (x1, y1, x2, y2); received shape {boxes.shape}")
    if labels.ndim != 1 or labels.shape[0] != boxes.shape[0]:
        raise ValueError(f"{name}['labels']: expected shape [{boxes.shape[0]}] (one per box); received shape "
                         f"{labels.shape}")
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{name}['labels']: expected integer class ids; received dtype {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"{name}['labels']: expected class ids in [0, {num_classes}); received range "
                         f"[{labels.min()}, {labels.max()}]")
    if not np.isfinite(boxes).all():
        raise ValueError(f"{name}['boxes']: expected finite coordinates; received {boxes.tolist()}")
    if boxes.size and ((boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])).any():
        bad = np.flatnonzero((boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])).tolist()
        raise ValueError(f"{name}['boxes']: expected x2 > x1 and y2 > y1 (x1, y1, x2, y2 order); boxes {bad} are "
                         f"empty or flipped: {boxes[bad].tolist()}")
    return boxes.astype(np.float32), labels.astype(np.int64)


def mask_to_rle(mask: np.ndarray) -> dict:
    """COCO uncompressed RLE of a bool [H, W] mask: run lengths in column-major order, starting with zeros."""
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"mask: expected a bool array of shape [H, W]; received shape {mask.shape}")
    flat = mask.flatten(order="F").astype(np.int8)
    change = np.flatnonzero(np.diff(flat)) + 1
    edges = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(edges).tolist()
    if flat.size and flat[0]:
        counts = [0] + counts          # RLE counts always start with a run of zeros
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": counts}


__all__ = ["DetectionData", "DetectionSplit", "check_target", "detection_split", "load_detection", "mask_to_rle",
           "masks_to_boxes", "pack_targets", "render_detection_image", "to_coco"]


def load(spec) -> DetectionData:
    """The task's data hook (``shared.data.load``): the seeded detection set ``spec.data`` describes."""
    return load_detection(spec.data)


def training_targets(split: DetectionSplit, spec) -> np.ndarray:
    """The task's targets hook (``shared.data.training_targets``): boxes and labels packed as [N, M, 5]."""
    return pack_targets(split.targets, spec.data.num_classes)
