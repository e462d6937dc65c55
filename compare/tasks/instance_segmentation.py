"""The instance-segmentation task's harness plug-in (seed answers 7, 21 and 24): how two backends' instances are
compared (L5: the detections as the detection task pairs them, then each pair's pasted masks), the trained
two-stage detector the model starts from, three studies and the claims they grade.

* ``crowding`` (answer 21): held-out scenes of 2-5 touching or overlapping objects of one class. Instances are
  counted from each twin's detections; a semantic segmentation's count is the number of connected regions of
  each class in a class map, taken from the true class map (a perfect semantic segmentation) and from the one
  the twin's own masks paint, whose mIoU is reported beside it.
* ``mask_vs_box`` (answer 24): the mask branch against its own boxes: mask AP of the predicted masks and of the
  predicted boxes filled in as masks, and the twins' mask AP side by side.
* ``masks``: held-out scenes with the true instances and each twin's.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

import numpy as np

from shared.data.instance_segmentation import crowded_split, instance_map, touching_pairs
from shared.metrics.instance_segmentation import (class_map_from_instances, coco_instance_metrics, count_accuracy,
                                                  count_components, count_instances, semantic_miou)
from shared.specs import FRAMEWORKS, get_spec, run_name
from shared.specs.detection import DETECTION_CLASSES
from shared.weights import write_atomic

from ..frameworks import load_twin
from ..stages import REFERENCE
from ..stages.train import Initialisation
from ..studies import EVERY_RUN, MIXED, REFUTED, SUPPORTED, Study, StudyContext
from . import NOT_MEASURABLE, TaskPlugin, study_verdict
from .detection import SERVED_MIN_SCORE, compare_detections, overlap_entry, pair_detections

TASK = "instance_segmentation"
COUNT_SCORE = 0.5        # an instance counts from this score (the picture draws from it too)
COUNT_MARGIN = 0.2       # instance counting beats region counting when its accuracy is this much higher
MASK_MARGIN = 0.05       # masks beat their boxes when their mask AP (0.5:0.95) is this much higher
TWINS_MARGIN = 0.03      # the frameworks' mask AP@.5 within this (the issue's bound)
QUALITY_TARGET = 0.70    # mask AP@.5 on held-out scenes, per framework (the target)
GALLERY_IMAGES = 4


@dataclass(frozen=True)
class Plan:
    """crowded_images: the crowding study's held-out scenes."""

    crowded_images: int


PLANS = {"quick": Plan(crowded_images=32), "standard": Plan(crowded_images=200)}


# ------------------------------------------------------------------------------------- L5 comparison

def compare_instances(spec, name_a: str, a: list[dict], name_b: str, b: list[dict], what: str = "postprocess",
                      min_score: float = 0.0) -> list[dict]:
    """Two backends' instances of the same images: the detections compared as the detection task compares them
    (``compare_detections``), then ``<what>/mask_iou``: the IoU of each pair's pasted masks (``max_abs`` 1 - the
    worst; ``tol`` 1 - ``spec.tolerances.mask_iou``). Two empty masks are equal."""
    entries = compare_detections(spec, name_a, a, name_b, b, what, min_score)
    pairs, unpaired = pair_detections(a, b, min_score)
    ious = []
    for image, i, j, _ in pairs:
        ma, mb = a[image]["masks"][i], b[image]["masks"][j]
        union = int((ma | mb).sum())
        ious.append(1.0 if union == 0 else float((ma & mb).sum()) / union)
    total = sum(int((d["scores"] >= min_score).sum()) for d in a)
    entries.append(overlap_entry(name_a, name_b, f"{what}/mask_iou", ious, unpaired, total, spec.tolerances.mask_iou))
    return entries


# ------------------------------------------------------------------------------------- pretrained detector

def ensure_detector(spec, data, preset: str, cache_of, printer=print):
    """``TaskPlugin.prepare_data``: the run the model starts from (``spec.body_from``, the detection task's
    two-stage detector, which itself starts from the SSD's body) must have its trained reference model in its
    cache before the train stage reads it. Each run of that chain that has not run yet is trained now with the
    reference framework, from the initialisation its own train stage would use, and stored as that stage stores
    it (weights and history), so the detection task's runs reuse it. The data itself is complete."""
    chain, source = [], spec.body_from
    while source:
        task, _, variant = source.partition(".")
        chain.insert(0, (task, variant or None))
        source = get_spec(task, preset, variant or None).body_from
    for task, variant in chain:
        cache = cache_of(run_name(task, variant))
        weights, history_path = cache.path(f"trained-{REFERENCE}.safetensors"), \
            cache.path(f"trained-{REFERENCE}.history.json")
        if weights.exists() and history_path.exists():
            printer(f"    {run_name(task, variant)}'s trained {REFERENCE} model: cached")
            continue
        printer(f"    training {run_name(task, variant)} with {REFERENCE} first (its trained model is where this "
                f"model starts; its own run will reuse it)")
        source_spec, twins = get_spec(task, preset, variant), {REFERENCE: load_twin(REFERENCE, task)}
        initial = Initialisation(twins, cache_of).model(REFERENCE, source_spec)
        model, history = twins[REFERENCE].task.train(source_spec, data, model=initial, progress=False)
        twins[REFERENCE].bridge.save_weights(model, weights, {"task": task, "preset": preset, "device": "cpu"})
        write_atomic(history_path, json.dumps(history))
    return data


