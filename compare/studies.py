"""Studies: what a task measures beyond the harness's common steps, with the seed's claims they grade.

``STUDIES[task]`` lists a task's studies. Each is a function ``study(ctx) -> dict`` that the harness
calls after the task's models are trained (``StudyContext``); ``Study.variants`` says whether it also
runs for the task's variants (``TaskEntry.variants``). A study returns::

    {"title", "text",                             # what it measures and how
     "columns", "rows",                           # its table
     "plot": {"kind", ...} | None,                # drawn by compare.report.plots.study_plot
     "verdicts": [{"claim", "verdict", "evidence"}],
     "images": {name: path}}                      # PNG files (in the cache) the report embeds

to which the harness adds the ``Study``'s ``name`` and ``seed_answers``; the report renders every
study the same way. Studies reuse what the harness cached (trained
weights) and cache what they train themselves, so a warm report redoes none of it.
"""

from __future__ import annotations

import dataclasses
import io
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from shared.specs import FRAMEWORKS
from shared.weights import write_atomic

# The seed's verdict words, as compare.claims uses them.
SUPPORTED, REFUTED, MIXED = "supported", "refuted", "mixed"


@dataclass
class StudyContext:
    """What a study may use: the spec and data of the run, both twins, each framework's own trained
    model (``models``), the run's cache (``cache.path(name)``, ``cache.artifact(name, make)``), a
    printer for progress lines, and ``initial_model(framework, spec)``: a fresh model holding the
    run's shared initialisation, to train a study's own models from the same start as the run's."""

    spec: Any
    data: Any
    twins: dict
    models: dict
    cache: Any
    printer: Callable[[str], None] = print
    initial_model: Callable | None = None


@dataclass(frozen=True)
class Study:
    """A registered study: ``run(ctx)`` returns the dict described in the module docstring, whose ``name``
    (the report's anchor ``study-<run>-<name>``) and ``seed_answers`` are these."""

    run: Callable[[StudyContext], dict]
    name: str
    seed_answers: tuple[int, ...]
    variants: bool = False  # also for the task's variants (each with its own spec and models)


# --------------------------------------------------------------------------------- detection

def _detections(ctx: StudyContext, framework: str, model, images: np.ndarray) -> list[dict]:
    task = ctx.twins[framework].task
    return task.postprocess(task.predict(model, images), ctx.spec)


def detection_boxes_picture(ctx: StudyContext, count: int = 6, min_score: float = 0.5) -> dict:
    """Predicted boxes of each framework's own model on held-out images, side by side with the truth."""
    from PIL import Image, ImageDraw

    from shared.specs.detection import DETECTION_CLASSES

    split = ctx.data.test.head(count)
    columns = {"ground truth": [{"boxes": b, "labels": y, "scores": np.ones(len(y))} for b, y in
                                zip(split.boxes, split.labels)]}
    for fw in FRAMEWORKS:
        if fw in ctx.models:
            columns[f"{fw} (own model)"] = _detections(ctx, fw, ctx.models[fw], split.images)
    scale, pad, top = 2, 6, 16
    side = split.images.shape[1] * scale
    canvas = Image.new("RGB", (len(columns) * (side + pad) + pad, count * (side + pad) + pad + top), "white")
    draw = ImageDraw.Draw(canvas)
    palette = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180)]
    for c, (title, dets) in enumerate(columns.items()):
        x0 = pad + c * (side + pad)
        draw.text((x0, 2), title, fill="black")
        for r in range(count):
            y0 = top + pad + r * (side + pad)
            tile = Image.fromarray((np.clip(split.images[r], 0, 1) * 255).astype(np.uint8))
            canvas.paste(tile.resize((side, side), Image.NEAREST), (x0, y0))
            det = dets[r]
            for box, label, score in zip(det["boxes"], det["labels"], det["scores"]):
                if score < min_score:
                    continue
                x1, y1, x2, y2 = (float(v) * scale for v in box)
                color = palette[int(label) % len(palette)]
                draw.rectangle([x0 + x1, y0 + y1, x0 + x2, y0 + y2], outline=color, width=2)
                caption = DETECTION_CLASSES[int(label)] + ("" if title == "ground truth" else f" {score:.2f}")
                draw.text((x0 + x1 + 2, y0 + y1 + 1), caption, fill=color)
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    path = write_atomic(ctx.cache.path("boxes.png"), buffer.getvalue())
    return {"title": f"Predicted boxes ({ctx.spec.model.detector}) on held-out images",
            "text": f"The first {count} test images: the ground truth, then each framework's own trained model "
                    f"(boxes scoring at least {min_score}, class and score written at the box). Where NMS runs: "
                    f"after the network, never inside an exported graph. Every export (ONNX from both twins, "
                    f"TFLite from the TensorFlow one) ends at the raw head outputs; box decoding and per-class NMS "
                    f"run in the post-processing of the framework that serves it, and the parity rows "
                    f"'backends/served/...' compare those detections with torch's."
                    + (f" This detector's exports stop earlier: {ctx.spec.export_limit}."
                       if getattr(ctx.spec, "export_limit", None) else ""),
            "columns": [], "rows": [], "plot": None, "verdicts": [], "images": {"boxes": str(path)}}


