"""Detection's main model, the SSD (tiny preset): what differs from the registry-driven tests. Parity L1-L5
(tests/parity_mixin.py) and bad images (tests/test_bad_input.py) run for every detection model from the
registry; here: the registry entry and spec checks, output shapes, a backbone variant's parity, a strict
L5 threshold, torchvision's SSD loss and post-processing as references, training in both twins, and the
SSD's bad outputs and targets. The YOLO and Faster R-CNN variants have files of their own.
"""

from __future__ import annotations

import dataclasses
import types

import numpy as np
import pytest
import torch

from compare.parity import forward_parity, gradient_parity, postprocess_parity
from shared.anchors import task_anchors
from shared.data.detection import DetectionData, pack_targets
from shared.specs import TASKS, SpecError
from shared.specs.classification import ResNetSpec
from shared.specs.detection import DetectionSpec, DetectorSpec, spec_from_dict, standard, tiny

from .parity_mixin import assert_all_ok

RUN = ("detection", None)   # the registry model of this file: conftest's twins, data and trained load it
SPEC = tiny()


# ---------------------------------------------------------------- spec and registry

def test_registry_has_the_presets_and_variants():
    entry = TASKS["detection"]
    assert entry.status == "ready"
    assert entry.presets["tiny"]() == SPEC and entry.presets["standard"]() == standard()
    assert set(entry.variants) == {"yolo", "faster_rcnn"}
    # L3 runs 4 steps, not 20: the tolerance's comment (shared/specs/detection.py) has the measurements why.
    assert SPEC.tolerances.training_steps == 4
    assert SPEC.input_shape == (64, 64, 3) and SPEC.task == "detection"
    assert SPEC.output_keys == ("cls_logits", "box_regression")
    assert SPEC.model.feature_strides == (4, 8, 16) == SPEC.anchors.strides
    assert SPEC.num_anchors == len(task_anchors(SPEC)) == 672
    assert standard().num_anchors == len(task_anchors(standard())) == 2784
    assert spec_from_dict(dataclasses.asdict(standard())) == standard()


@pytest.mark.parametrize("change,message", [
    ({"anchors": dataclasses.replace(SPEC.anchors, strides=(4, 8, 32))},
     r"anchors.strides\[2\]: expected the stride of one of the detector's feature maps \[4, 8, 16\] "
     r"\(backbone stem 'imagenet' with 2 stages, then 1 extra layers\); received: 32"),
    ({"model": dataclasses.replace(SPEC.model, extra_widths=(64, 64))},
     r"model: the deepest feature map \(stride 32\) carries no anchor level"),
    ({"task": "segmentation"}, r"detection.task: expected one of \['detection'\]; received: 'segmentation'"),
])
def test_inconsistent_specs_fail_at_construction(change, message):
    with pytest.raises(SpecError, match=message):
        dataclasses.replace(SPEC, **change)


def test_detector_spec_fields_are_checked():
    with pytest.raises(SpecError, match=r"model.detector: expected one of \['ssd'.*\]; received: 'detr'"):
        DetectorSpec(detector="detr")
    with pytest.raises(SpecError, match=r"model.extra_widths: expected a \(possibly empty\) tuple"):
        DetectorSpec(extra_widths=[64])
    with pytest.raises(SpecError, match=r"model.head_width: expected an integer in \[0, 4096\]; received: -1"):
        DetectorSpec(head_width=-1)
    wrong = dataclasses.replace(SPEC, model=dataclasses.replace(SPEC.model, num_classes=5))
    with pytest.raises(ValueError, match=r"the detection data set has 6 classes; received: 5"):
        wrong.check_data_matches()


# ---------------------------------------------------------------- outputs and parity beyond the generic levels

def test_outputs_have_the_documented_shapes(twins, data):
    torch.manual_seed(0)
    for fw, twin in twins.items():
        out = twin.task.predict(twin.task.build_model(SPEC), data.test.images[:3], with_features=True)
        assert out["cls_logits"].shape == (3, 672, 7) and out["box_regression"].shape == (3, 672, 4), fw
        assert [out[f"features.{i}"].shape[1:] for i in range(3)] == [(16, 16, 16), (8, 8, 32), (4, 4, 64)], fw


def test_variant_with_small_stem_bottlenecks_and_necks(twins, data):
    """Other feature levels: stages at strides 1, 2, 4, two extra layers (8, 16), 1x1 necks before the heads."""
    spec = dataclasses.replace(SPEC, model=DetectorSpec(
        backbone=ResNetSpec(block="bottleneck", depths=(1, 1, 1), widths=(4, 8, 8), stem="small", stem_width=8),
        extra_widths=(24, 24), head_width=16))
    assert spec.feature_levels == (2, 3, 4)
    images = data.train.images[:4]
    assert_all_ok(forward_parity(spec, twins, images) + gradient_parity(spec, twins, images, data.train.targets[:4]))