# ------------------------------------------------------------------------------------- studies

def _gain_verdict(gains: dict[str, float], margin: float) -> str:
    """Per framework, how much the claim's side beats the other: supported when by ``margin`` in every framework,
    refuted when in none, mixed otherwise."""
    if not gains:
        return NOT_MEASURABLE
    if all(g >= margin for g in gains.values()):
        return SUPPORTED
    if all(g <= 0 for g in gains.values()):
        return REFUTED
    return MIXED


def _instances(ctx: StudyContext, framework: str, images: np.ndarray) -> list[dict]:
    task = ctx.twins[framework].task
    return task.postprocess(task.predict(ctx.models[framework], images), ctx.spec)


def _true_class_map(split, index: int) -> np.ndarray:
    """The class map a perfect semantic segmentation gives: 0 background, label + 1 where an object is visible."""
    ids = instance_map(split.visible_masks[index], split.images.shape[1:3])
    return np.concatenate([[0], split.labels[index] + 1])[ids]


def crowding_study(ctx: StudyContext) -> dict:
    """Counting touching objects of one class: instances against the regions of a class map (answer 21)."""
    plan = PLANS["quick" if ctx.profile == "quick" else "standard"]
    split = crowded_split(ctx.spec, plan.crowded_images)
    size, k = split.images.shape[1:3], ctx.spec.model.num_classes
    truth_counts = [{int(c): int((y == c).sum()) for c in np.unique(y)} for y in split.labels]
    true_maps = [_true_class_map(split, i) for i in range(len(split))]
    region_accuracy = count_accuracy([count_components(m, k) for m in true_maps], truth_counts)
    touching = float(np.mean([touching_pairs(v) > 0 for v in split.visible_masks]))
    true_regions = [count_components(m, k) for m in true_maps]
    rows = [{"framework": "truth", "counted_from": "regions of the true class map", "count_accuracy": region_accuracy,
             "count_error": _count_error(true_regions, truth_counts), "miou": 1.0, "mask_map50": None}]
    gains, lines = {}, []
    for fw in FRAMEWORKS:
        if fw not in ctx.models:
            continue
        found = _instances(ctx, fw, split.images)
        maps = [class_map_from_instances(f, size, k, COUNT_SCORE) for f in found]
        miou = semantic_miou(maps, true_maps, k)
        ap = coco_instance_metrics(found, split)["mask_map50"]
        instances = [count_instances(f, COUNT_SCORE) for f in found]
        regions = [count_components(m, k) for m in maps]
        by_instances, by_regions = count_accuracy(instances, truth_counts), count_accuracy(regions, truth_counts)
        rows += [{"framework": fw, "counted_from": "instances", "count_accuracy": by_instances,
                  "count_error": _count_error(instances, truth_counts), "miou": miou, "mask_map50": ap},
                 {"framework": fw, "counted_from": "regions of its own class map", "count_accuracy": by_regions,
                  "count_error": _count_error(regions, truth_counts), "miou": miou, "mask_map50": ap}]
        gains[fw] = by_instances - region_accuracy
        lines.append(f"{fw}: counts right on {by_instances:.2f} of the scenes from its instances (mean count error "
                     f"{rows[-2]['count_error']:+.2f} objects), {by_regions:.2f} from the regions of the class map its "
                     f"masks paint (mIoU {miou:.3f}; {rows[-1]['count_error']:+.2f}); a perfect class map's regions "
                     f"{region_accuracy:.2f} ({rows[0]['count_error']:+.2f})")
    verdict = _gain_verdict(gains, COUNT_MARGIN)
    return {"title": "Counting touching objects of one class: instances against a class map (seed answer 21)",
            "text": f"{len(split)} held-out scenes of 2 to 5 objects of a single class, each placed against an "
                    f"earlier one ({touching:.0%} of the scenes have objects whose visible pixels touch). A scene "
                    f"counts as right when every class's count is exact: from the instances scoring at least "
                    f"{COUNT_SCORE}, or from the 4-connected regions of each class in a class map, the true one "
                    f"(what a perfect semantic segmentation gives) or the one the twin's own masks paint; count "
                    f"error is the mean of counted minus true objects per scene (below 0: objects merged or "
                    f"missed; per-class NMS at IoU {ctx.spec.postprocess.nms_iou} also removes a detection that "
                    f"overlaps another of its class that much). The claim holds when instances beat the perfect "
                    f"class map by {COUNT_MARGIN} in count accuracy in both frameworks.",
            "columns": ["framework", "counted_from", "count_accuracy", "count_error", "miou", "mask_map50"],
            "rows": rows,
            "plot": {"kind": "bars", "title": "Scenes counted right (touching objects of one class)",
                     "ylabel": "share of scenes", "xlabel": "counted from",
                     "labels": ["instances", "regions of a class map"],
                     "series": {"truth (perfect class map)": [None, region_accuracy],
                                **{fw: [r["count_accuracy"] for r in rows if r["framework"] == fw] for fw in gains}}},
            "verdicts": [{"claim": "Instance segmentation separates and counts touching objects of one class, which "
                                   "a semantic (per-class) segmentation merges",
                          "verdict": verdict, "evidence": "; ".join(lines) or "no trained model in this run"}],
            "images": {}}


