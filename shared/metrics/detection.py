"""COCO box metrics of detections, through pycocotools' COCOeval (the reference implementation).

The ground truth is ``shared.data.detection.to_coco(split)``: image ids are
indices into the split and category ids the 0-based class ids, so the
detections need no id mapping. COCOeval prints as it works; every call here
runs with stdout captured, so nothing reaches the console.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np

from ..data.detection import DetectionSplit, to_coco

# COCOeval.stats, in its order (COCOeval.summarize): AP over IoU .50:.95, at .50, at .75, by object
# size, then AR at 1, 10 and 100 detections per image and by size. Names follow the results contract
# (docs/ARCHITECTURE.md, "Results": quality metrics ``map``, ``map50``).
STAT_NAMES = ("map", "map50", "map75", "map_small", "map_medium", "map_large",
              "ar1", "ar10", "ar100", "ar_small", "ar_medium", "ar_large")


def coco_metrics(predictions, split: DetectionSplit, ignore=None) -> dict:
    """COCO bbox metrics of ``predictions`` against ``split``'s ground truth.

    predictions: one dict per image of the split, in order, with ``boxes``
    [D, 4] (x1, y1, x2, y2 pixels), ``scores`` [D] and ``labels`` [D] (0-based
    class ids): what both twins' ``postprocess`` return. Returns the
    ``STAT_NAMES`` as floats; a size range with no ground-truth object (COCO's
    -1) is None. No detections at all score 0.

    ignore: per image, a bool array over its objects; those objects are left
    out of the score (``to_coco``'s ``iscrowd``): how the occlusion study
    scores one band of visible fraction at a time.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if len(predictions) != len(split):
        raise ValueError(f"predictions: expected one entry per image of the split ({len(split)}); "
                         f"received {len(predictions)}")
    results = []
    for image_id, det in enumerate(predictions):
        boxes, scores, labels = _check_detection(det, f"predictions[{image_id}]")
        for (x1, y1, x2, y2), score, label in zip(boxes.tolist(), scores.tolist(), labels.tolist()):
            results.append({"image_id": image_id, "category_id": int(label),
                            "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(score)})
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = to_coco(split, ignore=ignore)
        gt.createIndex()
        known = set(gt.getCatIds())
        unknown = sorted({r["category_id"] for r in results} - known)
        if unknown:
            raise ValueError(f"predictions: labels {unknown} are not class ids of the data set {sorted(known)}")
        if not results:
            # COCO.loadRes cannot load an empty list; nothing detected means nothing found.
            return {name: 0.0 for name in STAT_NAMES}
        evaluator = COCOeval(gt, gt.loadRes(results), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return {name: (None if value < 0 else float(value)) for name, value in zip(STAT_NAMES, evaluator.stats)}


def _check_detection(det, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if not isinstance(det, dict) or not {"boxes", "scores", "labels"} <= set(det):
        keys = sorted(det) if isinstance(det, dict) else type(det).__name__
        raise ValueError(f"{name}: expected a dict with 'boxes', 'scores' and 'labels'; received {keys}")
    boxes, scores, labels = (np.asarray(det[k]) for k in ("boxes", "scores", "labels"))
    if boxes.ndim != 2 or boxes.shape[-1] != 4:
        raise ValueError(f"{name}['boxes']: expected shape [D, 4] (x1, y1, x2, y2); received shape {boxes.shape}")
    n = boxes.shape[0]
    if scores.shape != (n,) or labels.shape != (n,):
        raise ValueError(f"{name}: expected scores and labels of shape [{n}] (one per box); received "
                         f"{scores.shape} and {labels.shape}")
    return boxes.astype(np.float64), scores.astype(np.float64), labels.astype(np.int64)


__all__ = ["STAT_NAMES", "coco_metrics"]


PRIMARY_METRIC = "map50"


def evaluate(spec, outputs: dict, split: DetectionSplit, postprocess=None) -> dict:
    """The task's metrics hook (``shared.metrics.evaluate_outputs``): raw head outputs, decoded and suppressed
    by the serving framework's ``postprocess``, then COCO metrics."""
    if postprocess is None:
        raise ValueError("detection outputs are raw head outputs: evaluate_outputs needs the twin's postprocess")
    return coco_metrics(postprocess(outputs, spec), split)


def agreement(a: dict, b: dict, spec) -> None:
    """A detector makes no single decision per image to agree on (L5 compares its detections instead)."""
    return None