def anchor_study(ctx: StudyContext) -> dict:
    """Recall of the validation boxes by several anchor sets (seed answer 23)."""
    from shared.anchors import anchor_study as recall_table
    from shared.anchors import study_configs

    spec = ctx.spec
    rows = recall_table(study_configs(spec.anchors), spec.data.image_size, ctx.data.val.boxes)
    for row in rows:
        row["anchors_per_cell"] = "/".join(map(str, row["anchors_per_cell"]))
    by_name = {r["config"]: r for r in rows}
    one_level = next(r for r in rows if r["config"].startswith("one level"))
    base, one_size = by_name["base"], by_name["1 size per level"]
    multi_scale = base["recall@0.5"] - one_level["recall@0.5"]
    multi_size = base["recall@0.5"] - one_size["recall@0.5"]
    ratios = by_name["ratios 1:2, 1:1, 2:1"]["recall@0.5"] - by_name["square only"]["recall@0.5"]
    verdict = SUPPORTED if multi_scale > 0.05 and multi_size > 0.05 else MIXED if max(multi_scale, multi_size) > 0.05 \
        else REFUTED
    evidence = (f"recall of validation boxes at IoU 0.5: base {base['recall@0.5']:.3f}; one level "
                f"{one_level['recall@0.5']:.3f} ({multi_scale:+.3f} for several levels); one size per level "
                f"{one_size['recall@0.5']:.3f} ({multi_size:+.3f} for several sizes); 1:2/1:1/2:1 ratios against "
                f"square only {ratios:+.3f} (the shapes' boxes are nearly square, so extra ratios buy little here)")
    return {"title": "Anchor sets: recall of ground-truth boxes (seed answer 23)",
            "text": "Share of the validation split's boxes that some anchor overlaps at IoU >= 0.5 (and 0.7), and "
                    "at 0.5 per COCO size range: what the matcher can ever assign. Each row changes one thing of "
                    "the base set (the detector's own).",
            "columns": ["config", "anchors", "anchors_per_cell", "recall@0.5", "recall@0.7", "recall_small",
                        "recall_medium", "recall_large", "boxes"],
            "rows": rows,
            "plot": {"kind": "bars", "title": "Anchor recall of ground-truth boxes", "ylabel": "recall",
                     "labels": [r["config"] for r in rows],
                     "series": {f"IoU {t}": [r[f"recall@{t}"] for r in rows] for t in ("0.5", "0.7")}},
            "verdicts": [{"claim": "Anchors of several sizes and aspect ratios at several scales let one detector "
                                   "cover objects of varied size and shape", "verdict": verdict,
                          "evidence": evidence}],
            "images": {}}


# Bands of visible fraction (the share of an object's pixels no later object covers).
VISIBLE_BANDS = ((0.15, 0.5), (0.5, 0.8), (0.8, 0.999), (0.999, 1.0))
ERASING_PROBABILITY = 0.5


def _band_label(lo: float, hi: float) -> str:
    return "fully visible" if lo >= 0.999 else f"{lo:g}-{min(hi, 1.0):g}"


def _box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    from shared.anchors import box_iou

    return box_iou(a.astype(np.float32), b.astype(np.float32)) if len(a) and len(b) else np.zeros((len(a), len(b)))