def _count_error(counted: list[dict], truth: list[dict]) -> float:
    """Mean over scenes of counted minus true objects (all classes): below 0 where objects merge or go missing."""
    return float(np.mean([sum(c.values()) - sum(t.values()) for c, t in zip(counted, truth)]))


def _boxes_as_masks(found: list[dict], size: tuple[int, int]) -> list[dict]:
    """The same detections with each mask replaced by its box, filled (pixels whose centre lies inside)."""
    h, w = size
    ys, xs = np.arange(h)[:, None] + 0.5, np.arange(w)[None] + 0.5
    out = []
    for f in found:
        masks = np.stack([(xs >= x1) & (xs < x2) & (ys >= y1) & (ys < y2) for x1, y1, x2, y2 in f["boxes"]]) \
            if len(f["boxes"]) else np.zeros((0, h, w), bool)
        out.append({**f, "masks": masks})
    return out


def mask_vs_box_study(ctx: StudyContext) -> dict:
    """Mask AP of the mask branch's masks against the same detections' boxes filled in (answer 24), and the twins'
    mask AP side by side."""
    split = ctx.data.test
    size = split.images.shape[1:3]
    rows, gains, scores, lines = [], {}, {}, []
    for fw in FRAMEWORKS:
        if fw not in ctx.models:
            continue
        found = _instances(ctx, fw, split.images)
        masks = coco_instance_metrics(found, split)
        boxes = coco_instance_metrics(_boxes_as_masks(found, size), split)
        for what, m in (("predicted masks", masks), ("boxes filled in", boxes)):
            rows.append({"framework": fw, "masks": what, "mask_map": m["mask_map"], "mask_map50": m["mask_map50"],
                         "mask_map75": m["mask_map75"], "box_map50": m["box_map50"]})
        gains[fw] = masks["mask_map"] - boxes["mask_map"]
        scores[fw] = masks["mask_map50"]
        lines.append(f"{fw}: mask AP {masks['mask_map']:.3f} (AP@.5 {masks['mask_map50']:.3f}) from its masks, "
                     f"{boxes['mask_map']:.3f} ({boxes['mask_map50']:.3f}) from its boxes filled in")
    verdict = _gain_verdict(gains, MASK_MARGIN)
    verdicts = [{"claim": "The mask branch adds pixel-level masks that follow object boundaries beyond the boxes of "
                          "the Faster R-CNN detector it extends",
                 "verdict": verdict, "evidence": "; ".join(lines) or "no trained model in this run"}]
    if len(scores) == 2:
        gap = abs(scores["torch"] - scores["tensorflow"])
        met = all(s >= QUALITY_TARGET for s in scores.values())
        verdicts.append({"claim": "PyTorch and TensorFlow train Mask R-CNN-style models of the same quality",
                         "verdict": SUPPORTED if gap <= TWINS_MARGIN else REFUTED,
                         "evidence": f"mask AP@.5 on held-out scenes: torch {scores['torch']:.3f}, tensorflow "
                                     f"{scores['tensorflow']:.3f} (gap {gap:.3f}, bound {TWINS_MARGIN}); "
                                     f"target {QUALITY_TARGET} {'met' if met else 'not met'} in both"})
    return {"title": "Masks against boxes (seed answer 24)",
            "text": "COCO mask AP (pycocotools, iouType segm) on the held-out scenes of each framework's own trained "
                    "model, once with the mask branch's masks and once with each detection's box filled in as its "
                    f"mask: the same detections and scores, so the difference is what the mask branch adds. The "
                    f"claim holds when the masks' AP over IoU .50:.95 is {MASK_MARGIN} higher in both frameworks.",
            "columns": ["framework", "masks", "mask_map", "mask_map50", "mask_map75", "box_map50"], "rows": rows,
            "plot": {"kind": "bars", "title": "Mask AP: predicted masks against filled boxes", "ylabel": "AP",
                     "xlabel": "metric (series: framework and masks)", "labels": ["mask AP .50:.95", "mask AP@.5"],
                     "series": {f"{r['framework']} {r['masks']}": [r["mask_map"], r["mask_map50"]] for r in rows}},
            "verdicts": verdicts, "images": {}}


