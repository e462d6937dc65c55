"""COCO mask and box metrics of instance segmentations, and the counting measures of the crowded-scenes study.

Quality: pycocotools' COCOeval (the reference implementation) run twice on the same detections, once with
iouType ``"segm"`` (IoU of the masks) and once with ``"bbox"`` (IoU of the boxes). The ground truth is
``shared.data.detection.to_coco(split, segmentation="visible")``: the VISIBLE mask of each object (what the
task predicts) and its amodal box; image ids are indices into the split and category ids the 0-based class
ids, so detections need no id mapping. A detection's mask goes to COCOeval as the compressed RLE of
``pycocotools.mask.encode``. Keys are ``mask_<stat>`` and ``box_<stat>`` for the ``STAT_NAMES`` of
``shared.metrics.detection`` (``mask_map``, ``mask_map50``, ..., ``box_map50``, ...). COCOeval prints as it
works; every call here runs with stdout captured.

Counting (seed answers 21 and 24): in a scene of touching objects of one class, a semantic class map merges the
objects into one region, so counting its connected components (``count_components``) under-counts them, while
an instance segmentation counts them one by one (``count_instances``). ``class_map_from_instances`` turns
instances into the class map a semantic model would have to predict, ``count_accuracy`` scores counts against
the truth and ``semantic_miou`` compares class maps. Here ``num_classes`` is the number of OBJECT classes
(``spec.data.num_classes``, the detection set's six): class maps hold 0 (background) to ``num_classes``
(label + 1), the semantic task's ``1 + num_classes`` classes.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np

from ..data.detection import DetectionSplit, to_coco
from .detection import STAT_NAMES, _check_detection
from .semantic_segmentation import confusion_matrix, iou_from_confusion

PRIMARY_METRIC = "mask_map50"


def coco_instance_metrics(predictions, split: DetectionSplit, ignore=None) -> dict:
    """COCO segm and bbox metrics of ``predictions`` against ``split``'s visible masks and amodal boxes.

    predictions: one dict per image of the split, in order, with ``boxes`` [D, 4] (x1, y1, x2, y2 pixels),
    ``scores`` [D], ``labels`` [D] (0-based class ids) and ``masks`` bool [D, H, W] (the split's H, W): what
    both twins' ``postprocess`` return. Returns ``mask_<stat>`` and ``box_<stat>`` for each of ``STAT_NAMES``
    as floats; a size range with no ground-truth object (COCO's -1) is None. No detections at all score 0.

    ignore: per image, a bool array over its objects; those objects are left out of the score (``to_coco``'s
    ``iscrowd``), as in ``shared.metrics.detection.coco_metrics``.
    """
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if len(predictions) != len(split):
        raise ValueError(f"predictions: expected one entry per image of the split ({len(split)}); "
                         f"received {len(predictions)}")
    size = tuple(int(v) for v in split.images.shape[1:3])
    box_results, mask_results = [], []
    for image_id, det in enumerate(predictions):
        boxes, scores, labels, masks = _check_instances(det, size, f"predictions[{image_id}]")
        for (x1, y1, x2, y2), score, label, mask in zip(boxes.tolist(), scores.tolist(), labels.tolist(), masks):
            box_results.append({"image_id": image_id, "category_id": int(label),
                                "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(score)})
            # Only "segmentation" (no "bbox"): loadRes then takes the detection's area from its mask.
            mask_results.append({"image_id": image_id, "category_id": int(label), "score": float(score),
                                 "segmentation": mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))})
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = to_coco(split, segmentation="visible", ignore=ignore)
        gt.createIndex()
        known = set(gt.getCatIds())
        unknown = sorted({r["category_id"] for r in box_results} - known)
        if unknown:
            raise ValueError(f"predictions: labels {unknown} are not class ids of the data set {sorted(known)}")
        if not box_results:
            # COCO.loadRes cannot load an empty list; nothing detected means nothing found.
            return {f"{prefix}_{name}": 0.0 for prefix in ("mask", "box") for name in STAT_NAMES}
        out = {}
        for prefix, iou_type, results in (("mask", "segm", mask_results), ("box", "bbox", box_results)):
            evaluator = COCOeval(gt, gt.loadRes(results), iou_type)
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
            out.update({f"{prefix}_{name}": (None if value < 0 else float(value))
                        for name, value in zip(STAT_NAMES, evaluator.stats)})
    return out


def _check_instances(det, size: tuple[int, int], name: str):
    """One image's detections as (float64 boxes, float64 scores, int64 labels, bool masks [D, H, W]), validated."""
    boxes, scores, labels = _check_detection(det, name)
    if "masks" not in det:
        raise ValueError(f"{name}: expected a dict with 'boxes', 'scores', 'labels' and 'masks' [D, H, W]; "
                         f"received {sorted(det)}")
    masks = np.asarray(det["masks"])
    expected = (len(boxes), *size)
    if masks.shape != expected:
        raise ValueError(f"{name}['masks']: expected shape [{expected[0]}, {expected[1]}, {expected[2]}] (one "
                         f"{size[0]} x {size[1]} mask per box, the split's image size); received shape "
                         f"{list(masks.shape)}")
    if masks.dtype != bool:
        if masks.size and not np.isin(masks, (0, 1)).all():
            raise ValueError(f"{name}['masks']: expected bool masks (threshold mask probabilities first); "
                             f"received dtype {masks.dtype} with values from {masks.min()} to {masks.max()}")
        masks = masks.astype(bool)
    return boxes, scores, labels, masks


def evaluate(spec, outputs: dict, split: DetectionSplit, postprocess=None) -> dict:
    """The task's metrics hook (``shared.metrics.evaluate_outputs``): raw head outputs, decoded, suppressed and
    pasted into masks by the serving framework's ``postprocess``, then COCO mask and box metrics."""
    if postprocess is None:
        raise ValueError("instance-segmentation outputs are raw head outputs: evaluate_outputs needs the twin's "
                         "postprocess")
    return coco_instance_metrics(postprocess(outputs, spec), split)


def agreement(a: dict, b: dict, spec) -> None:
    """An instance segmenter makes no single decision per image to agree on (L5 compares its post-processed
    instances, boxes and pasted masks, instead)."""
    return None


def class_map_from_instances(prediction: dict, size: tuple[int, int], num_classes: int,
                             min_score: float = 0.5) -> np.ndarray:
    """int64 [H, W] class map of one image's instances: 0 background, label + 1 where a detection's mask is.

    Detections scoring at least ``min_score`` are painted in ascending score order, so where masks overlap the
    higher score wins (equal scores: the later detection).
    """
    _, scores, labels, masks = _check_instances(prediction, tuple(size), "prediction")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"prediction['labels']: expected class ids in [0, {num_classes}); received range "
                         f"[{labels.min()}, {labels.max()}]")
    out = np.zeros(tuple(size), dtype=np.int64)
    for k in np.argsort(scores, kind="stable"):
        if scores[k] >= min_score:
            out[masks[k]] = labels[k] + 1
    return out


def count_instances(prediction: dict, min_score: float = 0.5) -> dict[int, int]:
    """{label: number of detections scoring at least ``min_score``} of one image (labels with none left out)."""
    _, scores, labels = _check_detection(prediction, "prediction")
    kept, counts = np.unique(labels[scores >= min_score], return_counts=True)
    return {int(label): int(count) for label, count in zip(kept, counts)}


def count_components(class_map: np.ndarray, num_classes: int) -> dict[int, int]:
    """{label: number of 4-connected regions of class label + 1} in one [H, W] class map (labels with none left
    out): the count a semantic segmentation gives, which merges touching objects of one class."""
    from scipy import ndimage

    class_map = np.asarray(class_map)
    if class_map.ndim != 2:
        raise ValueError(f"class_map: expected an [H, W] array of class ids; received shape {list(class_map.shape)}")
    if class_map.size and (class_map.min() < 0 or class_map.max() > num_classes):
        raise ValueError(f"class_map: expected class ids in [0, {num_classes}] (0 background, label + 1); "
                         f"received values from {int(class_map.min())} to {int(class_map.max())}")
    counts = {}
    for label in range(num_classes):
        _, n = ndimage.label(class_map == label + 1)     # scipy's default structure: the 4-neighbour cross
        if n:
            counts[label] = int(n)
    return counts


def count_accuracy(predicted_counts, true_counts) -> float:
    """The fraction of images whose per-class counts all equal the truth (a label absent from a dict counts 0).

    predicted_counts, true_counts: one ``{label: count}`` dict per image, in the same order.
    """
    if len(predicted_counts) != len(true_counts):
        raise ValueError(f"predicted_counts: expected one dict per image ({len(true_counts)}); received "
                         f"{len(predicted_counts)}")
    if not len(true_counts):
        raise ValueError("true_counts: expected at least one image; received none")
    right = 0
    for predicted, truth in zip(predicted_counts, true_counts):
        labels = set(predicted) | set(truth)
        right += all(predicted.get(label, 0) == truth.get(label, 0) for label in labels)
    return right / len(true_counts)


def semantic_miou(pred_maps: np.ndarray, true_maps: np.ndarray, num_classes: int) -> float:
    """Mean IoU over the ``1 + num_classes`` classes of [N, H, W] class maps (background included, a class absent
    from both left out), from ``shared.metrics.semantic_segmentation``'s bincount confusion matrix."""
    iou = iou_from_confusion(confusion_matrix(np.asarray(pred_maps), np.asarray(true_maps), num_classes + 1))
    return float(np.nanmean(iou))


__all__ = ["PRIMARY_METRIC", "agreement", "class_map_from_instances", "coco_instance_metrics", "count_accuracy",
           "count_components", "count_instances", "evaluate", "semantic_miou"]