def occlusion_scores(split, detections: list[dict], bands=VISIBLE_BANDS, min_score: float = 0.3) -> list[dict]:
    """Per band of visible fraction: COCO mAP@.5 (class-aware and class-agnostic) over that band's objects,
    the others ignored; and, for its objects found by a detection of the right class (IoU >= 0.5 with the
    full box or with the visible part's box, score >= ``min_score``), the mean IoU of that detection with
    the object's full (amodal) box and with its visible part's box."""
    from shared.data.detection import masks_to_boxes
    from shared.metrics.detection import coco_metrics

    agnostic_split = dataclasses.replace(split, labels=tuple(np.zeros_like(y) for y in split.labels))
    agnostic = [dict(d, labels=np.zeros_like(d["labels"])) for d in detections]
    visible_boxes = [masks_to_boxes(m) if len(m) else np.zeros((0, 4), np.float32) for m in split.visible_masks]
    rows = []
    for lo, hi in bands:
        inside = [(v >= lo) & ((v < hi) if hi < 1.0 else (v <= 1.0)) for v in split.visible_fraction]
        ignore = [~m for m in inside]
        count = int(sum(m.sum() for m in inside))
        row = {"band": _band_label(lo, hi), "low": lo, "high": hi, "objects": count}
        if count:
            row["map50"] = coco_metrics(detections, split, ignore)["map50"]
            row["map50_agnostic"] = coco_metrics(agnostic, agnostic_split, ignore)["map50"]
            full, visible = [], []
            for i, det in enumerate(detections):
                keep = det["scores"] >= min_score
                boxes, labels = np.asarray(det["boxes"])[keep], np.asarray(det["labels"])[keep]
                for k in np.flatnonzero(inside[i]):
                    same = labels == split.labels[i][k]
                    if not same.any():
                        continue
                    iou_full = _box_iou(split.boxes[i][k:k + 1], boxes[same])[0]
                    iou_vis = _box_iou(visible_boxes[i][k:k + 1], boxes[same])[0]
                    best = int(np.argmax(np.maximum(iou_full, iou_vis)))
                    if max(iou_full[best], iou_vis[best]) >= 0.5:
                        full.append(float(iou_full[best]))
                        visible.append(float(iou_vis[best]))
            row["found"] = len(full)
            row["iou_full_box"] = float(np.mean(full)) if full else None
            row["iou_visible_box"] = float(np.mean(visible)) if visible else None
        rows.append(row)
    return rows


def occlusion_study(ctx: StudyContext) -> dict:
    """mAP against visible fraction, with and without random erasing, in both frameworks (seed answer 19)."""
    from shared.specs.detection import ErasingSpec

    spec, data = ctx.spec, ctx.data
    erasing_spec = dataclasses.replace(spec, erasing=ErasingSpec(probability=ERASING_PROBABILITY))
    rows, series = [], {}
    for fw, twin in ctx.twins.items():
        if fw not in ctx.models:
            continue
        weights = ctx.cache.path(f"trained-{fw}-erasing.safetensors")
        if weights.exists():
            erased = twin.bridge.load_weights(twin.task.build_model(erasing_spec), weights)
        else:
            ctx.printer(f"    occlusion study: training {fw} with random erasing (p {ERASING_PROBABILITY})")
            start = ctx.initial_model(fw, erasing_spec) if ctx.initial_model else None
            erased, _ = twin.task.train(erasing_spec, data, model=start, progress=False)
            twin.bridge.save_weights(erased, weights, {"study": "occlusion", "erasing": ERASING_PROBABILITY})
        for training, model in (("plain", ctx.models[fw]), ("random erasing", erased)):
            scores = occlusion_scores(data.test, _detections(ctx, fw, model, data.test.images))
            rows += [{"framework": fw, "training": training, **row} for row in scores]
            series[f"{fw} {training}"] = [row.get("map50") for row in scores]
    return {"title": "Occlusion: mAP@.5 against visible fraction (seed answer 19)",
            "text": "Test objects grouped by the share of their pixels left visible by the objects painted over "
                    "them; each band scored alone (COCO mAP@.5 with the other objects ignored). 'random erasing': "
                    f"the same detector and recipe trained with each framework's RandomErasing (p "
                    f"{ERASING_PROBABILITY}, {erasing_spec.erasing.scale[0]:g}-{erasing_spec.erasing.scale[1]:g} of "
                    "the area, noise fill). 'agnostic': classes ignored, so the gap to mAP@.5 is the cost of wrong "
                    "classes. IoU columns: the detections that found an object, against its full (amodal) box "
                    "and against the box of its visible part.",
            "columns": ["framework", "training", "band", "objects", "map50", "map50_agnostic", "found",
                        "iou_full_box", "iou_visible_box"],
            "rows": rows,
            "plot": {"kind": "lines", "title": "mAP@.5 by visible fraction", "xlabel": "visible fraction (band)",
                     "ylabel": "mAP@.5", "labels": [_band_label(*band) for band in VISIBLE_BANDS],
                     "series": series},
            "verdicts": _occlusion_verdicts(rows),
            "images": {}}