def test_postprocessed_detections_agree_at_a_strict_threshold(twins, data, trained):
    """L5 (tests/parity_mixin.py) with a threshold that keeps only confident detections (fewer, better
    separated candidates); an entry is ok only when both runs found detections."""
    strict = dataclasses.replace(SPEC, postprocess=dataclasses.replace(SPEC.postprocess, score_threshold=0.1))
    assert_all_ok(postprocess_parity(strict, twins, data.test.images[:16], trained))


# ---------------------------------------------------------------- torchvision as the reference

def _torchvision_namespace(spec: DetectionSpec):
    from torchvision.models.detection import _utils as det_utils

    p = spec.postprocess
    return types.SimpleNamespace(box_coder=det_utils.BoxCoder((10.0, 10.0, 5.0, 5.0)),
                                 neg_to_pos_ratio=spec.loss.neg_to_pos_ratio, score_thresh=p.score_threshold,
                                 topk_candidates=p.topk_candidates, nms_thresh=p.nms_iou,
                                 detections_per_img=p.max_detections)


def test_loss_matches_torchvision_ssd(twins, data, trained):
    from torchvision.models.detection.ssd import SSD as TorchvisionSSD

    from pytorch_impl.ops import match_anchors

    model = twins["torch"].task.build_model(SPEC)
    twins["torch"].bridge.import_weights(model, trained)
    targets = [{k: torch.as_tensor(v) for k, v in t.items()} for t in data.train.targets[:8]]
    out = model.train()(torch.from_numpy(data.train.images[:8].transpose(0, 3, 1, 2).copy()))
    ours = {k: v.detach() for k, v in twins["torch"].task.compute_loss(out, targets, SPEC).items()}
    anchors = torch.tensor(task_anchors(SPEC))
    matched = [match_anchors(anchors, t["boxes"], 0.5, 0.5) for t in targets]
    # torchvision's labels count from 1 (0 is its background), as our logits do.
    ref = TorchvisionSSD.compute_loss(_torchvision_namespace(SPEC), [{**t, "labels": t["labels"] + 1} for t in targets],
                                      {"cls_logits": out["cls_logits"], "bbox_regression": out["box_regression"]},
                                      [anchors] * 8, matched)
    assert float(ours["loss_box_reg"]) == pytest.approx(float(ref["bbox_regression"].detach()), rel=1e-6)
    assert float(ours["loss_classifier"]) == pytest.approx(float(ref["classification"].detach()), rel=1e-6)
    # Packed targets (what the trainers index) give the same loss as the per-image list.
    packed = torch.from_numpy(pack_targets(data.train.targets[:8], SPEC.model.num_classes))
    assert float(twins["torch"].task.compute_loss(out, packed, SPEC)["loss"].detach()) == float(ours["loss"])
    tf_packed = twins["tensorflow"].task.compute_loss({k: v.detach().numpy() for k, v in out.items()},
                                                      packed.numpy(), SPEC)
    assert float(tf_packed["loss"]) == pytest.approx(float(ours["loss"]), rel=1e-5)
    assert set(ours) == set(tf_packed) == {"loss", "loss_classifier", "loss_box_reg"}   # the terms L2 compares


def test_postprocess_matches_torchvision_ssd(twins, data, trained):
    from torchvision.models.detection.ssd import SSD as TorchvisionSSD

    model = twins["torch"].task.build_model(SPEC)
    twins["torch"].bridge.import_weights(model, trained)
    outputs = twins["torch"].task.predict(model, data.test.images[:8])
    ours = twins["torch"].task.postprocess(outputs, SPEC)
    head = {"cls_logits": torch.from_numpy(outputs["cls_logits"]),
            "bbox_regression": torch.from_numpy(outputs["box_regression"])}
    ref = TorchvisionSSD.postprocess_detections(_torchvision_namespace(SPEC), head,
                                                [torch.tensor(task_anchors(SPEC))] * 8, [(64, 64)] * 8)
    assert sum(len(d["scores"]) for d in ours) > 0
    for r, d in zip(ref, ours):
        np.testing.assert_array_equal(d["boxes"], r["boxes"].numpy())
        np.testing.assert_array_equal(d["scores"], r["scores"].numpy())
        np.testing.assert_array_equal(d["labels"], r["labels"].numpy() - 1)


# ---------------------------------------------------------------- training

