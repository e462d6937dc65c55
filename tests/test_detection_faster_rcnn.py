"""Faster R-CNN-style detector twins (registry variant ``detection.faster_rcnn``, preset ``tiny_faster_rcnn``):
what differs from the registry-driven tests. Parity L1-L5 (tests/parity_mixin.py; L4 on the backbone + RPN
its export view names) and bad images (tests/test_bad_input.py) run for it from the registry; here: its spec,
target assignment and sampling, real proposals, the RoI head on the same given proposals, a strict L5
threshold from the scores, the export view, training in both twins, its bad outputs and targets.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import tensorflow as tf
import torch

from compare import backends as B
from compare.parity import entry, postprocess_parity, same_init
from shared.anchors import task_anchors
from shared.data.detection import DetectionData, pack_targets
from shared.specs import SpecError
from shared.specs.detection import OUTPUT_KEYS, DetectionSpec, tiny_faster_rcnn
from shared.specs.faster_rcnn import EXPORT_OUTPUT_KEYS, FASTER_RCNN_OUTPUT_KEYS, FasterRCNNSpec, sampling_priority

from .parity_mixin import assert_all_ok

RUN = ("detection", "faster_rcnn")   # the registry model of this file: conftest's twins, data and trained load it
SPEC = tiny_faster_rcnn()
LOSS_KEYS = {"loss", "loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg"}


def _modules():
    import pytorch_impl.detection.faster_rcnn as pt
    import tensorflow_impl.detection.faster_rcnn as tfm
    return pt, tfm


# ---------------------------------------------------------------- spec

def test_spec_and_output_keys():
    assert SPEC.model.detector == "faster_rcnn" and SPEC.output_keys == FASTER_RCNN_OUTPUT_KEYS
    assert OUTPUT_KEYS["faster_rcnn"] == FASTER_RCNN_OUTPUT_KEYS and SPEC.num_anchors == 672
    with pytest.raises(SpecError, match=r"detection.output_keys: expected \('objectness', 'rpn_box_regression'"):
        dataclasses.replace(SPEC, output_keys=("cls_logits", "box_regression"))
    with pytest.raises(SpecError, match=r"rcnn.roi_level: expected an anchor level in \[0, 3\); received: 3"):
        dataclasses.replace(SPEC, rcnn=FasterRCNNSpec(roi_level=3))
    with pytest.raises(SpecError, match=r"rcnn.post_nms_top_n: expected an integer <= rcnn.pre_nms_top_n \(16\)"):
        FasterRCNNSpec(pre_nms_top_n=16, post_nms_top_n=32)
    with pytest.raises(SpecError, match=r"rcnn.rpn_bg_iou: expected a number <= rcnn.rpn_fg_iou"):
        FasterRCNNSpec(rpn_fg_iou=0.3, rpn_bg_iou=0.7)
    prio = sampling_priority(10, 0, 1)
    assert sorted(prio.tolist()) == list(range(10)) and not np.array_equal(prio, sampling_priority(10, 0, 0))


# ---------------------------------------------------------------- target assignment and sampling

def test_target_assignment_and_sampling_agree(twins, data):
    pt, tfm = _modules()
    r = SPEC.rcnn
    anchors = task_anchors(SPEC)
    packed = pack_targets(data.train.targets[:8], SPEC.model.num_classes)
    boxes, labels = packed[..., :4], packed[..., 4].astype(np.int64)
    a = len(anchors)
    cands = np.broadcast_to(anchors, (8, a, 4)).copy()
    valid = np.ones((8, a), bool)
    res_t = pt.assign_targets(torch.from_numpy(cands), torch.from_numpy(valid), torch.from_numpy(boxes),
                              torch.from_numpy(labels), r.rpn_fg_iou, r.rpn_bg_iou, True)
    res_f = tfm.assign_targets(tf.constant(cands), tf.constant(valid), tf.constant(boxes), tf.constant(labels),
                               r.rpn_fg_iou, r.rpn_bg_iou, True)
    for x, y in zip(res_t, res_f):
        np.testing.assert_array_equal(x.numpy(), y.numpy())
    pos, neg = res_t[0].numpy(), res_t[1].numpy()
    assert pos.sum(1).min() >= 1 and not (pos & neg).any()       # every image has a positive (low-quality rule)
    prio = sampling_priority(a, r.sampling_seed, 0)
    # A small batch size, so the sampler has to choose among the positives too.
    for batch_size, fraction in ((r.rpn_batch_size, r.rpn_positive_fraction), (8, 0.25)):
        st = pt.sample(res_t[0], res_t[1], torch.from_numpy(prio), batch_size, fraction)
        sf = tfm.sample(res_f[0], res_f[1], tf.constant(prio), batch_size, fraction)
        for x, y in zip(st, sf):
            np.testing.assert_array_equal(x.numpy(), y.numpy())
        sp, sn = st[0].numpy(), st[1].numpy()
        np.testing.assert_array_equal(sp.sum(1), np.minimum(pos.sum(1), int(batch_size * fraction)))
        np.testing.assert_array_equal(sp.sum(1) + sn.sum(1), batch_size)
        for b in range(8):   # the sampled positives are the positives of lowest priority
            chosen = np.sort(prio[sp[b]])
            np.testing.assert_array_equal(chosen, np.sort(prio[pos[b]])[:len(chosen)])
    # RoI matching: IoU 0.5 both ways, no low-quality matches, invalid (zero-area) candidates neither.
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 48, (8, 40, 2)).astype(np.float32)
    rois = np.concatenate([xy, xy + rng.uniform(4, 16, (8, 40, 2)).astype(np.float32)], -1)
    rois[:, -5:] = 0.0
    rois = np.concatenate([rois, boxes], 1)
    ok = ((rois[..., 2] - rois[..., 0]) > 0) & ((rois[..., 3] - rois[..., 1]) > 0)
    res_t = pt.assign_targets(torch.from_numpy(rois), torch.from_numpy(ok), torch.from_numpy(boxes),
                              torch.from_numpy(labels), 0.5, 0.5, False)
    res_f = tfm.assign_targets(tf.constant(rois), tf.constant(ok), tf.constant(boxes), tf.constant(labels),
                               0.5, 0.5, False)
    for x, y in zip(res_t, res_f):
        np.testing.assert_array_equal(x.numpy(), y.numpy())
    assert not (res_t[0] | res_t[1]).numpy()[:, 35:40].any()
    # Sampling a slice of the RoI priorities (candidates fewer than the priorities): every positive and
    # negative is drawn while below the caps, in both twins alike.
    prio = sampling_priority(SPEC.rcnn.num_roi_candidates_max, 0, 1)[:rois.shape[1]]
    st = pt.sample(res_t[0], res_t[1], torch.from_numpy(prio), 128, 0.25)
    sf = tfm.sample(res_f[0], res_f[1], tf.constant(prio), 128, 0.25)
    for x, y in zip(st, sf):
        np.testing.assert_array_equal(x.numpy(), y.numpy())
    np.testing.assert_array_equal(st[0].numpy().sum(1), np.minimum(res_t[0].numpy().sum(1), 32))
    np.testing.assert_array_equal(st[1].numpy(), res_t[1].numpy())
    assert res_t[0].numpy()[:, 40:].sum() == (labels >= 0).sum()   # each ground-truth box matches itself


# ---------------------------------------------------------------- outputs beyond the generic levels

def test_proposals_are_real_boxes(twins, data):
    """What L1 compares (tests/parity_mixin.py) holds real proposals, not padding only."""
    models, _ = same_init(twins, SPEC, "torch", 0)
    out = twins["torch"].task.predict(models["torch"], data.train.images[:4])
    assert (np.abs(out["proposals"]).sum(-1) > 0).sum(1).min() > 8


def test_roi_head_agrees_on_the_same_proposals(twins, data):
    models, _ = same_init(twins, SPEC, "tensorflow", 1)
    images = data.train.images[:4]
    proposals = twins["tensorflow"].task.predict(models["tensorflow"], images)["proposals"]
    rng = np.random.default_rng(0)
    boxes = proposals + rng.normal(0, 2, proposals.shape).astype(np.float32)   # arbitrary boxes, partly outside
    x_t, x_f = twins["torch"].tensors.to_native(images), twins["tensorflow"].tensors.to_native(images)
    models["torch"].eval()
    with torch.no_grad():
        out_t = models["torch"].forward_roi_head(models["torch"].forward_features(x_t), torch.from_numpy(boxes))
    out_f = models["tensorflow"].forward_roi_head(models["tensorflow"].forward_features(x_f), tf.constant(boxes))
    entries = [entry("tensorflow", "torch", f"forward/roi_head/{k}", out_f[k].numpy(), out_t[k].numpy(),
                     SPEC.tolerances.forward) for k in ("cls_logits", "box_regression")]
    assert_all_ok(entries)


# ---------------------------------------------------------------- L5 and training

def test_postprocessed_detections_agree_at_a_strict_threshold(twins, data, trained):
    """L5 (tests/parity_mixin.py) with a threshold that keeps only the most confident fifth of the torch
    detections (after 20 steps the scores are still low: 7 classes, background first; a fixed 0.1 can keep none)."""
    model = twins["torch"].task.build_model(SPEC)
    twins["torch"].bridge.import_weights(model, trained)
    scores = np.concatenate([d["scores"] for d in twins["torch"].task.detect(model, data.test.images[:16], SPEC)])
    assert len(scores) > 0
    # Midway in the widest gap between the 70th and 90th percentile scores: no score sits at the threshold,
    # where a 1e-7 difference between the twins would keep a detection in one and drop it in the other.
    ordered = np.sort(scores)
    lo, hi = int(0.7 * len(ordered)), int(0.9 * len(ordered))
    i = lo + int(np.argmax(np.diff(ordered[lo:hi + 1])))
    threshold = float(ordered[i] + ordered[i + 1]) / 2
    strict = dataclasses.replace(SPEC, postprocess=dataclasses.replace(SPEC.postprocess, score_threshold=threshold))
    assert_all_ok(postprocess_parity(strict, twins, data.test.images[:16], trained))


def test_training_reduces_the_loss_in_both_twins(twins, data):
    spec = dataclasses.replace(SPEC, train=dataclasses.replace(SPEC.train, epochs=3, batch_size=16))
    small = DetectionData(data.train.head(64), data.val.head(8), data.test.head(16), data.class_names)
    for fw, twin in twins.items():
        model, history = twin.task.train(spec, small, progress=False)
        losses = [row["loss"] for row in history]
        assert len(history) == 3 and losses[-1] < 0.8 * losses[0], (fw, losses)
        metrics = twin.task.evaluate(model, small.test, spec)
        assert 0.0 <= metrics["map"] <= metrics["map50"] <= 1.0, (fw, metrics)


# ---------------------------------------------------------------- export

def test_exports_stop_at_the_rpn(twins, data):
    """An exported graph covers images -> RPN outputs and the RoI level's map (L4 in tests/parity_mixin.py compares
    this view); NMS and the RoI head after it stay in the frameworks, which finish the outputs from the view's as
    the whole model computes them (the report's ONNX and TFLite backends serve the model so)."""
    assert SPEC.export_limit
    models, _ = same_init(twins, SPEC, "torch", 0)
    images = data.test.images[:4]
    for (fw, twin), module in zip(twins.items(), _modules()):
        view, keys = twin.task.export_view(models[fw], SPEC)
        assert isinstance(view, module.RPNExport) and tuple(keys) == EXPORT_OUTPUT_KEYS, fw
        exported = B.native_runner(fw, view, keys)(images)
        assert exported["roi_features"].shape == (4, 16, 16, 16)  # NHWC, the stride-4 level of 64 px images
        finished, whole = twin.task.finish_export(models[fw], SPEC, exported), twin.task.predict(models[fw], images)
        assert set(finished) == set(SPEC.output_keys)
        for key in SPEC.output_keys:
            np.testing.assert_allclose(finished[key], whole[key], rtol=0, atol=1e-5, err_msg=f"{fw} {key}")
    with pytest.raises(ValueError, match=r"missing \['roi_features'\]"):
        twins["torch"].task.finish_export(models["torch"], SPEC, {"objectness": np.zeros((1, 672), np.float32),
                                                                    "rpn_box_regression": np.zeros((1, 672, 4))})


# ---------------------------------------------------------------- bad input

def test_bad_outputs_fail_clearly(twins, data):
    torch.manual_seed(0)
    p, k = SPEC.rcnn.post_nms_top_n, SPEC.model.num_classes + 1
    for fw, twin in twins.items():
        model = twin.task.build_model(SPEC)
        eval_outputs = twin.task.predict(model, data.train.images[:1])
        with pytest.raises(ValueError, match=r"expected the faster_rcnn training-mode outputs"):
            twin.task.compute_loss(eval_outputs, data.train.targets[:1], SPEC)
        with pytest.raises(ValueError, match=r"expected a dict with \['proposals', 'cls_logits', 'box_regression'\]"):
            twin.task.postprocess({"cls_logits": eval_outputs["cls_logits"]}, SPEC)
        with pytest.raises(ValueError, match=rf"outputs\['cls_logits'\]: expected shape \[1, {p}, {k}\]"):
            twin.task.postprocess({**eval_outputs, "cls_logits": eval_outputs["cls_logits"][:, :, :3]}, SPEC)
        with pytest.raises(ValueError, match=rf"outputs\['proposals'\]: expected shape \[B, {p}, 4\]"):
            twin.task.postprocess({**eval_outputs, "proposals": eval_outputs["proposals"][:, :5]}, SPEC)


def test_loss_terms_and_bad_targets_in_both_twins(twins, data):
    """Training-mode outputs give every loss term (the terms L2 compares); bad targets fail clearly."""
    images = data.train.images[:1]
    bad = [{"boxes": np.array([[9, 1, 1, 9]], np.float32), "labels": np.array([0])}]
    crowded = np.tile(np.array([[[1, 1, 9, 9, 0]]], np.float32), (1, 60, 1))
    for fw, twin in twins.items():
        model = twin.task.build_model(SPEC)
        x = twin.tensors.to_native(images)
        outputs = model.train()(x) if fw == "torch" else model(x, training=True)
        targets = twin.tensors.targets_to_native(data.train.targets[:1])
        assert set(twin.task.compute_loss(outputs, targets, SPEC)) == LOSS_KEYS, fw
        with pytest.raises(ValueError, match=r"targets: expected boxes with x2 > x1 and y2 > y1"):
            twin.task.compute_loss(outputs, bad, SPEC)
        with pytest.raises(ValueError, match=r"targets: expected at most 50 boxes per image; received 60"):
            twin.task.compute_loss(outputs, crowded, SPEC)


def test_keras_model_round_trips_through_its_config(twins):
    model = twins["tensorflow"].task.build_model(SPEC)
    clone = type(model).from_config(model.get_config())
    assert clone.spec == SPEC and isinstance(SPEC, DetectionSpec)