def masks_picture(ctx: StudyContext) -> dict:
    """A PNG: held-out scenes, the true instances and each twin's, each instance in its own colour."""
    from PIL import Image, ImageDraw

    n = min(GALLERY_IMAGES, len(ctx.data.test))
    split = ctx.data.test.head(n)
    columns = {"ground truth": [{"boxes": b, "labels": y, "scores": np.ones(len(y)), "masks": m}
                                for b, y, m in zip(split.boxes, split.labels, split.visible_masks)]}
    for fw in FRAMEWORKS:
        if fw in ctx.models:
            columns[f"{fw} (own model)"] = _instances(ctx, fw, split.images)
    palette = np.array([(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
                        (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212)], np.float32)
    scale, pad, top = 2, 6, 16
    side = split.images.shape[1] * scale
    canvas = Image.new("RGB", (len(columns) * (side + pad) + pad, n * (side + pad) + pad + top), "white")
    draw = ImageDraw.Draw(canvas)
    for c, (title, found) in enumerate(columns.items()):
        x0 = pad + c * (side + pad)
        draw.text((x0, 2), title, fill="black")
        for r in range(n):
            y0 = top + pad + r * (side + pad)
            tile = np.clip(split.images[r], 0, 1) * 255
            keep = [i for i, s in enumerate(found[r]["scores"]) if s >= COUNT_SCORE]
            for colour, i in enumerate(sorted(keep, key=lambda i: found[r]["scores"][i])):
                mask = found[r]["masks"][i]
                tile[mask] = 0.45 * tile[mask] + 0.55 * palette[colour % len(palette)]
            picture = Image.fromarray(tile.astype(np.uint8)).resize((side, side), Image.NEAREST)
            canvas.paste(picture, (x0, y0))
            for i in keep:
                x1, y1, x2, y2 = (float(v) * scale for v in found[r]["boxes"][i])
                draw.rectangle([x0 + x1, y0 + y1, x0 + x2, y0 + y2], outline="white", width=1)
                draw.text((x0 + x1 + 2, y0 + y1 + 1), DETECTION_CLASSES[int(found[r]["labels"][i])], fill="white")
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    path = write_atomic(ctx.cache.path("instances.png"), buffer.getvalue())
    return {"title": "Predicted instances on held-out scenes (seed answer 24)",
            "text": f"The first {n} test scenes: the true instances (visible pixels, amodal boxes), then each "
                    f"framework's own trained model (instances scoring at least {COUNT_SCORE}; one colour per "
                    f"instance, class written at its box). Masks are pasted from each detection's proposal frame "
                    f"and thresholded at {ctx.spec.mask.threshold}, in the post-processing of the framework that "
                    f"serves them ({ctx.spec.export_limit}).",
            "columns": [], "rows": [], "plot": None, "verdicts": [], "images": {"instances": str(path)}}


PLUGIN = TaskPlugin(
    studies=(Study(crowding_study, "crowding", (21,)), Study(mask_vs_box_study, "mask_vs_box", (24,)),
             Study(masks_picture, "masks", (24,), runs=EVERY_RUN)),
    claims=(
        ("instances-count", "21", "Instance segmentation tells apart and counts touching objects of the same class, "
         "which semantic segmentation merges into one region", study_verdict(run_name(TASK), "crowding")),
        ("instances-mask-branch", "24", "Mask R-CNN's mask branch adds object masks that follow boundaries beyond "
         "the detector's boxes", study_verdict(run_name(TASK), "mask_vs_box", 0)),
        ("instances-twins", "24", "PyTorch and TensorFlow train Mask R-CNN-style models of the same quality",
         study_verdict(run_name(TASK), "mask_vs_box", 1)),
    ),
    compare_postprocessed=compare_instances,
    served_min_score=SERVED_MIN_SCORE,
    prepare_data=ensure_detector,
)

__all__ = ["PLUGIN", "compare_instances", "crowding_study", "ensure_detector", "mask_vs_box_study", "masks_picture"]
