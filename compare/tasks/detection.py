"""The detection task's harness plug-in: how post-processed detections are compared (L5), its studies
(predicted boxes, anchor recall, occlusion; seed answers 5, 19 and 23) and the claim of answer 5 that
single-shot detectors are faster than two-stage ones."""

from __future__ import annotations

import dataclasses
import io

import numpy as np

from shared.anchors import anchor_study as anchor_recall_table
from shared.anchors import box_iou, study_configs
from shared.data.detection import masks_to_boxes
from shared.metrics.detection import coco_metrics
from shared.specs import FRAMEWORKS
from shared.specs.detection import DETECTION_CLASSES, ErasingSpec
from shared.weights import write_atomic

from ..claims import NOT_MEASURABLE, speed_row, faster, noise_bound, timing_line, verdict_from
from ..parity import entry
from ..studies import EVERY_RUN, MIXED, REFUTED, SUPPORTED, Study, StudyContext
from . import TaskPlugin

# Served detections are compared from this score up: well above the post-processing's own score cut
# (0.01), where float noise between backends can move a detection across it.
SERVED_MIN_SCORE = 0.05


# ------------------------------------------------------------------------------------- L5 comparison

def pair_detections(a: list[dict], b: list[dict], min_score: float = 0.0) -> tuple[list[tuple], int]:
    """Per image, each detection of ``a`` scoring at least ``min_score`` paired with the not yet paired detection
    of ``b`` of the same class that overlaps it most (of any score, so a partner that fell just under the cut
    still pairs). Returns the pairs ``(image, index in a, index in b, box IoU)`` and how many found no partner."""
    pairs, unpaired = [], 0
    for image, (da, db) in enumerate(zip(a, b)):
        free = np.ones(len(db["scores"]), bool)
        for i in np.flatnonzero(da["scores"] >= min_score):
            candidates = np.flatnonzero(free & (db["labels"] == da["labels"][i]))
            if not candidates.size:
                unpaired += 1
                continue
            with np.errstate(divide="ignore", invalid="ignore"):
                overlap = box_iou(da["boxes"][i:i + 1], db["boxes"][candidates])[0]
            # Two identical empty boxes (clipped to an image edge) have IoU 0/0: count them as equal.
            same = np.abs(db["boxes"][candidates] - da["boxes"][i]).max(axis=1) == 0
            overlap = np.where(same, 1.0, np.nan_to_num(overlap))
            j = candidates[int(np.argmax(overlap))]
            free[j] = False
            pairs.append((image, int(i), int(j), float(overlap.max())))
    return pairs, unpaired


def compare_detections(spec, name_a: str, a: list[dict], name_b: str, b: list[dict], what: str = "postprocess",
                       min_score: float = 0.0) -> list[dict]:
    """Two sets of post-processed detections of the same images, compared.

    Detections are paired by ``pair_detections``. Entries: ``<what>/detections`` (per image, how many score at
    least ``min_score``; exactly equal when ``min_score`` is 0), ``<what>/box_iou`` (``max_abs`` is 1 - the
    worst pair's IoU, or 1 when a detection has no partner; ``tol`` is 1 - ``spec.tolerances.postprocess_iou``)
    and ``<what>/scores`` (paired scores, within ``postprocess_score`` absolute).
    """
    counts = [np.array([int((d["scores"] >= min_score).sum()) for d in side], np.float64) for side in (a, b)]
    pairs, unpaired = pair_detections(a, b, min_score)
    ious = [iou for *_, iou in pairs]
    scores_a = [float(a[image]["scores"][i]) for image, i, _, _ in pairs]
    scores_b = [float(b[image]["scores"][j]) for image, _, j, _ in pairs]
    # With a score cut, a detection just above it on one side may sit just under it on the other: the
    # counts are then compared within one detection per image, and the pairing above decides.
    entries = [entry(name_a, name_b, f"{what}/detections", counts[0], counts[1], 0.0 if min_score == 0 else 1.0,
                     reference=np.ones(1))]
    entries.append(overlap_entry(name_a, name_b, f"{what}/box_iou", ious, unpaired, int(counts[0].sum()),
                                 spec.tolerances.postprocess_iou))
    # Scores are probabilities: the tolerance is absolute (reference 1).
    entries.append(entry(name_a, name_b, f"{what}/scores", np.array(scores_a), np.array(scores_b),
                         spec.tolerances.postprocess_score, reference=np.ones(1)))
    return entries


