"""YOLO-style grid detector twins (registry variant ``detection.yolo``, preset ``tiny_yolo``): what differs
from the registry-driven tests. Parity L1-L5 (tests/parity_mixin.py) and bad images (tests/test_bad_input.py)
run for it from the registry; here: its spec and slots, target assignment against a hand-made case, GIoU
against torchvision, output shapes and canonical names, the ignore rule and loss weights, a strict L5
threshold, the post-processed format, training in both twins, its bad outputs and targets.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from compare.parity import postprocess_parity
from shared.data.detection import DetectionData, pack_targets
from shared.specs import SpecError
from shared.specs.detection import OUTPUT_KEYS, YoloLossSpec, spec_from_dict, tiny_yolo
from shared.yolo import yolo_slots

from .parity_mixin import assert_all_ok

RUN = ("detection", "yolo")   # the registry model of this file: conftest's twins, data and trained load it
SPEC = tiny_yolo()
A = 160     # slots: 8 x 8 cells x 2 priors (stride 8) + 4 x 4 x 2 (stride 16)
K = 6


@pytest.fixture(scope="module")
def yolo():
    """The yolo modules of both twins (assignment, decoding, GIoU), keyed like ``twins``."""
    import pytorch_impl.detection.yolo as torch_yolo
    import tensorflow_impl.detection.yolo as tf_yolo

    return {"torch": torch_yolo, "tensorflow": tf_yolo}


# ---------------------------------------------------------------- spec

def test_spec_and_slots():
    assert SPEC.model.detector == "yolo" and SPEC.output_keys == ("objectness", "cls_logits", "box_regression")
    assert SPEC.feature_levels == (1, 2) and SPEC.num_anchors == A
    assert spec_from_dict(dataclasses.asdict(SPEC)) == SPEC
    slots = yolo_slots(SPEC)
    # Slot 86: level 0 (stride 8), row 5, column 3, prior 0 (10 px), centred on its cell's centre.
    np.testing.assert_array_equal(slots["priors"][86], [23, 39, 33, 49])
    np.testing.assert_array_equal(slots["cells"][86], [3, 5])
    assert slots["strides"][86] == 8 and slots["strides"][131] == 16
    np.testing.assert_array_equal(slots["cells"][131], [1, 0])
    np.testing.assert_array_equal(slots["grid"][[0, 159]], [[8, 8], [4, 4]])
    # L3 runs 4 steps. Measured at lr 0.01, batch 32: torch against TensorFlow within 6e-7 of the loss for
    # 7 steps, then 5e-5 at step 8 and 1.5e-3 by step 12; torch against torch with every weight nudged by
    # 1e-7 drifts alike (1.3e-5 at step 10, 5e-4 at step 12), and more without the ignore rule (2e-4 at
    # step 7): the trajectory amplifies rounding by itself.
    assert SPEC.tolerances.training_steps == 4


def test_yolo_spec_fields_are_checked():
    with pytest.raises(SpecError, match=r"detection.output_keys: expected \('objectness', 'cls_logits', "
                                        r"'box_regression'\); received: \('cls_logits', 'box_regression'\)"):
        dataclasses.replace(SPEC, output_keys=("cls_logits", "box_regression"))
    with pytest.raises(SpecError, match=r"yolo_loss.ignore_iou: expected a number in \[0.0, 1.0\]; received: 1.5"):
        YoloLossSpec(ignore_iou=1.5)
    with pytest.raises(SpecError, match=r"yolo_loss.box_weight: expected a number in \[0.0, 100.0\]; received: -1"):
        YoloLossSpec(box_weight=-1)
    assert OUTPUT_KEYS["yolo"] == SPEC.output_keys


# ---------------------------------------------------------------- target assignment

# Image 0: box 0 (10 x 8, centre (25, 40): on the edge between rows 4 and 5, so row 5) fits the 10 px prior
# of stride 8 best; box 1 (32 x 30, centre (16, 15)) the 32 px prior of stride 16; box 2 (14 x 10, centre
# (57, 59)) the 10 px prior in the last cell of stride 8. Image 1: box 0 as image 0's, then box 1 (9 x 9,
# centre (26.5, 42.5)) in the same cell with the same prior: the later box keeps the slot; a padding row.
HAND_BOXES = np.array([[[20, 36, 30, 44], [0, 0, 32, 30], [50, 54, 64, 64]],
                       [[20, 36, 30, 44], [22, 38, 31, 47], [0, 0, 0, 0]]], np.float32)
HAND_LABELS = np.array([[3, 0, 5], [3, 1, -1]], np.int64)
# slot: (box index, label, encoded target (sigmoid(tx), sigmoid(ty), tw, th))
HAND_EXPECTED = [
    {86: (0, 3, (0.125, 0.0, 0.0, math.log(8 / 10))),
     131: (1, 0, (0.0, 15 / 16, 0.0, math.log(30 / 32))),
     126: (2, 5, (0.125, 0.375, math.log(14 / 10), 0.0))},
    {86: (1, 1, (26.5 / 8 - 3, 42.5 / 8 - 5, math.log(9 / 10), math.log(9 / 10)))},
]


def test_target_assignment_matches_a_hand_made_case_in_both_twins(yolo):
    results = {}
    for fw, module in yolo.items():
        convert = torch.from_numpy if fw == "torch" else (lambda v: v)
        out = module.assign_targets(convert(HAND_BOXES), convert(HAND_LABELS), SPEC)
        results[fw] = {k: np.asarray(v) for k, v in out.items()}
        gt_index = results[fw]["gt_index"]
        assert gt_index.shape == (2, A) and results[fw]["deltas"].shape == (2, A, 4), fw
        for image, expected in enumerate(HAND_EXPECTED):
            assert sorted(np.flatnonzero(gt_index[image] >= 0)) == sorted(expected), (fw, image)
            for slot, (box, label, deltas) in expected.items():
                assert gt_index[image, slot] == box, (fw, image, slot)
                assert results[fw]["labels"][image, slot] == label, (fw, image, slot)
                np.testing.assert_array_equal(results[fw]["boxes"][image, slot], HAND_BOXES[image, box])
                np.testing.assert_allclose(results[fw]["deltas"][image, slot], deltas, rtol=0, atol=1e-6)
    for key in results["torch"]:
        np.testing.assert_allclose(results["torch"][key], results["tensorflow"][key], rtol=0, atol=1e-6, err_msg=key)


def test_several_priors_per_object_agree_and_add_positives(yolo, data):
    """multi_prior_iou < 1: each box also owns every prior of its centre cells above that shape IoU (YOLOv4)."""
    packed = pack_targets(data.train.targets[:64], K)
    boxes, labels = packed[..., :4], packed[..., 4].astype(np.int64)
    single = yolo["torch"].assign_targets(torch.from_numpy(boxes), torch.from_numpy(labels), SPEC)
    multi_spec = dataclasses.replace(SPEC, yolo_loss=dataclasses.replace(SPEC.yolo_loss, multi_prior_iou=0.3))
    out = {"torch": {k: v.numpy() for k, v in yolo["torch"].assign_targets(
               torch.from_numpy(boxes), torch.from_numpy(labels), multi_spec).items()},
           "tensorflow": {k: v.numpy() for k, v in yolo["tensorflow"].assign_targets(
               boxes, labels, multi_spec).items()}}
    for key in out["torch"]:
        np.testing.assert_allclose(out["torch"][key], out["tensorflow"][key], rtol=0, atol=2e-6, err_msg=key)
    before, after = int((single["gt_index"] >= 0).sum()), int((out["torch"]["gt_index"] >= 0).sum())
    assert after > 1.3 * before, (before, after)
    # The hand-made case: box 0 of image 0 (10 x 8 px) also takes the 15 px prior of its stride-8 cell.
    hand = yolo["torch"].assign_targets(torch.from_numpy(HAND_BOXES), torch.from_numpy(HAND_LABELS), multi_spec)
    assert hand["gt_index"][0, 87] == 0 and hand["gt_index"][0, 86] == 0


def test_assignment_agrees_on_the_data_set_and_decoding_inverts_it(yolo, data):
    """Every box of 64 images gets one slot (unless a later box took it); decoding the targets gives the boxes."""
    packed = pack_targets(data.train.targets[:64], K)
    boxes, labels = packed[..., :4], packed[..., 4].astype(np.int64)
    out = {"torch": {k: v.numpy() for k, v in yolo["torch"].assign_targets(
               torch.from_numpy(boxes), torch.from_numpy(labels), SPEC).items()},
           "tensorflow": {k: v.numpy() for k, v in yolo["tensorflow"].assign_targets(boxes, labels, SPEC).items()}}
    for key in out["torch"]:
        np.testing.assert_allclose(out["torch"][key], out["tensorflow"][key], rtol=0, atol=2e-6, err_msg=key)
    responsible = out["torch"]["gt_index"] >= 0
    assert 0.9 * (labels >= 0).sum() <= responsible.sum() <= (labels >= 0).sum()
    deltas = out["torch"]["deltas"][responsible]
    assert deltas[:, :2].min() >= 0 and deltas[:, :2].max() <= 1
    # Raw offsets whose decoding is the target: logit of the cell offsets, the log sizes as they are.
    offsets = np.clip(deltas[:, :2], 1e-6, 1 - 1e-6)
    raw = np.zeros(out["torch"]["deltas"].shape, np.float32)
    raw[responsible] = np.concatenate([np.log(offsets / (1 - offsets)), deltas[:, 2:]], axis=1)
    for fw, module in yolo.items():
        decoded = np.asarray(module.decode_yolo_boxes(torch.from_numpy(raw) if fw == "torch" else raw, SPEC))
        np.testing.assert_allclose(decoded[responsible], out["torch"]["boxes"][responsible], atol=1e-3, err_msg=fw)


def test_generalized_box_iou_loss_matches_torchvision(yolo):
    import tensorflow as tf
    import torchvision

    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 48, size=(2, 64, 2)).astype(np.float32)
    wh = rng.uniform(1, 24, size=(2, 64, 2)).astype(np.float32)
    b1, b2 = (np.concatenate([xy[i], xy[i] + wh[i]], axis=1) for i in range(2))
    t1 = torch.from_numpy(b1).requires_grad_()
    ref = torchvision.ops.generalized_box_iou_loss(t1, torch.from_numpy(b2), reduction="sum")
    ref.backward()
    v1 = tf.Variable(b1)
    with tf.GradientTape() as tape:
        ours = yolo["tensorflow"].generalized_box_iou_loss(v1, tf.constant(b2), reduction="sum")
    assert float(ours) == pytest.approx(float(ref.detach()), rel=1e-6)
    np.testing.assert_allclose(tape.gradient(ours, v1).numpy(), t1.grad.numpy(), rtol=1e-5, atol=1e-6)
    each = yolo["tensorflow"].generalized_box_iou_loss(b1, b2).numpy()
    np.testing.assert_allclose(each, torchvision.ops.generalized_box_iou_loss(
        torch.from_numpy(b1), torch.from_numpy(b2)).numpy(), rtol=1e-6, atol=1e-6)
    assert (each > 1).any() and (each < 1).any()     # disjoint and overlapping pairs both tested


# ---------------------------------------------------------------- outputs, loss and post-processing

def test_build_model_routes_to_yolo_with_canonical_names(twins, data):
    torch.manual_seed(0)
    models = {fw: twin.task.build_model(SPEC) for fw, twin in twins.items()}
    assert {type(m).__name__ for m in models.values()} == {"YOLO"}
    tensors = {fw: twins[fw].bridge.export_weights(m) for fw, m in models.items()}
    assert set(tensors["torch"]) == set(tensors["tensorflow"])
    assert {"obj_head.0.bias", "cls_head.1.weight", "box_head.1.bias"} <= set(tensors["torch"])
    for fw in twins:
        # The objectness bias starts at logit(0.01) in both twins.
        np.testing.assert_allclose(tensors[fw]["obj_head.0.bias"], math.log(0.01 / 0.99), rtol=1e-6)
        out = twins[fw].task.predict(models[fw], data.test.images[:3], with_features=True)
        assert out["objectness"].shape == (3, A) and out["cls_logits"].shape == (3, A, K), fw
        assert out["box_regression"].shape == (3, A, 4), fw
        assert [out[f"features.{i}"].shape[1:] for i in range(2)] == [(8, 8, 32), (4, 4, 64)], fw


def test_ignore_rule_and_loss_weights_agree(twins, data):
    """Outputs whose decoded boxes overlap the objects (some slots ignored), at non-default weights."""
    spec = dataclasses.replace(SPEC, yolo_loss=YoloLossSpec(ignore_iou=0.3, noobj_weight=0.5, box_weight=2.0))
    rng = np.random.default_rng(1)
    outputs = {"objectness": rng.normal(size=(8, A)).astype(np.float32),
               "cls_logits": rng.normal(size=(8, A, K)).astype(np.float32),
               "box_regression": (0.3 * rng.normal(size=(8, A, 4))).astype(np.float32)}
    targets = data.train.targets[:8]
    losses = {fw: {k: float(v) for k, v in twin.task.compute_loss(outputs, targets, spec).items()}
              for fw, twin in twins.items()}
    assert set(losses["torch"]) == set(losses["tensorflow"]) == {"loss", "loss_objectness", "loss_classifier",
                                                                 "loss_box_reg"}   # the terms L2 compares
    for key, value in losses["torch"].items():
        assert losses["tensorflow"][key] == pytest.approx(value, rel=1e-5), key
    default = {k: float(v) for k, v in twins["torch"].task.compute_loss(outputs, targets, SPEC).items()}
    assert losses["torch"]["loss_box_reg"] == pytest.approx(2 * default["loss_box_reg"], rel=1e-6)
    assert losses["torch"]["loss_objectness"] < default["loss_objectness"]


def test_postprocessed_detections_agree_at_a_strict_threshold(twins, data, trained):
    """L5 (tests/parity_mixin.py) with a stricter threshold: fewer, confident detections (ok only when both
    twins found some)."""
    strict = dataclasses.replace(SPEC, postprocess=dataclasses.replace(SPEC.postprocess, score_threshold=0.1))
    assert_all_ok(postprocess_parity(strict, twins, data.test.images[:16], trained))


def test_postprocess_format_matches_the_ssd(twins, data, trained):
    model = twins["torch"].task.build_model(SPEC)
    twins["torch"].bridge.import_weights(model, trained)
    detections = twins["torch"].task.postprocess(twins["torch"].task.predict(model, data.test.images[:4]), SPEC)
    assert len(detections) == 4 and sum(len(d["scores"]) for d in detections) > 0
    for d in detections:
        assert set(d) == {"boxes", "scores", "labels"}
        assert d["boxes"].dtype == np.float32 and d["scores"].dtype == np.float32 and d["labels"].dtype == np.int64
        assert (np.diff(d["scores"]) <= 0).all() and (d["scores"] > SPEC.postprocess.score_threshold).all()
        assert d["boxes"].min() >= 0 and d["boxes"].max() <= 64 and set(d["labels"]) <= set(range(K))


# ---------------------------------------------------------------- training

def test_training_reduces_the_loss_in_both_twins(twins, data):
    spec = dataclasses.replace(SPEC, train=dataclasses.replace(SPEC.train, epochs=3, batch_size=16))
    small = DetectionData(data.train.head(64), data.val.head(8), data.test.head(16), data.class_names)
    for fw, twin in twins.items():
        model, history = twin.task.train(spec, small, progress=False)
        losses = [row["loss"] for row in history]
        # Per-epoch means, measured (12 steps at lr 0.02 on 64 images, each twin from its own seeded
        # initialisation): torch 8.92, 7.31, 6.31; TensorFlow 8.66, 7.00, 6.11.
        assert len(history) == 3 and losses[-1] < 0.8 * losses[0] and losses[1] < losses[0], (fw, losses)
        assert {"val_map", "val_map50"} <= set(history[-1]), (fw, history[-1])


# ---------------------------------------------------------------- bad input and edge cases

def test_bad_outputs_fail_clearly(twins, data):
    for fw, twin in twins.items():
        with pytest.raises(ValueError, match=r"outputs\['objectness'\]: expected shape \[B, 160\] \(160 slots\)"):
            twin.task.compute_loss({"objectness": np.zeros((1, 672), np.float32),
                                    "cls_logits": np.zeros((1, 672, 6), np.float32),
                                    "box_regression": np.zeros((1, 672, 4), np.float32)}, data.train.targets[:1], SPEC)
        with pytest.raises(ValueError, match=r"outputs\['cls_logits'\]: expected shape \[1, 160, 6\] .*no background"):
            twin.task.compute_loss({"objectness": np.zeros((1, A), np.float32),
                                    "cls_logits": np.zeros((1, A, 7), np.float32),
                                    "box_regression": np.zeros((1, A, 4), np.float32)}, data.train.targets[:1], SPEC)
        with pytest.raises(ValueError, match=r"expected a dict with 'objectness', 'cls_logits', 'box_regression'"):
            twin.task.postprocess({"cls_logits": np.zeros((1, A, K), np.float32),
                                   "box_regression": np.zeros((1, A, 4), np.float32)}, SPEC)


@pytest.mark.parametrize("target,message", [
    ({"boxes": np.zeros((2, 5), np.float32), "labels": np.zeros(2, np.int64)},
     r"targets\[0\]\['boxes'\]: expected shape \[N, 4\] \(x1, y1, x2, y2\); received shape \[2, 5\]"),
    ({"boxes": np.array([[1, 1, 9, 9]], np.float32), "labels": np.array([6])},
     r"targets\[0\]\['labels'\]: expected class ids in \[0, 6\); received range \[6, 6\]"),
    ({"boxes": np.array([[9, 1, 1, 9]], np.float32), "labels": np.array([0])},
     r"targets: expected boxes with x2 > x1 and y2 > y1"),
])
def test_bad_targets_fail_clearly_in_both_twins(twins, target, message):
    outputs = {"objectness": np.zeros((1, A), np.float32), "cls_logits": np.zeros((1, A, K), np.float32),
               "box_regression": np.zeros((1, A, 4), np.float32)}
    for fw, twin in twins.items():
        with pytest.raises(ValueError, match=message):
            twin.task.compute_loss(outputs, [target], SPEC)
        with pytest.raises(ValueError, match=r"targets: expected one per image \(1\); received 2"):
            twin.task.compute_loss(outputs, [target, target], SPEC)


def test_images_without_objects_have_only_objectness_loss(twins):
    rng = np.random.default_rng(0)
    outputs = {"objectness": rng.normal(size=(2, A)).astype(np.float32),
               "cls_logits": rng.normal(size=(2, A, K)).astype(np.float32),
               "box_regression": rng.normal(size=(2, A, 4)).astype(np.float32)}
    empty = {"boxes": np.zeros((0, 4), np.float32), "labels": np.zeros(0, np.int64)}
    one = {"boxes": np.array([[10, 12, 30, 28]], np.float32), "labels": np.array([2])}
    for targets in ([one, empty], [empty, empty]):
        losses = {fw: {k: float(v) for k, v in twin.task.compute_loss(outputs, targets, SPEC).items()}
                  for fw, twin in twins.items()}
        for key, value in losses["torch"].items():
            assert losses["tensorflow"][key] == pytest.approx(value, rel=1e-5), (key, targets)
    # No objects: no responsible slot, so no class or box term; every slot is a negative (divided by 1).
    assert losses["torch"]["loss_classifier"] == 0 and losses["torch"]["loss_box_reg"] == 0
    expected = torch.nn.functional.softplus(torch.from_numpy(outputs["objectness"])).sum()
    assert losses["torch"]["loss_objectness"] == pytest.approx(float(expected), rel=1e-5)


def test_keras_model_round_trips_through_its_config(yolo, twins):
    model = twins["tensorflow"].task.build_model(SPEC)
    clone = yolo["tensorflow"].YOLO.from_config(model.get_config())
    assert clone.spec == SPEC and model.name == "yolo"