def test_training_reduces_the_loss_in_both_twins(twins, data):
    spec = dataclasses.replace(SPEC, train=dataclasses.replace(SPEC.train, epochs=3, batch_size=16))
    small = DetectionData(data.train.head(64), data.val.head(8), data.test.head(16), data.class_names)
    for fw, twin in twins.items():
        model, history = twin.task.train(spec, small, progress=False)
        losses = [row["loss"] for row in history]
        assert len(history) == 3 and losses[-1] < 0.7 * losses[0], (fw, losses)
        assert {"val_map", "val_map50", "val_ar100"} <= set(history[-1]), (fw, history[-1])
        metrics = twin.task.evaluate(model, small.test, spec)
        assert 0.0 <= metrics["map"] <= metrics["map50"] <= 1.0, (fw, metrics)


# ---------------------------------------------------------------- bad input

def test_bad_outputs_fail_clearly(twins, data):
    for fw, twin in twins.items():
        with pytest.raises(ValueError, match=r"outputs\['cls_logits'\]: expected shape \[B, 672, 7\]"):
            twin.task.compute_loss({"cls_logits": np.zeros((1, 600, 7), np.float32),
                                    "box_regression": np.zeros((1, 600, 4), np.float32)}, data.train.targets[:1], SPEC)
        with pytest.raises(ValueError, match=r"expected a dict with 'cls_logits' and 'box_regression'"):
            twin.task.postprocess({"logits": np.zeros((1, 672, 7), np.float32)}, SPEC)


@pytest.mark.parametrize("target,message", [
    ({"boxes": np.zeros((2, 5), np.float32), "labels": np.zeros(2, np.int64)},
     r"targets\[0\]\['boxes'\]: expected shape \[N, 4\] \(x1, y1, x2, y2\); received shape \[2, 5\]"),
    ({"boxes": np.array([[1, 1, 9, 9]], np.float32), "labels": np.array([6])},
     r"targets\[0\]\['labels'\]: expected class ids in \[0, 6\); received range \[6, 6\]"),
    ({"boxes": np.array([[1, 1, 9, 9]], np.float32), "labels": np.array([0.0])},
     r"targets\[0\]\['labels'\]: expected 1 integer class ids"),
    ({"boxes": np.array([[9, 1, 1, 9]], np.float32), "labels": np.array([0])},
     r"targets: expected boxes with x2 > x1 and y2 > y1"),
])
def test_bad_targets_fail_clearly_in_both_twins(twins, target, message):
    outputs = {"cls_logits": np.zeros((1, 672, 7), np.float32), "box_regression": np.zeros((1, 672, 4), np.float32)}
    for fw, twin in twins.items():
        with pytest.raises(ValueError, match=message):
            twin.task.compute_loss(outputs, [target], SPEC)


def test_pack_targets_checks_and_pads():
    targets = [{"boxes": np.array([[1, 2, 5, 6]], np.float32), "labels": np.array([3])},
               {"boxes": np.zeros((0, 4), np.float32), "labels": np.zeros(0, np.int64)}]
    packed = pack_targets(targets, 6)
    np.testing.assert_array_equal(packed, [[[1, 2, 5, 6, 3]], [[0, 0, 0, 0, -1]]])
    with pytest.raises(ValueError, match=r"targets\[0\]\['boxes'\]: expected x2 > x1 and y2 > y1.*boxes \[0\]"):
        pack_targets([{"boxes": np.array([[5, 2, 1, 6]], np.float32), "labels": np.array([0])}], 6)
    with pytest.raises(ValueError, match=r"targets\[0\]\['labels'\]: expected class ids in \[0, 6\)"):
        pack_targets([{"boxes": np.array([[1, 2, 5, 6]], np.float32), "labels": np.array([-1])}], 6)


def test_keras_model_round_trips_through_its_config(twins):
    ssd = twins["tensorflow"].task.SSD
    model = twins["tensorflow"].task.build_model(SPEC)
    clone = ssd.from_config(model.get_config())
    assert clone.spec == SPEC


def test_images_without_objects_are_all_background_in_both_twins(twins):
    """No boxes: no positives and so no hard negatives for that image; with none anywhere the loss is 0."""
    rng = np.random.default_rng(0)
    outputs = {"cls_logits": rng.normal(size=(2, 672, 7)).astype(np.float32),
               "box_regression": rng.normal(size=(2, 672, 4)).astype(np.float32)}
    empty = {"boxes": np.zeros((0, 4), np.float32), "labels": np.zeros(0, np.int64)}
    one = {"boxes": np.array([[10, 12, 30, 28]], np.float32), "labels": np.array([2])}
    losses = {fw: {k: float(v) for k, v in twin.task.compute_loss(outputs, [one, empty], SPEC).items()}
              for fw, twin in twins.items()}
    assert losses["torch"]["loss_box_reg"] > 0
    for key, value in losses["torch"].items():
        assert losses["tensorflow"][key] == pytest.approx(value, rel=1e-5), key
    for fw, twin in twins.items():
        assert float(twin.task.compute_loss(outputs, [empty, empty], SPEC)["loss"]) == 0.0, fw