def _occlusion_verdicts(rows: list[dict]) -> list[dict]:
    def pick(fw, training, band_index):
        picked = [r for r in rows if r["framework"] == fw and r["training"] == training]
        return picked[band_index] if len(picked) > band_index else {}

    frameworks = list(dict.fromkeys(r["framework"] for r in rows))
    if not frameworks:
        return []
    low, full = 0, len(VISIBLE_BANDS) - 1
    drops = {fw: (pick(fw, "plain", full).get("map50") or 0) - (pick(fw, "plain", low).get("map50") or 0)
             for fw in frameworks}
    gains = {fw: (pick(fw, "random erasing", low).get("map50") or 0) - (pick(fw, "plain", low).get("map50") or 0)
             for fw in frameworks}
    shrink = {fw: (pick(fw, "plain", low).get("iou_visible_box") or 0) - (pick(fw, "plain", low).get("iou_full_box")
                                                                          or 0) for fw in frameworks}
    class_gap = {fw: ((pick(fw, "plain", low).get("map50_agnostic") or 0) - (pick(fw, "plain", low).get("map50") or 0))
                 - ((pick(fw, "plain", full).get("map50_agnostic") or 0) - (pick(fw, "plain", full).get("map50") or 0))
                 for fw in frameworks}

    def grade(values: dict, threshold: float) -> str:
        hits = sum(v > threshold for v in values.values())
        return SUPPORTED if hits == len(values) else REFUTED if hits == 0 else MIXED

    def show(values: dict) -> str:
        return ", ".join(f"{fw} {v:+.3f}" for fw, v in values.items())

    band_low, band_full = _band_label(*VISIBLE_BANDS[low]), _band_label(*VISIBLE_BANDS[full])
    return [
        {"claim": "Occlusion lowers detection quality", "verdict": grade(drops, 0.05),
         "evidence": f"mAP@.5 of fully visible objects minus that of objects {band_low} visible: {show(drops)}"},
        {"claim": "Boxes of occluded objects shrink to their visible part", "verdict": grade(shrink, 0.0),
         "evidence": f"objects {band_low} visible, found: mean IoU with the visible part's box minus mean IoU "
                     f"with the full box: {show(shrink)} (positive: the boxes follow the visible part)"},
        {"claim": "Occlusion hurts classification more than finding the object", "verdict": grade(class_gap, 0.02),
         "evidence": f"(class-agnostic - class-aware mAP@.5) for {band_low} visible minus the same for "
                     f"{band_full}: {show(class_gap)}"},
        {"claim": "Training with simulated occlusion (random erasing) makes detection more robust to it",
         "verdict": grade(gains, 0.02),
         "evidence": f"mAP@.5 of objects {band_low} visible, random erasing minus plain training: {show(gains)}"},
    ]


STUDIES: dict[str, list[Study]] = {
    "detection": [Study(detection_boxes_picture, "boxes", (5,), variants=True),
                  Study(anchor_study, "anchors", (23,)),
                  Study(occlusion_study, "occlusion", (19,))],
}


def studies_for(task: str, variant: str | None) -> list[Study]:
    return [s for s in STUDIES.get(task, []) if variant is None or s.variants]


__all__ = ["STUDIES", "Study", "StudyContext", "VISIBLE_BANDS", "anchor_study", "detection_boxes_picture",
           "occlusion_scores", "occlusion_study", "studies_for"]
