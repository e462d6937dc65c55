"""Instance-segmentation data and metrics: target layout, COCO segm against pycocotools, crowded scenes, counting."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from shared.data.detection import DetectionSplit, detection_split, mask_to_rle, masks_to_boxes
from shared.data.instance_segmentation import (crowded_split, instance_map, load, touching_pairs, training_targets,
                                               unpack_targets)
from shared.data.semantic_segmentation import class_map
from shared.metrics.detection import STAT_NAMES
from shared.metrics.instance_segmentation import (PRIMARY_METRIC, agreement, class_map_from_instances,
                                                  coco_instance_metrics, count_accuracy, count_components,
                                                  count_instances, evaluate, semantic_miou)
from shared.specs.instance_segmentation import tiny

SPEC = tiny()
SMALL = dataclasses.replace(SPEC, data=dataclasses.replace(SPEC.data, n_train=8, n_val=4, n_test=8))
NUM_CLASSES = SPEC.data.num_classes


@pytest.fixture(scope="module")
def train():
    return detection_split(SMALL.data, "train")


@pytest.fixture(scope="module")
def crowded():
    return crowded_split(SPEC, 20)


def _ground_truth_as_predictions(split):
    return [{"boxes": b, "scores": np.ones(len(y)), "labels": y, "masks": v}
            for b, y, v in zip(split.boxes, split.labels, split.visible_masks)]


# -- the data hook and the training-target layout -----------------------------------------------------------------

def test_load_is_the_detection_set():
    data = load(SMALL)
    assert len(data.train) == 8 and len(data.val) == 4 and len(data.test) == 8
    np.testing.assert_array_equal(data.train.images, detection_split(SMALL.data, "train").images)


def test_training_targets_round_trip_and_reproduce_every_visible_mask(train):
    targets = training_targets(train, SMALL)
    m, (h, w) = SMALL.data.max_objects, SMALL.input_shape[:2]
    assert targets.shape == (8, SMALL.target_width) == (8, m * 5 + h * w) and targets.dtype == np.float32
    packed, ids = unpack_targets(targets, SMALL)
    assert packed.shape == (8, m, 5) and packed.dtype == np.float32
    assert ids.shape == (8, h, w) and ids.dtype == np.int64
    for i in range(8):
        k = len(train.labels[i])
        np.testing.assert_array_equal(packed[i, :k, :4], train.boxes[i])
        np.testing.assert_array_equal(packed[i, :k, 4], train.labels[i])
        assert (packed[i, k:, 4] == -1).all() and (packed[i, k:, :4] == 0).all()
        assert ids[i].max() <= k
        for j in range(k):
            np.testing.assert_array_equal(ids[i] == j + 1, train.visible_masks[i][j])
        assert ((ids[i] > 0) == train.visible_masks[i].any(axis=0)).all()


def test_wrong_target_widths_are_refused_with_the_expected_width(train):
    targets = training_targets(train, SMALL)
    for bad in (targets[:, :-1], targets[:, :SMALL.data.max_objects * 5], targets.reshape(-1)):
        with pytest.raises(ValueError, match=rf"\[N, {SMALL.target_width}\].*spec.target_width"):
            unpack_targets(bad, SMALL)
    broken = targets.copy()
    broken[0, -1] = 0.5
    with pytest.raises(ValueError, match="integers in"):
        unpack_targets(broken, SMALL)


def test_instance_map_refuses_overlapping_or_misshapen_masks():
    masks = np.zeros((2, 5, 5), bool)
    masks[0, :2], masks[1, 1:3] = True, True
    with pytest.raises(ValueError, match="disjoint.*5 pixels overlap.*objects \\[0, 1\\]"):
        instance_map(masks, (5, 5))
    with pytest.raises(ValueError, match=r"shape \[N, 4, 4\]"):
        instance_map(masks, (4, 4))
    assert instance_map(np.zeros((0, 3, 4), bool), (3, 4)).shape == (3, 4)


# -- COCO segm through pycocotools ------------------------------------------------------------------------------

def test_uncompressed_and_compressed_rles_decode_alike_with_the_pixel_count_as_area(train):
    for mask in train.visible_masks[0]:
        ours = mask_utils.frPyObjects(mask_to_rle(mask), *mask.shape)
        theirs = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        np.testing.assert_array_equal(mask_utils.decode(ours), mask)
        np.testing.assert_array_equal(mask_utils.decode(theirs), mask)
        assert mask_utils.area(ours) == mask_utils.area(theirs) == mask.sum()


def test_pycocotools_mask_iou_is_the_numpy_iou(train):
    truth = train.visible_masks[1]
    rng = np.random.default_rng(0)
    predicted = truth ^ (rng.random(truth.shape) < 0.05)            # flip 5% of the pixels
    gt_rles = [mask_utils.frPyObjects(mask_to_rle(m), *m.shape) for m in truth]
    dt_rles = [mask_utils.encode(np.asfortranarray(m.astype(np.uint8))) for m in predicted]
    iou = mask_utils.iou(dt_rles, gt_rles, [0] * len(gt_rles))
    expected = ((predicted[:, None] & truth[None]).sum(axis=(2, 3))
                / (predicted[:, None] | truth[None]).sum(axis=(2, 3)))
    np.testing.assert_allclose(iou, expected, rtol=0, atol=1e-12)


def test_ground_truth_as_predictions_scores_one(train):
    metrics = coco_instance_metrics(_ground_truth_as_predictions(train), train)
    assert set(metrics) == {f"{p}_{s}" for p in ("mask", "box") for s in STAT_NAMES} and PRIMARY_METRIC in metrics
    assert metrics["mask_map"] == 1.0 and metrics["box_map"] == 1.0 and metrics["mask_map50"] == 1.0


def _rectangle_split():
    """6 images of integer rectangles whose full and visible masks are the filled boxes, and jittered detections."""
    rng = np.random.default_rng(3)
    size = 48
    boxes, labels, masks, predictions = [], [], [], []
    for _ in range(6):
        k = int(rng.integers(1, 5))
        x1, y1 = rng.integers(0, size - 12, k), rng.integers(0, size - 12, k)
        x2, y2 = x1 + rng.integers(4, 12, k), y1 + rng.integers(4, 12, k)
        box = np.stack([x1, y1, x2, y2], axis=1).astype(np.float32)
        rect = np.zeros((k, size, size), bool)
        for j, (a, b, c, d) in enumerate(box.astype(int)):
            rect[j, b:d, a:c] = True
        label = rng.integers(0, 3, k).astype(np.int64)
        boxes.append(box), labels.append(label), masks.append(rect)
        # Each object found with a box moved by up to a pixel per edge, plus a false alarm; scores shuffled.
        jitter = np.clip(box + rng.integers(-1, 2, box.shape), 0, size)
        jitter[:, 2:] = np.maximum(jitter[:, 2:], jitter[:, :2] + 1)
        false = np.array([[2, 2, 10, 9]], np.float32)
        det_boxes = np.concatenate([jitter, false])
        det_masks = np.zeros((k + 1, size, size), bool)
        for j, (a, b, c, d) in enumerate(det_boxes.astype(int)):
            det_masks[j, b:d, a:c] = True
        predictions.append({"boxes": det_boxes, "scores": rng.uniform(0.1, 1.0, k + 1),
                            "labels": np.concatenate([label, [label[0]]]), "masks": det_masks})
    split = DetectionSplit(np.zeros((6, size, size, 3), np.float32), tuple(boxes), tuple(labels), tuple(masks),
                           tuple(masks), tuple(np.ones(len(y), np.float32) for y in labels))
    for box, mask in zip(boxes, masks):
        np.testing.assert_array_equal(masks_to_boxes(mask), box)
    return split, predictions


def test_rectangle_masks_give_segm_ap_equal_to_bbox_ap():
    split, predictions = _rectangle_split()
    metrics = coco_instance_metrics(predictions, split)
    assert 0.2 < metrics["box_map"] < 1.0
    for name in STAT_NAMES:
        mask, box = metrics[f"mask_{name}"], metrics[f"box_{name}"]
        assert (mask is None) == (box is None), name
        if box is not None:
            assert abs(mask - box) < 1e-9, (name, mask, box)


def test_bad_predictions_are_refused_clearly(train):
    predictions = _ground_truth_as_predictions(train)
    wrong = dict(predictions[2], masks=predictions[2]["masks"][:, :32])
    with pytest.raises(ValueError, match=r"predictions\[2\]\['masks'\]: expected shape \[\d+, 64, 64\]"):
        coco_instance_metrics(predictions[:2] + [wrong] + predictions[3:], train)
    no_masks = {k: v for k, v in predictions[0].items() if k != "masks"}
    with pytest.raises(ValueError, match="'masks'"):
        coco_instance_metrics([no_masks] + predictions[1:], train)
    with pytest.raises(ValueError, match="one entry per image"):
        coco_instance_metrics(predictions[:3], train)
    with pytest.raises(ValueError, match="needs the twin's postprocess"):
        evaluate(SMALL, {}, train)


def test_no_detections_score_zero_and_evaluate_goes_through_postprocess(train):
    empty = [{"boxes": np.zeros((0, 4)), "scores": np.zeros(0), "labels": np.zeros(0, np.int64),
              "masks": np.zeros((0, 64, 64), bool)} for _ in range(len(train))]
    metrics = coco_instance_metrics(empty, train)
    assert len(metrics) == 2 * len(STAT_NAMES) and all(v == 0.0 for v in metrics.values())
    scored = evaluate(SMALL, {}, train, postprocess=lambda outputs, spec: _ground_truth_as_predictions(train))
    assert scored["mask_map50"] == 1.0 and agreement({}, {}, SMALL) is None


# -- crowded scenes ---------------------------------------------------------------------------------------------

def test_crowded_scenes_are_one_class_of_touching_objects(crowded):
    assert len(crowded) == 20 and crowded.images.shape == (20, 64, 64, 3)
    again = crowded_split(SPEC, 3)
    np.testing.assert_array_equal(again.images, crowded.images[:3])
    assert not np.array_equal(crowded_split(SPEC, 3, seed=1).images, again.images)
    touching = []
    for boxes, labels, masks, visible, fraction in zip(crowded.boxes, crowded.labels, crowded.masks,
                                                      crowded.visible_masks, crowded.visible_fraction):
        assert 2 <= len(labels) <= 5 and len(set(labels.tolist())) == 1
        np.testing.assert_array_equal(boxes, masks_to_boxes(masks))
        assert not (visible & ~masks).any() and (visible.sum(axis=(1, 2)) >= 6).all()
        np.testing.assert_allclose(fraction, visible.sum(axis=(1, 2)) / masks.sum(axis=(1, 2)), rtol=1e-6)
        assert (fraction >= SPEC.data.min_visible_fraction).all()
        touching.append(touching_pairs(visible))
    assert np.mean(np.array(touching) >= 1) >= 0.8


def test_class_map_components_undercount_crowded_scenes_while_instances_count_right(crowded):
    truth = [count_instances({"boxes": b, "scores": np.ones(len(y)), "labels": y})
             for b, y in zip(crowded.boxes, crowded.labels)]
    assert truth == [{int(y[0]): len(y)} for y in crowded.labels]
    instances = [count_instances(p) for p in _ground_truth_as_predictions(crowded)]
    maps = [class_map_from_instances(p, (64, 64), NUM_CLASSES) for p in _ground_truth_as_predictions(crowded)]
    for m, y, v in zip(maps, crowded.labels, crowded.visible_masks):
        np.testing.assert_array_equal(m, class_map(y, v, (64, 64)))
    components = [count_components(m, NUM_CLASSES) for m in maps]
    merged = [sum(c.values()) < len(y) for c, y in zip(components, crowded.labels)]
    assert np.mean(merged) >= 0.5                                    # the premise of the study
    assert count_accuracy(instances, truth) == 1.0
    assert count_accuracy(components, truth) <= 0.5
    assert semantic_miou(np.stack(maps), np.stack(maps), NUM_CLASSES) == 1.0


# -- counting helpers on hand-made cases ----------------------------------------------------------------------

def _squares(*corners, side=3, size=10):
    masks = np.zeros((len(corners), size, size), bool)
    for k, (y, x) in enumerate(corners):
        masks[k, y:y + side, x:x + side] = True
    return masks


def test_two_touching_squares_are_one_component_and_two_instances():
    masks = _squares((2, 1), (2, 4))                                 # columns 1-3 and 4-6: edge to edge
    assert touching_pairs(masks) == 1
    prediction = {"boxes": masks_to_boxes(masks), "scores": np.array([0.9, 0.8]), "labels": np.array([2, 2]),
                  "masks": masks}
    class_map_ = class_map_from_instances(prediction, (10, 10), NUM_CLASSES)
    assert count_components(class_map_, NUM_CLASSES) == {2: 1}
    assert count_instances(prediction) == {2: 2}
    diagonal = _squares((0, 0), (3, 3))                              # corners meet: not 4-adjacent
    assert touching_pairs(diagonal) == 0
    assert count_components(class_map_from_instances(dict(prediction, masks=diagonal), (10, 10), NUM_CLASSES),
                            NUM_CLASSES) == {2: 2}
    assert touching_pairs(_squares((0, 0), (0, 5), (5, 0))) == 0
    assert touching_pairs(_squares((0, 0), (0, 3), (3, 0), (3, 3))) == 4


def test_class_map_paints_higher_scores_last_and_drops_low_scores():
    masks = _squares((0, 0), (1, 1), (6, 6))
    prediction = {"boxes": masks_to_boxes(masks), "scores": np.array([0.9, 0.6, 0.3]), "labels": np.array([0, 4, 1]),
                  "masks": masks}
    out = class_map_from_instances(prediction, (10, 10), NUM_CLASSES)
    assert out[1, 1] == 1 and out[3, 3] == 5 and out[7, 7] == 0
    assert count_instances(prediction) == {0: 1, 4: 1}
    assert count_instances(prediction, min_score=0.2) == {0: 1, 1: 1, 4: 1}
    with pytest.raises(ValueError, match=r"class ids in \[0, 3\)"):
        class_map_from_instances(prediction, (10, 10), 3)


def test_count_accuracy_and_semantic_miou_known_answers():
    assert count_accuracy([{0: 2}, {1: 1, 3: 0}, {2: 1}], [{0: 2}, {1: 1}, {2: 2}]) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="one dict per image"):
        count_accuracy([{}], [{}, {}])
    truth = np.array([[[0, 0, 1, 1]]])
    predicted = np.array([[[0, 1, 1, 1]]])
    # background: 1 / 2; class 1 (label 0): 2 / 3; the other classes are absent from both.
    assert semantic_miou(predicted, truth, NUM_CLASSES) == pytest.approx((1 / 2 + 2 / 3) / 2)
    with pytest.raises(ValueError, match="class_map: expected class ids in"):
        count_components(np.full((3, 3), NUM_CLASSES + 1), NUM_CLASSES)