def overlap_entry(name_a: str, name_b: str, what: str, ious: list[float], unpaired: int, total: int,
                  min_iou: float) -> dict:
    """A parity entry of paired overlaps: ``max_abs`` is 1 - the worst pair's IoU (1 when a detection has no
    partner), ``tol`` 1 - ``min_iou``."""
    worst = 1.0 if unpaired or not ious else 1.0 - min(ious)
    tol = 1.0 - min_iou
    found = {"a": name_a, "b": name_b, "what": what, "max_abs": worst, "tol": tol,
             "ok": bool(ious) and not unpaired and worst <= tol}
    if unpaired or not ious:
        found["error"] = f"{unpaired} of {total} {name_a} detections have no {name_b} partner of the same class"
    return found


# ------------------------------------------------------------------------------------- studies

def _detections(ctx: StudyContext, framework: str, model, images: np.ndarray) -> list[dict]:
    task = ctx.twins[framework].task
    return task.postprocess(task.predict(model, images), ctx.spec)


def detection_boxes_picture(ctx: StudyContext, count: int = 6, min_score: float = 0.5) -> dict:
    """Predicted boxes of each framework's own model on held-out images, side by side with the truth."""
    from PIL import Image, ImageDraw

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
    spec = ctx.spec
    rows = anchor_recall_table(study_configs(spec.anchors), spec.data.image_size, ctx.data.val.boxes)
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
                     "xlabel": "anchor set",
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
    return box_iou(a.astype(np.float32), b.astype(np.float32)) if len(a) and len(b) else np.zeros((len(a), len(b)))


def occlusion_scores(split, detections: list[dict], bands=VISIBLE_BANDS, min_score: float = 0.3) -> list[dict]:
    """Per band of visible fraction: COCO mAP@.5 (class-aware and class-agnostic) over that band's objects,
    the others ignored; and, for its objects found by a detection of the right class (IoU >= 0.5 with the
    full box or with the visible part's box, score >= ``min_score``), the mean IoU of that detection with
    the object's full (amodal) box and with its visible part's box."""
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
            "text": f"The {spec.model.detector} detector's test objects grouped by the share of their pixels left "
                    "visible by the objects painted over them; each band scored alone (COCO mAP@.5 with the other "
                    "objects ignored). 'random erasing': the same detector, start and recipe trained with each "
                    f"framework's RandomErasing (p "
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


# ------------------------------------------------------------------------------------- claims

def single_shot_faster(results: dict, code: dict, env: dict) -> tuple[str, list[str]]:
    """Single-shot detectors (SSD- and YOLO-style) against the two-stage one, same body, same backend."""
    models = {t.get("model"): t for t in results["tasks"].values() if t.get("task") == "detection"}
    two_stage = models.get("faster_rcnn")
    single = {m: models[m] for m in ("ssd", "yolo") if m in models}
    if not two_stage or not single:
        return NOT_MEASURABLE, ["needs the Faster R-CNN-style detector and a single-shot one in this run "
                                "(the detection task's runs)"]
    lines, points = ["same backbone and input size; the two-stage time includes proposal NMS and RoIAlign, the "
                     "single-shot time excludes final NMS"], []
    for backend in ("torch", "tensorflow"):
        for batch in (1, 32):
            for name, task in single.items():
                # Two runs' rows side by side: one block holding both timings gives the shared tie rule.
                slow, fast = (speed_row(two_stage, backend, batch), speed_row(task, backend, batch))
                if not slow or not fast:
                    continue
                block = {"speed": [dict(slow, backend="faster_rcnn"), dict(fast, backend=name)]}
                point = faster(block, "faster_rcnn", name, batch)
                points.append(point)
                lines.append(timing_line(f"{backend} b{batch}", "faster_rcnn", slow["p50_ms"], name, fast["p50_ms"],
                                         point, noise_bound(block, "faster_rcnn", name, batch)))
    if len(lines) == 1:
        return NOT_MEASURABLE, ["no timings of the detectors on the same backend"]
    return verdict_from(points), lines


PLUGIN = TaskPlugin(
    # The occlusion study trains its detector again with random erasing, in both frameworks: on the YOLO-style
    # variant, the quickest to train (4 epochs from the SSD's trained body), so it costs about a third of what
    # two more SSD trainings would (measured: 300 s on 2 cores).
    studies=(Study(detection_boxes_picture, "boxes", (5,), runs=EVERY_RUN),
             Study(anchor_study, "anchors", (23,)),
             Study(occlusion_study, "occlusion", (19,), runs=("yolo",))),
    claims=(("single-shot-faster", "5", "Single-shot detectors (YOLO, SSD) run faster than two-stage region-proposal "
                                        "detectors", single_shot_faster),),
    compare_postprocessed=compare_detections,
    served_min_score=SERVED_MIN_SCORE,
)

__all__ = ["PLUGIN", "SERVED_MIN_SCORE", "VISIBLE_BANDS", "anchor_study", "compare_detections",
           "detection_boxes_picture", "occlusion_scores", "occlusion_study", "single_shot_faster"]
